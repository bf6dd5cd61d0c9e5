"""The local API's Message Batches endpoints, through the SDK's own client.messages.batches:
create, retrieve, list, cancel, results (every result type), delete, and the limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from localapi import LocalAPIServer
from localapi.stats import list_price

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-6"
KEY = "sk-test-batches"


@pytest.fixture
def server() -> Iterator[LocalAPIServer]:
    with LocalAPIServer(latency_ms=0, batch_processing_s=0.3) as running:
        yield running


@pytest.fixture
def client(server: LocalAPIServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0) as sdk:
        yield sdk


def request(custom_id: str, text: str = "Name a colour.", **params: Any) -> dict[str, Any]:
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "params": {**body, **params}}


def ended(client: anthropic.Anthropic, batch_id: str, timeout_s: float = 10.0) -> MessageBatch:
    deadline = time.monotonic() + timeout_s
    while True:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)


def results(
    client: anthropic.Anthropic, batch_id: str
) -> dict[str, MessageBatchIndividualResponse]:
    return {line.custom_id: line for line in client.messages.batches.results(batch_id)}


def test_a_batch_is_in_progress_then_ended_with_every_request_succeeded(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    created = client.messages.batches.create(requests=[request(f"r{i}") for i in range(5)])

    assert created.processing_status == "in_progress" and created.id.startswith("msgbatch_")
    assert created.request_counts.processing == 5 and created.results_url is None
    assert (created.expires_at - created.created_at).total_seconds() == pytest.approx(86400, abs=1)
    batch = ended(client, created.id)
    assert batch.request_counts.succeeded == 5 and batch.request_counts.processing == 0
    assert batch.ended_at is not None and batch.results_url is not None
    found = results(client, created.id)
    assert sorted(found) == [f"r{i}" for i in range(5)]
    message = found["r0"].result.message  # type: ignore[union-attr]
    assert message.content and message.usage.service_tier == "batch"

    # Billed at the Batches discount: half the list price of the same tokens.
    stats = server.stats()
    assert stats["batch_paid"] == 5 and stats["batches_created"] == 1
    price = list_price(MODEL)
    assert price is not None
    full = (
        stats["input_tokens"] * price.input_per_mtok
        + stats["output_tokens"] * price.output_per_mtok
    )
    assert stats["cost_usd"] == pytest.approx(full / 1e6 / 2)


def test_errored_expired_and_invalid_requests_end_with_their_own_result_types(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    server.configure(batch_rate_errored=0.3, batch_rate_expired=0.3)
    bad = request("bad", max_tokens=-1)  # refused per request, not the whole batch
    created = client.messages.batches.create(requests=[*[request(f"r{i}") for i in range(40)], bad])

    batch = ended(client, created.id)
    found = results(client, created.id)
    types = [line.result.type for line in found.values()]
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored, counts.expired) == (
        types.count("succeeded"), types.count("errored"), types.count("expired")
    )  # fmt: skip
    assert counts.succeeded > 0 and counts.errored > 1 and counts.expired > 0
    invalid = found["bad"].result
    assert invalid.type == "errored" and invalid.error.error.type == "invalid_request_error"
    api_error = next(
        r.result for k, r in found.items() if r.result.type == "errored" and k != "bad"
    )
    assert api_error.error.error.type == "api_error"  # type: ignore[union-attr]
    assert server.stats()["batch_paid"] == counts.succeeded  # errored and expired are not billed


def test_a_batch_past_its_expiry_ends_what_it_did_not_reach_expired(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    # "24 hours" in half a second, and processing that needs a second.
    server.configure(batch_processing_s=1.0, batch_expires_s=0.5)
    created = client.messages.batches.create(requests=[request(f"r{i}") for i in range(10)])

    batch = ended(client, created.id)

    counts = batch.request_counts
    assert counts.succeeded + counts.expired == 10 and 0 < counts.expired < 10


def test_cancel_stops_processing_and_keeps_what_was_done(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    server.configure(batch_processing_s=2.0)
    created = client.messages.batches.create(requests=[request(f"r{i}") for i in range(20)])
    time.sleep(0.5)

    canceling = client.messages.batches.cancel(created.id)

    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    batch = ended(client, created.id)
    counts = batch.request_counts
    assert counts.succeeded + counts.canceled == 20 and counts.canceled > 0
    assert {line.result.type for line in results(client, created.id).values()} <= {
        "succeeded", "canceled"
    }  # fmt: skip


def test_list_pages_newest_first_and_delete_only_an_ended_batch(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    server.configure(batch_processing_s=0.0)
    ids = [client.messages.batches.create(requests=[request("only")]).id for _ in range(5)]

    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-paging
    for batch_id in ids:
        ended(client, batch_id)
    assert client.messages.batches.delete(ids[0]).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(ids[0])

    server.configure(batch_processing_s=5.0)
    running = client.messages.batches.create(requests=[request("slow")])
    with pytest.raises(anthropic.BadRequestError, match="still processing"):
        client.messages.batches.delete(running.id)


@pytest.mark.parametrize(
    ("requests", "said"),
    [
        ([], "1 to 3 requests"),
        ([request(f"r{i}") for i in range(4)], "1 to 3 requests"),
        ([request("twice"), request("twice")], "duplicate custom_id 'twice'"),
        ([request("no spaces allowed")], "String should match pattern"),
        ([{"custom_id": "x", "params": "not an object"}], "valid dictionary"),
    ],
)
def test_a_batch_that_breaks_a_limit_is_refused_whole(
    client: anthropic.Anthropic, server: LocalAPIServer, requests: list[Any], said: str
) -> None:
    server.configure(batch_max_requests=3)

    with pytest.raises(anthropic.BadRequestError, match=said):
        client.messages.batches.create(requests=requests)

    assert server.stats()["batches_created"] == 0


def test_a_batch_over_its_size_limit_is_a_413(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    server.configure(batch_max_bytes=10_000)

    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.batches.create(requests=[request(f"r{i}", "x" * 500) for i in range(30)])

    assert refused.value.status_code == 413
    assert server.stats()["batches_created"] == 0


def test_a_reset_stops_a_message_batch_still_processing(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    # A batch left processing by one test must not answer, and bill, in the next.
    server.configure(batch_processing_s=0.6)
    client.messages.batches.create(requests=[request(f"r{i}") for i in range(3)])
    server.reset()
    time.sleep(1.0)
    assert server.stats()["batch_paid"] == 0 and server.stats()["paid"] == 0
