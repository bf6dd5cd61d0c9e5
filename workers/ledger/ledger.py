"""The :class:`Ledger`: every read and write of a batch's state, for workers and producers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from typing import Any, NamedTuple

import redis

from workers import keys
from workers.ledger.states import ItemState
from workers.ledger.status import BatchStatus, as_text, parse_status
from workers.models import Envelope
from workers.redisio import Command, LuaScript, run_together


class Start(NamedTuple):
    """An item's start (``start.lua``): ``verdict`` and its ``detail``.

    ``go`` (detail: the batch's budget in micro-USD, ``0`` for none): work on
    it; ``done`` (detail: its state): it already ended, a duplicate; ``stop``
    (detail: ``cancelled``, ``paused`` or ``budget``): do not send it;
    ``gone``: the batch no longer exists.
    """

    verdict: str
    detail: str


def micro_usd(cost: float | None) -> int:
    return 0 if cost is None else round(cost * 1_000_000)


def _load(name: str) -> str:
    folder = resources.files("workers.ledger") / "lua"
    return (folder / "common.lua").read_text() + "\n" + (folder / name).read_text()


class Ledger:
    """Atomic transitions of batch items, and every read and write of a batch.

    Workers move items through their states (:meth:`start_command`,
    :meth:`move`, :meth:`reserve_budget`, :meth:`spend_commands`,
    :meth:`finish_command`); producers create batches and their items
    (:meth:`create`, :meth:`add_items`, :meth:`published`), stop and start
    them (:meth:`cancel`, :meth:`resume`, :meth:`resubmit`, :meth:`reopen`) and
    read them. Redis errors (``redis.RedisError``) pass through to the caller.
    """

    def __init__(self, client: redis.Redis, *, expires_s: int) -> None:
        self._redis = client
        self._expires_s = expires_s
        self._start = LuaScript(client, _load("start.lua"))
        self._move = LuaScript(client, _load("move.lua"))
        self._budget = LuaScript(client, _load("budget.lua"))
        self._finish = LuaScript(client, _load("finish.lua"))
        self._spend = LuaScript(client, _load("spend.lua"))
        self._reopen = LuaScript(client, _load("reopen.lua"))
        self._published = LuaScript(client, _load("published.lua"))
        self._control = LuaScript(client, _load("control.lua"))
        self._restored = LuaScript(client, _load("restored.lua"))

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    # --- worker side -------------------------------------------------------

    def start(self, batch_id: str, index: int) -> Start:
        """A worker is about to work on an item (``start.lua``); see :class:`Start`."""
        (started,) = run_together([self.start_command(batch_id, index)])
        return started  # type: ignore[no-any-return]

    def start_command(self, batch_id: str, index: int) -> Command:
        """:meth:`start` as a command; its reply is the :class:`Start`."""
        return self._start.command(
            keys=[keys.batch(batch_id), keys.batch_items(batch_id)],
            args=[index],
            then=lambda reply: Start(as_text(reply[0]), as_text(reply[1])),
        )

    def move(
        self, batch_id: str, index: int, state: str, reason: str = "", wait_s: float = 0.0
    ) -> None:
        """An item in work starts (``r``) or stops waiting (``w``, ``t`` with ``reason``)."""
        self._move(
            keys=[keys.batch(batch_id), keys.batch_items(batch_id)],
            args=[index, state, reason, int(wait_s * 1000)],
        )

    def reserve_budget(self, batch_id: str, worst_case_micros: int) -> str:
        """``ok`` (reserved), or why not: ``cancelled``, ``paused``, ``budget``, ``gone``."""
        return as_text(self._budget(keys=[keys.batch(batch_id)], args=[worst_case_micros]))

    def reserve_many(self, batch_id: str, worst_case_micros: Sequence[int]) -> list[str]:
        """:meth:`reserve_budget` for each call in turn, in one round trip."""
        commands = [
            self._budget.command(keys=[keys.batch(batch_id)], args=[micros], then=as_text)
            for micros in worst_case_micros
        ]
        return run_together(commands)

    def stop_reason(self, batch_id: str) -> str | None:
        """Why the batch stopped sending (``cancelled``, ``paused``, ``budget``), or None."""
        value = self._redis.hget(keys.batch(batch_id), "stop")
        return None if value is None else as_text(value)

    def spend_commands(
        self, batch_id: str, call: Envelope | None, reserved_micros: int = 0
    ) -> list[Command]:
        """Count one call's tokens and cost (a vote's sample) and release its budget."""
        return [
            self._spend.command(
                keys=[keys.batch(batch_id)], args=_spend_args(call, reserved_micros)
            )
        ]

    def finish_command(
        self,
        batch_id: str,
        index: int,
        record: dict[str, Any],
        *,
        state: str,
        error_type: str = "",
        call: Envelope | None = None,
        reserved_micros: int = 0,
        pause_message: str = "",
    ) -> Command:
        """End an item once: its state, its result, and its own call's spend.

        The command's reply is False when the item had already ended (a
        duplicate delivery) or the batch no longer exists.
        """
        return self._finish.command(
            keys=[*keys.batch_keys(batch_id)],
            args=[
                index,
                state,
                json.dumps(record, separators=(",", ":")),
                *_spend_args(call, reserved_micros),
                error_type,
                pause_message,
                self._expires_s,
            ],
            then=bool,
        )

    def count_restored(self, batch_id: str) -> None:
        """One of the batch's messages went back to its queue (``workers.sweeper``)."""
        self._restored(keys=[keys.batch(batch_id)], args=[])

    def quiet_running(self, limit: int, quiet_s: float, now: float) -> dict[str, tuple[str, str]]:
        """Among the newest ``limit`` batches, those running, all published, whose
        ledger has not moved for ``quiet_s`` at ``now`` (seconds, Redis's clock):
        id -> (the ``updated_at`` mark, its queue)."""
        ids = [as_text(i) for i in self._redis.zrevrange(keys.batch_index(), 0, limit - 1)]
        pipe = self._redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hmget(keys.batch(batch_id), "state", "updated_at", "enqueued", "total", "queue")
        quiet = {}
        for batch_id, fields in zip(ids, pipe.execute(), strict=True):
            state, updated, enqueued, total, queue = (
                None if v is None else as_text(v) for v in fields
            )
            if state != "running" or not updated or not queue or enqueued != total:
                continue
            if now - int(updated) / 1000.0 > quiet_s:
                quiet[batch_id] = (updated, queue)
        return quiet

    def end_pending(self, batch_id: str, envelope: Envelope, *, unless_moved_since: str) -> int:
        """End every pending item failed with ``envelope``, unless the batch moved after
        the ``updated_at`` mark given; how many ended."""
        from workers.ledger.records import result_record

        if as_text(self._redis.hget(keys.batch(batch_id), "updated_at") or b"") != (
            unless_moved_since
        ):
            return 0  # it moved
        pending = sorted(
            index for index, state in self.states(batch_id) if state == ItemState.PENDING
        )
        if not pending:
            return 0
        ids = self.item_ids(batch_id)
        error_type = envelope.error.type if envelope.error is not None else "unknown_error"
        commands = [
            self.finish_command(
                batch_id,
                index,
                result_record(ids[index] if index < len(ids) else str(index), envelope),
                state=ItemState.FAILED,
                error_type=error_type,
            )
            for index in pending
        ]
        return sum(1 for reply in run_together(commands) if reply)

    # --- producer side: creating and enqueuing ------------------------------

    def new_id(self, name: str | None = None) -> str:
        """The batch named ``name``'s id (its own id serves as its name), or a new id."""
        if name:
            found = self.find(name)
            if found is not None:
                return found
        return "b-" + uuid.uuid4().hex[:12]

    def create(
        self,
        batch_id: str,
        *,
        name: str | None,
        source: str,
        total: int,
        model: str,
        queue: str,
        max_cost_usd: float | None,
        route: str = "realtime",
        deadline_s: float | None = None,
        plan: Mapping[str, Any] | None = None,
    ) -> None:
        """A new batch of ``total`` items, "enqueuing" until :meth:`published` says all.

        ``route``: ``realtime`` (each item a Messages API call), ``batches`` (the
        Message Batches API) or ``auto`` (split by ``plan``: how many go in real
        time, and why); ``deadline_s``: seconds from now the work should end by.
        """
        now_ms = int(time.time() * 1000)
        # Any keys: redis-py types a mapping's keys as every encodable type at once.
        meta: dict[Any, str | int] = {
            "state": "enqueuing",
            "model": model,
            "queue": queue,
            "updated_at": now_ms,
            "name": name or "",
            "source": source,
            "total": total,
            "enqueued": 0,
            "created_at": now_ms,
            "route": route,
        }
        if deadline_s is not None:
            meta["deadline_at"] = now_ms + int(deadline_s * 1000)
        if plan is not None:
            meta["plan"] = json.dumps(plan)
        if max_cost_usd is not None:
            meta["max_cost_micros"] = micro_usd(max_cost_usd)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(keys.batch(batch_id), mapping=meta)
        pipe.zadd(keys.batch_index(), {batch_id: now_ms})
        if name:
            pipe.hset(keys.batch_names(), name, batch_id)
        pipe.execute()

    def resubmit(
        self, batch_id: str, *, model: str, queue: str, max_cost_usd: float | None
    ) -> None:
        """Its input is submitted again: whatever stopped it is lifted, and it is
        "enqueuing" until :meth:`published` says all."""
        fields: list[str | int] = ["model", model, "queue", queue]
        fields += ["updated_at", int(time.time() * 1000)]
        if max_cost_usd is not None:
            fields += ["max_cost_micros", micro_usd(max_cost_usd)]
        self._control(keys=keys.batch_keys(batch_id), args=["resubmit", *fields])

    def add_items(self, batch_id: str, items: Sequence[tuple[int, str, str]], *, new: bool) -> None:
        """Record items before they are published: (index, item id, stored request JSON).

        ``new``: the items are the batch's first (their ids appended, in input
        order, and each pending); otherwise only their requests are written
        again, and :meth:`reopen` makes them pending.
        """
        if not items:
            return
        # A resubmit after a submit cut off before these items' ids were recorded:
        # they are the batch's next ones, in order.
        have = 0 if new else self.size(batch_id)
        unrecorded = [item_id for index, item_id, _ in items if index >= have]
        pipe = self._redis.pipeline(transaction=False)
        if unrecorded:
            pipe.rpush(keys.batch_ids(batch_id), *unrecorded)
        pipe.hset(keys.batch_requests(batch_id), mapping={i: r for i, _, r in items})
        if new:
            pending = ItemState.PENDING.value
            pipe.hset(keys.batch_items(batch_id), mapping={i: pending for i, _, _ in items})
            pipe.hincrby(keys.batch(batch_id), f"n:{pending}", len(items))
        pipe.execute()

    def published(self, batch_id: str, upto: int, *, last: bool) -> None:
        """Items ``0..upto-1`` are in the queue or answered; ``last``: that is all of them
        (the batch runs, and is done at once if every item has already ended)."""
        self._published(
            keys=keys.batch_keys(batch_id), args=[upto, 1 if last else 0, self._expires_s]
        )

    def enqueued_mark(self, batch_id: str) -> int:
        """How many items, from the first, were published."""
        return int(self._redis.hget(keys.batch(batch_id), "enqueued") or 0)

    def rewrite_requests(self, batch_id: str, requests: Mapping[int, str]) -> None:
        """Replace items' stored requests (``chorus retry --max-tokens``)."""
        if requests:
            mapping: dict[Any, str] = dict(requests)
            self._redis.hset(keys.batch_requests(batch_id), mapping=mapping)

    # --- the Message Batches route (workers.batches_api) ----------------------

    def start_many(self, batch_id: str, indexes: Sequence[int]) -> list[Start]:
        """:meth:`start` of each item, in one round trip."""
        return run_together([self.start_command(batch_id, index) for index in indexes])

    def record_upstream(self, batch_id: str, upstream_id: str, indexes: Sequence[int]) -> None:
        """A Message Batch now holds these items: recorded before anything depends on it."""
        record = {"indexes": list(indexes), "status": "in_progress", "polls": 0}
        self._redis.hset(keys.batch_upstream(batch_id), upstream_id, json.dumps(record))

    def update_upstream(self, batch_id: str, upstream_id: str, **changes: Any) -> None:
        raw = self._redis.hget(keys.batch_upstream(batch_id), upstream_id)
        record = json.loads(raw) if raw else {}
        record.update(changes)
        self._redis.hset(keys.batch_upstream(batch_id), upstream_id, json.dumps(record))

    def upstream_command(
        self, batch_id: str, upstream_id: str, record: Mapping[str, Any]
    ) -> Command:
        """Write one Message Batch's whole ``record``, to send with other commands."""
        return Command(
            self._redis, ("HSET", keys.batch_upstream(batch_id), upstream_id, json.dumps(record))
        )

    def pulled_back(self, batch_id: str, count: int) -> None:
        """``count`` items came back from the Message Batches API to real time (``auto``)."""
        self._redis.hincrby(keys.batch(batch_id), "pulled_back", count)

    def upstream(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """Every Message Batch the batch's items went in: its id -> indexes, status, polls."""
        raw = self._redis.hgetall(keys.batch_upstream(batch_id))
        return {as_text(k): json.loads(v) for k, v in raw.items()}

    # --- producer side: control ---------------------------------------------

    def cancel(self, batch_id: str) -> None:
        """Stop sending: items not yet sent end cancelled as workers reach them."""
        self._control(keys=keys.batch_keys(batch_id), args=["cancel"])

    def resume(self, batch_id: str) -> None:
        """Lift a stop or a pause; a paused or cancelled batch runs again."""
        self._control(keys=keys.batch_keys(batch_id), args=["resume"])

    def reopen(self, batch_id: str, indexes: list[int]) -> int:
        """Put items back to pending so they are sent again; complete ones stay."""
        if not indexes:
            return 0
        args: list[int | str] = []
        for index, raw in zip(indexes, self.results(batch_id, indexes), strict=True):
            error_type = ""
            if raw is not None:
                error = json.loads(raw).get("error") or {}
                error_type = str(error.get("type") or "")
            args += [index, error_type]
        return int(self._reopen(keys=keys.batch_keys(batch_id), args=args))

    def remove(self, batch_id: str) -> None:
        """Delete the batch, its items and results, and its name, now."""
        name = self._redis.hget(keys.batch(batch_id), "name")
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(*keys.batch_keys(batch_id))
        pipe.zrem(keys.batch_index(), batch_id)
        if name:
            pipe.hdel(keys.batch_names(), as_text(name))
        pipe.execute()

    # --- reading -----------------------------------------------------------

    def status(self, batch_id: str) -> BatchStatus | None:
        """The batch's status in one ``HGETALL``; None if it does not exist."""
        raw = self._redis.hgetall(keys.batch(batch_id))
        return parse_status(batch_id, raw) if raw else None

    def statuses(self, batch_ids: Sequence[str]) -> list[BatchStatus | None]:
        """:meth:`status` of each, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for batch_id in batch_ids:
            pipe.hgetall(keys.batch(batch_id))
        return [
            parse_status(batch_id, raw) if raw else None
            for batch_id, raw in zip(batch_ids, pipe.execute(), strict=True)
        ]

    def exists(self, batch_id: str) -> bool:
        return bool(self._redis.exists(keys.batch(batch_id)))

    def find(self, id_or_name: str) -> str | None:
        """The id of the batch with this id or name, if it exists."""
        if self.exists(id_or_name):
            return id_or_name
        named = self._redis.hget(keys.batch_names(), id_or_name)
        if named is not None and self.exists(as_text(named)):
            return as_text(named)
        return None

    def recent(self, limit: int = 50) -> list[BatchStatus]:
        """The newest batches first; batches that expired leave the index."""
        raw_ids = self._redis.zrevrange(keys.batch_index(), 0, limit * 2)
        found: list[BatchStatus] = []
        gone: list[Any] = []
        for raw, status in zip(raw_ids, self.statuses([as_text(r) for r in raw_ids]), strict=True):
            if status is None:
                gone.append(raw)
            elif len(found) < limit:
                found.append(status)
        if gone:
            self._redis.zrem(keys.batch_index(), *gone)
        return found

    def recent_ids(self, limit: int) -> list[str]:
        """The newest ``limit`` batches' ids (some may have expired)."""
        return [as_text(raw) for raw in self._redis.zrevrange(keys.batch_index(), 0, limit - 1)]

    def name(self, batch_id: str) -> str:
        return as_text(self._redis.hget(keys.batch(batch_id), "name") or b"")

    def size(self, batch_id: str) -> int:
        """How many items the batch has recorded."""
        return int(self._redis.llen(keys.batch_ids(batch_id)))

    def item_ids(self, batch_id: str, start: int = 0, stop: int = -1) -> list[str]:
        """The items' ids in input order, ``start`` to ``stop`` inclusive."""
        return [as_text(i) for i in self._redis.lrange(keys.batch_ids(batch_id), start, stop)]

    def item_states(self, batch_id: str, indexes: Sequence[int]) -> list[str | None]:
        """Each item's state letter, None for an item not recorded."""
        raws = self._redis.hmget(keys.batch_items(batch_id), list(indexes))
        return [None if raw is None else as_text(raw) for raw in raws]

    def states(self, batch_id: str) -> Iterator[tuple[int, str]]:
        """(index, state letter) of every item, in no order, read in pages."""
        for raw_index, raw_state in self._redis.hscan_iter(keys.batch_items(batch_id), count=1000):
            yield int(raw_index), as_text(raw_state)

    def results(self, batch_id: str, indexes: Sequence[int]) -> list[bytes | None]:
        """Each item's stored result (JSON, see ``result_record``), None if it has none."""
        return _as_bytes(self._redis.hmget(keys.batch_results(batch_id), list(indexes)))

    def requests(self, batch_id: str, indexes: Sequence[int]) -> list[bytes | None]:
        """Each item's stored request (JSON), None once it expired."""
        return _as_bytes(self._redis.hmget(keys.batch_requests(batch_id), list(indexes)))

    def page(
        self, batch_id: str, start: int, count: int
    ) -> list[tuple[str, bytes | None, str | None]]:
        """(item id, stored result, state letter) of ``count`` items from ``start``: one
        round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.lrange(keys.batch_ids(batch_id), start, start + count - 1)
        indexes = list(range(start, start + count))
        pipe.hmget(keys.batch_results(batch_id), indexes)
        pipe.hmget(keys.batch_items(batch_id), indexes)
        ids, results, states = pipe.execute()
        return [
            (as_text(item_id), raw, None if state is None else as_text(state))
            for item_id, raw, state in zip(ids, results, states, strict=False)
        ]

    def wait_ended(self, batch_id: str, timeout_s: float) -> bool:
        """Block until a worker ends the batch's last item, or ``timeout_s``; True if it did."""
        return self._redis.blpop([keys.batch_ended(batch_id)], timeout=timeout_s) is not None


def _spend_args(call: Envelope | None, reserved_micros: int) -> list[int]:
    """Tokens, cost, reserved budget, calls, from the store, cost unknown: as the scripts
    take them."""
    if call is None:
        return [0, 0, 0, 0, 0, reserved_micros, 0, 0, 0]
    usage = call.usage
    # What this run paid: an answer from the store cost nothing now.
    cost = 0 if call.from_store else micro_usd(call.cost_usd)
    unknown = int(not call.from_store and call.cost_usd is None)
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
        cost,
        reserved_micros,
        call.attempts,
        1 if call.from_store else 0,
        unknown,
    ]


def _as_bytes(values: Sequence[bytes | str | None]) -> list[bytes | None]:
    return [v.encode() if isinstance(v, str) else v for v in values]
