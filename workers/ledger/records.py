"""What the ledger keeps of an item's result (:func:`result_record`)."""

from __future__ import annotations

from typing import Any

from workers.fanin.results import PatternResult
from workers.models import Envelope


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
        mode="json", exclude={"idempotency_key", "elapsed_ms", "waited_ms", "latency_ms"}
    )
    record["calls"] = record.pop("attempts")
    return {"id": item_id, **record}
