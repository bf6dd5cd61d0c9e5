"""Work-arounds for bugs in the libraries chorus runs on, each with its reason.

kombu 5.7, Redis transport: when a worker loses its broker connection, Celery
first ``collect()``s the connection (which drops the transport's client but
leaves the default channel set) and then closes it. Closing the channel tries
to restore unacknowledged messages, which needs the dropped client, and raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``.
``maybe_close_channel`` ignores connection errors only, so the error escapes
and the worker stops ("Unrecoverable error") instead of reconnecting, and a
Redis restart takes every worker down with it (seen in
tests/integration/faults/test_redis_restarts.py::test_a_redis_restart_with_aof_loses_nothing).
The messages are not lost either way: they stay in Redis's unacknowledged set
and come back after the visibility timeout. So that error is ignored here,
on connections already collected, and only there.

The same dropped client bites once more after the reconnect: a task that
finishes then acknowledges its message on the old, collected channel, and
``Message.ack_log_error`` (which logs connection errors as a failed ack)
lets the ``AttributeError`` through, stopping the worker again
(test_a_redis_restart_without_persistence_is_rebuilt_by_resume_and_paid_once).
It is logged as a failed ack here, as kombu does for connection errors: the
message comes back after the visibility timeout, and the result store and the
ledger answer it without a second call.

kombu 5.7, Redis transport, speed: ``Channel.conn_or_acquire`` builds a new
``redis.Redis`` client over the channel's pool for every operation, and a
worker does several per task (recording a delivered message as
unacknowledged, acknowledging it, publishing an event). Building one costs
about 50 us of CPU (redis-py fills a table of response callbacks each time),
held under the GIL by the consumer's event loop. One client per channel and
pool does the same work: a client takes a connection from the pool for each
command and is safe to share between threads. (bench/throughput.py measures
it; docs/PERFORMANCE.md quotes the figure.)
"""

from __future__ import annotations

from typing import Any

import kombu.connection
import kombu.message
import kombu.transport.redis

_PATCHED = "_chorus_tolerates_collected_channels"


def _collected(channel: Any) -> bool:
    """True when the channel's connection was collected (its client dropped)."""
    transport = getattr(channel, "connection", None)
    return transport is None or getattr(transport, "client", None) is None


def share_one_client_per_channel() -> None:
    """The speed fix of this module's docstring; safe to call more than once."""
    Channel = kombu.transport.redis.Channel
    if getattr(Channel, _PATCHED, False):
        return
    original: Any = Channel._create_client

    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return original(self, asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_chorus_client")
        if client is None or client.connection_pool is not pool:
            client = original(self)
            self._chorus_client = client
        return client

    setattr(Channel, "_create_client", _create_client)  # noqa: B010 - a patch
    setattr(Channel, _PATCHED, True)


def tolerate_collected_connections() -> None:
    """Both work-arounds of this module; safe to call more than once."""
    tolerate_closing_a_collected_channel()
    tolerate_acking_on_a_collected_channel()


def tolerate_acking_on_a_collected_channel() -> None:
    Message = kombu.message.Message
    if getattr(Message, _PATCHED, False):
        return
    original: Any = Message.ack_log_error

    def ack_log_error(self: Any, logger: Any, errors: Any, multiple: bool = False) -> None:
        try:
            original(self, logger, errors, multiple=multiple)
        except AttributeError as exc:
            if not _collected(self.channel):
                raise
            logger.critical(
                "Couldn't ack %r, reason: its connection was lost (%r); it comes back "
                "after the visibility timeout",
                self.delivery_tag,
                exc,
            )

    setattr(Message, "ack_log_error", ack_log_error)  # noqa: B010 - a patch
    setattr(Message, _PATCHED, True)


def tolerate_closing_a_collected_channel() -> None:
    Connection = kombu.connection.Connection
    if getattr(Connection, _PATCHED, False):
        return
    original: Any = Connection.maybe_close_channel

    def maybe_close_channel(self: Any, channel: Any) -> None:
        try:
            original(self, channel)
        except AttributeError:
            if self._transport is not None:
                raise  # not the collected-connection case: a real bug, let it show

    setattr(Connection, "maybe_close_channel", maybe_close_channel)  # noqa: B010 - a patch
    setattr(Connection, _PATCHED, True)
