"""Faults: kill workers, restart Redis, break the provider, feed bad input.

Each promise of docs/RELIABILITY.md is a test in this folder, one file per
fault: nothing is lost, nothing is paid for twice, no secret leaks. Witnesses:
the batch ledger (each item ends once) and the local API's own counts (what was
paid for). Shared here: the short timings, a fleet of workers on a queue of its
own, and honest billing for every test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import Workers, start_test_workers
from workers.app import reconfigure

# Short enough for tests: a dead worker's messages come back within
# visibility (10 s) + the restore sweep (1 s).
FAST = {
    "CHORUS_WORKER__TASK_TIME_LIMIT_S": "6",
    "CHORUS_RETRY__MAX_WAIT_S": "2",
    "CHORUS_RETRY__MAX_DELAY_S": "0.5",
    "CHORUS_RETRY__BASE_DELAY_S": "0.05",
    "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "10",
    "CHORUS_WORKER__RESTORE_INTERVAL_S": "1",
    "CHORUS_ANTHROPIC__REQUEST_TIMEOUT_S": "4",
}
TIMEOUT_S = 90


def items(count: int, text: str = "Summarise note {i}.") -> list[dict[str, Any]]:
    return [{"id": f"item-{i:03d}", "prompt": text.format(i=i)} for i in range(count)]


@contextmanager
def fleet(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    count: int = 1,
    prefix: str = "fault",
    concurrency: int = 10,
    pool: str | None = None,
    extra: dict[str, str] | None = None,
    start: bool = True,
) -> Iterator[tuple[dict[str, str], list[Workers]]]:
    """Workers on a queue of their own, with ``extra`` settings also set in this process."""
    env = {**chorus_env, **FAST, "CHORUS_WORKER__QUEUE": f"{prefix}-{uuid.uuid4().hex[:6]}"}
    env.update(extra or {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reconfigure()
    started: list[Workers] = []
    try:
        if start:
            started.append(
                start_test_workers(env, count, prefix=prefix, concurrency=concurrency, pool=pool)
            )
        yield env, started
    finally:
        for workers in started:
            workers.fleet.stop()


@pytest.fixture(autouse=True)
def honest_billing(local_api: LocalAPIServer) -> None:
    """A call whose client went away is finished and billed, as the real API may do:
    every "paid twice" here is counted by a witness that does not forgive."""
    local_api.configure(honest_billing=True)


def results_by_id(batch: Batch) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in batch.results()}
