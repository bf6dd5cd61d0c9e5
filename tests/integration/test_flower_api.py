"""Flower, for real: started against the real Redis and workers, read through its HTTP API.

Flower runs as ``celery -A orchestration.flowerapp flower`` (what the compose
file runs) with basic auth, in the workers' environment. It learns about tasks
from the workers' events, which the workers start without (they cost CPU while
nobody watches) and Flower turns on in every worker it sees: the fixture waits
until every worker logs that Flower turned them on, which proves that too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import (
    BRIEF,
    FAKE_API_KEY,
    Workers,
    eventually,
    own_queue,
    start_test_workers,
)
from tests.integration.fleet_helpers import Flower, running_flower, samples
from workers import keys


@pytest.fixture(scope="module")
def flower(chorus_env: dict[str, str], workers: Workers) -> Iterator[Flower]:
    # One Flower for the module: each test finds its own batch's tasks by id.
    with running_flower(chorus_env, name="api") as started:
        # Flower sees a task only through events, which workers start without:
        # wait until Flower has turned them on and hears every worker.
        eventually(lambda: started.sees_tasks_of(workers.log_dir, workers.names), timeout_s=30)
        yield started


DONE = ("SUCCESS", "FAILURE")


def _run_batch(size: int) -> Batch:
    items = [{"id": f"item-{i}", "prompt": f"Flower item {i}: say hi."} for i in range(size)]
    batch = Batch.submit(items, **BRIEF)
    status = batch.wait(timeout_s=60)
    assert status.count("complete") == size
    return batch


def test_flower_lists_a_batchs_tasks_with_their_states_and_batch_id(
    flower: Flower, workers: Workers
) -> None:
    # When a batch of 6 runs on the workers
    batch = _run_batch(6)

    # Then Flower's API lists one succeeded chorus.call per item, showing batch and item ids
    def batch_tasks_done() -> dict[str, dict[str, object]]:
        tasks = {
            tid: t for tid, t in flower.tasks().items() if f"batch={batch.id} " in str(t["args"])
        }
        return (
            tasks
            if len(tasks) == 6 and all(t["state"] == "SUCCESS" for t in tasks.values())
            else {}
        )

    tasks = eventually(batch_tasks_done, timeout_s=20)
    assert {t["name"] for t in tasks.values()} == {"chorus.call"}
    items = sorted(re.search(r"item=(\S+)", str(t["args"]))[1] for t in tasks.values())  # type: ignore[index]
    assert items == [f"item-{i}" for i in range(6)]
    assert {t["worker"] for t in tasks.values()} <= set(workers.names)
    # And Flower's search finds exactly them by the batch id
    assert set(flower.tasks(search=batch.id)) == set(tasks)
    # And no API key in anything Flower shows about them
    assert FAKE_API_KEY not in flower.get("/api/tasks").body


def test_flower_refuses_its_api_and_pages_without_the_right_credentials(flower: Flower) -> None:
    for path in ("/api/tasks", "/api/workers", "/tasks", "/workers", "/"):
        assert flower.get(path, auth=False).status == 401, path
        wrong = Flower(flower.url, (flower.auth[0], "not-the-password"), flower.log)
        assert wrong.get(path).status == 401, path
        assert flower.get(path).status == 200, path
    # Except what Flower serves to anyone, which docs/FLEET.md warns about.
    assert flower.get("/metrics", auth=False).status == 200
    assert flower.get("/healthcheck", auth=False).status == 200


def test_flowers_metrics_show_its_own_figures_and_chorus_batch_and_limiter(
    flower: Flower, workers: Workers
) -> None:
    def succeeded(body: str) -> float:
        return sum(samples(body, "flower_events_total", task="chorus.call", type="task-succeeded"))

    before = succeeded(flower.get("/metrics").body)
    batch = _run_batch(4)

    def metrics() -> str:
        body = flower.get("/metrics").body
        return body if succeeded(body) >= before + 4 and f'batch="{batch.id}"' in body else ""

    # Flower's own: events per worker and task type (the wait), workers online
    body = eventually(metrics, timeout_s=20)
    for name in workers.names:
        assert samples(body, "flower_worker_online", worker=name) == [1.0]
    # chorus's: the batch's items by state, its size, and the shared limiter's grants
    batch_of = {"batch": batch.id, "name": ""}
    assert samples(body, "chorus_batch_items", **batch_of, state="complete") == [4.0]
    assert samples(body, "chorus_batch_size", **batch_of) == [4.0]
    assert samples(body, "chorus_up") == [1.0]
    assert samples(body, "chorus_limiter_granted_total", family="sonnet") == [4.0]
    assert FAKE_API_KEY not in body


def test_flower_shows_a_failed_item_as_a_failure_and_finds_a_batch_by_its_name(
    flower: Flower, workers: Workers, local_api: LocalAPIServer
) -> None:
    # Given a named batch of 8: one the API refuses (400), one the model refuses,
    # one cut off at max_tokens, five complete
    local_api.script(
        [
            {"match": "Mixed item 3:", "responses": [{"status": 400, "message": "bad"}]},
            {"match": "Mixed item 5:", "responses": [{"fault": "refusal"}]},
            {"match": "Mixed item 6:", "responses": [{"text": "x", "stop_reason": "max_tokens"}]},
        ]
    )
    name = f"mixed-{uuid.uuid4().hex[:6]}"
    items = [{"id": f"m-{i}", "prompt": f"Mixed item {i}: say hi."} for i in range(8)]
    batch = Batch.submit(items, name=name, **BRIEF)
    status = batch.wait(timeout_s=60)
    assert (status.count("complete"), status.count("failed")) == (5, 3)

    # Then Flower's search by the batch's name finds its eight tasks
    def named() -> dict[str, dict[str, Any]]:
        found = flower.tasks(search=name)
        return found if len(found) == 8 and all(t["state"] in DONE for t in found.values()) else {}

    tasks = eventually(named, timeout_s=20)
    # And Flower's FAILURE count (its Failed tab) is chorus status's failed count,
    # each with its error type shown
    failed = {tid: t for tid, t in tasks.items() if t["state"] == "FAILURE"}
    assert len(failed) == status.count("failed") == 3
    shown = {re.search(r"item=(\S+)", str(t["args"]))[1]: str(t["exception"])  # type: ignore[index]
             for t in failed.values()}  # fmt: skip
    assert "invalid_request_error" in shown["m-3"]
    assert "refused" in shown["m-5"] and "truncated" in shown["m-6"]
    # And `state:FAILURE` finds them among every task Flower knows
    assert set(failed) <= set(flower.tasks(search="state:FAILURE"))
    # And the task-failed events reached Flower's counters (what an alert reads)
    body = flower.get("/metrics").body
    assert sum(samples(body, "flower_events_total", task="chorus.call", type="task-failed")) >= 3


def test_a_worker_started_while_flower_runs_shows_its_first_task(
    flower: Flower,
    monkeypatch: pytest.MonkeyPatch,
    chorus_env: dict[str, str],
    redis_client: redis.Redis,
) -> None:
    # Given a running Flower's mark (each test starts with Redis emptied: it comes back)
    eventually(lambda: redis_client.exists(keys.flower_watching()), timeout_s=15)
    # And a worker started after Flower, on a queue of its own
    env = own_queue(monkeypatch, "flower-first")
    started = start_test_workers(chorus_env, 1, prefix="flower-first", extra_env=env)
    try:
        # When its very first task runs at once
        batch = Batch.submit([{"id": "first", "prompt": "First task: say hi."}], **BRIEF)
        assert batch.wait(timeout_s=60).count("complete") == 1
        # Then Flower lists it (the worker sent events from the start: a Flower was watching)
        eventually(lambda: len(flower.tasks(search=batch.id)) == 1, timeout_s=20)
        assert "a Flower is watching" in started.logs()
    finally:
        started.fleet.stop()
