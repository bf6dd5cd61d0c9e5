"""Celery pools other than the default threads pool, as `CHORUS_WORKER__POOL` allows them."""

from __future__ import annotations

import uuid

import gevent  # noqa: F401 - the pool under test; a missing install fails here, not skips
import pytest
import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, eventually, start_test_workers
from workers.app import reconfigure


def test_a_gevent_worker_acknowledges_every_message_when_its_calls_end_together(
    chorus_env: dict[str, str],
    redis_client: redis.Redis,
    local_api: LocalAPIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 250 greenlets whose calls end together acknowledge their messages
    # together: past kombu's 10 connections per channel an ack failed
    # ("Couldn't ack", MaxConnectionsError; 22 of 500 here before the fix) and
    # its message would have run again after the visibility timeout.
    # Calls long enough that 200 are out before the first ends, on a busy machine too.
    local_api.configure(latency_ms=2000)
    queue = f"gevent-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("CHORUS_WORKER__QUEUE", queue)
    reconfigure()
    started = start_test_workers(
        {**chorus_env, "CHORUS_WORKER__QUEUE": queue},
        1,
        prefix="gevent",
        concurrency=250,
        pool="gevent",
    )
    try:
        batch = Batch.submit(
            [{"id": f"g{i}", "prompt": f"Summarise gevent item {i}."} for i in range(500)],
            **BRIEF,
        )
        status = batch.wait(60)
        results = list(batch.results())

        assert status.finished
        assert sum(1 for r in results if r["ok"]) == 500
        assert local_api.stats()["max_in_flight"] >= 200  # the calls did overlap
        # Every message acknowledged: kombu's record of unacknowledged ones empties.
        eventually(lambda: redis_client.hlen("unacked") == 0, timeout_s=10)
        assert "Couldn't ack" not in started.logs()
    finally:
        started.fleet.stop()
        local_api.configure(latency_ms=20)
