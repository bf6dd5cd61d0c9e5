"""The states of a batch and of its items, as the ledger's scripts write them.

An item's state is one letter in the batch's items hash (``lua/common.lua``
holds the same TERMINAL and ACTIVE tables; tests/unit/test_ledger_states.py
holds the two to each other). A batch's state is a word in its hash.
"""

from __future__ import annotations

from enum import StrEnum


class ItemState(StrEnum):
    """An item's state. A member equals its letter, so the scripts' replies compare as they are."""

    PENDING = "p"  # enqueued, not yet taken by a worker
    RUNNING = "r"  # a worker is on it
    WAITING = "w"  # on the rate limit
    RETRYING = "t"  # waiting to retry after a transient failure
    COMPLETE = "c"
    FAILED = "f"  # its error is in its result
    CANCELLED = "x"  # cancelled before it was sent
    SKIPPED_BUDGET = "b"  # the batch's budget was reached before it was sent
    PAUSED = "z"  # the key was refused, or the account cannot make calls


class BatchState(StrEnum):
    """A batch's state: the ``state`` field of its hash."""

    ENQUEUING = "enqueuing"  # the producer is still publishing its items
    RUNNING = "running"
    PAUSED = "paused"  # the API refused the key; ``chorus resume`` lifts it
    CANCELLED = "cancelled"
    DONE = "done"  # every item ended


# The scripts' TERMINAL and ACTIVE tables.
TERMINAL = frozenset(
    {ItemState.COMPLETE, ItemState.FAILED, ItemState.CANCELLED, ItemState.SKIPPED_BUDGET}
)
ACTIVE = frozenset({ItemState.RUNNING, ItemState.WAITING, ItemState.RETRYING})
ENDED = TERMINAL
# Items never sent: paused, cancelled, skipped for the budget (resume sends them).
NOT_SENT = frozenset({ItemState.PAUSED, ItemState.CANCELLED, ItemState.SKIPPED_BUDGET})
STATE_NAMES = {state.value: state.name.lower() for state in ItemState}
