"""`chorus worker --processes 2` keeps its workers' logs: failed calls and warm shutdowns.

Each test runs the ``chorus worker`` command itself, as a user would, with two
processes of two threads on a queue of its own, sends it a batch in which one
call answers 400 (the local API's script), then stops it with SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localapi import LocalAPIServer
from orchestration.batch import Batch
from orchestration.client import workers_online
from tests.integration.conftest import BRIEF, FAKE_API_KEY, OUTPUT, eventually, own_queue

TIMEOUT_S = 60


@dataclass
class Command:
    process: subprocess.Popen[bytes]
    nodes: list[str]
    stdout: Path
    stderr: Path

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


RunWorker = Callable[..., Command]


@pytest.fixture
def run_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunWorker]:
    """Start ``chorus worker --processes 2 -c 2 ARGS...`` on a queue of its own."""
    started: list[Command] = []
    queue_env = own_queue(monkeypatch, "logs")

    def run(*args: str) -> Command:
        prefix = f"logs{uuid.uuid4().hex[:4]}-"
        out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        argv = [sys.executable, "-m", "orchestration.cli", "worker", "--processes", "2",
                "-c", "2", "--name", prefix, *args]  # fmt: skip
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                argv,
                env={**os.environ, **queue_env},
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own group: nothing of it outlives the test
            )
        host = socket.gethostname()
        command = Command(process, [f"{prefix}{n}@{host}" for n in (1, 2)], out, err)
        started.append(command)
        eventually(lambda: set(command.nodes) <= set(workers_online(0.5)), timeout_s=60)
        return command

    yield run
    for command in started:
        if command.process.poll() is None:
            os.killpg(command.process.pid, signal.SIGKILL)
            command.process.wait()


def a_batch_with_one_400(local_api: LocalAPIServer) -> tuple[str, Batch]:
    """Six items, one of which the API refuses with a 400; the refused call's request id."""
    local_api.script([{"match": "item 3.", "responses": [{"status": 400, "message": "no good"}]}])
    batch = Batch.submit(
        [{"id": f"i{n}", "prompt": f"Summarise item {n}."} for n in range(6)], **BRIEF
    )
    status = batch.wait(TIMEOUT_S)
    assert status.finished and status.count("failed") == 1 and status.count("complete") == 5
    [failed] = list(batch.results(failed_only=True))
    request_id: str = failed["error"]["request_id"]
    assert request_id.startswith("req_")
    return request_id, batch


def failed_call_line(request_id: str) -> re.Pattern[str]:
    """The worker's line for the refused call (workers.call.log_unless_complete)."""
    return re.compile(
        r"WARNING/MainProcess\] call failed after 1 attempt: invalid_request_error "
        rf"\(HTTP 400, request id {request_id}\): no good \[task [0-9a-f-]+, claude-[a-z0-9-]+\]$"
    )


def test_with_a_log_dir_each_process_logs_to_its_own_file_a_failed_call_included(
    run_worker: RunWorker, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    logs = OUTPUT / "workers" / f"logdir-{uuid.uuid4().hex[:6]}"
    # Given `chorus worker --processes 2 --log-dir DIR`
    command = run_worker("--log-dir", str(logs))
    names = [node.partition("@")[0] for node in command.nodes]
    files = [logs / f"{name}.log" for name in names]

    # Then it said where the logs go, in one line
    said = command.stderr.read_text().splitlines()
    assert said[0] == (
        f"chorus: starting 2 worker processes ({names[0]}..{names[1]}); logs: "
        f"{logs}/{names[0]}.log .. {names[1]}.log, rotated at 10 MiB (5 kept)"
    )

    # When a batch runs in which one call answers 400
    request_id, _ = a_batch_with_one_400(local_api)

    # Then that call's error line, with its type, status and request id, is in a
    # log file, once
    line = failed_call_line(request_id)
    found = [
        (path.name, text)
        for path in files
        for text in path.read_text().splitlines()
        if line.search(text)
    ]
    assert len(found) == 1, [p.read_text()[-2000:] for p in files]

    # And when it is stopped, each process's warm shutdown is in its own file
    assert command.stop() == 0
    for path, node in zip(files, command.nodes, strict=True):
        text = path.read_text()
        assert f"{node} ready." in text
        assert "Warm shutdown" in text
        assert FAKE_API_KEY not in text
    assert command.stdout.read_text() == ""  # nothing else on the terminal


def test_without_a_log_dir_the_terminal_gets_every_line_led_by_its_node_name(
    run_worker: RunWorker, local_api: LocalAPIServer
) -> None:
    # Given `chorus worker --processes 2` with no log dir
    command = run_worker()
    names = [node.partition("@")[0] for node in command.nodes]
    assert command.stderr.read_text().splitlines()[0] == (
        f"chorus: starting 2 worker processes ({names[0]}..{names[1]}); "
        "their logs follow on stdout, each line led by its node name"
    )

    # When a batch runs in which one call answers 400, and the command is stopped
    request_id, _ = a_batch_with_one_400(local_api)
    assert command.stop() == 0

    # Then its stdout holds both workers' lines, each led by its node's name,
    # the failed call's line among them
    lines = command.stdout.read_text().splitlines()
    leads = {line.partition(" | ")[0].rstrip() for line in lines}
    assert leads == set(names)
    line = failed_call_line(request_id)
    assert sum(1 for text in lines if line.search(text)) == 1
    for name, node in zip(names, command.nodes, strict=True):
        assert any(text.startswith(f"{name} | ") and f"{node} ready." in text for text in lines)
        assert any(text.startswith(f"{name} | ") and "Warm shutdown" in text for text in lines)
