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
    UNACKED,
    Sweeper,
    end_lost_items,
    holders_key,
    live_consumers,
    redis_now,
)


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def message(task: str = "chorus.call", batch: str | None = None) -> dict[str, Any]:
    options = {"batch": {"id": batch, "index": 0, "item": "i"}} if batch else {}
    body = json.dumps([[{}, options], {}, {}]).encode()
    return {
        "body": base64.b64encode(body).decode(),
        "headers": {"task": task, "id": "t"},
        "properties": {"body_encoding": "base64"},
    }


def deliver(client: fakeredis.FakeRedis, tag: str, **kwargs: Any) -> None:
    """A message as kombu's Redis transport records it once delivered."""
    client.hset(UNACKED, tag, json.dumps([message(**kwargs), "", "q"]))


def listed(client: fakeredis.FakeRedis, name: str, tags: list[str], age_s: float) -> None:
    entry = {"t": redis_now(client) - age_s, "tags": tags, "queues": ["q"]}
    client.hset(holders_key(), name, json.dumps(entry))


def sweeper(client: fakeredis.FakeRedis, restored: list[str], name: str = "w2:1:a") -> Sweeper:
    return Sweeper(client, "w2", set, restored.append, name=name)


def test_a_dead_workers_chorus_message_goes_back_at_once_and_its_list_is_dropped(
    client: fakeredis.FakeRedis,
) -> None:
    client.hset(keys.batch("b1"), "state", "running")
    deliver(client, "tag-1", batch="b1")
    listed(client, "dead:1:x", ["tag-1"], age_s=HOLDER_TTL_S + 1)
    restored: list[str] = []

    assert sweeper(client, restored).sweep() == 1

    assert restored == ["tag-1"]
    assert client.hget(holders_key(), "dead:1:x") is None
    assert client.hget(keys.batch("b1"), "restored") == b"1"  # chorus status says so


def test_a_live_workers_message_stays(client: fakeredis.FakeRedis) -> None:
    deliver(client, "tag-1")
    listed(client, "live:1:x", ["tag-1"], age_s=HOLDER_TTL_S - 2)
    restored: list[str] = []
    assert sweeper(client, restored).sweep() == 0
    assert restored == []


def test_a_message_nobody_listed_is_never_touched(client: fakeredis.FakeRedis) -> None:
    # Another Celery app on the same Redis, an older chorus: no positive evidence.
    deliver(client, "foreign", task="their.task")
    deliver(client, "unlisted")
    restored: list[str] = []
    assert sweeper(client, restored).sweep() == 0


def test_a_dead_list_names_only_chorus_tasks_still_unacknowledged_and_unheld(
    client: fakeredis.FakeRedis,
) -> None:
    deliver(client, "theirs", task="their.task")
    deliver(client, "held-again")
    listed(client, "dead:1:x", ["theirs", "acked", "held-again"], age_s=HOLDER_TTL_S + 1)
    listed(client, "live:1:y", ["held-again"], age_s=1)
    restored: list[str] = []
    assert sweeper(client, restored).sweep() == 0


def test_a_list_written_again_while_it_was_swept_is_kept(client: fakeredis.FakeRedis) -> None:
    deliver(client, "tag-1")
    listed(client, "slow:1:x", ["tag-1"], age_s=HOLDER_TTL_S + 1)

    def restore_while_it_comes_back(tag: str) -> None:
        listed(client, "slow:1:x", [], age_s=0)  # the worker wrote its list meanwhile

    Sweeper(client, "w2", set, restore_while_it_comes_back, name="w2:1:a").sweep()
    assert client.hget(holders_key(), "slow:1:x") is not None


def test_a_workers_list_is_stamped_with_redis_time_and_names_its_queues(
    client: fakeredis.FakeRedis,
) -> None:
    s = Sweeper(client, "w1", lambda: {"b", "a"}, print, queues=lambda: ["q1"], name="w1:1:a")
    s.write_list()
    entry = json.loads(client.hget(holders_key(), "w1:1:a"))
    assert entry["tags"] == ["a", "b"] and entry["queues"] == ["q1"]
    assert abs(entry["t"] - redis_now(client)) < 5
    assert live_consumers(client, "q1") == ["w1"]
    s.shutting_down = True  # warm shutdown: takes no new work
    s.write_list()
    assert live_consumers(client, "q1") == []


def test_live_consumers_skip_stale_lists(client: fakeredis.FakeRedis) -> None:
    listed(client, "gone:1:x", [], age_s=HOLDER_TTL_S + 1)
    listed(client, "here:1:y", [], age_s=1)
    assert live_consumers(client, "q") == ["here"]
    assert live_consumers(client, "other") == []


# --- lost by any path -------------------------------------------------------------


def make_batch(client: fakeredis.FakeRedis, batch_id: str, states: str, quiet_s: float) -> None:
    now = redis_now(client)
    client.hset(
        keys.batch(batch_id),
        mapping={
            "state": "running",
            "queue": "q",
            "total": len(states),
            "enqueued": len(states),
            "updated_at": int((now - quiet_s) * 1000),
        },
    )
    client.zadd(keys.batch_index(), {batch_id: now})
    client.hset(keys.batch_items(batch_id), mapping={str(i): s for i, s in enumerate(states)})
    client.rpush(keys.batch_ids(batch_id), *[f"item-{i}" for i in range(len(states))])


def check(client: fakeredis.FakeRedis) -> int:
    return end_lost_items(client, redis_now(client))


def test_a_quiet_batch_with_no_message_anywhere_ends_its_pending_items_on_the_second_check(
    client: fakeredis.FakeRedis,
) -> None:
    make_batch(client, "b1", "cprp", quiet_s=LOST_AFTER_S + 1)
    assert check(client) == 0  # a suspect once
    assert check(client) == 2  # still, and its ledger unchanged: lost
    items = client.hgetall(keys.batch_items("b1"))
    assert items == {b"0": b"c", b"1": b"f", b"2": b"r", b"3": b"f"}  # running stays
    record = json.loads(client.hget(keys.batch_results("b1"), "1"))
    assert record["id"] == "item-1" and record["error"]["type"] == "lost"


def test_a_batch_that_moved_between_two_checks_is_not_lost(client: fakeredis.FakeRedis) -> None:
    make_batch(client, "b1", "pp", quiet_s=LOST_AFTER_S + 1)
    check(client)
    client.hset(keys.batch("b1"), "updated_at", int((redis_now(client) - 61) * 1000) + 1)
    assert check(client) == 0


def test_a_batch_with_a_message_queued_or_unacknowledged_is_not_lost(
    client: fakeredis.FakeRedis,
) -> None:
    make_batch(client, "b1", "pp", quiet_s=LOST_AFTER_S + 1)
    deliver(client, "held", batch="b1")
    assert (check(client), check(client)) == (0, 0)
    client.delete(UNACKED)
    client.rpush("q", json.dumps(message(batch="b1")))
    assert (check(client), check(client)) == (0, 0)
    client.delete("q")
    client.rpush("q", "not json")  # a message nobody can read: nothing is shown lost
    assert (check(client), check(client)) == (0, 0)
    client.delete("q")
    assert (check(client), check(client)) == (0, 2)


def test_a_batch_that_moved_recently_is_not_lost(client: fakeredis.FakeRedis) -> None:
    make_batch(client, "b1", "pp", quiet_s=LOST_AFTER_S - 5)
    assert (check(client), check(client)) == (0, 0)
