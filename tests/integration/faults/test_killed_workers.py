"""A killed worker's items run again and end once; one that kills every time is dead-lettered."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, eventually, start_test_workers
from tests.integration.faults.conftest import TIMEOUT_S, fleet, items, results_by_id


def test_a_killed_threads_worker_s_items_run_again_once(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    local_api.configure(latency_ms=1500)
    with fleet(chorus_env, monkeypatch, prefix="victim", concurrency=10) as (env, (victim,)):
        # Given a batch whose calls the victim worker holds in flight
        batch = Batch.submit(items(20), **BRIEF)
        eventually(lambda: local_api.stats()["in_flight"] >= 10)
        # When the whole worker process is killed mid-call, and another one started
        in_flight_at_kill = local_api.stats()["in_flight"]
        os.kill(victim.fleet.processes[0].pid, signal.SIGKILL)
        survivor = start_test_workers(env, 1, prefix="survivor", concurrency=20)
        try:
            status = batch.wait(TIMEOUT_S)
        finally:
            survivor.fleet.stop()
            local_api.configure(latency_ms=20)

    # Then every item ended exactly once, the killed ones on a second delivery
    records = results_by_id(batch)
    assert status.count("complete") == 20 and len(records) == 20
    redelivered = [r for r in records.values() if r["delivery"] == 2]
    assert len(redelivered) >= 10
    # The killed calls were finished and billed by the honest API, then paid again:
    # paid twice, at most the calls in flight at the kill.
    stats = local_api.stats()
    assert 0 < stats["abandoned_billed"] <= min(in_flight_at_kill, len(redelivered))
    assert stats["duplicates_paid"] == stats["abandoned_billed"]
    assert stats["paid"] == 20 + stats["duplicates_paid"]


def _children(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def test_a_killed_prefork_child_s_item_is_requeued_at_once(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "slow one", "responses": [{"text": "done", "latency_ms": 2500}]}])
    with fleet(chorus_env, monkeypatch, prefix="prefork", concurrency=2, pool="prefork") as (
        _,
        (workers,),
    ):
        batch = Batch.submit(items(1, "The slow one."), **BRIEF)
        eventually(lambda: local_api.stats()["in_flight"] == 1)
        started = time.monotonic()
        for child in _children(workers.fleet.processes[0].pid):
            child.kill()  # one of them holds the call; the parent replaces both
        status = batch.wait(TIMEOUT_S)
        took_s = time.monotonic() - started

    (record,) = batch.results()
    assert status.count("complete") == 1, record
    assert record["delivery"] == 2 and record["text"] == "done"
    # Celery saw the child die and requeued at once: well within the visibility timeout.
    assert took_s < 10
    # The killed child's call was billed all the same (honest billing), then paid again.
    stats = local_api.stats()
    assert stats["paid"] == 2 and stats["duplicates_paid"] == stats["abandoned_billed"] == 1


def test_an_item_that_kills_its_worker_every_time_is_dead_lettered(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "poison", "responses": [{"text": "never", "latency_ms": 20000}]}])
    extra = {"CHORUS_WORKER__MAX_DELIVERIES": "2"}
    with fleet(
        chorus_env, monkeypatch, prefix="poison", concurrency=1, pool="prefork", extra=extra
    ) as (_, (workers,)):
        batch = Batch.submit([*items(3), {"id": "poison", "prompt": "The poison pill."}], **BRIEF)
        kills = 0
        while not batch.progress().finished and kills < 5:
            if local_api.stats()["in_flight"] and batch.progress().count("complete") == 3:
                for child in _children(workers.fleet.processes[0].pid):
                    child.kill()
                kills += 1
                eventually(lambda: local_api.stats()["in_flight"] == 0)
            time.sleep(0.05)
        status = batch.wait(TIMEOUT_S)

    records = results_by_id(batch)
    assert kills == 2  # two deliveries died with their worker; the third was not attempted
    assert status.finished and status.count("complete") == 3 and status.count("failed") == 1
    assert records["poison"]["error"]["type"] == "dead_lettered"
    assert "delivered 2 times" in records["poison"]["error"]["message"]
    assert status.errors == {"dead_lettered": 1}
    assert len(local_api.requests_log(contains="poison")) == 2
