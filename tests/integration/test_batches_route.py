"""The Message Batches route (``--route batches``, workers.batches_api) against the local API:
every item ends, in input order, at half price; what expired or errored is sent again,
alone; a cancel reaches the API; an answer paid for in real time is not paid again."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from config.settings import get_settings
from localapi import LocalAPIServer
from localapi.stats import list_price
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, Workers, eventually

pytestmark = pytest.mark.integration

TIMEOUT_S = 120
ROUTE = {**BRIEF, "route": "batches"}


def items(n: int, text: str = "Label review {i} in one word.") -> list[dict[str, Any]]:
    return [{"id": f"r{i:04d}", "prompt": text.format(i=i)} for i in range(n)]


def test_two_thousand_items_go_through_the_batches_api_at_half_price_in_input_order(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.configure(batch_processing_s=1.0)

    batch = Batch.submit(items(2000), **ROUTE)
    status = batch.wait(TIMEOUT_S)

    assert status.finished and status.count("complete") == 2000, status
    assert status.route == "batches"
    stats = local_api.stats()
    assert stats["batches_created"] == 1 and stats["batch_paid"] == 2000
    assert stats["by_status"].get("200", 0) == 0  # not one Messages API call
    # The ledger's cost is the API's bill, and that is half the list price.
    price = list_price(get_settings().anthropic.default_model)
    assert price is not None
    full = (
        stats["input_tokens"] * price.input_per_mtok
        + stats["output_tokens"] * price.output_per_mtok
    ) / 1e6
    assert status.cost_usd == pytest.approx(stats["cost_usd"], abs=1e-6)
    assert stats["cost_usd"] == pytest.approx(full / 2)
    # Results in input order, in both formats.
    ids = [f"r{i:04d}" for i in range(2000)]
    records = list(batch.results())
    assert [r["id"] for r in records] == ids and all(r["ok"] for r in records)
    assert all(r["usage"]["service_tier"] == "batch" for r in records[:5])
    lines = list(batch.results(fmt="batches"))
    assert [line["custom_id"] for line in lines] == ids
    assert {line["result"]["type"] for line in lines} == {"succeeded"}


def test_only_what_expired_or_errored_is_sent_again_and_nothing_is_paid_twice(
    workers: Workers, local_api: LocalAPIServer, redis_client: redis.Redis
) -> None:
    local_api.configure(batch_processing_s=0.3, batch_rate_expired=0.2, batch_rate_errored=0.15)

    batch = Batch.submit(items(300), **ROUTE)
    status = batch.wait(TIMEOUT_S)

    assert status.finished and status.ended == 300
    upstream = batch.ledger.upstream(batch.id)
    assert len(upstream) >= 2  # a first batch, then the ones sent again
    first, *again = sorted(upstream.values(), key=lambda u: -len(u["indexes"]))
    not_succeeded = first["counts"].get("expired", 0) + first["counts"].get("errored", 0)
    assert len(first["indexes"]) == 300 and not_succeeded > 0
    assert again and len(again[0]["indexes"]) == not_succeeded  # those alone
    stats = local_api.stats()
    # Every complete item was paid once; nothing that succeeded went again.
    assert stats["batch_paid"] == status.count("complete") and stats["duplicates_paid"] == 0
    # What still failed after the rounds says why.
    for record in batch.results(failed_only=True):
        assert record["error"]["type"] in ("expired", "api_error"), record


def test_a_cancel_reaches_the_api_and_the_items_end_cancelled(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.configure(batch_processing_s=60.0)
    batch = Batch.submit(items(20), **ROUTE)
    eventually(lambda: batch.ledger.upstream(batch.id), timeout_s=30)

    batch.cancel()
    status = batch.wait(TIMEOUT_S)

    assert status.finished
    assert status.count("cancelled") + status.count("complete") == 20
    assert status.count("cancelled") > 0
    [record] = batch.ledger.upstream(batch.id).values()
    assert record["counts"].get("canceled", 0) == status.count("cancelled")


def test_an_answer_paid_for_in_real_time_is_not_sent_to_the_batches_api(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    first = Batch.submit(items(5), **BRIEF)
    assert first.wait(TIMEOUT_S).count("complete") == 5
    paid = local_api.stats()["paid"]

    again = Batch.submit(items(5), **ROUTE)
    status = again.wait(TIMEOUT_S)

    assert status.count("complete") == 5 and status.from_store == 5
    stats = local_api.stats()
    assert stats["paid"] == paid and stats["batches_created"] == 0


def test_the_batches_route_takes_no_vote_yet() -> None:
    from orchestration.batchfile import BatchInputError

    with pytest.raises(BatchInputError, match="--route batches takes no --vote"):
        Batch.submit(items(2), vote=3, **ROUTE)
    with pytest.raises(BatchInputError, match="route: realtime, batches or auto"):
        Batch.submit(items(2), **{**ROUTE, "route": "carrier-pigeon"})


def test_chorus_submit_route_batches_in_the_command(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Any
) -> None:
    from tests.integration.conftest import chorus

    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in items(3)))

    done = chorus("submit", str(path), "--route", "batches", "--deadline", "2h", "--effort", "low",
                  "--max-tokens", str(BRIEF["max_tokens"]), "--wait")  # fmt: skip

    assert done.returncode == 0, done.stderr
    batch = Batch.get(done.stdout.strip())
    status = batch.progress()
    assert status.route == "batches" and status.count("complete") == 3, list(batch.results())
    assert status.deadline_at is not None
    [upstream_id] = batch.ledger.upstream(batch.id)
    shown = chorus("status", batch.id)
    assert "Message Batches API (half price), deadline in 2.0 h" in shown.stdout, shown.stdout
    assert f"{upstream_id}: read, 3 items (succeeded 3)" in shown.stdout, shown.stdout
    as_json = json.loads(chorus("status", batch.id, "--json").stdout)
    assert as_json["route"] == "batches" and upstream_id in as_json["message_batches"]


@pytest.mark.slow
def test_the_poller_s_worker_killed_mid_batch_another_takes_over_nothing_paid_twice(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
) -> None:
    import os
    import signal

    from tests.integration.conftest import own_queue, start_test_workers

    local_api.configure(batch_processing_s=8.0)
    env = own_queue(monkeypatch, "poller")
    victim = start_test_workers(chorus_env, 1, prefix="poller", extra_env=env, concurrency=4)
    survivor = None
    try:
        batch = Batch.submit(items(50), **ROUTE)
        # The Message Batch exists and is being polled: its id is in the ledger.
        eventually(lambda: batch.ledger.upstream(batch.id), timeout_s=30)
        eventually(
            lambda: next(iter(batch.ledger.upstream(batch.id).values()))["polls"] >= 2,
            timeout_s=30,
        )

        os.kill(victim.fleet.processes[0].pid, signal.SIGKILL)
        survivor = start_test_workers(chorus_env, 1, prefix="taker", extra_env=env, concurrency=4)
        status = batch.wait(TIMEOUT_S)
    finally:
        victim.fleet.stop()
        if survivor is not None:
            survivor.fleet.stop()

    assert status.finished and status.count("complete") == 50
    stats = local_api.stats()
    assert stats["batches_created"] == 1  # polled on, not sent again
    assert stats["batch_paid"] == 50 and stats["duplicates_paid"] == 0


# --route auto: the producer's limits say 120 requests a minute (2 a second), so a
# 20 s deadline plans 2 x 20 x 0.75 = 30 of 90 items in real time.
AUTO = {**BRIEF, "route": "auto", "deadline_s": 20.0}


@pytest.fixture
def two_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE", "120")
    get_settings.cache_clear()


def test_auto_sends_what_the_limit_finishes_in_real_time_and_the_rest_at_half_price(
    workers: Workers, local_api: LocalAPIServer, two_a_second: None
) -> None:
    local_api.configure(batch_processing_s=1.0)
    batch = Batch.submit(items(90), **AUTO)
    status = batch.wait(TIMEOUT_S)

    assert status.count("complete") == 90
    assert status.plan is not None
    assert (status.plan["realtime"], status.plan["batches"]) == (30, 60)
    assert status.plan["limit"] == "requests"
    stats = local_api.stats()
    # A third in real time at full price, the rest through one Message Batch at half.
    assert stats["batch_paid"] == 60 and stats["paid"] == 90 and stats["duplicates_paid"] == 0
    assert status.pulled_back == 0
    assert status.cost_usd == pytest.approx(stats["cost_usd"], abs=90e-6)
    # chorus status says the split and why.
    from rich.console import Console

    from orchestration.progress import status_table

    console = Console(record=True, width=200)
    console.print(status_table(status, batch.ledger.upstream(batch.id)))
    shown = console.export_text()
    assert "30 in real time, 60 through the Message Batches API: the requests limit" in shown


def test_auto_takes_back_what_a_slow_message_batch_has_not_answered_and_ends_in_time(
    workers: Workers, local_api: LocalAPIServer, two_a_second: None
) -> None:
    local_api.configure(batch_processing_s=120.0)  # far past the deadline
    batch = Batch.submit(items(90), **AUTO)
    status = batch.wait(TIMEOUT_S)

    assert status.count("complete") == 90
    assert status.ended_at is not None and status.deadline_at is not None
    assert status.ended_at < status.deadline_at
    [record] = batch.ledger.upstream(batch.id).values()
    assert record["pulled"] is True
    canceled = record["counts"].get("canceled", 0)
    assert canceled > 0 and status.pulled_back == canceled
    stats = local_api.stats()
    # What the Message Batch answered before the cancel was paid there, once; the rest
    # in real time, once.
    assert stats["batch_paid"] == 60 - canceled
    assert stats["paid"] == 90 and stats["duplicates_paid"] == 0
    # Metrics tell the routes apart.
    from prometheus_client import CollectorRegistry, generate_latest

    from orchestration.metrics import ChorusCollector
    from tests.integration.fleet_helpers import samples

    registry = CollectorRegistry()
    registry.register(ChorusCollector(get_settings()))
    text = generate_latest(registry).decode()
    of = {"batch": batch.id, "name": ""}
    assert samples(text, "chorus_batch_info", **of, state="done", route="auto") == [1.0]
    assert samples(text, "chorus_batch_pulled_back_items", **of) == [float(canceled)]
    assert samples(text, "chorus_batch_message_batch_items", **of, status="read") == [60.0]


def test_auto_needs_a_deadline() -> None:
    from orchestration.batchfile import BatchInputError

    with pytest.raises(BatchInputError, match="--route auto needs a --deadline"):
        Batch.submit(items(2), route="auto", **BRIEF)


def test_a_budget_on_the_batches_route_reserves_each_worst_case_at_half_price(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    # The worst case of each item (its input, 256 output tokens) at the Batches price is
    # about $0.0013 on Sonnet 5.5: $0.026 holds about 20 of the 40.
    local_api.configure(batch_processing_s=0.3)
    batch = Batch.submit(items(40), max_cost_usd=0.026, **ROUTE)
    status = batch.wait(TIMEOUT_S)

    complete, skipped = status.count("complete"), status.count("skipped_budget")
    assert complete + skipped == 40
    assert 15 <= complete <= 25, (complete, skipped)
    # Only what the budget held was sent; the reservations were all given back.
    stats = local_api.stats()
    assert stats["batch_paid"] == complete and stats["paid"] == complete
    assert status.reserved_usd == 0 and status.cost_usd <= 0.026
    for record in batch.results(failed_only=True):
        assert record["error"]["type"] == "budget_exceeded", record


def test_a_poll_cut_short_after_reading_still_sends_again_what_it_left(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    # A poller that recorded a Message Batch read, with items to send again, and died
    # before sending them: the next delivery of its poll finds them and sends them.
    local_api.configure(batch_processing_s=60.0)
    batch = Batch.submit(items(5), **ROUTE)
    [(upstream_id, record)] = eventually(
        lambda: list(batch.ledger.upstream(batch.id).items()), timeout_s=30
    )
    local_api.configure(batch_processing_s=0.2)
    batch.ledger.update_upstream(
        batch.id, upstream_id, status="read", counts={"expired": 5}, again=record["indexes"]
    )

    status = batch.wait(TIMEOUT_S)

    assert status.count("complete") == 5
    upstream = batch.ledger.upstream(batch.id)
    assert upstream[upstream_id]["again_sent"] is True
    [resent] = [r for u, r in upstream.items() if u != upstream_id]
    assert sorted(resent["indexes"]) == sorted(record["indexes"])
    stats = local_api.stats()
    assert stats["batch_paid"] == 5 and stats["duplicates_paid"] == 0


def test_resubmitting_an_auto_batch_does_not_send_again_what_a_message_batch_holds(
    workers: Workers, local_api: LocalAPIServer, two_a_second: None
) -> None:
    local_api.configure(batch_processing_s=4.0)
    batch = Batch.submit(items(90), name="auto-again", **AUTO)
    eventually(lambda: batch.ledger.upstream(batch.id), timeout_s=30)

    # The same input under the same name, while the Message Batch is in flight.
    again = Batch.submit(items(90), name="auto-again", **AUTO)
    status = again.wait(TIMEOUT_S)

    assert again.id == batch.id and status.count("complete") == 90
    stats = local_api.stats()
    assert stats["batches_created"] == 1 and stats["batch_paid"] == 60
    assert stats["paid"] == 90 and stats["duplicates_paid"] == 0


def test_a_message_batch_the_api_refuses_gives_its_budget_back(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.configure(batch_processing_s=0.3, batch_max_requests=5)
    batch = Batch.submit(items(10), max_cost_usd=1.0, **ROUTE)
    status = batch.wait(TIMEOUT_S)

    assert status.count("failed") == 10
    assert {r["error"]["type"] for r in batch.results(failed_only=True)} == {
        "invalid_request_error"
    }
    assert status.reserved_usd == 0 and status.cost_usd == 0
