"""The batch ledger: every item's state and result, and the batch's counters, in Redis.

Workers move items through their states with atomic Lua transitions
(``lua/*.lua``); producers create batches and read them. Reading a batch's
status is one ``HGETALL`` of one hash, whatever the batch's size.

States, one letter per item:

====  =====================================================
p     pending: enqueued, not yet taken by a worker
r     running: a worker is on it
w     waiting for its slot under the rate limit
t     waiting to retry after a transient failure
c     complete
f     failed (its error is in its result)
x     cancelled before it was sent
b     skipped: the batch's budget was reached before it was sent
z     paused: the API refused the key; ``chorus resume`` sends it again
====  =====================================================
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

from workers import keys
from workers.fanin.results import PatternResult
from workers.models import Envelope
from workers.outcomes import NOT_COMPLETE
from workers.redisio import Command, LuaScript, run_together


class ItemState(StrEnum):
    """An item's state: one letter in the batch's items hash (``lua/common.lua``).

    A member equals its letter, so the scripts' replies compare as they are.
    """

    PENDING = "p"
    RUNNING = "r"
    WAITING = "w"  # on the rate limit
    RETRYING = "t"  # waiting to retry
    COMPLETE = "c"
    FAILED = "f"
    CANCELLED = "x"
    SKIPPED_BUDGET = "b"
    PAUSED = "z"  # the key was refused, or the account cannot make calls


# The scripts' TERMINAL and ACTIVE tables (a test holds them to these).
TERMINAL = frozenset(
    {ItemState.COMPLETE, ItemState.FAILED, ItemState.CANCELLED, ItemState.SKIPPED_BUDGET}
)
ACTIVE = frozenset({ItemState.RUNNING, ItemState.WAITING, ItemState.RETRYING})
STATE_NAMES = {state.value: state.name.lower() for state in ItemState}
ENDED = TERMINAL
StopReason = Literal["cancelled", "paused", "budget"]


def micro_usd(cost: float | None) -> int:
    return 0 if cost is None else round(cost * 1_000_000)


def _load(name: str) -> str:
    folder = resources.files("workers.ledger") / "lua"
    return (folder / "common.lua").read_text() + "\n" + (folder / name).read_text()


# Too small for a file of its own: only an "enqueuing" batch becomes "running".
_ENQUEUED = """
if redis.call('HGET', KEYS[1], 'state') == 'enqueuing' then
  redis.call('HSET', KEYS[1], 'state', 'running')
end
return 1
"""


class BatchStatus(BaseModel):
    """A batch at one moment: read in constant time, whatever its size."""

    id: str
    name: str | None = None
    state: str = "unknown"
    source: str | None = None
    total: int = 0
    enqueued: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown_items: int = 0
    reserved_usd: float = 0.0
    max_cost_usd: float | None = None
    calls: int = 0
    cached: int = 0
    errors: dict[str, int] = Field(default_factory=dict)
    retries: dict[str, int] = Field(default_factory=dict)
    rate_limit_wait_s: float = 0.0
    # Items whose worker died, put back in the queue by the sweeper (workers.sweeper).
    restored: int = 0
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    updated_at: float | None = None
    queue: str | None = None
    stop: str | None = None
    pause_message: str | None = None

    def count(self, state: str) -> int:
        return self.counts.get(state, 0)

    @property
    def outcomes(self) -> dict[str, int]:
        """Items that got an answer or failed, by how their call ended (``workers.outcomes``).

        ``complete`` is the complete count; an answered item that is not complete
        ended failed with its outcome as its error type; ``failed`` counts the
        rest of the failures (errors, dead letters). Items cancelled, skipped for
        the budget or paused are in :attr:`counts`, not here.
        """
        found = {"complete": self.count("complete")}
        failed = 0
        for error_type, n in self.errors.items():
            if error_type in NOT_COMPLETE:
                found[error_type] = found.get(error_type, 0) + n
            else:
                failed += n
        found["failed"] = failed
        return {name: n for name, n in found.items() if n or name in ("complete", "failed")}

    @property
    def ended(self) -> int:
        return sum(self.count(STATE_NAMES[s]) for s in ENDED)

    @property
    def finished(self) -> bool:
        """Every item ended (complete, failed, cancelled or skipped)."""
        return self.state == "done"

    @property
    def stalled(self) -> bool:
        """Paused with nothing in work or queued: only ``chorus resume`` moves it on."""
        return self.stop == "paused" and self.active == 0 and self.count("pending") == 0

    @property
    def active(self) -> int:
        return sum(self.count(n) for n in ("running", "waiting", "retrying"))

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.time()
        return max(0.0, end - self.started_at)


def parse_status(batch_id: str, raw: Mapping[Any, Any]) -> BatchStatus:
    fields = {as_text(k): as_text(v) for k, v in raw.items()}

    def number(name: str) -> int:
        return int(fields.get(name, 0) or 0)

    def seconds(name: str) -> float | None:
        value = fields.get(name)
        return None if not value else int(value) / 1000.0

    max_cost = number("max_cost_micros")
    return BatchStatus(
        id=batch_id,
        name=fields.get("name") or None,
        state=fields.get("state", "unknown"),
        source=fields.get("source"),
        total=number("total"),
        enqueued=number("enqueued"),
        counts={name: number(f"n:{code}") for code, name in STATE_NAMES.items()},
        input_tokens=number("tok:in"),
        output_tokens=number("tok:out"),
        cache_write_tokens=number("tok:cache_write"),
        cache_read_tokens=number("tok:cache_read"),
        cost_usd=number("cost_micros") / 1e6,
        cost_unknown_items=number("cost_unknown"),
        reserved_usd=number("reserved_micros") / 1e6,
        max_cost_usd=max_cost / 1e6 if max_cost else None,
        calls=number("calls"),
        cached=number("cached"),
        errors={k[4:]: int(v) for k, v in fields.items() if k.startswith("err:")},
        retries={k[6:]: int(v) for k, v in fields.items() if k.startswith("retry:")},
        rate_limit_wait_s=number("wait_ms:rate_limit") / 1000.0,
        restored=number("restored"),
        created_at=seconds("created_at"),
        started_at=seconds("started_at"),
        ended_at=seconds("ended_at"),
        updated_at=seconds("updated_at"),
        queue=fields.get("queue") or None,
        stop=fields.get("stop") or None,
        pause_message=fields.get("pause_message") or None,
    )


def result_record(item_id: str, outcome: Envelope | PatternResult) -> dict[str, Any]:
    """What the ledger keeps of an item's result (``chorus results`` expands it).

    A call's record holds the message exactly as the API sent it; a pattern's
    (a voted item) its merged answer, votes and spend.
    """
    if isinstance(outcome, PatternResult):
        return {
            "id": item_id,
            "ok": outcome.ok,
            "outcome": "complete" if outcome.ok else "failed",
            "text": outcome.text,
            "usage": outcome.usage.model_dump(),
            "cost_usd": outcome.cost_usd,
            "calls": outcome.calls,
            "error": outcome.error.model_dump() if outcome.error else None,
            "votes": [r.model_dump() for r in outcome.votes or []],
            "agreement": outcome.agreement,
            "tie_break": outcome.tie_break,
        }
    record = outcome.model_dump(
        mode="json", exclude={"key", "elapsed_ms", "waited_ms", "latency_ms"}
    )
    record["calls"] = record.pop("attempts")
    return {"id": item_id, **record}


class Ledger:
    """Atomic transitions of batch items, and reads of a batch."""

    def __init__(self, client: redis.Redis, *, expires_s: int) -> None:
        self._redis = client
        self._expires_s = expires_s
        self._start = LuaScript(client, _load("start.lua"))
        self._move = LuaScript(client, _load("move.lua"))
        self._budget = LuaScript(client, _load("budget.lua"))
        self._finish = LuaScript(client, _load("finish.lua"))
        self._spend = LuaScript(client, _load("spend.lua"))
        self._reopen = LuaScript(client, _load("reopen.lua"))
        self._enqueued = LuaScript(client, _ENQUEUED)

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    # --- worker side -------------------------------------------------------

    def start(self, batch_id: str, index: int) -> tuple[str, str]:
        """(verdict, detail): ``go`` (detail: the budget, if any), ``done``, ``gone`` or
        ``stop`` (detail: why)."""
        (started,) = run_together([self.start_command(batch_id, index)])
        return started  # type: ignore[no-any-return]

    def start_command(self, batch_id: str, index: int) -> Command:
        """:meth:`start` as a command; its reply is the (verdict, detail) pair."""
        return self._start.command(
            keys=[keys.batch(batch_id), keys.batch_items(batch_id)],
            args=[index],
            then=lambda reply: (as_text(reply[0]), as_text(reply[1])),
        )

    def move(
        self, batch_id: str, index: int, state: str, reason: str = "", wait_s: float = 0.0
    ) -> None:
        self._move(
            keys=[keys.batch(batch_id), keys.batch_items(batch_id)],
            args=[index, state, reason, int(wait_s * 1000)],
        )

    def reserve_budget(self, batch_id: str, worst_case_micros: int) -> str:
        return as_text(self._budget(keys=[keys.batch(batch_id)], args=[worst_case_micros]))

    def stop_reason(self, batch_id: str) -> str | None:
        value = self._redis.hget(keys.batch(batch_id), "stop")
        return None if value is None else as_text(value)

    def spend_commands(
        self, batch_id: str, call: Envelope | None, reserved_micros: int = 0
    ) -> list[Command]:
        """Count one call's tokens and cost (a vote's sample) and release its budget."""
        commands = [
            self._spend.command(
                keys=[keys.batch(batch_id)], args=_spend_args(call, reserved_micros)
            )
        ]
        if call is not None and not call.cached and call.cost_usd is None:
            commands.append(
                Command(self._redis, ("HINCRBY", keys.batch(batch_id), "cost_unknown", 1))
            )
        return commands

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
        # A call of a model without a price counts in cost_unknown (in the script,
        # and only when the item ends now: a duplicate counts nothing).
        unknown = int(call is not None and not call.cached and call.cost_usd is None)
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
                unknown,
            ],
            then=bool,
        )

    # --- producer side -----------------------------------------------------

    def enqueued(self, batch_id: str) -> None:
        """The producer published every item: "enqueuing" becomes "running" (not over a pause)."""
        self._enqueued(keys=[keys.batch(batch_id)], args=[])

    def reopen(self, batch_id: str, indexes: list[int]) -> int:
        """Put items back to pending so they are sent again; complete ones stay."""
        if not indexes:
            return 0
        raws = self._redis.hmget(keys.batch_results(batch_id), indexes)
        args: list[int | str] = []
        for index, raw in zip(indexes, raws, strict=True):
            error_type = ""
            if raw is not None:
                error = json.loads(raw).get("error") or {}
                error_type = str(error.get("type") or "")
            args += [index, error_type]
        return int(self._reopen(keys=keys.batch_keys(batch_id), args=args))

    # --- reading -----------------------------------------------------------

    def status(self, batch_id: str) -> BatchStatus | None:
        raw = self._redis.hgetall(keys.batch(batch_id))
        return parse_status(batch_id, raw) if raw else None


def _spend_args(call: Envelope | None, reserved_micros: int) -> list[int]:
    """Tokens, cost, reserved budget, calls and cached, as the scripts take them."""
    if call is None:
        return [0, 0, 0, 0, 0, reserved_micros, 0, 0]
    usage = call.usage
    # What this run paid: an answer from the store cost nothing now.
    cost = 0 if call.cached else micro_usd(call.cost_usd)
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
        cost,
        reserved_micros,
        call.attempts,
        1 if call.cached else 0,
    ]


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
