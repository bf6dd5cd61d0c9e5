"""Start and stop the processes chorus runs on one machine: workers and the local API.

``chorus worker``, ``make demo``, the integration tests and the benchmarks all
start processes the same way, through here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from config.settings import Settings


def worker_argv(
    settings: Settings,
    *,
    name: str,
    concurrency: int | None = None,
    pool: str | None = None,
    queue: str | None = None,
    loglevel: str = "INFO",
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``celery worker`` command line for one chorus worker process."""
    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker",
        "--pool", pool or settings.worker.pool,
        "--concurrency", str(concurrency or settings.worker.concurrency),
        "--queues", queue or settings.worker.queue,
        "--hostname", name,
        "--loglevel", loglevel,
        # Gossip and mingle are worker-to-worker chatter on the broker that
        # chorus does not use; without them a worker starts a second sooner.
        "--without-gossip", "--without-mingle",
        *extra,
    ]  # fmt: skip


@dataclass
class Fleet:
    """Processes started together and stopped together."""

    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.processes.append(process)
        return process

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.poll() is None]

    def signal_all(self, signum: int) -> None:
        for process in self.alive():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (a warm shutdown for Celery), then SIGKILL what is left."""
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes.clear()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_workers(
    settings: Settings,
    count: int,
    *,
    env: Mapping[str, str] | None = None,
    prefix: str = "chorus",
    log_dir: Path | None = None,
    concurrency: int | None = None,
    pool: str | None = None,
    loglevel: str = "INFO",
    extra: Sequence[str] = (),
    fleet: Fleet | None = None,
) -> Fleet:
    """Start ``count`` worker processes with distinct node names.

    The queue is ``CHORUS_WORKER__QUEUE`` in ``env`` when given there, else
    the settings' own.
    """
    fleet = fleet or Fleet()
    host = socket.gethostname()
    for index in range(1, count + 1):
        name = f"{prefix}{index}@{host}"
        argv = worker_argv(
            settings,
            name=name,
            concurrency=concurrency,
            pool=pool,
            queue=(env or {}).get("CHORUS_WORKER__QUEUE"),
            loglevel=loglevel,
            extra=extra,
        )
        out: int | object = subprocess.DEVNULL
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            out = open(log_dir / f"{prefix}{index}.log", "ab")  # noqa: SIM115 - lives with the process
        fleet.add(
            subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                stdout=out,  # type: ignore[arg-type]
                stderr=subprocess.STDOUT,
            )
        )
    return fleet


def wait_for_workers(
    count: int, *, timeout_s: float = 30.0, fleet: Fleet | None = None
) -> list[str]:
    """Block until ``count`` workers answer a ping.

    Raises:
        TimeoutError: fewer answered in time (or a worker process exited).
    """
    from orchestration.client import workers_online

    deadline = time.monotonic() + timeout_s
    names: list[str] = []
    while time.monotonic() < deadline:
        if fleet is not None and len(fleet.alive()) < len(fleet.processes):
            codes = [p.returncode for p in fleet.processes if p.poll() is not None]
            raise TimeoutError(f"a worker process exited during start-up (exit codes {codes})")
        names = workers_online(timeout_s=0.5)
        if len(names) >= count:
            return names
    raise TimeoutError(f"only {len(names)} of {count} workers answered within {timeout_s:g} s")


def start_local_api(
    args: Sequence[str] = (), *, port: int | None = None, fleet: Fleet | None = None
) -> tuple[str, Fleet]:
    """Start the local Anthropic API in its own process; returns its URL."""
    from orchestration.embedded import free_port

    fleet = fleet or Fleet()
    port = port or free_port()
    process = fleet.add(
        subprocess.Popen(
            [sys.executable, "-m", "localapi", "--port", str(port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15.0
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_mock/stats", timeout=0.5):
                return url, fleet
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the local API did not start on port {port}") from None
            time.sleep(0.05)
