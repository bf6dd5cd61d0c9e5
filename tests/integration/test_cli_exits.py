"""Every `chorus` command ends cleanly: a clear line and an exit status, never a traceback.

Each runs in a process of its own, as a user runs it, with stdout and stderr
piped (so progress is the plain view, not the live bar).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import pytest
import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, Workers, chorus, own_queue


def clean(stderr: str) -> bool:
    """No Python traceback, not even one printed while the interpreter shut down."""
    return "Traceback" not in stderr and "Exception ignored" not in stderr


def gave_up(done: subprocess.CompletedProcess[str], *said: str) -> None:
    """The command gave up with status 1, saying each of ``said``, without a traceback."""
    assert done.returncode == 1, done.stderr
    for text in said:
        assert text in done.stderr, done.stderr
    assert clean(done.stderr), done.stderr


def queued(client: redis.Redis, queue: str) -> list[bytes]:
    """Every message in the queue's lists (kombu keeps one per priority level)."""
    names = [k for k in client.scan_iter(match=f"{queue}*") if k.startswith(queue.encode())]
    return [m for name in names if client.type(name) == b"list" for m in client.lrange(name, 0, -1)]


def test_version_and_mock_api_help_exit_cleanly() -> None:
    shown = chorus("--version")
    assert (shown.returncode, shown.stdout.strip(), shown.stderr) == (
        0,
        f"chorus {version('chorus')}",
        "",
    )

    helped = chorus("mock-api", "--help")
    assert helped.returncode == 0 and helped.stderr == ""
    assert "Usage: chorus mock-api [OPTIONS]" in helped.stdout
    assert re.search(r"--latency-ms .*\n.*\[default: 100\.0", helped.stdout), helped.stdout


def test_mock_api_serves_under_click_and_stops_cleanly_on_sigterm() -> None:
    command = [sys.executable, "-m", "orchestration.cli", "mock-api", "--port", "0"]
    command += ["--latency-ms", "0", "--rpm", "60", "--rate-pause-turn", "0.1"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        banner = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert banner.startswith("local Anthropic API on http://127.0.0.1:"), banner
    assert "limits: rpm 60, faults: pause_turn 10.0%" in banner
    assert process.returncode == 0 and clean(stderr), stderr


def test_a_call_with_no_worker_says_so_within_seconds_and_leaves_nothing_queued(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    queue = own_queue(monkeypatch, "noworker")["CHORUS_WORKER__QUEUE"]

    started = time.monotonic()
    done = chorus("call", "Is anyone there?")
    took = time.monotonic() - started

    gave_up(done, f"no worker consumes the queue {queue!r}, so the call was not sent",
            "--wait-for-worker")  # fmt: skip
    assert took < 10, f"{took:.1f} s"
    assert queued(redis_client, queue) == []


def test_a_call_told_to_wait_for_a_worker_is_taken_off_the_queue_when_none_came(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    queue = own_queue(monkeypatch, "noworker")["CHORUS_WORKER__QUEUE"]

    done = chorus("call", "Is anyone there?", "--wait-for-worker", "--timeout", "1")

    gave_up(
        done,
        "waiting up to 1 s for one to start",
        "no answer within 1 s; no worker had taken the call: it was taken off the queue, "
        "nothing was sent",
    )
    assert queued(redis_client, queue) == []


def test_a_call_a_worker_runs_past_the_timeout_ends_cleanly_and_says_what_became_of_it(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "Think slowly", "responses": [{"latency_ms": 4000}]}])

    done = chorus("call", "Think slowly.", "--timeout", "1", *_brief())

    gave_up(done, "no answer within 1 s; a worker had taken the call", "answered from the store")


def test_wait_with_a_timeout_on_a_batch_that_cannot_finish(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    own_queue(monkeypatch, "stuck")  # no worker consumes it
    Batch.submit([{"id": f"r{i}", "prompt": f"Review {i}"} for i in range(3)], name="stuck")

    started = time.monotonic()
    done = chorus("wait", "stuck", "--timeout", "1")

    gave_up(
        done,
        "(stuck): 0/3 ended (0%)",  # piped: the plain progress line, not a live bar
        "chorus: batch stuck not done within 1 s; it goes on: `chorus wait stuck` follows it "
        "again, `chorus cancel stuck` stops it",
    )
    assert time.monotonic() - started < 15


def test_ctrl_c_while_following_says_the_batch_goes_on_and_exits_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own_queue(monkeypatch, "stuck")
    Batch.submit([{"id": "r1", "prompt": "Review 1"}], name="followed")

    command = [sys.executable, "-m", "orchestration.cli", "wait", "followed"]
    with subprocess.Popen(
        command, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        first = process.stderr.readline()  # the first progress line: it is following
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=20)

    assert "(followed): 0/1 ended" in first, first + rest
    assert process.returncode == 130, rest
    assert (
        "chorus: stopped following batch followed; it goes on: `chorus wait followed` follows "
        "it again, `chorus cancel followed` stops it"
    ) in rest
    assert clean(rest), rest


def _brief() -> list[str]:
    return ["--max-tokens", str(BRIEF["max_tokens"]), "--effort", str(BRIEF["effort"])]


# Commands whose clean exit another test checks: vote and section (test_patterns.py),
# demo (test_demo.py), worker (test_worker_logs.py), and the ones above.
CHECKED_ELSEWHERE = {"vote", "section", "demo", "worker", "mock-api", "call", "wait"}


def test_every_other_command_ends_cleanly_on_a_normal_run(workers: Workers, tmp_path: Path) -> None:
    from orchestration.cli import main

    items = tmp_path / "items.jsonl"
    items.write_text("".join(f'{{"id": "c{i}", "prompt": "Clean exit {i}."}}\n' for i in range(3)))
    notes = tmp_path / "notes.md"
    notes.write_text("A short note about harbours.")
    brief = ["--max-tokens", str(BRIEF["max_tokens"]), "--effort", BRIEF["effort"]]
    submit = ("submit", str(items), "--name", "clean", "--wait", *brief)
    # Commands that read (or, fanout, write nothing of the batch's): run side by side,
    # two at a time, as each is mostly Python starting up.
    readers = [
        ("status", "clean"),
        ("status", "clean", "--json"),
        ("ls",),
        ("results", "clean", "-o", str(tmp_path / "out.jsonl")),
        ("results", "clean", "--format", "batches"),
        ("limits",),
        ("limits", "--live", "--once"),
        ("fanout", "--aspect", "history", "--synthesize", "One line.", str(notes), *brief),
        ("redis", "status"),
    ]
    writers = [("retry", "clean"), ("resume", "clean"), ("cancel", "clean"), ("rm", "clean")]
    runs = [submit, *readers, *writers]

    def ends_cleanly(args: tuple[str, ...]) -> None:
        done = chorus(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert clean(done.stderr), (args, done.stderr)

    ends_cleanly(submit)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(ends_cleanly, readers))
    for args in writers:
        ends_cleanly(args)

    covered = {args[0] for args in runs} | CHECKED_ELSEWHERE
    assert set(main.commands) <= covered, set(main.commands) - covered
