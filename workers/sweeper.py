"""The sweeper: a dead worker's messages run again within seconds, not the visibility timeout.

With Redis as the broker, kombu keeps each delivered message in an
"unacknowledged" hash until its task ends, and gives it back to the queue only
once it is older than the visibility timeout (an hour by default, because a
live call may take that long). A worker killed with ``kill -9`` leaves its
messages there for that hour, though nothing holds them.

**Lists.** Every chorus worker process writes, every :data:`SWEEP_EVERY_S`
and within :data:`LIST_AFTER_RECEIPT_S` of receiving messages, from a thread
of its own, the delivery tags it holds (Celery's reserved and
active requests, and kombu's own record of what it delivered) and the queues
it consumes, stamped with Redis's clock (one clock for every machine), under
a name no other process shares (node, pid, a random part).

**Restores, on positive evidence only.** One worker at a time (a lock) looks
at the lists: a list older than :data:`HOLDER_TTL_S` is a dead worker's. Each
tag it listed that is still unacknowledged, is a chorus task, and that no live
worker lists, goes back to its queue through kombu's own ``restore_by_tag``
(a transaction on the unacknowledged hash: a message acknowledged meanwhile is
left alone); then the dead list is deleted, unless its worker wrote it again
meanwhile. A message nobody listed (another Celery app on the same Redis, an
older chorus, a worker that died within its first seconds) is never touched
here: kombu's visibility timeout still brings it back. A dead worker's
messages are back within about ``HOLDER_TTL_S + SWEEP_EVERY_S`` (13 s).

A worker stopped rather than dead (SIGSTOP, a paused container, a suspended
VM) for longer than ``HOLDER_TTL_S`` looks dead: its messages run again, and
its call, if it resumes, may be paid twice (docs/RELIABILITY.md).

**Lost by any path** (:meth:`Sweeper.check_lost`, every
:data:`LOST_CHECK_EVERY_S`): a running batch whose ledger has not moved for
:data:`LOST_AFTER_S` and no message of which is in its queue or among the
unacknowledged, seen so twice with its ledger unchanged in between, has lost
the messages of its pending items: they end ``failed`` with error type
``lost``; ``chorus retry`` sends them again.

Only for a Redis broker without a global key prefix: RabbitMQ gives a dead
consumer's messages back at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis

from workers import keys
from workers.ledger import Ledger

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 3.0
LIST_AFTER_RECEIPT_S = 0.2
HOLDER_TTL_S = 10.0
LOST_AFTER_S = 60.0
LOST_CHECK_EVERY_S = 30.0
# How much of a queue is read, 500 messages at a time, looking for a quiet
# batch's messages; past it the batch is taken to be waiting its turn.
QUEUE_SCAN_LIMIT = 20_000
QUEUE_PAGE = 500
# Batches looked at for lost messages: the newest this many.
LOST_BATCHES_LIMIT = 10_000

# kombu's defaults for the Redis transport's unacknowledged records and its
# priority lists (kombu/transport/redis.py); start_in_worker reads the
# channel's own unacknowledged key.
UNACKED = "unacked"
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)

UNKNOWN = "?"  # a message whose batch cannot be read


def holders_key() -> str:
    return keys.PREFIX + "holders"


def lock_key() -> str:
    return keys.PREFIX + "sweep-lock"


def lost_lock_key() -> str:
    return keys.PREFIX + "lost-check-lock"


def lost_suspects_key() -> str:
    return keys.PREFIX + "lost-suspects"


# The list is stamped with Redis's clock, the same for every machine.
_WRITE_LIST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], ARGV[1], string.format('{"t":%.6f,%s', now, ARGV[2]))
return 1
"""
# Deletes a dead list only if it is still the one read.
_DROP_IF_SAME = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


class Sweeper:
    """One worker process's part: keep its list, and sweep when it holds the lock.

    ``held``: the delivery tags this process holds now. ``restore``: puts one
    unacknowledged message back in its queue (kombu's ``restore_by_tag``).
    ``queues``: the queues it consumes (empty once it shuts down).
    """

    def __init__(
        self,
        client: redis.Redis,
        node: str,
        held: Callable[[], Iterable[str]],
        restore: Callable[[str], None],
        *,
        queues: Callable[[], Iterable[str]] = tuple,
        unacked: str = UNACKED,
        name: str | None = None,
    ) -> None:
        self._redis = client
        self.name = name or f"{node}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._held = held
        self._restore = restore
        self._queues = queues
        self._unacked = unacked
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._write = client.register_script(_WRITE_LIST)
        self._drop = client.register_script(_DROP_IF_SAME)
        self._ledger = _ledger(client)
        self.restored = 0
        self.shutting_down = False

    def start(self) -> None:
        for target, name in ((self._keep_list, "list"), (self._sweep_loop, "sweep")):
            threading.Thread(target=target, name=f"chorus-{name}", daemon=True).start()

    def notify(self) -> None:
        """This process received messages: its list is written again within moments."""
        self._changed.set()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        with contextlib.suppress(redis.RedisError):
            self._redis.hdel(holders_key(), self.name)

    def _keep_list(self) -> None:
        # Every SWEEP_EVERY_S, and within LIST_AFTER_RECEIPT_S of a receipt (at most
        # that often): a worker killed soon after receiving its messages has listed them.
        while not self._stop.is_set():
            self._changed.clear()
            try:
                self.write_list()
            except redis.RedisError as exc:
                log.warning("could not write this worker's list of held messages: %s", exc)
            except Exception:
                log.exception("could not write this worker's list of held messages")
            if self._stop.wait(LIST_AFTER_RECEIPT_S):
                return
            self._changed.wait(SWEEP_EVERY_S - LIST_AFTER_RECEIPT_S)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_EVERY_S):
            try:
                if self._redis.set(lock_key(), self.name, nx=True, px=int(SWEEP_EVERY_S * 900)):
                    self.sweep()
                    if self._redis.set(
                        lost_lock_key(), self.name, nx=True, ex=int(LOST_CHECK_EVERY_S)
                    ):
                        self.check_lost()
            except redis.RedisError as exc:
                log.warning("sweep skipped: Redis: %s", exc)
            except Exception:
                log.exception("sweep failed; trying again in %.0f s", SWEEP_EVERY_S)

    def write_list(self) -> None:
        queues = [] if self.shutting_down else sorted(self._queues())
        rest = json.dumps({"tags": sorted(self._held()), "queues": queues})[1:]
        self._write(keys=[holders_key()], args=[self.name, rest])

    def sweep(self) -> int:
        """Restore the chorus messages listed by workers now dead; returns how many."""
        now = redis_now(self._redis)
        entries = self._redis.hgetall(holders_key())
        live: set[str] = set()
        dead: list[tuple[str, Any, list[str]]] = []
        for name, raw in entries.items():
            entry = _entry(raw)
            if entry is None or now - entry["t"] > HOLDER_TTL_S:
                dead.append((_text(name), raw, list((entry or {}).get("tags") or [])))
            else:
                live.update(entry.get("tags") or [])
        restored = 0
        for name, raw, tags in dead:
            for tag in tags:
                if tag in live:
                    continue  # delivered again already, and held
                message = self._redis.hget(self._unacked, tag)
                if message is None or not _is_chorus_task(message):
                    continue
                self._restore(tag)
                restored += 1
                batch = _batch_of(message, unacked=True)
                if batch not in (None, UNKNOWN):
                    self._ledger.count_restored(str(batch))
            self._drop(keys=[holders_key()], args=[name, raw])
        if restored:
            self.restored += restored
            log.warning(
                "put %d message(s) back in the queue: their worker stopped listing them "
                "%.0f s ago (dead)",
                restored,
                HOLDER_TTL_S,
            )
        return restored

    def check_lost(self) -> int:
        """End the pending items of batches whose messages exist nowhere; returns how many."""
        return end_lost_items(
            self._redis, redis_now(self._redis), unacked=self._unacked, ledger=self._ledger
        )


def _entry(raw: Any) -> dict[str, Any] | None:
    try:
        entry = json.loads(raw)
        entry["t"] = float(entry["t"])
    except (ValueError, KeyError, TypeError):
        return None
    return entry if isinstance(entry, dict) else None


def live_consumers(client: redis.Redis, queue: str) -> list[str]:
    """The nodes of live workers (lists younger than :data:`HOLDER_TTL_S`) that consume ``queue``.

    A read of one hash: unlike a broadcast, it does not depend on a busy worker
    answering in time. A worker shutting down lists no queue.
    """
    now = redis_now(client)
    found = set()
    for name, raw in client.hgetall(holders_key()).items():
        entry = _entry(raw)
        fresh = entry is not None and now - entry["t"] <= HOLDER_TTL_S
        if fresh and entry is not None and queue in (entry.get("queues") or []):
            found.add(_text(name).split(":", 1)[0])
    return sorted(found)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- kombu's messages ----------------------------------------------------------------


def _message(raw: Any, *, unacked: bool) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
        if unacked:
            message = message[0]
    except (ValueError, TypeError, IndexError, KeyError):
        return None
    return message if isinstance(message, dict) else None


def _is_chorus_task(raw: Any) -> bool:
    message = _message(raw, unacked=True)
    task = ((message or {}).get("headers") or {}).get("task")
    return isinstance(task, str) and task.startswith("chorus.")


def _batch_of(raw: Any, *, unacked: bool) -> str | None:
    """The batch a message serves; None for none; :data:`UNKNOWN` when it cannot be read."""
    message = _message(raw, unacked=unacked)
    if message is None:
        return UNKNOWN
    task = (message.get("headers") or {}).get("task")
    if not (isinstance(task, str) and task.startswith("chorus.")):
        return None  # not chorus's: serves no batch
    try:
        properties = message.get("properties") or {}
        body_raw = message["body"]
        if properties.get("body_encoding") == "base64":
            body_raw = base64.b64decode(body_raw)
        body = json.loads(body_raw)
        args, kwargs = body[0], body[1]
        options = args[1] if len(args) > 1 else kwargs.get("options")
        batch = (options or {}).get("batch")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return UNKNOWN
    if isinstance(batch, dict) and batch.get("id"):
        return str(batch["id"])
    return None


# --- lost by any path ------------------------------------------------------------------


def end_lost_items(
    client: redis.Redis, now: float, *, unacked: str = UNACKED, ledger: Ledger | None = None
) -> int:
    """One check for lost messages (see the module docstring); returns items ended.

    A quiet running batch with no message anywhere is a suspect; one that was a
    suspect at the previous check with the same ``updated_at`` ends its
    pending items ``failed``, error type ``lost``.
    """
    ledger = ledger or _ledger(client)  # the sweeper's own: its scripts read once
    quiet = ledger.quiet_running(LOST_BATCHES_LIMIT, LOST_AFTER_S, now)
    suspects_before = {_text(k): _text(v) for k, v in client.hgetall(lost_suspects_key()).items()}
    if not quiet:
        client.delete(lost_suspects_key())
        return 0
    in_flight = {_batch_of(raw, unacked=True) for raw in client.hvals(unacked)}
    if UNKNOWN in in_flight:
        return 0  # a message we cannot read: nothing can be shown lost
    queued: dict[str, set[str | None]] = {}
    suspects: dict[Any, Any] = {}
    for batch_id, (updated, queue) in quiet.items():
        if batch_id in in_flight:
            continue
        if queue not in queued:
            queued[queue] = _batches_queued(client, queue, set(quiet))
        found = queued[queue]
        if batch_id in found or UNKNOWN in found:
            continue
        suspects[batch_id] = updated
    client.delete(lost_suspects_key())
    if suspects:
        client.hset(lost_suspects_key(), mapping=suspects)
        client.expire(lost_suspects_key(), int(LOST_CHECK_EVERY_S * 4))
    ended = 0
    for batch_id, updated in suspects.items():
        if suspects_before.get(batch_id) == updated:
            ended += _end_pending_as_lost(ledger, batch_id, updated)
    return ended


def _batches_queued(client: redis.Redis, queue: str, wanted: set[str]) -> set[str | None]:
    """The batches among ``wanted`` with a message in ``queue``'s lists (UNKNOWN if unsure)."""
    found: set[str | None] = set()
    read = 0
    for pri in PRIORITY_STEPS:
        name = queue if pri == 0 else f"{queue}{PRIORITY_SEP}{pri}"
        start = 0
        while True:
            page = client.lrange(name, start, start + QUEUE_PAGE - 1)
            if not page:
                break
            found |= {_batch_of(raw, unacked=False) for raw in page}
            if UNKNOWN in found or wanted <= found:
                return found
            read += len(page)
            start += QUEUE_PAGE
            if read >= QUEUE_SCAN_LIMIT:
                return found | {UNKNOWN}  # too long to read: the batches may be in it
    return found


def _end_pending_as_lost(ledger: Ledger, batch_id: str, updated: str) -> int:
    from workers.models import Envelope, ErrorInfo

    lost = ErrorInfo(
        type="lost",
        message=(
            "its message was lost (no worker held it, no queue carried it); "
            "`chorus retry` sends it again"
        ),
        retryable=True,
    )
    count = ledger.end_pending(batch_id, Envelope.failure("lost", lost), unless_moved_since=updated)
    if count:
        log.warning(
            "batch %s: %d pending item(s) lost their messages; ended failed 'lost'",
            batch_id,
            count,
        )
    return count


def _ledger(client: redis.Redis) -> Ledger:
    from config.settings import get_settings

    return Ledger(client, expires_s=int(get_settings().results.expires_s))


# --- in a worker process -------------------------------------------------------------


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
        tags = {_text(tag) for tag in delivered}
        for request in requests:
            tag = getattr(getattr(request, "message", None), "delivery_tag", None)
            if tag is not None:
                tags.add(_text(tag))
        return tags
    raise RuntimeError("the worker's requests kept changing while read")


_running: dict[str, Sweeper] = {}


def start_in_worker(consumer: Any) -> Sweeper | None:
    """Start this worker process's sweeper (Celery's ``worker_ready``).

    None without a Redis broker, or with kombu's ``global_keyprefix`` (its
    keys would not be the ones read here).
    """
    app = consumer.app
    url = str(app.conf.broker_url or "")
    options = dict(app.conf.broker_transport_options or {})
    if not url.startswith(("redis://", "rediss://")) or options.get("global_keyprefix"):
        return None
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    with app.connection_for_write() as connection:
        unacked = str(getattr(connection.default_channel, "unacked_key", UNACKED))
    restorer = _Restorer(app)

    def queues() -> list[str]:
        return [queue.name for queue in getattr(consumer.task_consumer, "queues", None) or []]

    sweeper = Sweeper(
        client,
        consumer.hostname,
        lambda: held_by(consumer),
        restorer.restore,
        queues=queues,
        unacked=unacked,
    )
    sweeper.start()
    _running[consumer.hostname] = sweeper
    return sweeper


class _Restorer:
    """kombu's ``restore_by_tag`` over one connection kept for the sweeps (rarely used)."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._connection: Any = None

    def restore(self, tag: str) -> None:
        try:
            if self._connection is None:
                self._connection = self._app.connection_for_write()
            self._connection.default_channel.qos.restore_by_tag(tag)
        except Exception:
            with contextlib.suppress(Exception):
                self._connection.release()
            self._connection = None
            raise


def received(hostname: str) -> None:
    """Celery's ``task_received``: the worker's list is due again."""
    sweeper = _running.get(hostname)
    if sweeper is not None:
        sweeper.notify()


def shutting_down(hostname: str) -> None:
    """A worker in warm shutdown takes no new work: it stops listing its queues."""
    sweeper = _running.get(hostname)
    if sweeper is not None:
        sweeper.shutting_down = True
        with contextlib.suppress(Exception):
            sweeper.write_list()


def stop_in_worker(hostname: str) -> None:
    """At the worker's shutdown, once its tasks ended: it holds nothing any more."""
    sweeper = _running.pop(hostname, None)
    if sweeper is not None:
        sweeper.stop()
