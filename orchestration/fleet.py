"""Start and stop the processes chorus runs on one machine: workers and the local API.

``chorus worker``, ``make demo``, the integration tests and the benchmarks all
start processes the same way, through here.

A worker process's output (Celery's log on stderr, its banner on stdout, a
crash's traceback) comes back to this process through a pipe, and one thread
per worker writes it where it was asked to go: to the worker's own file,
rotated (:class:`LogFiles`), or to a stream with each line prefixed by the
worker's node name. Only this process writes a given file, so renaming it
on rotation never races a writer that still holds it open.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from logging import LogRecord
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO, TextIO

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
    # The node names of the workers started in it (<prefix><n>@<host>).
    nodes: list[str] = field(default_factory=list)
    # The threads that carry the processes' output to their logs.
    pumps: list[_Pump] = field(default_factory=list)

    def add(self, process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.processes.append(process)
        return process

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.poll() is None]

    def signal_all(self, signum: int) -> None:
        for process in self.alive():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    def wait(self) -> list[int]:
        """Block until every process has exited; their exit codes, in start order.

        The last lines each one wrote are in its log when this returns.
        """
        codes = [process.wait() for process in self.processes]
        self._drain()
        return codes

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
        self._drain()
        self.processes.clear()

    def _drain(self, timeout_s: float = 5.0) -> None:
        """Let each pump write what its process left in the pipe, then close its log.

        A pump whose pipe stays open past ``timeout_s`` (a grandchild of a
        prefork pool holds it) is left to end on its own.
        """
        deadline = time.monotonic() + timeout_s
        for pump in self.pumps:
            pump.thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if not pump.thread.is_alive():
                pump.close()
        self.pumps = [pump for pump in self.pumps if pump.thread.is_alive()]

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- where a worker's output goes ---------------------------------------------------------

# One line of a process's output, without its line ending.
LineSink = Callable[[str], None]


@dataclass(frozen=True)
class LogFiles:
    """Each process's output in a file of its own, ``directory/<node name>.log``, rotated.

    ``max_bytes``: a file about to grow past this size is renamed ``.1`` (an
    older ``.1`` becomes ``.2``, and so on) and a new one begun; ``backups``
    renamed files are kept, the oldest deleted (0: the file is emptied
    instead). Rotation falls between lines, never inside one.
    """

    directory: Path
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5

    @classmethod
    def from_settings(cls, settings: Settings, directory: Path) -> LogFiles:
        """Files in ``directory`` (made absolute), rotated as ``settings.worker`` says."""
        worker = settings.worker
        return cls(directory.expanduser().absolute(), worker.log_max_bytes, worker.log_backups)

    def path(self, node: str) -> Path:
        """The file of the process whose node name is ``node`` (``chorus1@host`` or ``chorus1``)."""
        return self.directory / f"{node.partition('@')[0]}.log"

    def describe(self, nodes: Sequence[str]) -> str:
        """Where ``nodes``' logs go, in a few words, for the line said at start-up."""
        files = [self.path(node).name for node in nodes]
        where = files[0] if len(files) == 1 else f"{files[0]} .. {files[-1]}"
        kept = f"{self.backups} kept" if self.backups else "none kept"
        return f"{self.directory}{os.sep}{where}, rotated at {_size(self.max_bytes)} ({kept})"

    def sink(self, node: str) -> tuple[LineSink, Callable[[], None]]:
        """A writer of ``node``'s lines to its file, and what closes the file.

        Raises:
            OSError: the directory cannot be created or the file opened.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            self.path(node), maxBytes=self.max_bytes, backupCount=self.backups, encoding="utf-8"
        )

        def write(line: str) -> None:
            # Through the handler's own lock and rotation check; the line is
            # written as it came (Celery's lines carry their own time and level).
            handler.handle(LogRecord(node, 0, "", 0, line, None, None))

        return write, handler.close


def _nothing() -> None:
    pass


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"


def prefixed(stream: TextIO, names: Sequence[str]) -> Callable[[str], LineSink]:
    """Writers of lines to ``stream``, each line led by its node's name, aligned.

    ``names``: every node that will write, so the prefixes line up. The
    returned function gives the writer for one of them. Lines from different
    nodes never interleave within a line.
    """
    width = max((len(name.partition("@")[0]) for name in names), default=0)
    lock = threading.Lock()

    def writer(node: str) -> LineSink:
        lead = f"{node.partition('@')[0]:<{width}} | "

        def write(line: str) -> None:
            with lock:
                stream.write(lead + line + "\n")
                stream.flush()

        return write

    return writer


@dataclass
class _Pump:
    thread: threading.Thread
    close: Callable[[], None]


def _pump(pipe: IO[bytes], write: LineSink) -> None:
    """Copy ``pipe`` to ``write`` line by line until the process closes it.

    It never stops reading before the end: a process whose pipe is full
    blocks on its next log line. A line that cannot be written (a full disk)
    is dropped, and the rest still are tried.
    """
    with pipe:
        for raw in iter(pipe.readline, b""):
            with contextlib.suppress(Exception):
                write(raw.decode("utf-8", "replace").rstrip("\r\n"))


def follow_output(
    process: subprocess.Popen[bytes],
    write: LineSink,
    fleet: Fleet,
    *,
    name: str,
    close: Callable[[], None] = _nothing,
) -> None:
    """Carry ``process``'s piped stdout to ``write`` from a thread of ``fleet``'s.

    ``close`` runs once the process has closed its output and every line was
    written (:meth:`Fleet.wait`, :meth:`Fleet.stop`).
    """
    assert process.stdout is not None, "the process's stdout must be a pipe"
    thread = threading.Thread(
        target=_pump, args=(process.stdout, write), name=f"log-{name}", daemon=True
    )
    thread.start()
    fleet.pumps.append(_Pump(thread, close))


def start_workers(
    settings: Settings,
    count: int,
    *,
    env: Mapping[str, str] | None = None,
    prefix: str = "chorus",
    log_dir: Path | None = None,
    echo: TextIO | None = None,
    concurrency: int | None = None,
    pool: str | None = None,
    loglevel: str = "INFO",
    extra: Sequence[str] = (),
    fleet: Fleet | None = None,
) -> Fleet:
    """Start ``count`` worker processes with distinct node names, ``<prefix><n>@<host>``.

    Each process's output (stdout and stderr, in the order written) goes to
    its own file in ``log_dir``, ``<prefix><n>.log``, rotated as the settings
    say (:meth:`LogFiles.from_settings`); without a ``log_dir``, to ``echo``
    with each line led by the node's name; without either, nowhere.

    The queue is ``CHORUS_WORKER__QUEUE`` in ``env`` when given there, else
    the settings' own.

    Raises:
        OSError: ``log_dir`` cannot be created or a file in it opened; no
            process has been started then.
    """
    fleet = fleet or Fleet()
    host = socket.gethostname()
    names = [f"{prefix}{index}@{host}" for index in range(1, count + 1)]
    fleet.nodes += names
    # Every log file is opened before any process starts: a directory that
    # cannot be written stops the start, not the third worker.
    sinks: list[tuple[LineSink, Callable[[], None]] | None] = [None] * count
    if log_dir is not None:
        files = LogFiles.from_settings(settings, log_dir)
        try:
            for index, name in enumerate(names):
                sinks[index] = files.sink(name)
        except OSError:
            for sink in sinks:
                if sink is not None:
                    sink[1]()
            raise
    elif echo is not None:
        to_echo = prefixed(echo, names)
        sinks = [(to_echo(name), _nothing) for name in names]
    for name, sink in zip(names, sinks, strict=True):
        argv = worker_argv(
            settings,
            name=name,
            concurrency=concurrency,
            pool=pool,
            queue=(env or {}).get("CHORUS_WORKER__QUEUE"),
            loglevel=loglevel,
            extra=extra,
        )
        process = fleet.add(
            subprocess.Popen(
                argv,
                env={**os.environ, **(env or {})},
                stdout=subprocess.DEVNULL if sink is None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
        if sink is not None:
            follow_output(process, sink[0], fleet, name=name, close=sink[1])
    return fleet


def wait_for_workers(
    count: int, *, timeout_s: float = 30.0, fleet: Fleet | None = None
) -> list[str]:
    """Block until ``count`` workers answer a ping: ``fleet``'s own, when it names them
    (other workers on the same broker do not count).

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
        if fleet is not None and fleet.nodes:
            names = [name for name in names if name in fleet.nodes]
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
