"""Faults: kill workers, restart Redis, break the provider, feed bad input.

Each promise of docs/RELIABILITY.md is a test here: nothing is lost, nothing is
paid for twice, no secret leaks. Witnesses: the batch ledger (each item ends
once) and the local API's own counts (what was paid for).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from config.settings import FamilyLimits
from localapi import LocalAPIServer
from orchestration.batch import Batch, StateUnavailable
from orchestration.embedded import (
    PrivateRedis,
    free_port,
    start_redis_server,
    stop_private_server,
)
from tests.integration.conftest import (
    BRIEF,
    FAKE_API_KEY,
    Workers,
    chorus,
    eventually,
    start_test_workers,
)
from workers import keys
from workers.app import reconfigure
from workers.ratelimit.backends.redis import RedisLimiter
from workers.ratelimit.limitkey import api_fingerprint

# Short enough for tests: a dead worker's messages come back within
# visibility (10 s) + the restore sweep (1 s).
FAST = {
    "CHORUS_WORKER__TASK_TIME_LIMIT_S": "6",
    "CHORUS_RETRY__MAX_WAIT_S": "2",
    "CHORUS_RETRY__MAX_DELAY_S": "0.5",
    "CHORUS_RETRY__BASE_DELAY_S": "0.05",
    "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "10",
    "CHORUS_WORKER__RESTORE_INTERVAL_S": "1",
    "CHORUS_ANTHROPIC__REQUEST_TIMEOUT_S": "4",
}
TIMEOUT_S = 90
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "workers", "worker"]


def items(count: int, text: str = "Summarise note {i}.") -> list[dict[str, Any]]:
    return [{"id": f"item-{i:03d}", "prompt": text.format(i=i)} for i in range(count)]


@contextmanager
def fleet(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    count: int = 1,
    prefix: str = "fault",
    concurrency: int = 10,
    pool: str | None = None,
    extra: dict[str, str] | None = None,
    start: bool = True,
) -> Iterator[tuple[dict[str, str], list[Workers]]]:
    """Workers on a queue of their own, with ``extra`` settings also set in this process."""
    env = {**chorus_env, **FAST, "CHORUS_WORKER__QUEUE": f"{prefix}-{uuid.uuid4().hex[:6]}"}
    env.update(extra or {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reconfigure()
    started: list[Workers] = []
    try:
        if start:
            started.append(
                start_test_workers(env, count, prefix=prefix, concurrency=concurrency, pool=pool)
            )
        yield env, started
    finally:
        for workers in started:
            workers.fleet.stop()


@pytest.fixture(autouse=True)
def honest_billing(local_api: LocalAPIServer) -> None:
    """A call whose client went away is finished and billed, as the real API may do:
    every "paid twice" here is counted by a witness that does not forgive."""
    local_api.configure(honest_billing=True)


def results_by_id(batch: Batch) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in batch.results()}


# --- workers that die ---------------------------------------------------------


def test_a_killed_threads_worker_s_items_run_again_once(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    local_api.configure(latency_ms=1500)
    with fleet(chorus_env, monkeypatch, prefix="victim", concurrency=10) as (env, (victim,)):
        # Given a batch whose calls the victim worker holds in flight
        batch = Batch.submit(items(20), **BRIEF)
        eventually(lambda: local_api.stats()["in_flight"] >= 10)
        survivor = start_test_workers(env, 1, prefix="survivor", concurrency=20)
        try:
            # When the whole worker process is killed mid-call
            in_flight_at_kill = local_api.stats()["in_flight"]
            os.kill(victim.fleet.processes[0].pid, signal.SIGKILL)
            status = batch.wait(TIMEOUT_S)
        finally:
            survivor.fleet.stop()
            local_api.configure(latency_ms=20)

    # Then every item ended exactly once, the killed ones on a second delivery
    records = results_by_id(batch)
    assert status.count("complete") == 20 and len(records) == 20
    redelivered = [r for r in records.values() if r["delivery"] == 2]
    assert len(redelivered) >= 10
    # The killed calls were finished and billed by the honest API, then paid again:
    # paid twice, at most the calls in flight at the kill.
    stats = local_api.stats()
    assert 0 < stats["abandoned_billed"] <= min(in_flight_at_kill, len(redelivered))
    assert stats["duplicates_paid"] == stats["abandoned_billed"]
    assert stats["paid"] == 20 + stats["duplicates_paid"]


def _children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_a_killed_prefork_child_s_item_is_requeued_at_once(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "slow one", "responses": [{"text": "done", "latency_ms": 2500}]}])
    with fleet(chorus_env, monkeypatch, prefix="prefork", concurrency=2, pool="prefork") as (
        _,
        (workers,),
    ):
        batch = Batch.submit(items(1, "The slow one."), **BRIEF)
        eventually(lambda: local_api.stats()["in_flight"] == 1)
        started = time.monotonic()
        for child in _children(workers.fleet.processes[0].pid):
            child.kill()  # one of them holds the call; the parent replaces both
        status = batch.wait(TIMEOUT_S)
        took_s = time.monotonic() - started

    (record,) = batch.results()
    assert status.count("complete") == 1, record
    assert record["delivery"] == 2 and record["text"] == "done"
    # Celery saw the child die and requeued at once: well within the visibility timeout.
    assert took_s < 10
    # The killed child's call was billed all the same (honest billing), then paid again.
    stats = local_api.stats()
    assert stats["paid"] == 2 and stats["duplicates_paid"] == stats["abandoned_billed"] == 1


def test_an_item_that_kills_its_worker_every_time_is_dead_lettered(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "poison", "responses": [{"text": "never", "latency_ms": 20000}]}])
    extra = {"CHORUS_WORKER__MAX_DELIVERIES": "2"}
    with fleet(
        chorus_env, monkeypatch, prefix="poison", concurrency=1, pool="prefork", extra=extra
    ) as (_, (workers,)):
        batch = Batch.submit([*items(3), {"id": "poison", "prompt": "The poison pill."}], **BRIEF)
        kills = 0
        while not batch.progress().finished and kills < 5:
            if local_api.stats()["in_flight"] and batch.progress().count("complete") == 3:
                for child in _children(workers.fleet.processes[0].pid):
                    child.kill()
                kills += 1
                eventually(lambda: local_api.stats()["in_flight"] == 0)
            time.sleep(0.05)
        status = batch.wait(TIMEOUT_S)

    records = results_by_id(batch)
    assert kills == 2  # two deliveries died with their worker; the third was not attempted
    assert status.finished and status.count("complete") == 3 and status.count("failed") == 1
    assert records["poison"]["error"]["type"] == "dead_lettered"
    assert "delivered 2 times" in records["poison"]["error"]["message"]
    assert status.errors == {"dead_lettered": 1}
    assert len(local_api.requests_log(contains="poison")) == 2


# --- Redis that restarts --------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Private redis-servers on fixed ports, restartable: {'start': fn, 'servers': [...]}."""
    servers: list[PrivateRedis] = []

    def start(port: int, *, appendonly: bool, folder: str) -> PrivateRedis:
        server = start_redis_server(
            tmp_path / folder, port=port, appendonly=appendonly, daemonize=False
        )
        servers.append(server)
        return server

    yield {"start": start, "servers": servers}
    for server in servers:
        stop_private_server(server)


def _restart(own: dict[str, Any], server: PrivateRedis, *, appendonly: bool, folder: str) -> None:
    client = redis.Redis.from_url(server.url)
    with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it goes
        client.shutdown(nosave=not appendonly)
    assert server.process is not None
    server.process.wait(timeout=10)
    time.sleep(0.5)  # workers see Redis gone, as in a real restart
    own["start"](server.port, appendonly=appendonly, folder=folder)


def test_a_redis_restart_with_aof_loses_nothing(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
    own_redis: dict[str, Any],
) -> None:
    server = own_redis["start"](free_port(), appendonly=True, folder="aof")
    local_api.configure(latency_ms=300)
    extra = {"CHORUS_BROKER_URL": server.url}
    try:
        with fleet(chorus_env, monkeypatch, prefix="aof", concurrency=10, extra=extra):
            batch = Batch.submit(items(60), **BRIEF)
            eventually(lambda: batch.progress().count("complete") >= 15)

            _restart(own_redis, server, appendonly=True, folder="aof")
            status = batch.wait(TIMEOUT_S)
            records = results_by_id(batch)
    finally:
        local_api.configure(latency_ms=20)

    failed = [
        (r["id"], r["error"], r["delivery"], r["calls"]) for r in records.values() if not r["ok"]
    ]
    assert status.finished and status.count("complete") == 60, failed
    assert sorted(records) == [f"item-{i:03d}" for i in range(60)]
    stats = local_api.stats()
    assert stats["paid"] == 60 and stats["duplicates_paid"] == 0


def test_a_redis_restart_without_persistence_is_rebuilt_by_resume_and_paid_once(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
    own_redis: dict[str, Any],
    tmp_path: Path,
) -> None:
    broker = own_redis["start"](free_port(), appendonly=False, folder="broker")
    store = own_redis["start"](free_port(), appendonly=True, folder="store")
    source = tmp_path / "items.jsonl"
    source.write_text("".join(json.dumps(i) + "\n" for i in items(80)))
    local_api.configure(latency_ms=500)
    extra = {
        "CHORUS_BROKER_URL": broker.url,
        "CHORUS_STORE_URL": store.url,
        "CHORUS_HOME": str(tmp_path / "home"),
    }
    try:
        with fleet(chorus_env, monkeypatch, prefix="wipe", concurrency=10, extra=extra) as (
            env,
            _,
        ):
            submitted = chorus(
                "submit", str(source), "--name", "wiped", "--max-tokens", "256", "--effort", "low"
            )
            assert submitted.returncode == 0, submitted.stderr
            first = Batch.get("wiped")
            eventually(lambda: first.progress().count("complete") >= 10)

            # Redis restarts empty: the queue, the ledger and the batch are gone.
            _restart(own_redis, broker, appendonly=False, folder="broker")
            assert not redis.Redis.from_url(broker.url).exists(keys.batch(first.id))

            resumed = chorus("resume", "wiped", env=env)
            assert resumed.returncode == 0, resumed.stderr
            assert "rebuilt it as" in resumed.stderr
            status = Batch.get("wiped").wait(TIMEOUT_S)
    finally:
        local_api.configure(latency_ms=20)

    assert status.finished and status.count("complete") == 80
    # Some were paid before the wipe and answered from the store after it;
    # the rest were sent only after the rebuild. Each was paid once.
    assert 10 <= status.cached < 80
    stats = local_api.stats()
    assert stats["paid"] == 80 and stats["duplicates_paid"] == 0


# --- Redis that is not there ----------------------------------------------------


def test_commands_refuse_to_start_without_redis(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {**os.environ, "CHORUS_BROKER_URL": dead}
    source = tmp_path / "items.jsonl"
    source.write_text('{"prompt": "hello"}\n')

    for args in (("worker",), ("submit", str(source)), ("status", "any")):
        done = chorus(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == f"chorus: Redis at {dead} (CHORUS_BROKER_URL) does not answer"


def test_a_celery_worker_without_redis_retries_with_backoff_and_says_so() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {**os.environ, "CHORUS_BROKER_URL": dead}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "--pool",
            "threads",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Trying again in" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=15)

    log = "".join(lines)
    assert "Cannot connect to redis://" in log and "Connection refused" in log
    assert "Trying again in" in log and "/100)" in log  # a bounded number of attempts


def test_the_python_api_says_nothing_was_enqueued_when_redis_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHORUS_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    reconfigure()

    with pytest.raises(StateUnavailable, match=r"cannot be reached .*; nothing was enqueued"):
        Batch.submit(items(3), **BRIEF)


def test_a_batch_cut_off_mid_enqueue_is_known_to_the_ledger_and_finished_by_resubmitting(
    workers: Workers, local_api: LocalAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_publish = Batch._publish
    calls = {"n": 0}

    def publish_then_fail(self: Batch, batch_items: Any, vote: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise redis.ConnectionError("Redis went away")
        real_publish(self, batch_items, vote)

    monkeypatch.setattr(Batch, "_publish", publish_then_fail)
    with pytest.raises(
        StateUnavailable, match="submit the same input again with --name b-"
    ) as caught:
        Batch.submit(items(1500), **BRIEF)
    batch_id = str(caught.value).split("--name ")[1].split()[0]
    status = Batch.get(batch_id).progress()
    assert status.state == "enqueuing" and status.enqueued == 1000 and status.total == 1500

    monkeypatch.setattr(Batch, "_publish", real_publish)
    again = Batch.submit(items(1500), **BRIEF, name=batch_id)
    final = again.wait(TIMEOUT_S)

    assert again.id == batch_id
    assert final.finished and final.count("complete") == 1500
    assert local_api.stats()["paid"] == 1500


# --- the provider misbehaving ------------------------------------------------------


def test_a_provider_fault_mix_ends_every_item_ok_without_a_429_storm(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
    redis_client: redis.Redis,
) -> None:
    local_api.configure(
        rate_429=0.10, rate_529=0.05, rate_500=0.02, rate_hang=0.01, rate_malformed=0.01,
        hang_s=30, retry_after_s=1, seed=14,  # 14: every kind within the first 100 draws
    )  # fmt: skip
    extra = {
        "CHORUS_RETRY__MAX_ATTEMPTS": "10",
        "CHORUS_ANTHROPIC__REQUEST_TIMEOUT_S": "2",
        # Every 429 holds the whole fleet back a second: an item can wait long.
        "CHORUS_WORKER__TASK_TIME_LIMIT_S": "120",
        "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "300",
    }
    try:
        with fleet(chorus_env, monkeypatch, prefix="faults", count=2, concurrency=10, extra=extra):
            batch = Batch.submit(items(100), **BRIEF)
            status = batch.wait(TIMEOUT_S)
    finally:
        local_api.configure(
            rate_429=0, rate_529=0, rate_500=0, rate_hang=0, rate_malformed=0, seed=0
        )

    stats = local_api.stats()
    assert status.count("complete") == 100
    assert status.calls == stats["requests"]  # every attempt counted
    injected = stats["injected"]
    # Every kind of fault happened, and each was retried under its own name.
    for fault, error_type in (
        ("429", "rate_limit_error"),
        ("529", "overloaded_error"),
        ("500", "api_error"),
        ("malformed", "malformed_response"),
        ("hang", "timeout_error"),
    ):
        assert injected[fault] > 0, injected
        assert status.retries.get(error_type, 0) >= injected[fault], (fault, status.retries)
    # No storm: 429s stay near the injected rate, and every one cooled the whole fleet.
    assert stats["by_status"].get("429", 0) <= 0.15 * stats["requests"]
    limiter = RedisLimiter(redis_client, lambda family: FamilyLimits())
    state = limiter.state(f"{api_fingerprint(FAKE_API_KEY)}:sonnet")
    assert state.cooldowns == stats["by_status"].get("429", 0)


def test_a_413_fails_that_item_with_its_type_and_request_id(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.configure(max_body_bytes=20_000)
    try:
        batch = Batch.submit([*items(5), {"id": "huge", "prompt": "word " * 6000}], **BRIEF)
        status = batch.wait(TIMEOUT_S)
    finally:
        local_api.configure(max_body_bytes=32 * 1024 * 1024)

    huge = results_by_id(batch)["huge"]
    assert status.count("complete") == 5 and status.count("failed") == 1
    assert huge["error"]["type"] == "request_too_large" and huge["error"]["status"] == 413
    assert huge["error"]["request_id"].startswith("req_")
    assert huge["calls"] == 1


def test_poison_items_fail_at_once_and_the_batch_completes(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    def line(custom_id: str, text: str, max_tokens: int) -> dict[str, Any]:
        return {
            "custom_id": custom_id,
            "params": {
                "model": "claude-sonnet-5",
                "max_tokens": max_tokens,
                "output_config": {"effort": "low"},
                "messages": [{"role": "user", "content": text}],
            },
        }

    # An account whose output-token limit is below what one call may ask for
    # (Tier 1's 8,000 a minute): a call with max_tokens above it can never be sent.
    # Input room for the oversized prompt's 1.4M estimated tokens, so that the fine
    # items never wait behind its reservation (in whatever order they run).
    tier_1 = {
        "CHORUS_LIMITS__SONNET__OUTPUT_TOKENS_PER_MINUTE": "8000",
        "CHORUS_LIMITS__SONNET__INPUT_TOKENS_PER_MINUTE": "50000000",
    }
    with fleet(chorus_env, monkeypatch, prefix="poison", extra=tier_1):
        batch = Batch.submit(
            [
                line("fine-1", "Hello.", 256),
                line("bigger-than-the-bucket", "Hello.", 16_000),  # > 8,000 output tokens/min
                line("bigger-than-the-context", "word " * 1_050_000, 256),
                line("fine-2", "Bye.", 256),
            ]
        )
        status = batch.wait(TIMEOUT_S)
    records = results_by_id(batch)

    assert status.count("complete") == 2 and status.count("failed") == 2
    bucket = records["bigger-than-the-bucket"]
    assert bucket["error"]["type"] == "request_exceeds_rate_limit" and bucket["calls"] == 0
    context = records["bigger-than-the-context"]
    assert context["error"]["type"] == "invalid_request_error" and context["calls"] == 1
    assert "prompt is too long" in context["error"]["message"]


# --- clocks ---------------------------------------------------------------------

SKEWED_CLOCK = """
import os, time
_skew = float(os.environ.get("CHORUS_TEST_CLOCK_SKEW_S", "0"))
if _skew:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _skew
    time.time_ns = lambda: _time_ns() + int(_skew * 1e9)
"""


def test_workers_with_skewed_clocks_hold_the_limit_the_same(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
    tmp_path: Path,
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SKEWED_CLOCK)
    check = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "CHORUS_TEST_CLOCK_SKEW_S": "-300"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert abs(float(check.stdout) - time.time() + 300) < 5  # the skew is real

    local_api.configure(rpm=600)
    limit = {
        "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": "600",
        "CHORUS_RETRY__MAX_ATTEMPTS": "1",
        # kombu decides which unacknowledged messages are overdue by each
        # worker's own clock: skew must stay below the visibility timeout
        # (docs/RELIABILITY.md). The limiter needs no such care.
        "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "3600",
        "CHORUS_WORKER__TASK_TIME_LIMIT_S": "120",
    }
    try:
        with fleet(chorus_env, monkeypatch, prefix="skew", extra=limit, start=False) as (
            env,
            started,
        ):
            for skew in ("300", "-300"):
                started.append(
                    start_test_workers(
                        {**env, "PYTHONPATH": str(tmp_path), "CHORUS_TEST_CLOCK_SKEW_S": skew},
                        1,
                        prefix=f"skew{skew.strip('-')}{'m' if skew.startswith('-') else 'p'}",
                        concurrency=20,
                    )
                )
            # Fifteen times what the API's one-second bucket holds.
            batch = Batch.submit(items(150), **BRIEF)
            status = batch.wait(TIMEOUT_S)
    finally:
        local_api.configure(rpm=None)

    assert status.count("complete") == 150, (status.errors, local_api.stats()["by_status"])
    assert local_api.stats()["rate_limited"] == 0
    assert status.rate_limit_wait_s > 1.0


# --- secrets ---------------------------------------------------------------------


def _all_redis_bytes(client: redis.Redis) -> Iterator[bytes]:
    for key in client.scan_iter(count=1000):
        yield key
        kind = client.type(key)
        if kind == b"string":
            yield client.get(key) or b""
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                yield field + b"=" + value
        elif kind == b"list":
            yield from client.lrange(key, 0, -1)
        elif kind == b"set":
            yield from client.smembers(key)
        elif kind == b"zset":
            yield from client.zrange(key, 0, -1)


def test_the_key_is_nowhere_after_a_full_run(
    workers: Workers, local_api: LocalAPIServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    local_api.script([{"match": "item-3 ", "responses": [{"status": 529}, {"text": "ok"}]}])
    batch = Batch.submit(items(20, "Summarise item-{i} now."), **BRIEF)
    batch.wait(TIMEOUT_S)
    out = tmp_path / "results.jsonl"
    batch.write_results(out)
    chorus("status", batch.id)

    needle = FAKE_API_KEY.encode()
    assert not any(needle in chunk for chunk in _all_redis_bytes(redis_client))
    assert needle.decode() not in workers.logs()
    assert needle.decode() not in out.read_text()


# --- bad input files ---------------------------------------------------------------


def test_an_empty_file_is_a_clear_error_and_enqueues_nothing(
    workers: Workers, redis_client: redis.Redis, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")

    done = chorus("submit", str(empty))

    assert done.returncode == 2
    assert "no items to run: the input is empty" in done.stderr
    assert redis_client.zcard(keys.batch_index()) == 0


def test_a_binary_file_is_a_clear_error_and_enqueues_nothing(
    workers: Workers, redis_client: redis.Redis, tmp_path: Path
) -> None:
    binary = tmp_path / "photo.jsonl"
    binary.write_bytes(bytes(range(256)) * 64)

    done = chorus("submit", str(binary))

    assert done.returncode == 2
    assert "nothing was enqueued" in done.stderr and "line 1:" in done.stderr
    assert redis_client.zcard(keys.batch_index()) == 0


def test_a_line_far_over_the_cap_is_read_in_bounded_memory(
    workers: Workers, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as out:
        out.write('{"prompt": "fine"}\n{"prompt": "')
        chunk = "x" * (1 << 20)
        for _ in range(300):  # a 300 MiB line
            out.write(chunk)
        out.write('"}\n')
    measure = (
        "import resource, subprocess, sys;"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
        "print(done.stderr, file=sys.stderr)"
    )

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            sys.executable,
            "-m",
            "orchestration.cli",
            "submit",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )

    code, peak_kib = done.stdout.split()
    assert code == "2"
    assert "line 2: 314,572,815 bytes, over the 10,485,760-byte line cap" in done.stderr
    assert int(peak_kib) < 200 * 1024  # far below the 300 MiB line
    assert redis_client.zcard(keys.batch_index()) == 0


def test_items_whose_messages_were_lost_are_sent_again_by_the_waiting_producer(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Short timings: a dead worker's messages would be back within 2 s + 2 x 1 s.
    quick = {
        "CHORUS_WORKER__TASK_TIME_LIMIT_S": "1",
        "CHORUS_RETRY__MAX_WAIT_S": "0.5",
        "CHORUS_RETRY__MAX_DELAY_S": "0.5",
        "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "2",
    }
    with fleet(chorus_env, monkeypatch, prefix="lost", extra=quick, start=False) as (env, started):
        # Given a batch whose messages vanished from the broker (no worker ran them)
        batch = Batch.submit(items(5), **BRIEF)
        assert redis_client.delete(env["CHORUS_WORKER__QUEUE"]) == 1
        assert not batch.lost()  # too soon: they might still come back

        # Then, once the ledger has been quiet past the visibility timeout, they are lost
        eventually(batch.lost, timeout_s=15, interval_s=0.2)
        started.append(start_test_workers(env, 1, prefix="lost", concurrency=5))
        status = batch.wait(TIMEOUT_S)  # ...and the waiting producer sends them again

    assert status.count("complete") == 5
    assert local_api.stats()["paid"] == 5
