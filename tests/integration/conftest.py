"""Integration fixtures: a real Redis, real worker processes, the real SDK over HTTP.

Redis is ``CHORUS_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``),
flushed before each test. If nothing answers there, a private redis-server
is started for the session; under ``CI=true`` a missing Redis is an error,
never a silent skip.

The local Anthropic API runs in this process (a thread with its own event
loop); the workers are separate ``celery -A workers worker`` processes that
reach it over HTTP. Their logs go to ``test-output/workers/``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.signals import before_task_publish

from config.settings import get_settings
from localapi import LocalAPIServer
from orchestration.embedded import (
    PrivateRedis,
    redis_answers,
    start_redis_server,
    stop_private_server,
)
from orchestration.fleet import Fleet, start_workers, wait_for_workers
from workers.app import reconfigure

pytestmark = pytest.mark.integration

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"
# What a test sends when the answer's length is beside the point. The default
# model thinks before it answers (adaptive thinking, on by default) and the
# thinking counts against max_tokens, as on the real API: a short answer needs
# room for both, and asks for little thinking.
BRIEF: dict[str, Any] = {"max_tokens": 256, "effort": "low"}
# Distinctive, so a leak anywhere is found by a plain substring search.
FAKE_API_KEY = "sk-ant-test-LEAKCANARY-" + "7f3c9a1e5b"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("CHORUS_TEST_REDIS_URL", DEFAULT_TEST_REDIS)
    private: PrivateRedis | None = None
    if not redis_answers(url):
        try:
            private = start_redis_server(OUTPUT / "redis", daemonize=False)
        except Exception as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"no Redis at {url} and none could be started: {exc}")
            pytest.skip(f"no Redis at {url} and none could be started: {exc}")
        url = private.url.rsplit("/", 1)[0] + "/15"
    yield url
    if private is not None:
        stop_private_server(private)


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def local_api() -> Iterator[LocalAPIServer]:
    with LocalAPIServer(latency_ms=20) as server:
        yield server


@pytest.fixture(scope="session")
def chorus_env(redis_url: str, local_api: LocalAPIServer) -> dict[str, str]:
    """The environment shared by this process and the workers it starts."""
    return {
        "CHORUS_BROKER_URL": redis_url,
        "ANTHROPIC_BASE_URL": local_api.url,
        "ANTHROPIC_API_KEY": FAKE_API_KEY,
        "CHORUS_WORKER__QUEUE": f"chorus-test-{uuid.uuid4().hex[:8]}",
        "CHORUS_RETRY__BASE_DELAY_S": "0.05",
        "CHORUS_RETRY__MAX_DELAY_S": "0.2",
        "CHORUS_WORKER__TASK_TIME_LIMIT_S": "60",
        "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "3600",
        "CHORUS_ANTHROPIC__REQUEST_TIMEOUT_S": "10",
        # The Message Batches route looks at a batch every 0.2 s to 1 s, not 10 s to 5 min.
        "CHORUS_BATCHES__POLL_MIN_S": "0.2",
        "CHORUS_BATCHES__POLL_MAX_S": "1",
    }


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, chorus_env: dict[str, str]) -> Iterator[None]:
    """Overrides the unit tests' fixture: this process speaks to the test Redis and API."""
    for name in list(os.environ):
        if name.startswith(("CHORUS_", "ANTHROPIC_")) and name != "CHORUS_TEST_REDIS_URL":
            monkeypatch.delenv(name)
    for name, value in chorus_env.items():
        monkeypatch.setenv(name, value)
    reconfigure()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def fresh_state(redis_client: redis.Redis, local_api: LocalAPIServer) -> None:
    """Each test starts with chorus's Redis state empty and the local API as it started.

    kombu's binding keys stay: without them a publish to a queue whose
    declaration kombu has cached would be routed nowhere.
    """
    doomed = [k for k in redis_client.scan_iter(count=1000) if not k.startswith(b"_kombu.binding.")]
    if doomed:
        redis_client.delete(*doomed)
    local_api.restore()


@dataclass
class Workers:
    fleet: Fleet
    names: list[str]
    log_dir: Path

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


def start_test_workers(
    env: dict[str, str],
    count: int,
    *,
    prefix: str,
    extra_env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Workers:
    log_dir = OUTPUT / "workers" / f"{prefix}-{uuid.uuid4().hex[:6]}"
    merged = {**env, **(extra_env or {})}
    fleet = start_workers(
        get_settings(), count, env=merged, prefix=prefix, log_dir=log_dir, **kwargs
    )
    try:
        names = wait_for_workers(count, timeout_s=60, fleet=fleet)
    except Exception:
        fleet.stop()
        raise
    return Workers(fleet, names, log_dir)


def own_queue(monkeypatch: pytest.MonkeyPatch, prefix: str) -> dict[str, str]:
    """A queue of its own for workers a test starts, which this process sends to.

    The session's workers consume the shared queue with settings of their own:
    a test whose workers need other settings must keep its calls away from them.
    Returns the environment to add to those workers'.
    """
    queue = f"{prefix}-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("CHORUS_WORKER__QUEUE", queue)
    reconfigure()
    return {"CHORUS_WORKER__QUEUE": queue}


@pytest.fixture(scope="session")
def workers(chorus_env: dict[str, str], redis_url: str) -> Iterator[Workers]:
    """Two worker processes for the session (threads pool)."""
    os.environ.update(chorus_env)  # for the session-scoped start, before clean_env
    reconfigure()
    started = start_test_workers(chorus_env, 2, prefix="itest", concurrency=20)
    yield started
    started.fleet.stop()


def eventually(
    condition: Callable[[], Any], *, timeout_s: float = 20.0, interval_s: float = 0.05
) -> Any:
    """Poll ``condition`` until it is truthy; fail with a clear message at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s:g} s")
        time.sleep(interval_s)


def chorus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``chorus`` command in a process of its own, with this environment."""
    return subprocess.run(
        [sys.executable, "-m", "orchestration.cli", *args],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def captured_calls() -> Iterator[list[dict[str, Any]]]:
    """Every chorus.call message this process publishes, as it was sent: its body,
    headers (argsrepr: what Flower shows), properties, routing key and exchange."""
    seen: list[dict[str, Any]] = []

    def record(sender: str | None = None, **message: Any) -> None:
        if sender == "chorus.call":
            exchange = message["exchange"]
            seen.append(
                {
                    "body": copy.deepcopy(message["body"]),
                    "headers": copy.deepcopy(message["headers"]),
                    "properties": copy.deepcopy(message["properties"]),
                    "routing_key": message["routing_key"],
                    "exchange": getattr(exchange, "name", exchange) or "",
                }
            )

    before_task_publish.connect(record, weak=False)
    yield seen
    before_task_publish.disconnect(record)
