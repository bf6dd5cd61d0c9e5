"""Horizontal scaling: three worker processes with their own node names on one Redis.

What ``docker compose up --scale worker=3`` gives, as processes on one machine.
They share one global rate limit: the local API allows 600 requests a minute
held over one second (a bucket of 10, refilled at ten a second), chorus is told
the same, and 63 items are sent at once. Three limiters of their own would each
let their burst through at once and the API would answer 429 to the surplus
(with one attempt per call, an item would fail); one shared limiter sends its
burst of 5 and the rest ten a second. Flower watches the three.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis

from config.settings import FamilyLimits
from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, eventually, start_test_workers
from tests.integration.fleet_helpers import running_flower, task_events_on
from workers.app import reconfigure
from workers.ratelimit.backends.redis import RedisLimiter
from workers.ratelimit.limitkey import api_fingerprint

ITEMS = 63
RPM = 600


@pytest.fixture
def limited_api(local_api: LocalAPIServer) -> Iterator[LocalAPIServer]:
    local_api.configure(rpm=RPM, latency_ms=20)
    yield local_api
    local_api.configure(rpm=None, latency_ms=20)


def test_three_workers_share_one_limit_run_every_item_once_and_flower_lists_them(
    chorus_env: dict[str, str],
    limited_api: LocalAPIServer,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 3 worker processes (scale1..scale3) on a queue of their own, so that no
    # other worker of the session takes a share, all held to 600 requests a minute
    queue = f"scale-{uuid.uuid4().hex[:8]}"
    extra = {
        "CHORUS_WORKER__QUEUE": queue,
        "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": str(RPM),
        "CHORUS_RETRY__MAX_ATTEMPTS": "1",  # a 429 would fail its item
    }
    monkeypatch.setenv("CHORUS_WORKER__QUEUE", queue)
    reconfigure()
    host = socket.gethostname()
    names = {f"scale{i}@{host}" for i in (1, 2, 3)}
    workers = start_test_workers(chorus_env, 3, prefix="scale", concurrency=10, extra_env=extra)
    try:
        with running_flower({**chorus_env, **extra}, name="scale") as flower:
            # Flower turns the workers' task events on (they start with them off)
            eventually(lambda: task_events_on(workers.log_dir, 3), timeout_s=30)

            # When 63 items are submitted at once
            items = [{"id": f"item-{i}", "prompt": f"Scale item {i}."} for i in range(ITEMS)]
            batch = Batch.submit(items, **BRIEF)
            status = batch.wait(timeout_s=90)

            def flower_has_them() -> dict[str, dict[str, object]]:
                found = {
                    tid: t
                    for tid, t in flower.tasks(search=batch.id).items()
                    if t["state"] == "SUCCESS"
                }
                return found if len(found) >= ITEMS else {}

            tasks = eventually(flower_has_them, timeout_s=30)
            listed = flower.alive_workers()
    finally:
        workers.fleet.stop()

    # Then every item completed, once, and nothing was paid for twice
    failed = [(r["id"], r.get("error")) for r in batch.results() if not r["ok"]]
    assert status.finished and status.count("complete") == ITEMS, (status.counts, failed)
    assert status.calls == ITEMS
    stats = limited_api.stats()
    assert stats["paid"] == ITEMS and stats["duplicates_paid"] == 0
    # And the API never had to refuse: the three held one limit between them
    assert stats["rate_limited"] == 0
    assert stats["by_status"] == {"200": ITEMS}
    limiter = RedisLimiter(redis_client, lambda family: FamilyLimits(requests_per_minute=RPM))
    state = limiter.state(f"{api_fingerprint(chorus_env['ANTHROPIC_API_KEY'])}:sonnet")
    assert state.granted == ITEMS
    assert state.waited_s > 1.0, "the last items must have waited for the shared bucket"
    # And Flower lists the three workers, one task per item, and each worker took a share
    assert names <= listed
    item_ids = sorted(re.search(r"item=(\S+)", str(t["args"]))[1] for t in tasks.values())  # type: ignore[index]
    assert item_ids == sorted(f"item-{i}" for i in range(ITEMS))
    per_worker = {name: sum(t["worker"] == name for t in tasks.values()) for name in names}
    assert all(count > 0 for count in per_worker.values()), per_worker
