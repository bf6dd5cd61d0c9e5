"""Named points in one call's life where its caller acts (:class:`CallHooks`).

In the manner of dramatiq's middleware: a caller of
:func:`workers.call.execute` overrides the points it needs and the rest do
nothing. A batch item's hooks (``workers.items.ItemHooks``) keep its state in
the ledger and hold its budget; a vote's (``workers.tasks.VoteHooks``) stop a
sample whose vote is decided. :class:`Chain` runs several in order.

The points, in the order a call meets them:

- :meth:`CallHooks.before_reserve`, before each attempt asks the rate limiter
  for a slot, and :meth:`CallHooks.before_send`, once the slot is granted: an
  :class:`~workers.models.ErrorInfo` stops the call there (not sent, not paid;
  the slot goes back), None lets it go on.
- :meth:`CallHooks.waiting` when it waits (on the rate limit, or to retry),
  :meth:`CallHooks.sending` just before each attempt goes out.
- :meth:`CallHooks.end_commands`: Redis commands sent in the round trip that
  stores the call's result, whatever the outcome (make them idempotent: a
  reply lost to a Redis blip runs them again).
- :meth:`CallHooks.crashed`: the call raised (a bug, not a failed call); give
  back what the hooks hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from workers.models import Envelope, ErrorInfo
from workers.redisio import Command

WaitKind = Literal["rate_limit", "retry"]


class CallHooks:
    """Every point does nothing: override the ones a caller needs."""

    def before_reserve(self) -> ErrorInfo | None:
        return None

    def before_send(self) -> ErrorInfo | None:
        return None

    def waiting(self, kind: WaitKind, seconds: float, reason: str) -> None:
        """About to wait ``seconds`` on the rate limit (``reason``: the binding bucket)
        or before a retry (``reason``: the error type)."""

    def sending(self) -> None:
        pass

    def end_commands(self, envelope: Envelope) -> list[Command]:
        return []

    def crashed(self) -> None:
        pass


class Chain(CallHooks):
    """Several hooks as one: the first stop wins; every other point runs in order."""

    def __init__(self, hooks: Sequence[CallHooks]) -> None:
        self._hooks = list(hooks)

    def before_reserve(self) -> ErrorInfo | None:
        return next((s for h in self._hooks if (s := h.before_reserve()) is not None), None)

    def before_send(self) -> ErrorInfo | None:
        return next((s for h in self._hooks if (s := h.before_send()) is not None), None)

    def waiting(self, kind: WaitKind, seconds: float, reason: str) -> None:
        for hook in self._hooks:
            hook.waiting(kind, seconds, reason)

    def sending(self) -> None:
        for hook in self._hooks:
            hook.sending()

    def end_commands(self, envelope: Envelope) -> list[Command]:
        return [command for hook in self._hooks for command in hook.end_commands(envelope)]

    def crashed(self) -> None:
        for hook in self._hooks:
            hook.crashed()


NO_HOOKS = CallHooks()


def chain(*hooks: CallHooks | None) -> CallHooks:
    """The given hooks (None skipped) as one."""
    present = [hook for hook in hooks if hook is not None]
    if not present:
        return NO_HOOKS
    return present[0] if len(present) == 1 else Chain(present)
