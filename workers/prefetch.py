"""What a task learns in its one round trip to Redis before a call (:class:`Prefetch`).

Three owners' first commands go to Redis together (``workers.redisio.run_named``):
``workers.deliveries`` counts this delivery of the message, ``workers.ledger``
starts the batch item, ``workers.store`` takes the call's claim and reads its
stored result. Each reads back its own replies, by name. Pipelining these,
the reservation, and the end keeps a batch item at three round trips
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from workers import deliveries
from workers.ledger import Ledger, Start
from workers.redisio import Command, run_named
from workers.store import Look, ResultStore


@dataclass(frozen=True)
class Prefetch:
    """The replies of a task's first round trip, by name.

    ``delivery``: which delivery of the message this is (1 the first).
    ``look``: the call's stored result, or whether this task holds its claim.
    ``start``: the batch item's start (``ledger.Start``); None outside a batch.
    """

    delivery: int
    look: Look
    start: Start | None = None


@dataclass(frozen=True)
class BatchItem:
    """Which item of which batch, and whether a stored answer that is not complete
    is to be asked again (``chorus retry``)."""

    batch_id: str
    index: int
    ask_again: bool = False


def prefetch(
    *,
    counter: redis.Redis,
    store: ResultStore,
    call_key: str,
    owner: str,
    deliveries_ttl_s: int,
    ledger: Ledger | None = None,
    item: BatchItem | None = None,
) -> Prefetch:
    """Count the delivery, start the item (with ``ledger`` and ``item``), look for the
    call's result and take its claim: one round trip per Redis.

    Raises:
        redis.RedisError: Redis cannot be reached (nothing was paid: the task
            hands its message back).
    """
    groups: dict[str, list[Command]] = {
        "delivery": deliveries.count_commands(counter, owner, deliveries_ttl_s),
    }
    if ledger is not None and item is not None:
        groups["start"] = [ledger.start_command(item.batch_id, item.index)]
    groups["look"] = store.look_commands(call_key, owner)
    replies = run_named(groups)
    ask_again = item is not None and item.ask_again
    start = replies["start"][0] if "start" in replies else None
    return Prefetch(
        delivery=deliveries.counted(replies["delivery"]),
        look=store.looked(call_key, owner, replies["look"], ask_again=ask_again),
        start=start,
    )
