"""What a pattern (sectioning, voting, fan-out/fan-in) returns."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from workers.models import Envelope, ErrorInfo, Usage

PatternKind = Literal["section", "vote", "fanout"]
# Branches stopped on purpose (early stop): neither successes nor failures.
SKIPPED_TYPES = frozenset({"revoked", "cancelled"})


class MinSuccess(BaseModel):
    """How many branches must succeed for the fan-in to go on: a count or a ratio."""

    count: int | None = Field(None, ge=0)
    ratio: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_of(self) -> MinSuccess:
        if (self.count is None) == (self.ratio is None):
            raise ValueError("give exactly one of count and ratio")
        return self

    @classmethod
    def of(cls, value: int | float | MinSuccess) -> MinSuccess:
        """An int is a count, a float a ratio (1.0: all of them)."""
        if isinstance(value, MinSuccess):
            return value
        if isinstance(value, bool):
            raise TypeError("min_success is a count or a ratio, not a bool")
        if isinstance(value, int):
            return cls(count=value)
        return cls(ratio=value)

    def required(self, total: int) -> int:
        if self.count is not None:
            return min(self.count, total)
        assert self.ratio is not None
        needed = self.ratio * total
        return int(needed) if needed == int(needed) else int(needed) + 1

    def describe(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.ratio:.0%}"


class Branch(BaseModel):
    """One branch's outcome: a call's envelope or a nested pattern's result.

    ``ok`` only for a complete answer with text to merge or vote on: a
    truncated, refused or empty answer is a failed branch, its reason in
    ``error`` (``workers.outcomes``).
    """

    label: str
    ok: bool
    outcome: str = "complete"
    text: str = ""
    error: ErrorInfo | None = None
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    calls: int = 0
    from_store: bool = False
    # A structured answer's value (workers.structured); ``text`` is then its JSON.
    data: Any = None

    @model_validator(mode="before")
    @classmethod
    def _from_legacy(cls, data: Any) -> Any:
        # A branch reported by an older worker: "cached" is now "from_store".
        if isinstance(data, dict) and "cached" in data:
            data = {**data}
            data.setdefault("from_store", data.pop("cached"))
            data.pop("cached", None)
        return data

    @property
    def skipped(self) -> bool:
        return self.error is not None and self.error.type in SKIPPED_TYPES

    @classmethod
    def from_outcome(cls, label: str, raw: dict[str, Any] | None) -> Branch:
        if not isinstance(raw, dict):
            info = ErrorInfo(type="missing_result", message=f"branch returned {raw!r}")
            return cls(label=label, ok=False, error=info)
        if raw.get("kind") in ("section", "vote", "fanout"):
            nested = PatternResult.model_validate(raw)
            return cls(
                label=label,
                ok=nested.ok,
                outcome="complete" if nested.ok else "failed",
                text=nested.text,
                error=nested.error,
                usage=nested.usage,
                cost_usd=nested.cost_usd,
                calls=nested.calls,
            )
        envelope = Envelope.model_validate(raw)
        ok, error = envelope.ok, envelope.error
        text = envelope.text
        if envelope.data is not None:
            # A structured answer is its value, as JSON (a tool call's has no text at all).
            text = json.dumps(envelope.data, ensure_ascii=False)
        if ok and not text.strip():
            ok = False  # complete, but a tool call alone: nothing to merge or vote on
            error = ErrorInfo(type="no_text", message="the answer holds no text (a tool call)")
        return cls(
            label=label,
            ok=ok,
            outcome=envelope.outcome.value,
            text=text,
            data=envelope.data,
            error=error,
            usage=envelope.usage,
            # A stored answer cost nothing this time.
            cost_usd=0.0 if envelope.from_store else envelope.cost_usd,
            calls=envelope.attempts,
            from_store=envelope.from_store,
        )


class VoteRow(BaseModel):
    answer: str  # normalised
    text: str  # the first sample's own wording
    count: int
    samples: list[int]


class FieldVote(BaseModel):
    """One field's vote over structured samples: its winning value, how many samples
    gave it of those that answered, and the rows (``answer``: the value's normal form)."""

    value: Any = None
    agreement: float
    rows: list[VoteRow]
    tie_break: str | None = None


class PatternResult(BaseModel):
    """The merged answer, how each branch fared, and what it all cost."""

    kind: PatternKind
    ok: bool
    text: str = ""
    error: ErrorInfo | None = None
    branches: list[Branch] = Field(default_factory=list)
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    success_rate: float = 0.0
    # Every call made, the fan-in's own included; cost is new spending only
    # (answers served from the store cost nothing), None if a price is unknown.
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = 0.0
    calls: int = 0
    # Voting.
    votes: list[VoteRow] | None = None
    winner: str | None = None
    agreement: float | None = None
    tie_break: str | None = None
    judge_reason: str | None = None
    # Structured answers (workers.structured): the merged value (a vote's winner, a
    # per-field vote's winning fields, a concat section's values by label), and a
    # per-field vote's fields; ``agreement`` is then the weakest field's.
    data: Any = None
    fields: dict[str, FieldVote] | None = None
    # The fan-in's own call (a synthesis or a judge), when there was one.
    fan_in_call: Envelope | None = None
