"""A task's first round trip, read back by name (workers.prefetch): the delivery count,
the batch item's start, the call's stored result or its claim."""

from __future__ import annotations

import threading

import fakeredis
import pytest

from tests.ledger_contract import BATCH, answer
from workers.ledger import Ledger, Start
from workers.prefetch import BatchItem, Prefetch, prefetch
from workers.redisio import Command
from workers.store import Look, ResultStore


class Counting(fakeredis.FakeRedis):
    """A fakeredis that counts round trips (a pipeline is one)."""

    trips = 0

    def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        Counting.trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        Counting.trips += 1
        return fakeredis.FakeRedis.pipeline(self, *args, **kwargs)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    Counting.trips = 0
    return Counting()


def store(client: fakeredis.FakeRedis) -> ResultStore:
    # The claim keeper never wakes: these tests look at one round trip only.
    return ResultStore(client, endpoint="t", ttl_s=60, claim_ttl_s=30,
                       sleep=lambda s: threading.Event().wait())  # fmt: skip


def batch(client: fakeredis.FakeRedis) -> Ledger:
    ledger = Ledger(client, expires_s=60)
    ledger.create(BATCH, name=None, source="s", total=1, model="m", queue="q", max_cost_usd=None)
    ledger.add_items(BATCH, [(0, "a", "{}")], new=True)
    ledger.published(BATCH, 1, last=True)
    return ledger


def first(client: fakeredis.FakeRedis, results: ResultStore, owner: str = "task-1",
          **kw: object) -> Prefetch:  # fmt: skip
    return prefetch(counter=client, store=results, call_key="k", owner=owner,
                    deliveries_ttl_s=60, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_first_delivery_outside_a_batch_takes_the_claim_in_one_round_trip(
    client: fakeredis.FakeRedis,
) -> None:
    results = store(client)
    Counting.trips = 0

    found = first(client, results)

    assert found == Prefetch(delivery=1, look=Look(None, True), start=None)
    assert Counting.trips == 1


def test_a_batch_item_is_started_in_the_same_round_trip_and_deliveries_count_up(
    client: fakeredis.FakeRedis,
) -> None:
    results, ledger = store(client), batch(client)
    item = BatchItem(BATCH, 0)
    ledger.start(BATCH, 0)  # Redis has the start script from now on
    Counting.trips = 0

    found = first(client, results, ledger=ledger, item=item)

    assert Counting.trips == 1
    assert found.start == Start("go", "0") and found.look.claimed and found.delivery == 1
    assert ledger.item_states(BATCH, [0]) == ["r"]
    results.release("k", "task-1")
    assert first(client, results, ledger=ledger, item=item).delivery == 2  # redelivered


def test_a_stored_answer_is_the_look_and_its_claim_is_given_back(
    client: fakeredis.FakeRedis,
) -> None:
    results = store(client)
    results.put(answer("stored").model_copy(update={"idempotency_key": "k"}))

    found = first(client, results)

    assert found.look.stored is not None and found.look.stored.text == "stored"
    assert not found.look.claimed and not client.exists("chorus:claim:t:k")
    assert first(client, results, owner="task-2").look.stored is not None


def test_a_claim_held_by_another_task_is_neither_stored_nor_claimed(
    client: fakeredis.FakeRedis,
) -> None:
    results = store(client)
    assert results.claim("k", "someone-else")

    assert first(client, results).look == Look(None, False)


def test_a_stored_answer_that_is_not_complete_is_asked_again_on_retry(
    client: fakeredis.FakeRedis,
) -> None:
    results, ledger = store(client), batch(client)
    truncated = answer("cut").model_copy(update={"idempotency_key": "k", "ok": False})
    results.put(truncated)

    again = first(client, results, ledger=ledger, item=BatchItem(BATCH, 0, ask_again=True))

    assert again.look == Look(None, True)  # claimed: the call is made again


def test_replies_are_read_by_name_whatever_the_order_of_owners() -> None:
    from workers.redisio import run_named

    client = fakeredis.FakeRedis()
    replies = run_named(
        {
            "b": [Command(client, ("SET", "x", "1")), Command(client, ("INCR", "x"), then=int)],
            "a": [Command(client, ("GET", "x"))],
        }
    )
    assert replies == {"b": [True, 2], "a": [b"2"]}
