"""Commands sent together: one round trip per Redis, replies in order, scripts reloaded."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis

from workers.models import Envelope
from workers.redisio import Command, LuaScript, run_together
from workers.store import ResultStore


class CountingRedis(fakeredis.FakeRedis):
    """A fake Redis that counts round trips: single commands and pipelines."""

    round_trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        type(self).round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction=transaction, shard_hint=shard_hint)
        original = pipe.execute

        def execute(raise_on_error: bool = True) -> Any:
            type(self).round_trips += 1
            return original(raise_on_error=raise_on_error)

        pipe.execute = execute
        return pipe


@pytest.fixture
def client() -> CountingRedis:
    CountingRedis.round_trips = 0
    return CountingRedis()


def test_commands_for_one_redis_take_one_round_trip_and_reply_in_order(
    client: CountingRedis,
) -> None:
    # Given three commands for the same Redis, one with a reply converter
    commands = [
        Command(client, ("SET", "a", "1")),
        Command(client, ("INCR", "a"), then=lambda reply: reply * 10),
        Command(client, ("GET", "a")),
    ]

    # When they run together
    replies = run_together(commands)

    # Then they ran in order in one round trip, each reply converted as asked
    assert replies == [True, 20, b"2"]
    assert CountingRedis.round_trips == 1


def test_each_redis_gets_its_own_round_trip() -> None:
    # Given commands for two Redis servers, interleaved
    CountingRedis.round_trips = 0
    first, second = CountingRedis(), CountingRedis(server=fakeredis.FakeServer())
    commands = [
        Command(first, ("SET", "k", "first")),
        Command(second, ("SET", "k", "second")),
        Command(first, ("GET", "k")),
        Command(second, ("GET", "k")),
    ]

    # When they run together: one pipeline per Redis, replies still in the given order
    assert run_together(commands) == [True, True, b"first", b"second"]
    assert CountingRedis.round_trips == 2


def test_a_script_redis_forgot_is_loaded_and_run_again(client: CountingRedis) -> None:
    # Given a script never loaded (as after a Redis restart), sent in a pipeline
    script = LuaScript(client, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    commands = [Command(client, ("SET", "n", "1")), script.command(keys=["n"], args=[41])]

    # When they run together, Redis answers NOSCRIPT for the script, which is
    # loaded and run once
    assert run_together(commands) == [True, 42]
    assert client.get("n") == b"42"


def test_a_refused_command_raises_after_the_others_ran(client: CountingRedis) -> None:
    # Given a command Redis refuses between two good ones
    client.set("text", "not a number")
    commands = [
        Command(client, ("SET", "before", "1")),
        Command(client, ("INCR", "text")),
        Command(client, ("SET", "after", "1")),
    ]

    # When they run together, the error surfaces, as it would have alone
    with pytest.raises(redis.ResponseError):
        run_together(commands)

    # And the commands around it still ran
    assert client.get("before") == b"1"
    assert client.get("after") == b"1"


def test_the_store_claims_and_reads_in_one_round_trip(client: CountingRedis) -> None:
    store = ResultStore(client, endpoint="e", ttl_s=60, claim_ttl_s=30)

    # A first look claims the call: nothing stored yet
    assert store.look("key-1", "me") == (None, True)
    assert CountingRedis.round_trips == 1

    # A second caller neither gets the claim nor a result while the first holds it
    assert store.look("key-1", "other") == (None, False)

    # Once the holder stored its answer and released, a look returns the answer
    # and leaves no claim behind
    answer = Envelope(ok=True, idempotency_key="key-1", text="the answer")
    run_together([store.put_command(answer), store.release_command("key-1", "me")])
    stored, claimed = store.look("key-1", "late")
    assert stored is not None and stored.text == "the answer"
    assert not claimed
    assert client.get("chorus:claim:e:key-1") is None
