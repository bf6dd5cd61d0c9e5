"""The chorus.call task's logic on fakeredis (workers.tasks._call): a batch item takes
three round trips to Redis besides its API call, and each decoded reply is used."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from config.settings import get_settings
from tests.unit.test_call import FakeClock, FakeProvider, reply
from tests.unit.test_prefetch import Counting
from workers import tasks
from workers.call import CallDeps
from workers.ledger import ItemState, Ledger
from workers.ratelimit.backends.redis import RedisLimiter
from workers.retry import RetryPolicy
from workers.runtime import Runtime
from workers.store import ResultStore

BATCH = "b-tasks"


def runtime(provider: FakeProvider) -> Runtime:
    client = Counting()
    settings = get_settings()
    store = ResultStore(client, endpoint="t", ttl_s=60, claim_ttl_s=30,
                        sleep=lambda s: threading.Event().wait())  # fmt: skip
    clock = FakeClock()
    deps = CallDeps(
        provider=provider,
        limiter=RedisLimiter(client, settings.limits_for),
        store=store,
        policy=RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.01),
        bucket_id=lambda model: f"fp:{model}",
        estimate_input_tokens=lambda request: 7,
        clock=clock,
        sleep=clock.sleep,
    )
    ledger = Ledger(client, expires_s=60)
    ledger.create(BATCH, name=None, source="s", total=3, model="m", queue="q", max_cost_usd=None)
    ledger.add_items(BATCH, [(i, f"i{i}", "{}") for i in range(3)], new=True)
    ledger.published(BATCH, 3, last=True)
    return Runtime(settings, client, provider, deps.limiter, store, ledger, deps, os.getpid())


def run(rt: Runtime, index: int, task_id: str, **batch: Any) -> Any:
    request = {"model": "claude-sonnet-5", "max_tokens": 50,
               "messages": [{"role": "user", "content": f"Item {index}"}]}  # fmt: skip
    opts = tasks.TaskOptions.model_validate(
        {"batch": {"id": BATCH, "index": index, "item": f"i{index}", **batch}}
    )
    task = SimpleNamespace(request=SimpleNamespace(id=task_id))
    return tasks._call(task, rt, request, opts)  # type: ignore[arg-type]


def test_a_batch_item_takes_three_round_trips_before_during_and_after_its_call() -> None:
    rt = runtime(FakeProvider(reply("one"), reply("two")))
    run(rt, 0, "task-0")  # the scripts are loaded, the bucket id is listed
    Counting.trips = 0

    envelope = run(rt, 1, "task-1")

    assert envelope.ok and envelope.text == "two"
    # prefetch (delivery, start, look), the reservation, the end (settle, store,
    # release, the item's end): workers/redisio.py, docs/PERFORMANCE.md
    assert Counting.trips == 3
    status = rt.ledger.status(BATCH)
    assert status is not None and status.count("complete") == 2 and status.calls == 2


def test_a_redelivered_item_that_ended_is_a_duplicate_and_sends_nothing() -> None:
    provider = FakeProvider(reply("once"))
    rt = runtime(provider)
    run(rt, 0, "task-0")

    again = run(rt, 0, "task-0")  # the same message, delivered again

    assert again.error is not None and again.error.type == "duplicate"
    assert len(provider.sent) == 1
    assert rt.ledger.item_states(BATCH, [0]) == [ItemState.COMPLETE]


def test_a_message_past_its_deliveries_is_dead_lettered_and_its_item_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = FakeProvider(reply("never"))
    rt = runtime(provider)
    for _ in range(rt.settings.worker.max_deliveries):
        rt.redis.incr("chorus:deliveries:task-2")  # its worker died each time

    envelope = run(rt, 2, "task-2")

    assert envelope.error is not None and envelope.error.type == "dead_lettered"
    assert provider.sent == [] and rt.ledger.item_states(BATCH, [2]) == [ItemState.FAILED]
    assert not rt.redis.exists("chorus:claim:t:" + envelope.idempotency_key)


def test_retry_asks_again_where_the_stored_answer_was_not_complete() -> None:
    cut = reply("cut")
    cut.message["stop_reason"] = "max_tokens"
    provider = FakeProvider(cut, reply("whole"))
    rt = runtime(provider)
    first = run(rt, 0, "task-0")
    assert first.outcome.value == "truncated"
    rt.ledger.reopen(BATCH, [0])

    again = run(rt, 0, "task-0b", again=True)

    assert again.ok and again.text == "whole" and len(provider.sent) == 2
