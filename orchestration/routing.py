"""``--route auto``: how much of a batch goes in real time, and how much through the Message
Batches API, decided from the account's limits and the deadline.

The real-time share is what the account's limits finish in :data:`REALTIME_SHARE`
of the time to the deadline, at the worst case the limiter reserves (each item's
estimated input, and its ``max_tokens`` of output: ``orchestration.estimate``).
The rest goes through the Message Batches API at half price: the first items of
the input, handed to the worker that sends them before any real-time item is
queued (``orchestration.submission``), so the Message Batch is created at once
rather than after the real-time work ahead of it in the queue. The last quarter
of the time is kept for taking back what is still unfinished there: a Message
Batch's counts move only once it ended (build-with-claude/batch-processing), so
the worker that polls it (``workers.batches_api``) cancels it once the time left
is what real time needs for all its items (at the rate this batch's real-time
calls were measured to go, or the limits' rate if that is faster), or at the
start of the kept quarter, whichever comes later, and sends in real time
whatever the cancel left unanswered. A Message Batch slower than that and
larger than real time can absorb in the kept quarter ends late: nothing makes
the API go faster, and sending everything in real time at the start would have
missed the deadline too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Of the time to the deadline, the share planned for real-time work; the rest is
# kept for what comes back from the Message Batches API.
REALTIME_SHARE = 0.75


@dataclass(frozen=True)
class RoutePlan:
    """How an ``auto`` batch is split, and why. ``rate_per_s``: items per second the
    account's limits allow in real time, at the worst case; ``limit``: which binds."""

    realtime: int
    batches: int
    rate_per_s: float
    deadline_s: float
    limit: str
    # The last part of the time to the deadline, kept for what comes back.
    reserve_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def reason(self) -> str:
        return plan_reason(self.as_dict())


def plan_route(items: int, minutes: float, limit: str, deadline_s: float) -> RoutePlan:
    """Split ``items`` that need ``minutes`` at the account's limits (``limit`` binding)."""
    rate = items / (minutes * 60) if minutes > 0 else math.inf
    realtime = items if rate == math.inf else min(items, int(rate * deadline_s * REALTIME_SHARE))
    return RoutePlan(
        realtime=realtime,
        batches=items - realtime,
        rate_per_s=rate if rate != math.inf else 0.0,
        deadline_s=deadline_s,
        limit=limit,
        reserve_s=deadline_s * (1 - REALTIME_SHARE),
    )


def plan_reason(plan: dict[str, Any]) -> str:
    """One line for ``chorus status``: the split and why."""
    if not plan.get("rate_per_s"):
        return f"{plan['realtime']:,} in real time: no limit is set for the model"
    share = f"{REALTIME_SHARE:.0%}"
    return (
        f"{plan['realtime']:,} in real time, {plan['batches']:,} through the Message Batches "
        f"API: the {plan['limit']} limit allows {plan['rate_per_s'] * 60:,.0f} items a minute "
        f"at worst, and {share} of the {plan['deadline_s']:,.0f} s to the deadline is planned "
        "for real time"
    )
