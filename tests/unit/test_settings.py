from __future__ import annotations

import pytest

from config import DEFAULT_MODEL, SettingsError, celery_config, load_settings
from config.settings import FamilyLimits


def test_defaults_point_at_local_redis_and_a_current_model() -> None:
    settings = load_settings()

    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.result_backend_url == settings.broker_url
    assert settings.anthropic.default_model == DEFAULT_MODEL
    assert DEFAULT_MODEL != "claude-sonnet-4-5"  # deprecated, ends 2026-11-30
    assert settings.worker.pool == "threads"
    assert settings.anthropic_api_key is None


def test_environment_overrides_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_BROKER_URL", "redis://example:6380/2")
    monkeypatch.setenv("CHORUS_RETRY__MAX_ATTEMPTS", "9")
    monkeypatch.setenv("CHORUS_WORKER__CONCURRENCY", "40")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999")

    settings = load_settings()

    assert settings.broker_url == "redis://example:6380/2"
    assert settings.retry.max_attempts == 9
    assert settings.worker.concurrency == 40
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-secret"
    assert settings.anthropic_base_url == "http://127.0.0.1:9999"
    assert not settings.uses_real_api


def test_the_key_never_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-print")

    settings = load_settings()

    assert "sk-ant-do-not-print" not in repr(settings)
    assert "sk-ant-do-not-print" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "CHORUS_RETRY__MAX_ATTEMPTS",
            "0",
            "CHORUS_RETRY__MAX_ATTEMPTS=0: Input should be greater",
        ),
        (
            "CHORUS_WORKER__CONCURRENCY",
            "many",
            "CHORUS_WORKER__CONCURRENCY=many: Input should be a",
        ),
        ("CHORUS_BROKER_URL", "http://x", "CHORUS_BROKER_URL=http://x: must be a redis://"),
        ("ANTHROPIC_BASE_URL", "ftp://x", "ANTHROPIC_BASE_URL=ftp://x: must be an http"),
        ("CHORUS_WORKER__POOL", "fibers", "CHORUS_WORKER__POOL=fibers: Value error, must be one"),
        ("CHORUS_RETRY", "{not json", "CHORUS_RETRY: is not valid JSON"),
    ],
)
def test_a_bad_value_names_the_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    message = str(caught.value)
    assert "\n" not in message
    assert message.replace("Value error, ", "").startswith(expected.replace("Value error, ", ""))


def test_the_visibility_timeout_must_outlast_the_longest_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHORUS_WORKER__TASK_TIME_LIMIT_S", "1000")
    monkeypatch.setenv("CHORUS_RETRY__MAX_WAIT_S", "300")
    monkeypatch.setenv("CHORUS_WORKER__VISIBILITY_TIMEOUT_S", "1200")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert str(caught.value).startswith("CHORUS_WORKER__VISIBILITY_TIMEOUT_S=1200:")
    assert "1300 s" in str(caught.value)


def test_a_bad_key_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_WORKER__VISIBILITY_TIMEOUT_S", "10")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-never-echo")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert "sk-ant-never-echo" not in str(caught.value)


def test_celery_config_carries_the_reliability_settings() -> None:
    conf = celery_config(load_settings())

    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["accept_content"] == ["json"]
    assert conf["task_serializer"] == "json"
    assert conf["broker_transport_options"]["visibility_timeout"] == 3600


def test_chorus_worker_starts_two_processes_per_usable_cpu_unless_told() -> None:
    from config.settings import WorkerSettings, usable_cpus

    assert WorkerSettings().process_count == 2 * usable_cpus()
    assert WorkerSettings(processes=3).process_count == 3


def test_buckets_hold_half_a_second_of_refill_by_default() -> None:
    # The API may enforce a per-minute limit over one second; half of it held
    # back absorbs the delay between reserving a call and the API counting it.
    limits = FamilyLimits(
        requests_per_minute=600, input_tokens_per_minute=600_000, output_tokens_per_minute=6_000
    )
    assert limits.capacities() == [5, 5_000, 50]
    assert limits.per_minute() == [600, 600_000, 6_000]
    assert FamilyLimits(requests_per_minute=60, burst_s=60).capacities()[0] == 60
    assert FamilyLimits(requests_per_minute=60).capacities()[0] == 0.5


def test_a_worker_may_open_a_broker_connection_per_slot_when_it_starts() -> None:
    from types import SimpleNamespace

    from workers.app import SPARE_BROKER_CONNECTIONS, _room_for_every_slot

    conf = SimpleNamespace(
        worker_concurrency=None, broker_transport_options={"visibility_timeout": 3600}
    )
    _room_for_every_slot(conf=conf, options={"concurrency": 250})
    assert conf.broker_transport_options == {
        "visibility_timeout": 3600,
        "max_connections": 250 + SPARE_BROKER_CONNECTIONS,
    }

    # A larger cap already set is kept; without --concurrency, the config's.
    conf = SimpleNamespace(worker_concurrency=4, broker_transport_options={"max_connections": 64})
    _room_for_every_slot(conf=conf, options={})
    assert conf.broker_transport_options == {"max_connections": 64}
    conf = SimpleNamespace(worker_concurrency=40, broker_transport_options=None)
    _room_for_every_slot(conf=conf, options={})
    assert conf.broker_transport_options == {"max_connections": 40 + SPARE_BROKER_CONNECTIONS}
