"""Running the local API: in a background thread for tests, or in the foreground for the CLI.

`LocalAPIServer` owns a daemon thread with its own event loop. Its methods
hop onto that loop, so they never race the handlers:

    with LocalAPIServer(latency_ms=0, rpm=60) as server:
        client = anthropic.Anthropic(api_key="sk-test", base_url=server.url, max_retries=0)
        ...
        assert server.stats()["paid"] == 1
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from localapi.config import FIXED_AT_RUN_TIME, LocalAPIConfig
from localapi.server import create_app, make_runner, make_site
from localapi.state import LocalAPIState

T = TypeVar("T")
START_TIMEOUT_S = 10.0
# Tests stop servers often and never care for the calls still running then.
THREAD_SHUTDOWN_TIMEOUT_S = 0.1
FOREGROUND_SHUTDOWN_TIMEOUT_S = 1.0


def url_for(host: str, port: int) -> str:
    """The URL a client on this machine uses; a wildcard host is reached on loopback."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def _start(state: LocalAPIState, shutdown_timeout_s: float) -> tuple[web.AppRunner, int]:
    runner = make_runner(create_app(state=state), shutdown_timeout_s)
    await runner.setup()
    site = make_site(runner, state.config.host, state.config.port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = int(runner.addresses[0][1])
    return runner, port


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and await what outlived the shutdown, so closing the loop warns of nothing."""
    leftovers = asyncio.all_tasks(loop)
    for task in leftovers:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


class LocalAPIServer:
    """The local API served from a daemon thread on `config.host` (port 0 = a free one).

    Keyword arguments override fields of `config`: `LocalAPIServer(port=0, latency_ms=0)`.
    The default port here is 0, not the CLI's 8765, so that tests never collide.
    """

    def __init__(self, config: LocalAPIConfig | None = None, **overrides: Any) -> None:
        base = config or LocalAPIConfig(port=0)
        self.config = LocalAPIConfig(**{**base.to_dict(), **overrides})
        self._started_with = self.config
        self.state = LocalAPIState(self.config)
        self.url = ""
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> LocalAPIServer:
        """Start serving; returns once the socket listens (raises if it cannot)."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._runner, self.port = loop.run_until_complete(
                    _start(self.state, THREAD_SHUTDOWN_TIMEOUT_S)
                )
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            _cancel_leftovers(loop)
            loop.close()

        thread = threading.Thread(target=serve, name="localapi", daemon=True)
        thread.start()
        if not started.wait(START_TIMEOUT_S):
            raise RuntimeError("the local API did not start in time")
        if failure:
            thread.join()
            raise failure[0]
        self._loop, self._thread = loop, thread
        self.url = url_for(self.config.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread; in-flight calls are cut off."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)

    def __enter__(self) -> LocalAPIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, function: Callable[[], T]) -> T:
        """`function()`, run on the server's loop (or here if the server is not running)."""
        loop = self._loop
        if loop is None:
            return function()

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(START_TIMEOUT_S)

    def stats(self) -> dict[str, Any]:
        """What `GET /_mock/stats` answers."""
        return self._call(lambda: self.state.stats.to_dict())

    def requests_log(self, contains: str | None = None) -> list[dict[str, Any]]:
        """What `GET /_mock/log` answers."""
        return self._call(lambda: self.state.log.entries(contains))

    def reset(self) -> None:
        """Forget stats, log, cache, buckets and added script rules; keep the config."""
        self._call(self.state.reset)

    def restore(self) -> None:
        """`reset()`, and every setting changed since the start put back."""
        started_with = self._started_with.to_dict()
        changed = {
            name: value
            for name, value in started_with.items()
            if name not in FIXED_AT_RUN_TIME and getattr(self.config, name) != value
        }
        if changed:
            self.configure(**changed)
        self.reset()

    def script(self, rules: list[dict[str, Any]]) -> None:
        """Append script rules (ValueError if any is malformed; then none is added)."""
        self._call(lambda: self.state.script.add(rules))

    def clear_script(self) -> None:
        self._call(self.state.script.clear)

    def configure(self, **changes: Any) -> LocalAPIConfig:
        """Change settings at run time (latency, faults, limits, key, seed, ...)."""
        self.config = self._call(lambda: self.state.configure(changes))
        return self.config


async def _serve(config: LocalAPIConfig, ready: Callable[[str], None] | None) -> None:
    runner, port = await _start(LocalAPIState(config), FOREGROUND_SHUTDOWN_TIMEOUT_S)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if ready is not None:
            ready(url_for(config.host, port))
        await stop.wait()
    finally:
        await runner.cleanup()


def run(config: LocalAPIConfig, ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; `ready` gets the URL once listening."""
    asyncio.run(_serve(config, ready))
