"""Redis commands that run in one round trip, and Lua scripts run by their SHA.

A batch item's task used to make about ten round trips to Redis besides the
API call (count the delivery, start the item, look for a stored result, claim
the call, reserve, settle, store the result, release the claim, end the
item), each costing the worker about 50 us of CPU in redis-py and a turn at
the GIL. Parts that touch the same Redis now hand back :class:`Command`
values instead of running them, and :func:`run_together` sends each Redis's
share as one pipeline: three round trips per item (before the call, the
reservation, after the call). docs/PERFORMANCE.md has the figures.

The pipeline is not a transaction: each command is atomic on its own (the
scripts are), as when they were sent one by one, in the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis


class LuaScript:
    """A script run with EVALSHA, loaded again when Redis answers NOSCRIPT.

    What ``redis.Redis.register_script`` does, without its per-call overhead
    (about a fifth of a reservation's client time here).
    """

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._redis = client
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    @property
    def client(self) -> redis.Redis:
        return self._redis

    def __call__(self, keys: Sequence[str], args: Sequence[float | str]) -> Any:
        try:
            return self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, *args
            )
        except redis.exceptions.NoScriptError:
            self._redis.script_load(self._source)
            return self._redis.execute_command(  # type: ignore[no-untyped-call]
                "EVALSHA", self.sha, len(keys), *keys, *args
            )

    def command(
        self,
        keys: Sequence[str],
        args: Sequence[float | str],
        then: Callable[[Any], Any] | None = None,
    ) -> Command:
        """This script's call as a :class:`Command`, for :func:`run_together`."""
        return Command(
            self._redis, ("EVALSHA", self.sha, len(keys), *keys, *args), script=self, then=then
        )


@dataclass(frozen=True)
class Command:
    """One Redis command, not yet sent.

    ``then`` turns Redis's reply into the value :func:`run_together` returns
    (as redis-py's typed methods do); ``script`` is set for an EVALSHA, so a
    script Redis forgot (after a restart) is loaded and run again.
    """

    client: redis.Redis
    args: tuple[Any, ...]
    script: LuaScript | None = None
    then: Callable[[Any], Any] | None = None


def run_together(commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` with one round trip per Redis; their replies, in order.

    Commands for the same client run in the order given. A command Redis
    refuses raises its error once the rest have run, as it would have alone.

    Raises:
        redis.RedisError: a connection error (then which commands ran is
            unknown: run only idempotent ones again), or a command's error.
    """
    replies: list[Any] = [None] * len(commands)
    by_client: dict[int, list[int]] = {}
    for index, command in enumerate(commands):
        by_client.setdefault(id(command.client), []).append(index)
    failure: redis.RedisError | None = None
    for indexes in by_client.values():
        client = commands[indexes[0]].client
        if len(indexes) == 1:
            try:
                results = [_one(commands[indexes[0]])]
            except redis.ConnectionError:
                raise
            except redis.RedisError as exc:
                results = [exc]
        else:
            pipe = client.pipeline(transaction=False)
            for index in indexes:
                pipe.execute_command(*commands[index].args)  # type: ignore[no-untyped-call]
            results = pipe.execute(raise_on_error=False)
        for index, result in zip(indexes, results, strict=True):
            command = commands[index]
            if isinstance(result, redis.exceptions.NoScriptError) and command.script:
                result = _one(command)
            if isinstance(result, redis.RedisError):
                failure = failure or result
                continue
            replies[index] = command.then(result) if command.then else result
    if failure is not None:
        raise failure
    return replies


def run_named(groups: Mapping[str, Sequence[Command]]) -> dict[str, list[Any]]:
    """:func:`run_together` over named groups of commands; each group's replies by its name.

    Several owners' commands share one round trip and each reads back its own
    replies (``workers.prefetch``), none by its position among the others'.
    """
    commands = [command for group in groups.values() for command in group]
    replies = run_together(commands)
    named: dict[str, list[Any]] = {}
    start = 0
    for name, group in groups.items():
        named[name] = replies[start : start + len(group)]
        start += len(group)
    return named


def _one(command: Command) -> Any:
    if command.script is not None:
        return command.script(
            keys=command.args[3 : 3 + command.args[2]], args=command.args[3 + command.args[2] :]
        )
    return command.client.execute_command(*command.args)  # type: ignore[no-untyped-call]
