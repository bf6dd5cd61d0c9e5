"""Redis restarts mid-batch: with AOF nothing is lost; without it, resume rebuilds and pays once."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from orchestration.embedded import (
    PrivateRedis,
    free_port,
    start_redis_server,
    stop_private_server,
)
from tests.integration.conftest import BRIEF, chorus, eventually
from tests.integration.faults.conftest import TIMEOUT_S, fleet, items, results_by_id
from workers import keys


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
    assert 10 <= status.from_store < 80
    stats = local_api.stats()
    assert stats["paid"] == 80 and stats["duplicates_paid"] == 0
