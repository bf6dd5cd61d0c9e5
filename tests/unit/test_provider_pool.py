"""The SDK client pool: one connection per client, each lent to one thread at a time."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from workers.provider import ClientPool


class FakeClient:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def make_pool(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(size: int) -> ClientPool:
        pool = ClientPool(
            api_key="sk-test", base_url=None, timeout_s=5, connect_timeout_s=1, size=size
        )
        made: list[FakeClient] = []

        def new() -> FakeClient:
            made.append(FakeClient(len(made)))
            return made[-1]

        monkeypatch.setattr(pool, "_new", new)
        return pool

    return make


def test_one_thread_calling_again_and_again_reuses_one_client(make_pool: Any) -> None:
    pool = make_pool(10)
    seen = set()
    for _ in range(5):
        with pool.client() as client:
            seen.add(client.number)
    assert seen == {0}
    assert pool.open_clients == 1


def test_threads_holding_clients_at_once_each_get_their_own(make_pool: Any) -> None:
    pool = make_pool(10)
    holding = threading.Barrier(4)
    numbers: list[int] = []

    def borrow() -> None:
        with pool.client() as client:
            numbers.append(client.number)
            holding.wait(timeout=5)

    threads = [threading.Thread(target=borrow) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(numbers) == [0, 1, 2, 3]
    assert pool.open_clients == 4


def test_past_its_size_a_thread_waits_for_a_client_to_come_back(make_pool: Any) -> None:
    pool = make_pool(2)
    release = threading.Event()
    borrowed = threading.Barrier(3)
    got: list[int] = []

    def hold() -> None:
        with pool.client():
            borrowed.wait(timeout=5)
            release.wait(timeout=5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for thread in holders:
        thread.start()
    borrowed.wait(timeout=5)

    def third() -> None:
        with pool.client() as client:
            got.append(client.number)

    waiter = threading.Thread(target=third)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and got == []  # both clients are lent: it waits

    release.set()
    waiter.join(5)
    for thread in holders:
        thread.join(5)
    assert got in ([0], [1])
    assert pool.open_clients == 2


def test_a_client_comes_back_when_the_call_raises(make_pool: Any) -> None:
    pool = make_pool(1)
    with pytest.raises(RuntimeError), pool.client():
        raise RuntimeError("the call failed")
    with pool.client() as client:
        assert client.number == 0


def test_close_closes_every_client(make_pool: Any) -> None:
    pool = make_pool(3)
    with pool.client() as first, pool.client() as second:
        clients = [first, second]
    pool.close()
    assert all(client.closed for client in clients)
    assert pool.open_clients == 0


def test_a_client_lent_when_the_pool_closes_is_closed_on_return(make_pool: Any) -> None:
    pool = make_pool(2)
    with pool.client() as lent:
        pool.close()
        assert not lent.closed
    assert lent.closed
    assert pool.open_clients == 0
