"""Workers whose clocks are minutes apart hold a rate limit the same as workers in step."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, start_test_workers
from tests.integration.faults.conftest import TIMEOUT_S, fleet, items

SKEWED_CLOCK = """
import os, time
_skew = float(os.environ.get("CHORUS_TEST_CLOCK_SKEW_S", "0"))
if _skew:
    _time, _time_ns = time.time, time.time_ns
    time.time = lambda: _time() + _skew
    time.time_ns = lambda: _time_ns() + int(_skew * 1e9)
"""


def test_workers_with_skewed_clocks_hold_the_limit_the_same(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
    tmp_path: Path,
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SKEWED_CLOCK)
    check = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "CHORUS_TEST_CLOCK_SKEW_S": "-300"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert abs(float(check.stdout) - time.time() + 300) < 5  # the skew is real

    local_api.configure(rpm=600)
    limit = {
        "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": "600",
        "CHORUS_RETRY__MAX_ATTEMPTS": "1",
        # kombu decides which unacknowledged messages are overdue by each
        # worker's own clock: skew must stay below the visibility timeout
        # (docs/RELIABILITY.md). The limiter needs no such care.
        "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "3600",
        "CHORUS_WORKER__TASK_TIME_LIMIT_S": "120",
    }
    try:
        with fleet(chorus_env, monkeypatch, prefix="skew", extra=limit, start=False) as (
            env,
            started,
        ):
            for skew in ("300", "-300"):
                started.append(
                    start_test_workers(
                        {**env, "PYTHONPATH": str(tmp_path), "CHORUS_TEST_CLOCK_SKEW_S": skew},
                        1,
                        prefix=f"skew{skew.strip('-')}{'m' if skew.startswith('-') else 'p'}",
                        concurrency=20,
                    )
                )
            # Fifteen times what the API's one-second bucket holds.
            batch = Batch.submit(items(150), **BRIEF)
            status = batch.wait(TIMEOUT_S)
    finally:
        local_api.configure(rpm=None)

    assert status.count("complete") == 150, (status.errors, local_api.stats()["by_status"])
    assert local_api.stats()["rate_limited"] == 0
    assert status.rate_limit_wait_s > 1.0
