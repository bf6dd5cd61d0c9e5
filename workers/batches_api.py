"""The Message Batches route: a batch's items answered through the Message Batches API.

Half the price of the Messages API for work that may take up to 24 hours
(build-with-claude/batch-processing). Two worker-side tasks, so the
producer may exit once it has enqueued:

- ``chorus.batches_send`` takes a batch's items that need an answer, answers
  from the result store those already paid for (an item answered by either
  route is never sent again: the content address decides), and sends the
  rest in as few Message Batches as the limits allow (:data:`MAX_REQUESTS`
  requests, :data:`MAX_BYTES` each). Each Message Batch's id is recorded in
  the ledger as soon as the API returns it, then polled.
- ``chorus.batches_poll`` asks the API for one Message Batch with backoff
  (``CHORUS_BATCHES__POLL_MIN_S`` doubling up to ``POLL_MAX_S``). Once it
  ended, each result line ends its item: ``succeeded`` as an answer (stored
  under its content address and costed at the Batches price), ``errored`` as
  a failure, ``canceled`` as cancelled when the batch was. A request that
  ``expired``, errored with an error worth another try (``api_error``,
  ``overloaded_error``, a rate limit) or was cancelled without the batch
  being cancelled is sent again in a new Message Batch, those alone, while
  the batch's deadline and ``MAX_ROUNDS`` allow; then it fails with its
  error. A cancelled chorus batch cancels its Message Batches at the API.

On the ``auto`` route (``orchestration.routing``) the poller also watches the
deadline: once the time left is what real time needs for the Message Batch's
items (:func:`pull_back_at`), it cancels the Message Batch and sends in real
time, as ``chorus.call`` tasks, whatever the cancel left unanswered.

Items are started (``running``) when they go in a Message Batch and end when
its results are read. A worker that dies mid-poll leaves its poll message
unacknowledged: it is delivered again (late acknowledgement) and polling
goes on from the id in the ledger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from celery import Task

from config.prices import ModelPrice
from config.settings import BatchesAPISettings
from workers.app import app
from workers.call import answered, read_structured, structured_envelope
from workers.durable import retrying
from workers.errors import ProviderError
from workers.items import STOPPED, BatchOption, end_command, worst_case_micros
from workers.ledger import BatchStatus, ItemState
from workers.models import CallRequest, Envelope, ErrorInfo
from workers.redisio import Command, run_together
from workers.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

# The documented limits of one Message Batch (build-with-claude/batch-processing),
# with room under the size for the envelope around the requests.
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024 - 1024 * 1024
# How many times an item is sent in a new Message Batch after it expired or errored.
MAX_ROUNDS = 3
AGAIN_ERRORS = frozenset({"api_error", "overloaded_error", "rate_limit_error"})


def custom_id(index: int) -> str:
    """The ``custom_id`` of a batch's item: ``i`` and its index (``^[a-zA-Z0-9_-]{1,64}$``)."""
    return f"i{index}"


def index_of(custom: str) -> int:
    return int(custom[1:])


@app.task(name="chorus.batches_send", bind=True, acks_late=True)
def batches_send(
    self: Task, batch_id: str, indexes: list[int] | None = None, round: int = 0
) -> dict[str, Any]:
    """Send a batch's items (all pending ones, or ``indexes``) in Message Batches.

    Returns ``{"sent": n, "from_store": n, "upstream": [ids]}``.
    """
    runtime = get_runtime()
    ledger = runtime.ledger
    status = ledger.status(batch_id)
    if status is None or status.stop == "cancelled":
        return {"sent": 0, "from_store": 0, "upstream": []}
    if indexes is None:
        indexes = sorted(i for i, state in ledger.states(batch_id) if state == ItemState.PENDING)
    starts = ledger.start_many(batch_id, indexes)
    going = [i for i, start in zip(indexes, starts, strict=True) if start.verdict == "go"]
    ids = ledger.item_ids(batch_id)
    found = [
        (index, CallRequest.model_validate(json.loads(raw)["request"]))
        for index, raw in zip(going, ledger.requests(batch_id, going), strict=True)
        if raw is not None  # None: expired with the batch's other keys
    ]
    # Answered already (by either route)? One round trip for them all; those that
    # were end with the stored answer, in one more.
    stored = run_together([runtime.store.stored_command(r.idempotency_key()) for _, r in found])
    requests: list[tuple[int, CallRequest]] = []
    answered: list[Command] = []
    for (index, request), envelope in zip(found, stored, strict=True):
        if envelope is not None and envelope.ok:
            from_store = envelope.model_copy(update={"from_store": True})
            answered.append(_end_command(runtime, batch_id, index, ids, from_store))
        else:
            requests.append((index, request))
    run_together(answered)
    reserved: dict[int, int] = {}
    if status.max_cost_usd:
        requests, reserved = _within_budget(runtime, batch_id, requests, ids)
    sent: list[str] = []
    for chunk in _chunks(requests):
        body = [{"custom_id": custom_id(i), "params": r.api_params()} for i, r in chunk]
        try:
            upstream = runtime.provider.create_batch(body)
        except ProviderError as exc:
            # Refused whole: each item ends with the error (a retry sends them again).
            info = ErrorInfo.from_exception(exc)
            for index, request in chunk:
                failed = Envelope.failure(request.idempotency_key(), info)
                _end(runtime, batch_id, index, ids, failed, reserved.get(index, 0))
            continue
        ledger.record_upstream(batch_id, upstream.id, [i for i, _ in chunk])
        sent.append(upstream.id)
        batches_poll.apply_async(
            (batch_id, upstream.id, round), countdown=runtime.settings.batches.poll_min_s
        )
        log.info("batch %s: %d item(s) sent in Message Batch %s", batch_id, len(chunk), upstream.id)
    return {"sent": len(requests), "from_store": len(answered), "upstream": sent}


@app.task(name="chorus.batches_poll", bind=True, acks_late=True, max_retries=None)
def batches_poll(self: Task, batch_id: str, upstream_id: str, round: int = 0) -> dict[str, Any]:
    """Poll one Message Batch until it ended, then end its items from its results.

    Returns the count of each result type read.
    """
    runtime = get_runtime()
    ledger = runtime.ledger
    settings = runtime.settings.batches
    record = ledger.upstream(batch_id).get(upstream_id)
    if record is None:
        return {}  # the batch is gone
    if record.get("status") == "read":
        # This poll ran already (a redelivery); finish what it may not have.
        if record.get("again") and not record.get("again_sent"):
            _send_again(runtime, batch_id, upstream_id, record, round)
        return {}
    polls = int(record.get("polls", 0)) + 1
    status = ledger.status(batch_id)
    pull_at = None if status is None else pull_back_at(status, len(record["indexes"]), settings)
    try:
        upstream = runtime.provider.retrieve_batch(upstream_id)
        if upstream.processing_status == "in_progress":
            if status is None or status.stop == "cancelled":
                upstream = runtime.provider.cancel_batch(upstream_id)
            elif pull_at is not None and time.time() >= pull_at:
                log.info(
                    "batch %s: taking Message Batch %s back to real time", batch_id, upstream_id
                )
                upstream = runtime.provider.cancel_batch(upstream_id)
                record["pulled"] = True
                ledger.update_upstream(batch_id, upstream_id, pulled=True)
    except ProviderError as exc:
        log.warning("batch %s: polling Message Batch %s failed: %s", batch_id, upstream_id, exc)
        upstream = None
    if upstream is None or upstream.processing_status != "ended":
        ledger.update_upstream(
            batch_id,
            upstream_id,
            polls=polls,
            status=upstream.processing_status if upstream is not None else record["status"],
        )
        delay = min(settings.poll_max_s, settings.poll_min_s * 2 ** min(polls, 20))
        if pull_at is not None and not record.get("pulled"):
            delay = min(delay, max(settings.poll_min_s, pull_at - time.time()))
        raise self.retry(countdown=delay)
    return _read_results(runtime, batch_id, upstream_id, {**record, "polls": polls}, round)


def _read_results(
    runtime: Runtime, batch_id: str, upstream_id: str, record: dict[str, Any], round: int
) -> dict[str, Any]:
    ledger = runtime.ledger
    status = ledger.status(batch_id)
    if status is None:
        return {}
    cancelled = status.stop == "cancelled"
    deadline_passed = status.deadline_at is not None and time.time() > status.deadline_at
    pulled = bool(record.get("pulled"))
    budget = status.max_cost_usd is not None
    ids = ledger.item_ids(batch_id)
    lines = runtime.provider.batch_results(upstream_id)
    indexes = [index_of(line["custom_id"]) for line in lines]
    raws = ledger.requests(batch_id, indexes)
    counts: dict[str, int] = {}
    again: list[int] = []
    # Each result's writes (its answer stored, its item ended), sent in one round trip.
    writes: list[Command] = []
    for index, raw, line in zip(indexes, raws, lines, strict=True):
        result = line["result"]
        kind = result["type"]
        counts[kind] = counts.get(kind, 0) + 1
        if raw is None:
            continue
        request = CallRequest.model_validate(json.loads(raw)["request"])
        key = request.idempotency_key()
        # What batches_send reserved for it: given back as it ends or goes again.
        reserved = worst_case_micros(request, runtime.deps, batch=True) if budget else 0
        if kind == "succeeded":
            envelope = _answered(key, result["message"], request, runtime.deps.price_for)
            envelope = envelope.model_copy(update={"attempts": 1})
            writes += [
                runtime.store.put_command(envelope),
                _end_command(runtime, batch_id, index, ids, envelope, reserved),
            ]
            continue
        error = _error_of(result)
        failed = Envelope.failure(key, error)
        if kind == "canceled" and cancelled:
            writes.append(_end_command(runtime, batch_id, index, ids, failed, reserved))
            continue
        worth_again = kind in ("expired", "canceled") or error.type in AGAIN_ERRORS
        if (
            worth_again
            and not cancelled
            and (pulled or (not deadline_passed and round < MAX_ROUNDS))
        ):
            again.append(index)
            if reserved:
                writes += ledger.spend_commands(batch_id, None, reserved)
            continue
        writes.append(_end_command(runtime, batch_id, index, ids, failed, reserved))
    # The counts are written before the items end, so whoever sees them end
    # finds the counts; "read" after them, so a poll cut short runs again, and
    # with what goes again, so a poll cut short after them still sends it.
    read = {**record, "status": "read", "counts": counts, "again": again}
    writes = [
        ledger.upstream_command(
            batch_id, upstream_id, {**record, "status": "ended", "counts": counts}
        ),
        *writes,
        ledger.upstream_command(batch_id, upstream_id, read),
    ]
    retrying(lambda: run_together(writes), what="ending a Message Batch's items")
    if again:
        _send_again(runtime, batch_id, upstream_id, read, round)
    return counts


def _answered(
    key: str,
    message: dict[str, Any],
    request: CallRequest,
    price_for: Callable[[str], ModelPrice | None],
) -> Envelope:
    """A Message Batch's answer as an envelope; a structured one validated against its
    schema (``workers.structured``). An invalid answer is not re-asked on this route:
    it ends ``invalid_output``, and ``chorus retry`` asks again."""
    if request.structured is None:
        return answered(key, message, request.max_tokens, price_for)
    reading, message = read_structured(request, message, {})
    return structured_envelope(
        key,
        message,
        request,
        reading,
        0,
        None,
        price_for,
        advice="answered through the Message Batches API, where chorus does not re-ask: "
        "`chorus retry` asks again",
    )


def _send_again(
    runtime: Runtime, batch_id: str, upstream_id: str, record: dict[str, Any], round: int
) -> None:
    """Send what a read Message Batch left unanswered: in real time when it was taken back
    (``auto``), else in a new Message Batch; then record that it was sent."""
    again = [int(i) for i in record["again"]]
    if record.get("pulled"):
        _to_realtime(runtime, batch_id, again, runtime.ledger.item_ids(batch_id))
    else:
        log.info(
            "batch %s: %d item(s) of Message Batch %s sent again (round %d)",
            batch_id,
            len(again),
            upstream_id,
            round + 1,
        )
        batches_send.delay(batch_id, again, round + 1)
    runtime.ledger.update_upstream(batch_id, upstream_id, again_sent=True)


def _within_budget(
    runtime: Runtime, batch_id: str, requests: list[tuple[int, CallRequest]], ids: list[str]
) -> tuple[list[tuple[int, CallRequest]], dict[int, int]]:
    """The ``requests`` whose worst case, at the Batches price, the batch's ``--max-cost``
    still holds, and what was reserved for each by index; the others end
    ``budget_exceeded``, not sent."""
    worst = [worst_case_micros(r, runtime.deps, batch=True) for _, r in requests]
    answers = runtime.ledger.reserve_many(batch_id, worst)
    kept, reserved = [], {}
    for (index, request), answer, micros in zip(requests, answers, worst, strict=True):
        if answer == "ok":
            kept.append((index, request))
            reserved[index] = micros
            continue
        info = STOPPED.get(answer, STOPPED["cancelled"])
        _end(runtime, batch_id, index, ids, Envelope.failure(request.idempotency_key(), info))
    return kept, reserved


def pull_back_at(status: BatchStatus, items: int, settings: BatchesAPISettings) -> float | None:
    """When an ``auto`` batch takes a Message Batch of ``items`` back to real time (unix
    time); None on the other routes.

    Then the time left is what real time needs for all ``items`` at the rate the
    batch's real-time calls have gone (its items ended per second since it
    started), or the limits' rate planned at submit when that is faster, plus a
    margin (two polls, or a twentieth of the time to the deadline); but never
    before the time the plan kept for this (``orchestration.routing``).
    """
    plan = status.plan
    if status.route != "auto" or status.deadline_at is None or not plan:
        return None
    rate = float(plan.get("rate_per_s") or 0.0)
    if status.started_at is not None and status.ended:
        rate = max(rate, status.ended / max(1e-3, time.time() - status.started_at))
    if rate <= 0:
        return status.deadline_at  # no limit: real time takes no planning
    margin = max(2 * settings.poll_min_s, 0.05 * float(plan.get("deadline_s") or 0.0))
    kept = max(margin, float(plan.get("reserve_s") or 0.0))
    return status.deadline_at - min(items / rate + margin, kept)


def _to_realtime(runtime: Runtime, batch_id: str, indexes: list[int], ids: list[str]) -> None:
    """Send ``indexes`` as ``chorus.call`` tasks: back from the Message Batches API (``auto``)."""
    ledger = runtime.ledger
    ledger.reopen(batch_id, indexes)
    ledger.pulled_back(batch_id, len(indexes))
    with app.producer_or_acquire() as producer:
        for index, raw in zip(indexes, ledger.requests(batch_id, indexes), strict=True):
            if raw is None:
                continue
            item = ids[index] if index < len(ids) else str(index)
            app.signature(
                "chorus.call",
                args=(
                    json.loads(raw)["request"],
                    {"batch": {"id": batch_id, "index": index, "item": item}},
                ),
                argsrepr=f"batch={batch_id} item={item} (back from the Message Batches API)",
            ).apply_async(producer=producer, ignore_result=True)
    log.info(
        "batch %s: %d item(s) taken back from the Message Batches API to real time",
        batch_id,
        len(indexes),
    )


def _error_of(result: dict[str, Any]) -> ErrorInfo:
    kind = result["type"]
    if kind == "errored":
        response = result.get("error") or {}
        error = response.get("error") or {}
        return ErrorInfo(
            type=str(error.get("type") or "api_error"),
            message=str(error.get("message") or "errored in a Message Batch"),
            request_id=response.get("request_id"),
            retryable=error.get("type") in AGAIN_ERRORS,
        )
    if kind == "expired":
        message = "the Message Batch expired before this request was processed"
    else:
        message = "the Message Batch was cancelled before this request was processed"
    return ErrorInfo(type="expired" if kind == "expired" else "cancelled", message=message)


def _end(
    runtime: Runtime,
    batch_id: str,
    index: int,
    ids: list[str],
    envelope: Envelope,
    reserved_micros: int = 0,
) -> None:
    run_together([_end_command(runtime, batch_id, index, ids, envelope, reserved_micros)])


def _end_command(
    runtime: Runtime,
    batch_id: str,
    index: int,
    ids: list[str],
    envelope: Envelope,
    reserved_micros: int = 0,
) -> Command:
    """End one item with ``envelope`` (``finish.lua``: a duplicate counts nothing), giving
    back the budget reserved for it."""
    item = ids[index] if index < len(ids) else str(index)
    option = BatchOption(id=batch_id, index=index, item=item)
    return end_command(
        runtime.ledger, option, envelope, call=envelope, reserved_micros=reserved_micros
    )


def _chunks(requests: list[tuple[int, CallRequest]]) -> list[list[tuple[int, CallRequest]]]:
    """``requests`` in as few Message Batches as the request and size limits allow."""
    chunks: list[list[tuple[int, CallRequest]]] = []
    current: list[tuple[int, CallRequest]] = []
    size = 0
    for index, request in requests:
        body = len(json.dumps({"custom_id": custom_id(index), "params": request.api_params()}))
        if current and (len(current) >= MAX_REQUESTS or size + body > MAX_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append((index, request))
        size += body + 1
    if current:
        chunks.append(current)
    return chunks
