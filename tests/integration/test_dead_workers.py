"""A dead worker's items run again within seconds, once each, against an API that bills honestly.

The visibility timeout stays at its default (an hour): what brings the items
back is chorus's sweeper (workers/sweeper.py), not kombu's restore. The local
API runs in honest billing mode: a call whose client went away is finished
and billed, as the real API may do, so "paid twice" is counted by a witness
that does not forgive.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import (
    BRIEF,
    chorus,
    eventually,
    own_queue,
    start_test_workers,
)
from workers.sweeper import HOLDER_TTL_S, SWEEP_EVERY_S, UNACKED, holders_key

CALL_S = 8.0  # under the tests' 10 s request timeout
ITEMS = 5
# The sweeper's own bound (a dead worker's list lapses, then two sweeps), with room
# for a loaded two-core machine.
BACK_WITHIN_S = 30.0
ROOMY_LIMITS = {
    "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": "4000",
    "CHORUS_LIMITS__SONNET__INPUT_TOKENS_PER_MINUTE": "2000000",
    "CHORUS_LIMITS__SONNET__OUTPUT_TOKENS_PER_MINUTE": "400000",
}


@pytest.mark.slow
def test_a_killed_workers_items_run_again_within_seconds_and_are_paid_twice_at_most_once_each(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    assert float(chorus_env["CHORUS_WORKER__VISIBILITY_TIMEOUT_S"]) >= 3600
    local_api.configure(latency_ms=CALL_S * 1000, honest_billing=True)
    # Limits well above 5 calls at once: all five are in flight when the worker dies.
    env = {**own_queue(monkeypatch, "dead"), **ROOMY_LIMITS}

    # Given one worker holding 5 calls that take 8 s each
    victim = start_test_workers(chorus_env, 1, prefix="victim", extra_env=env, concurrency=10)
    survivor = None
    try:
        batch = Batch.submit(
            [{"id": f"d-{i}", "prompt": f"Dead worker item {i}: summarise."} for i in range(ITEMS)],
            **BRIEF,
        )
        eventually(lambda: local_api.stats()["in_flight"] == ITEMS, timeout_s=30)
        time.sleep(2)
        in_flight_at_kill = local_api.stats()["in_flight"]

        # When its process is killed outright, and a second worker is started
        os.kill(victim.fleet.processes[0].pid, signal.SIGKILL)
        killed_at = time.time()
        survivor = start_test_workers(
            chorus_env, 1, prefix="survivor", extra_env=env, concurrency=10
        )
        try:
            status = batch.wait(BACK_WITHIN_S + CALL_S + 30)
        except TimeoutError:  # what the sweeper saw, for the report
            print("holders:", redis_client.hgetall(holders_key()))
            print("unacknowledged:", list(redis_client.hkeys(UNACKED)))
            raise
    finally:
        if survivor is not None:
            survivor.fleet.stop()
        victim.fleet.stop()

    # Then every item ended complete, once, on its second delivery
    assert (status.count("complete"), status.ended) == (ITEMS, ITEMS)
    records = {r["id"]: r for r in batch.results()}
    assert {r["delivery"] for r in records.values()} == {2}
    # And `chorus status` says why
    assert status.restored == ITEMS
    shown = chorus("status", batch.id)
    assert (
        "restored" in shown.stdout and f"{ITEMS} sent again after their worker died" in shown.stdout
    )
    # And each was sent again within the sweeper's bound, not the visibility timeout
    again = [e["t"] for e in local_api.requests_log("Dead worker item") if e["t"] > killed_at]
    assert len(again) == ITEMS
    assert max(again) - killed_at < BACK_WITHIN_S, (max(again) - killed_at, HOLDER_TTL_S)
    assert max(again) - killed_at > HOLDER_TTL_S - SWEEP_EVERY_S  # it waited for the lease
    # And nothing is left unacknowledged
    assert redis_client.hlen(UNACKED) == 0
    # And the honest witness: the killed calls were finished and billed, so each
    # item was paid twice, no more than the calls in flight at the kill
    stats = local_api.stats()
    assert stats["abandoned_billed"] == in_flight_at_kill == ITEMS
    assert stats["paid"] == 2 * ITEMS
    assert stats["duplicates_paid"] <= in_flight_at_kill
