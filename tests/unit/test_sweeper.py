"""The sweeper's rules, on fakeredis: which unacknowledged messages go back, and when."""

from __future__ import annotations

import base64
import json
from typing import Any

import fakeredis
import pytest

from workers import keys
from workers.sweeper import (
    HOLDER_TTL_S,
    LOST_AFTER_S,
    MIN_AGE_S,
    UNACKED,
    UNACKED_INDEX,
    Sweeper,
    end_lost_items,
    holders_key,
    live_consumers,
    lock_key,
)

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def deliver(client: fakeredis.FakeRedis, tag: str, at: float, body: Any = None) -> None:
    """A message as kombu's Redis transport records it once delivered."""
    message = {"body": base64.b64encode(json.dumps(body or [[{}], {}, {}]).encode()).decode()}
    client.hset(UNACKED, tag, json.dumps([message, "", "q"]))
    client.zadd(UNACKED_INDEX, {tag: at})


def sweeper(
    client: fakeredis.FakeRedis, node: str, held: set[str], clock: Clock, restored: list[str]
) -> Sweeper:
    return Sweeper(client, node, lambda: held, restored.append, clock=clock)


def tick(s: Sweeper, client: fakeredis.FakeRedis) -> None:
    client.delete(lock_key())  # each tick in these tests may sweep
    s.tick()


def test_a_message_a_live_worker_holds_is_never_restored(client: fakeredis.FakeRedis) -> None:
    clock, restored = Clock(), []
    live = sweeper(client, "w1", {"tag-1"}, clock, restored)
    deliver(client, "tag-1", T0 - 1000)
    for _ in range(5):
        tick(live, client)
        clock.now += 3
    assert restored == []


def test_a_dead_workers_message_is_restored_on_the_second_sweep_after_its_list_lapsed(
    client: fakeredis.FakeRedis,
) -> None:
    clock, restored = Clock(), []
    dead_list = {"t": T0 - HOLDER_TTL_S - 1, "tags": ["tag-1"]}
    client.hset(holders_key(), "dead@host", json.dumps(dead_list))
    client.hset(keys.batch("b1"), "state", "running")
    deliver(client, "tag-1", T0 - 100, body=[[{}, {"batch": {"id": "b1", "index": 0}}], {}, {}])
    survivor = sweeper(client, "w2", set(), clock, restored)

    tick(survivor, client)
    assert restored == []  # a suspect once: not yet
    clock.now += 3
    tick(survivor, client)
    assert restored == ["tag-1"]
    assert client.hget(holders_key(), "dead@host") is None  # the dead list is dropped
    assert client.hget(keys.batch("b1"), "restored") == b"1"  # chorus status says so


def test_a_message_still_listed_by_a_worker_alive_within_its_ttl_stays(
    client: fakeredis.FakeRedis,
) -> None:
    clock, restored = Clock(), []
    client.hset(holders_key(), "slow@host", json.dumps({"t": T0 - HOLDER_TTL_S + 1, "tags": ["a"]}))
    deliver(client, "a", T0 - 100)
    survivor = sweeper(client, "w2", set(), clock, restored)
    tick(survivor, client)
    tick(survivor, client)
    assert restored == []


def test_a_young_message_is_left_for_its_worker_to_list(client: fakeredis.FakeRedis) -> None:
    clock, restored = Clock(), []
    deliver(client, "new", T0 - MIN_AGE_S + 1)
    survivor = sweeper(client, "w2", set(), clock, restored)
    tick(survivor, client)
    tick(survivor, client)
    assert restored == []


def test_a_message_acknowledged_between_two_sweeps_is_not_restored(
    client: fakeredis.FakeRedis,
) -> None:
    clock, restored = Clock(), []
    deliver(client, "done", T0 - 100)
    survivor = sweeper(client, "w2", set(), clock, restored)
    tick(survivor, client)
    client.hdel(UNACKED, "done")  # kombu's ack
    client.zrem(UNACKED_INDEX, "done")
    clock.now += 3
    tick(survivor, client)
    assert restored == []


def test_only_the_worker_with_the_lock_sweeps(client: fakeredis.FakeRedis) -> None:
    clock, restored = Clock(), []
    deliver(client, "orphan", T0 - 100)
    first = sweeper(client, "w1", set(), clock, restored)
    second = sweeper(client, "w2", set(), clock, restored)
    first.tick()
    second.tick()  # the lock is w1's: w2 only says what it holds
    assert client.get(lock_key()) == b"w1"
    assert set(client.hkeys(holders_key())) == {b"w1", b"w2"}


# --- lost by any path -------------------------------------------------------------


def make_batch(client: fakeredis.FakeRedis, batch_id: str, states: str, quiet_s: float) -> None:
    client.hset(
        keys.batch(batch_id),
        mapping={
            "state": "running",
            "queue": "q",
            "total": len(states),
            "enqueued": len(states),
            "updated_at": int((T0 - quiet_s) * 1000),
        },
    )
    client.zadd(keys.batch_index(), {batch_id: T0})
    client.hset(keys.batch_items(batch_id), mapping={str(i): s for i, s in enumerate(states)})
    client.rpush(keys.batch_ids(batch_id), *[f"item-{i}" for i in range(len(states))])


def test_a_quiet_batch_whose_messages_exist_nowhere_ends_its_open_items_lost(
    client: fakeredis.FakeRedis,
) -> None:
    make_batch(client, "b1", "cprf", quiet_s=LOST_AFTER_S + 1)
    assert end_lost_items(client, T0) == 2
    items = client.hgetall(keys.batch_items("b1"))
    assert items == {b"0": b"c", b"1": b"f", b"2": b"f", b"3": b"f"}
    record = json.loads(client.hget(keys.batch_results("b1"), "1"))
    assert record["id"] == "item-1" and record["error"]["type"] == "lost"


def test_a_batch_with_a_message_queued_or_unacknowledged_is_not_lost(
    client: fakeredis.FakeRedis,
) -> None:
    batch_option = [[{}, {"batch": {"id": "b1", "index": 1, "item": "item-1"}}], {}, {}]
    make_batch(client, "b1", "cp", quiet_s=LOST_AFTER_S + 1)
    deliver(client, "held", T0 - 100, body=batch_option)
    assert end_lost_items(client, T0) == 0
    client.delete(UNACKED)
    body = base64.b64encode(json.dumps(batch_option).encode()).decode()
    client.rpush("q", json.dumps({"body": body}))
    assert end_lost_items(client, T0) == 0
    client.delete("q")
    assert end_lost_items(client, T0) == 1


def test_a_batch_that_moved_recently_is_not_lost(client: fakeredis.FakeRedis) -> None:
    make_batch(client, "b1", "pp", quiet_s=LOST_AFTER_S - 5)
    assert end_lost_items(client, T0) == 0


def test_live_consumers_are_the_fresh_lists_that_name_the_queue(
    client: fakeredis.FakeRedis,
) -> None:
    clock, restored = Clock(), []
    Sweeper(client, "w1", set, restored.append, queues=lambda: ["q1"], clock=clock).tick()
    Sweeper(client, "w2", set, restored.append, queues=lambda: ["q2"], clock=clock).tick()
    stale = {"t": T0 - HOLDER_TTL_S - 1, "tags": [], "queues": ["q1"]}
    client.hset(holders_key(), "gone", json.dumps(stale))
    assert live_consumers(client, "q1", now=T0) == ["w1"]
    assert live_consumers(client, "q3", now=T0) == []
