"""The sweeper: a dead worker's messages run again within seconds, not the visibility timeout.

With Redis as the broker, kombu keeps each delivered message in an
"unacknowledged" hash until its task ends, and gives it back to the queue only
once it is older than the visibility timeout (an hour by default, because a
live call may take that long). A worker killed with ``kill -9`` leaves its
messages there for that hour, though nothing holds them.

Every worker process says which messages it holds (its delivery tags, read
from Celery's reserved and active requests and from kombu's own record of
what it delivered) under its node name, every :data:`SWEEP_EVERY_S`. One
worker at a time (a lock) then sweeps: a message unacknowledged for longer
than :data:`MIN_AGE_S` that no live worker lists, in two sweeps running, goes
back to its queue through kombu's own ``restore_by_tag`` (a transaction on
the unacknowledged hash: a message acknowledged meanwhile is left alone). A
worker is live while its list is younger than :data:`HOLDER_TTL_S`. So a
dead worker's messages run again within about ``HOLDER_TTL_S + 2 *
SWEEP_EVERY_S`` (16 s) of its death. Two sweeps, seconds apart, keep a
message whose task just ended (acknowledged a millisecond after its worker
stopped listing it) from being sent again.

A live call in a process too busy to renew its list in time would be
restored too: its claim (``workers.store``) still holds, so the second
delivery waits for the first's answer instead of paying for it again.

It also ends what is lost by any path (:func:`end_lost_items`): a batch whose
ledger has not moved for :data:`LOST_AFTER_S`, with items not ended, none of
which is in its queue or unacknowledged anywhere, ends those items
``failed`` with error type ``lost``; ``chorus retry`` sends them again.

Only for a Redis broker: RabbitMQ gives a dead consumer's messages back at
once. docs/RELIABILITY.md has the figures.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from workers import keys

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 3.0
HOLDER_TTL_S = 10.0
MIN_AGE_S = 2 * SWEEP_EVERY_S
LOST_AFTER_S = 60.0
# A queue longer than this is not searched for a stalled batch's messages this
# sweep (the batch is then waiting its turn, not lost).
QUEUE_SCAN_LIMIT = 20_000

UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"


def holders_key() -> str:
    return keys.PREFIX + "holders"


def lock_key() -> str:
    return keys.PREFIX + "sweep-lock"


def suspects_key() -> str:
    return keys.PREFIX + "sweep-suspects"


class Sweeper:
    """One worker process's part: say what it holds, and sweep when it has the lock.

    ``held``: the delivery tags this process holds now. ``restore``: puts one
    unacknowledged message back in its queue (kombu's ``restore_by_tag``).
    """

    def __init__(
        self,
        client: redis.Redis,
        node: str,
        held: Callable[[], Iterable[str]],
        restore: Callable[[str], None],
        *,
        queues: Callable[[], Iterable[str]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._node = node
        self._held = held
        self._restore = restore
        self._queues = queues
        self._clock = clock
        self._stop = threading.Event()
        self.restored = 0

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="chorus-sweeper", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            self._redis.hdel(holders_key(), self._node)

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_EVERY_S):
            try:
                self.tick()
            except redis.RedisError as exc:
                log.debug("sweep skipped: Redis: %s", exc)
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", SWEEP_EVERY_S)

    def tick(self) -> int:
        """Say what this process holds; sweep if no other worker is. Returns messages restored."""
        now = self._clock()
        entry = {"t": now, "tags": sorted(self._held()), "queues": sorted(self._queues())}
        self._redis.hset(holders_key(), self._node, json.dumps(entry))
        lock_ms = int(SWEEP_EVERY_S * 1000 * 0.9)
        if not self._redis.set(lock_key(), self._node, nx=True, px=lock_ms):
            return 0
        restored = self.sweep(now)
        end_lost_items(self._redis, now)
        return restored

    def sweep(self, now: float) -> int:
        """Restore the messages no live worker has held for two sweeps running."""
        old = {
            _text(tag)
            for tag in self._redis.zrange(UNACKED_INDEX, "-inf", now - MIN_AGE_S, byscore=True)
        }
        live, dead = _holders(self._redis.hgetall(holders_key()), now)
        suspects = old - live
        before = {_text(t) for t in self._redis.smembers(suspects_key())}
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(suspects_key())
        if suspects:
            pipe.sadd(suspects_key(), *suspects)
            pipe.expire(suspects_key(), int(HOLDER_TTL_S * 6))
        pipe.execute()
        restored = 0
        for tag in sorted(suspects & before):
            batches = _batches_in([self._redis.hget(UNACKED, tag) or b"null"], unacked=True)
            self._restore(tag)
            restored += 1
            for batch_id in batches:  # `chorus status` says so
                _count_restored(self._redis, batch_id)
        if restored:
            self.restored += restored
            log.warning(
                "put %d message(s) back in the queue: their worker died (unacknowledged, "
                "held by no live worker for %.0f s)",
                restored,
                MIN_AGE_S,
            )
        if dead:
            self._redis.hdel(holders_key(), *dead)
        return restored


_COUNT_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HINCRBY', KEYS[1], 'restored', 1)
end
return 0
"""


def _count_restored(client: redis.Redis, batch_id: str) -> None:
    client.eval(_COUNT_IF_EXISTS, 1, keys.batch(batch_id))


def _holders(entries: dict[Any, Any], now: float) -> tuple[set[str], list[str]]:
    """(tags held by live workers, the nodes whose lists are too old: dead)."""
    live: set[str] = set()
    dead: list[str] = []
    for node, raw in entries.items():
        try:
            entry = json.loads(raw)
            fresh = now - float(entry["t"]) <= HOLDER_TTL_S
        except (ValueError, KeyError, TypeError):
            fresh, entry = False, {}
        if fresh:
            live.update(entry.get("tags") or [])
        else:
            dead.append(_text(node))
    return live, dead


def live_consumers(client: redis.Redis, queue: str, now: float | None = None) -> list[str]:
    """The live workers (their lists younger than :data:`HOLDER_TTL_S`) that consume ``queue``.

    A read of one hash: unlike a broadcast, it does not depend on a busy worker
    answering in time.
    """
    now = time.time() if now is None else now
    found = []
    for node, raw in client.hgetall(holders_key()).items():
        try:
            entry = json.loads(raw)
            fresh = now - float(entry["t"]) <= HOLDER_TTL_S
        except (ValueError, KeyError, TypeError):
            continue
        if fresh and queue in (entry.get("queues") or []):
            found.append(_text(node))
    return sorted(found)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- lost by any path -------------------------------------------------------------


def end_lost_items(client: redis.Redis, now: float) -> int:
    """End the items of batches whose messages exist nowhere; returns how many ended.

    A running batch whose ledger has not moved for :data:`LOST_AFTER_S`, all
    of whose items were enqueued, with no message of it in its queue or among
    the unacknowledged: its items not ended have lost their messages (Redis
    lost them, or a path nobody foresaw). They end ``failed``, error type
    ``lost``, and ``chorus retry`` sends them again.
    """
    from workers.ledger import Ledger, result_record
    from workers.models import Envelope, ErrorInfo
    from workers.redisio import run_together

    stalled = [b for b in _running_batches(client) if _quiet_for(client, b, now) > LOST_AFTER_S]
    if not stalled:
        return 0
    in_flight = _batches_in(client.hvals(UNACKED), unacked=True)
    ended = 0
    ledger = Ledger(client, expires_s=_expires_s(client))
    for batch_id in stalled:
        if batch_id in in_flight:
            continue
        queue = _text(client.hget(keys.batch(batch_id), "queue") or b"")
        queued = _queued_batches(client, queue) if queue else {"*"}
        if "*" in queued or batch_id in queued:
            continue
        items = {
            int(index): _text(state)
            for index, state in client.hgetall(keys.batch_items(batch_id)).items()
        }
        ids = [_text(i) for i in client.lrange(keys.batch_ids(batch_id), 0, -1)]
        lost = ErrorInfo(
            type="lost",
            message=(
                "its message was lost (no worker held it, no queue carried it); "
                "`chorus retry` sends it again"
            ),
            retryable=True,
        )
        commands = []
        for index, state in sorted(items.items()):
            if state in ENDED_STATES:
                continue
            item_id = ids[index] if index < len(ids) else str(index)
            envelope = Envelope.failure("lost", lost)
            commands.append(
                ledger.finish_command(
                    batch_id,
                    index,
                    result_record(item_id, envelope),
                    state="f",
                    error_type="lost",
                )
            )
        if commands:
            replies = run_together(commands)
            count = sum(1 for r in replies if r)
            ended += count
            log.warning("batch %s: %d item(s) lost their messages; ended failed", batch_id, count)
    return ended


ENDED_STATES = frozenset("cfxbz")


def _running_batches(client: redis.Redis) -> list[str]:
    found = []
    for raw in client.zrange(keys.batch_index(), 0, -1):
        batch_id = _text(raw)
        state = client.hget(keys.batch(batch_id), "state")
        if state is not None and _text(state) == "running":
            found.append(batch_id)
    return found


def _quiet_for(client: redis.Redis, batch_id: str, now: float) -> float:
    fields = client.hmget(keys.batch(batch_id), "updated_at", "enqueued", "total")
    updated, enqueued, total = (int(v) if v is not None else None for v in fields)
    if updated is None or enqueued is None or total is None or enqueued < total:
        return 0.0
    return now - updated / 1000.0


def _expires_s(client: redis.Redis) -> int:
    from config.settings import get_settings

    return int(get_settings().results.expires_s)


def _queued_batches(client: redis.Redis, queue: str) -> set[str]:
    """The batches with a message in ``queue`` (and its priority lists); all, if too long."""
    found: set[str] = set()
    for name in _priority_lists(client, queue):
        length = int(client.llen(name))
        if length > QUEUE_SCAN_LIMIT:
            return {"*"} | found  # too long to read: treat every batch as queued
        found |= _batches_in(client.lrange(name, 0, -1), unacked=False)
    return found


def _priority_lists(client: redis.Redis, queue: str) -> list[str]:
    # kombu's Redis transport keeps priorities 0, 3, 6 and 9 in lists named
    # queue, queue\x06\x163, queue\x06\x166 and queue\x06\x169.
    return [queue] + [f"{queue}\x06\x16{p}" for p in (3, 6, 9)]


def _batches_in(raw_messages: Iterable[Any], *, unacked: bool) -> set[str]:
    """The batch ids of these kombu messages (an unacknowledged entry wraps its message)."""
    found: set[str] = set()
    for raw in raw_messages:
        try:
            message = json.loads(raw)
            if unacked:
                message = message[0]
            body = json.loads(base64.b64decode(message["body"]))
            options = body[0][1] if len(body[0]) > 1 else body[1].get("options") or {}
            batch = (options or {}).get("batch")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
        if isinstance(batch, dict) and batch.get("id"):
            found.add(str(batch["id"]))
    return found


# --- in a worker process ----------------------------------------------------------


def held_by(consumer: Any) -> set[str]:
    """The delivery tags ``consumer``'s worker holds: reserved, running, or delivered by kombu.

    Celery's reserved and active requests cover every task from its receipt
    to its end; kombu's record of what it delivered and not yet acknowledged
    covers the rest (a task held for its ETA, one just ending). Both are read
    from another thread while they change: a read that meets a change is tried again.
    """
    from celery.worker import state

    for _ in range(10):
        try:
            requests = [*state.reserved_requests, *state.active_requests]
            qos = getattr(getattr(consumer.task_consumer, "channel", None), "qos", None)
            delivered = list(getattr(qos, "_delivered", None) or ())
        except RuntimeError:  # changed size during iteration
            continue
        tags = {str(tag) for tag in delivered}
        for request in requests:
            tag = getattr(getattr(request, "message", None), "delivery_tag", None)
            if tag is not None:
                tags.add(str(tag))
        return tags
    raise RuntimeError("the worker's requests kept changing while read")


_running: dict[str, Sweeper] = {}


def start_in_worker(consumer: Any) -> Sweeper | None:
    """Start this worker process's sweeper (Celery's ``worker_ready``); None without Redis."""
    app = consumer.app
    url = str(app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def restore(tag: str) -> None:
        with app.connection_for_write() as connection:
            connection.default_channel.qos.restore_by_tag(tag)

    def queues() -> list[str]:
        return [queue.name for queue in getattr(consumer.task_consumer, "queues", None) or []]

    sweeper = Sweeper(client, consumer.hostname, lambda: held_by(consumer), restore, queues=queues)
    sweeper.start()
    _running[consumer.hostname] = sweeper
    return sweeper


def stop_in_worker(hostname: str) -> None:
    """At the worker's shutdown, once its tasks ended: it holds nothing any more."""
    sweeper = _running.pop(hostname, None)
    if sweeper is not None:
        sweeper.stop()
