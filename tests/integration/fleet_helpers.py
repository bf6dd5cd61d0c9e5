"""Helpers for the fleet tests: Flower as a process, its HTTP API, the compose file, Chromium.

Nothing here talks to Docker: the compose file is read with PyYAML, its
``${VARIABLES}`` are substituted the way Compose does it, and its services'
commands are run as ordinary processes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestration.embedded import free_port
from orchestration.fleet import Fleet

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
OUTPUT = ROOT / "test-output"
# Variables of the developer's shell that must not reach a process started "as a service".
OWN_PREFIXES = ("CHORUS_", "ANTHROPIC_", "FLOWER_")


# --- HTTP -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, *, auth: tuple[str, str] | None = None, timeout_s: float = 5.0) -> Reply:
    """GET ``url``; an HTTP error status is a reply, not an exception."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return Reply(response.status, response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read().decode("utf-8", "replace"))


def answers(url: str) -> bool:
    try:
        return http_get(url, timeout_s=1.0).status < 500
    except OSError:
        return False


def wait_until_answers(url: str, process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers(url):
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")
        time.sleep(0.1)


def service_environ(env: Mapping[str, str]) -> dict[str, str]:
    """This machine's environment without chorus's, Flower's or the SDK's variables, plus ``env``.

    The test process itself runs with the test's CHORUS_ settings; a service
    must see only what it is given, as in its container.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    # The venv's `chorus` and `celery` first, as /usr/local/bin is in the image.
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}"
    return {**base, **env}


def start_logged(
    argv: Sequence[str], env: Mapping[str, str], log: Path, fleet: Fleet
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - lives with the process
    return fleet.add(
        subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    )


# --- Flower -----------------------------------------------------------------------------


@dataclass
class Flower:
    """A Flower process and how to reach it."""

    url: str
    auth: tuple[str, str]
    log: Path
    fleet: Fleet = field(default_factory=Fleet)

    def get(self, path: str, *, auth: bool = True) -> Reply:
        return http_get(self.url + path, auth=self.auth if auth else None)

    def api(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status == 200, f"GET {path}: {reply.status} {reply.body[:200]}"
        return reply.json()

    def alive_workers(self) -> set[str]:
        """Workers Flower believes online (it asks them through the broker)."""
        return {name for name, alive in self.api("/api/workers?status=true").items() if alive}

    def hears(self, names: set[str]) -> bool:
        """Whether Flower has had a heartbeat from every worker in ``names``."""
        body = self.get("/metrics").body
        return all(samples(body, "flower_worker_online", worker=name) == [1.0] for name in names)

    def sees_tasks_of(self, log_dir: Path, names: Sequence[str]) -> bool:
        """Whether Flower hears every worker in ``names`` and has turned their task
        events on (they start without), so it will list their tasks."""
        return task_events_on(log_dir, len(names)) and self.hears(set(names))

    def tasks(self, search: str = "") -> dict[str, dict[str, Any]]:
        query = (
            f"?limit=100000&search={urllib.request.quote(search)}" if search else "?limit=100000"
        )
        tasks: dict[str, dict[str, Any]] = self.api("/api/tasks" + query)
        return tasks

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        self.fleet.stop(timeout_s=10)


def flower_argv(app: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", app, "flower",
        "--address=127.0.0.1", f"--port={port}",
        "--tasks_columns=name,uuid,state,args,received,runtime,worker",
        *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def running_flower(
    env: Mapping[str, str],
    *,
    name: str,
    user: str = "fleet",
    password: str = "flower-test-password",
    app: str = "orchestration.flowerapp",
) -> Iterator[Flower]:
    """Flower on a free loopback port, with basic auth, started with ``env`` (the workers' env)."""
    port = free_port()
    flower = Flower(
        url=f"http://127.0.0.1:{port}",
        auth=(user, password),
        log=OUTPUT / "flower" / f"{name}-{port}.log",
    )
    process = start_logged(
        flower_argv(app, port),
        service_environ({**env, "FLOWER_BASIC_AUTH": f"{user}:{password}"}),
        flower.log,
        flower.fleet,
    )
    try:
        wait_until_answers(flower.url + "/healthcheck", process, timeout_s=30)
        yield flower
    finally:
        flower.stop()


# --- the compose file -------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(ValueError):
    """Raised when a ``${NAME:?message}`` finds NAME unset (or empty)."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Substitute ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$``."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value, op, arg = env.get(name), match["op"], match["arg"] or ""
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if missing else str(value)
        if op in ("?", ":?") and missing:
            raise MissingVariable(f"{name}: {arg or 'is not set'}")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def variables_in(text: str) -> set[str]:
    """The names of the variables ``text`` refers to (``$$`` is not one)."""
    return {m["braced"] or m["named"] for m in _VARIABLE.finditer(text) if not m["escaped"]}


def read_env_file(path: Path) -> dict[str, str]:
    """An env file as Compose reads it: NAME=value lines, # comments, values taken as written."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.partition("=")
        assert sep, f"{path}: not NAME=value: {line!r}"
        values[name.strip()] = value
    return values


def commented_settings(path: Path) -> dict[str, str]:
    """The ``# NAME=value`` lines of an env file: variables listed with their defaults.

    Exactly one space after the ``#``: an indented ``#   NAME=value`` is an
    example inside a comment, not a default.
    """
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"# ([A-Z][A-Za-z0-9_-]*)=(\S*)$", line)
        if match:
            found[match[1]] = match[2]
    return found


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def render(node: Any, env: Mapping[str, str]) -> Any:
    """The compose document with every string interpolated, as Compose sees it."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [render(item, env) for item in node]
    if isinstance(node, dict):
        return {key: render(value, env) for key, value in node.items()}
    return node


def service_env(service: Mapping[str, Any], project_dir: Path, dotenv: Mapping[str, str]) -> dict:
    """A service's container environment: its env_file(s), then its ``environment``."""
    env: dict[str, str] = {}
    env_files = service.get("env_file") or []
    for name in [env_files] if isinstance(env_files, str) else env_files:
        env.update(read_env_file(project_dir / name))
    given = service.get("environment") or {}
    if isinstance(given, list):
        given = dict(
            item.split("=", 1) if "=" in item else (item, dotenv.get(item, "")) for item in given
        )
    env.update({k: "" if v is None else str(v) for k, v in given.items()})
    return env


def with_option(argv: Sequence[str], option: str, value: str) -> list[str]:
    """``argv`` with ``option``'s value replaced, in ``--opt value`` or ``--opt=value`` form.

    Raises:
        AssertionError: the option is not there (the command changed shape).
    """
    out = list(argv)
    for index, arg in enumerate(out):
        if arg == option and index + 1 < len(out):
            out[index + 1] = value
            return out
        if arg.startswith(option + "="):
            out[index] = f"{option}={value}"
            return out
    raise AssertionError(f"{option} not in {argv}")


# --- tools that may be missing ----------------------------------------------------------


def require(found: str | None, reason: str) -> str:
    """``found``, else skip saying ``reason``; under CHORUS_E2E=1 (make e2e), fail instead."""
    if found is None:
        import pytest

        if os.environ.get("CHORUS_E2E") == "1":
            pytest.fail(f"{reason}, and make e2e needs it")
        pytest.skip(reason)
    return found


# --- Chromium ---------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Let the page's scripts run (Flower fills its task table with an AJAX call)
    # before the DOM is dumped or the screenshot taken.
    "--virtual-time-budget=10000",
)


def find_chromium() -> str | None:
    """Debian's ``chromium`` (or ``CHORUS_CHROMIUM``), if installed."""
    given = os.environ.get("CHORUS_CHROMIUM")
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(binary: str, profile: Path, *args: str, timeout_s: float = 60.0) -> str:
    """Run headless Chromium once with a fresh profile; its stdout."""
    profile.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode("utf-8", "replace")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# --- Prometheus -------------------------------------------------------------------------


def samples(text: str, metric: str, /, **labels: str) -> list[float]:
    """Values of the samples called ``metric`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric and labels.items() <= sample.labels.items()
    ]


def task_events_on(log_dir: Path, count: int) -> bool:
    """Whether Flower has turned task events on in each of ``count`` workers logging there.

    Workers start with task events off (they cost CPU while nobody watches)
    unless a Flower is already watching; Flower turns them on in every worker
    it sees (its --enable_events, every 5 s), and each worker logs it. Until
    then Flower lists no task.
    """
    logs = sorted(log_dir.glob("*.log"))
    return len(logs) == count and all(
        any(line in log.read_text(errors="replace") for line in EVENTS_ON_LINES) for log in logs
    )


# What a worker logs when its task events go on: Flower turned them on, or the
# worker started while a Flower was watching (workers.app).
EVENTS_ON_LINES = ("Events of group {task} enabled by remote", "a Flower is watching")
