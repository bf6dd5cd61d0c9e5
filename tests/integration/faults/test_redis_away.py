"""Redis not there: every entry point says so clearly, and a cut-off enqueue can be finished."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from localapi import LocalAPIServer
from orchestration import submission
from orchestration.batch import Batch, StateUnavailable
from orchestration.embedded import free_port
from tests.integration.conftest import BRIEF, Workers, chorus
from tests.integration.faults.conftest import TIMEOUT_S, items
from workers.app import reconfigure


def test_commands_refuse_to_start_without_redis(tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {**os.environ, "CHORUS_BROKER_URL": dead}
    source = tmp_path / "items.jsonl"
    source.write_text('{"prompt": "hello"}\n')

    for args in (("worker",), ("submit", str(source)), ("status", "any")):
        done = chorus(*args, env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip() == f"chorus: Redis at {dead} (CHORUS_BROKER_URL) does not answer"


def test_a_celery_worker_without_redis_retries_with_backoff_and_says_so() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {**os.environ, "CHORUS_BROKER_URL": dead}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "--pool",
            "threads",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "Trying again in" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=15)

    log = "".join(lines)
    assert "Cannot connect to redis://" in log and "Connection refused" in log
    assert "Trying again in" in log and "/100)" in log  # a bounded number of attempts


def test_the_python_api_says_nothing_was_enqueued_when_redis_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHORUS_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    reconfigure()

    with pytest.raises(StateUnavailable, match=r"cannot be reached .*; nothing was enqueued"):
        Batch.submit(items(3), **BRIEF)


def test_a_batch_cut_off_mid_enqueue_is_known_to_the_ledger_and_finished_by_resubmitting(
    workers: Workers, local_api: LocalAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_publish = submission.publish
    calls = {"n": 0}

    def publish_then_fail(batch_id: str, batch_items: Any, vote: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise redis.ConnectionError("Redis went away")
        real_publish(batch_id, batch_items, vote, **kw)

    monkeypatch.setattr(submission, "publish", publish_then_fail)
    with pytest.raises(
        StateUnavailable, match="submit the same input again with --name b-"
    ) as caught:
        Batch.submit(items(1500), **BRIEF)
    batch_id = str(caught.value).split("--name ")[1].split()[0]
    status = Batch.get(batch_id).progress()
    assert status.state == "enqueuing" and status.enqueued == 1000 and status.total == 1500

    monkeypatch.setattr(submission, "publish", real_publish)
    again = Batch.submit(items(1500), **BRIEF, name=batch_id)
    final = again.wait(TIMEOUT_S)

    assert again.id == batch_id
    assert final.finished and final.count("complete") == 1500
    assert local_api.stats()["paid"] == 1500
