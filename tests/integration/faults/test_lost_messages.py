"""Items whose messages vanished from the broker are sent again by the producer waiting on them."""

from __future__ import annotations

import pytest
import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, eventually, start_test_workers
from tests.integration.faults.conftest import TIMEOUT_S, fleet, items


def test_items_whose_messages_were_lost_are_sent_again_by_the_waiting_producer(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    # Short timings: a dead worker's messages would be back within 2 s + 2 x 1 s.
    quick = {
        "CHORUS_WORKER__TASK_TIME_LIMIT_S": "1",
        "CHORUS_RETRY__MAX_WAIT_S": "0.5",
        "CHORUS_RETRY__MAX_DELAY_S": "0.5",
        "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "2",
    }
    with fleet(chorus_env, monkeypatch, prefix="lost", extra=quick, start=False) as (env, started):
        # Given a batch whose messages vanished from the broker (no worker ran them)
        batch = Batch.submit(items(5), **BRIEF)
        assert redis_client.delete(env["CHORUS_WORKER__QUEUE"]) == 1
        assert not batch.lost()  # too soon: they might still come back

        # Then, once the ledger has been quiet past the visibility timeout, they are lost
        eventually(batch.lost, timeout_s=15, interval_s=0.2)
        started.append(start_test_workers(env, 1, prefix="lost", concurrency=5))
        status = batch.wait(TIMEOUT_S)  # ...and the waiting producer sends them again

    assert status.count("complete") == 5
    assert local_api.stats()["paid"] == 5
