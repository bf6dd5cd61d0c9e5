"""The kombu work-arounds tolerate only the collected-connection case."""

from __future__ import annotations

import logging
from typing import Any

import kombu.connection
import kombu.message
import kombu.transport.redis
import pytest

from workers.compat import share_one_client_per_channel, tolerate_collected_connections


class Transport:
    def __init__(self, client: object | None) -> None:
        self.client = client


class Channel:
    def __init__(self, client: object | None) -> None:
        self.connection = Transport(client)
        self.no_ack_consumers: set[str] = set()

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    def close(self) -> None:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")


def message(channel: Channel) -> kombu.message.Message:
    msg = kombu.message.Message(body=b"{}", channel=channel, delivery_tag="tag-1")
    return msg


@pytest.fixture(autouse=True)
def patched() -> None:
    tolerate_collected_connections()


def test_an_ack_on_a_collected_connection_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.compat")

    with caplog.at_level(logging.CRITICAL):
        message(Channel(client=None)).ack_log_error(log, (ConnectionError,))

    assert "Couldn't ack 'tag-1'" in caplog.text
    assert "comes back after the visibility timeout" in caplog.text


def test_an_attribute_error_on_a_live_connection_still_raises() -> None:
    with pytest.raises(AttributeError):
        message(Channel(client=object())).ack_log_error(logging.getLogger("x"), (ConnectionError,))


def test_closing_a_channel_of_a_collected_connection_is_quiet() -> None:
    connection = kombu.connection.Connection("memory://")
    connection._transport = None  # collected

    connection.maybe_close_channel(Channel(client=None))


def test_closing_a_channel_of_a_live_connection_still_raises() -> None:
    connection = kombu.connection.Connection("memory://")
    connection.transport  # noqa: B018 - a live transport

    with pytest.raises(AttributeError):
        connection.maybe_close_channel(Channel(client=object()))


class FakePool:
    connection_kwargs: dict[str, Any] = {}


class FakeClient:
    def __init__(self, connection_pool: FakePool) -> None:
        self.connection_pool = connection_pool


class RedisChannel:
    """What kombu's Redis Channel._create_client reads of its channel."""

    Client = FakeClient

    def __init__(self) -> None:
        self.pool = FakePool()
        self.async_pool = FakePool()


def test_a_channel_builds_one_client_per_pool_not_one_per_operation() -> None:
    share_one_client_per_channel()
    create = kombu.transport.redis.Channel._create_client
    channel = RedisChannel()

    # Operations on one channel share one client over its pool
    first = create(channel)
    assert create(channel) is first
    assert first.connection_pool is channel.pool

    # A new pool (after a reconnect) gets a client of its own
    channel.pool = FakePool()
    second = create(channel)
    assert second is not first
    assert second.connection_pool is channel.pool

    # The polling client (asynchronous) is still built as kombu builds it
    polling = create(channel, asynchronous=True)
    assert polling.connection_pool is channel.async_pool
    assert create(channel, asynchronous=True) is not polling
