"""A batch at one moment (:class:`BatchStatus`), read from its hash in one ``HGETALL``."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from workers.ledger.states import ACTIVE, ENDED, STATE_NAMES, BatchState, ItemState
from workers.outcomes import NOT_COMPLETE


class BatchStatus(BaseModel):
    """A batch at one moment: read in constant time, whatever its size.

    Money in USD, times in seconds since the epoch; ``counts`` maps an item
    state's name (``pending``, ``complete``, ...) to how many items are in it.
    """

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
    # Items answered from the result store (no new call).
    from_store: int = 0
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
    # realtime (each item a Messages API call), batches (the Message Batches API)
    # or auto: ``plan`` says how many went in real time and why.
    route: str = "realtime"
    deadline_at: float | None = None
    plan: dict[str, Any] | None = None
    # Items the auto route took back from the Message Batches API as the deadline neared.
    pulled_back: int = 0

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
        return self.state == BatchState.DONE

    @property
    def stalled(self) -> bool:
        """Paused with nothing in work or queued: only ``chorus resume`` moves it on."""
        return self.stop == "paused" and self.active == 0 and self.count("pending") == 0

    @property
    def active(self) -> int:
        return sum(self.count(STATE_NAMES[s]) for s in ACTIVE)

    @property
    def pending(self) -> int:
        return self.count(STATE_NAMES[ItemState.PENDING])

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else time.time()
        return max(0.0, end - self.started_at)


def parse_status(batch_id: str, raw: Mapping[Any, Any]) -> BatchStatus:
    """A :class:`BatchStatus` from the batch hash's fields (bytes or text)."""
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
        # "cached": what a batch counted before the field was named from_store
        from_store=number("from_store") + number("cached"),
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
        route=fields.get("route") or "realtime",
        deadline_at=seconds("deadline_at"),
        plan=json.loads(fields["plan"]) if fields.get("plan") else None,
        pulled_back=number("pulled_back"),
    )


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
