"""The batch ledger: every item's state and result, and the batch's counters, in Redis.

This package is the only code that reads or writes a batch's keys
(``workers.keys.batch*``; tests/unit/test_ledger_owner.py holds every other
module to it). Reading a batch's status is one ``HGETALL`` of one hash,
whatever the batch's size. docs/ARCHITECTURE.md, "Who owns which keys", has
the keys; here is who writes what:

=====================  ===============================  ==============================
fact                   written by                       called from
=====================  ===============================  ==============================
batch created          :meth:`Ledger.create`            orchestration.submission
items recorded         :meth:`Ledger.add_items`         orchestration.submission
enqueued mark,         ``published.lua``                orchestration.submission
enqueuing -> running
stop, cancel, resume,  ``control.lua``                  orchestration.batch
resubmit
items sent again       ``reopen.lua``                   orchestration.batch/submission
item starts            ``start.lua``                    workers.tasks (its first round trip)
waits and retries      ``move.lua``                     workers.items (its hooks)
budget reserved        ``budget.lua``                   workers.items (its hooks)
a vote sample's spend  ``spend.lua``                    workers.items
item ends, its result, ``finish.lua``                   workers.items, workers.sweeper
batch done
restored count         ``restored.lua``                 workers.sweeper
Message Batches sent   :meth:`Ledger.record_upstream`,  workers.batches_api
and polled             :meth:`Ledger.update_upstream`
=====================  ===============================  ==============================

Each fact has one writer: the counters move only with the item's state, in
the same script, so a redelivered task never counts twice; "done" is decided
in one place (``done_if_ended`` in ``lua/common.lua``), after an item ends or
after the producer publishes the last item.
"""

from workers.ledger.ledger import Ledger, Start, micro_usd
from workers.ledger.records import result_record
from workers.ledger.states import (
    ACTIVE,
    ENDED,
    NOT_SENT,
    STATE_NAMES,
    TERMINAL,
    BatchState,
    ItemState,
)
from workers.ledger.status import BatchStatus, as_text, parse_status

__all__ = [
    "ACTIVE",
    "ENDED",
    "NOT_SENT",
    "STATE_NAMES",
    "TERMINAL",
    "BatchState",
    "BatchStatus",
    "ItemState",
    "Ledger",
    "Start",
    "as_text",
    "micro_usd",
    "parse_status",
    "result_record",
]
