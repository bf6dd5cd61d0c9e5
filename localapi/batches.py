"""The Message Batches endpoints: create, retrieve, list, cancel, delete, results.

As the API reference describes them (platform.claude.com/docs, "Message
Batches"; the SDK's ``resources/messages/batches.py`` and
``types/messages/``), so that the SDK's ``client.messages.batches`` works
against this server unchanged:

- ``POST /v1/messages/batches`` takes ``{"requests": [{"custom_id", "params"}]}``:
  1 to ``batch_max_requests`` (100,000) requests, ``batch_max_bytes`` (256 MB)
  at most, each ``custom_id`` matching ``^[a-zA-Z0-9_-]{1,64}$`` and unique in
  the batch. A batch that breaks any of these is refused whole (400, or 413
  when too large). Each request's ``params`` are checked as ``POST
  /v1/messages`` checks them when the request is processed: an invalid one
  ends ``errored`` with its ``invalid_request_error``, the rest of the batch
  going on.
- A batch is ``in_progress`` while its requests are processed, one after
  another over ``batch_processing_s``; ``canceling`` once cancelled while in
  progress; ``ended`` when every request has a result: ``succeeded`` (the
  message), ``errored`` (the error, not billed), ``canceled`` (not reached
  before the cancel) or ``expired`` (not reached within ``batch_expires_s``,
  24 hours by default). ``request_counts`` show every request as
  ``processing`` until the batch ends, as the reference says.
- ``batch_rate_errored`` and ``batch_rate_expired`` make that share of the
  requests end ``errored`` (a retryable ``api_error``) or ``expired``, drawn
  per request and batch from ``seed``: the same request in a new batch draws
  again.
- A succeeded request is billed at the Batches discount (half the list
  price: ``Tokens.batch``), counted in the stats' ``batch_paid``; its usage
  says ``service_tier: "batch"``. Rate limits do not apply.
- Results are JSONL, one line per request, in no promised order (here: the
  order processing reached them), at ``results_url``, once the batch ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from localapi.errors import APIErrorReply, error_object, invalid
from localapi.replies import reply_rng
from localapi.responses import api_headers, bytes_response, error_response, new_id
from localapi.state import LocalAPIState
from localapi.tokens import prompt_text
from localapi.validation import validate_request

log = logging.getLogger(__name__)

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
RESULT_TYPES = ("succeeded", "errored", "canceled", "expired")
LIST_DEFAULT, LIST_MAX = 20, 1000
# Processing sleeps only when it is this far ahead of its schedule.
MIN_SLEEP_S = 0.005


@dataclass
class LocalBatch:
    """One Message Batch and what processing has made of it so far."""

    id: str
    created_at: float
    expires_at: float
    requests: list[tuple[str, dict[str, Any]]]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    processing_status: str = "in_progress"
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    task: asyncio.Task[None] | None = None

    def counts(self) -> dict[str, int]:
        if self.processing_status != "ended":
            return {"processing": len(self.requests), **dict.fromkeys(RESULT_TYPES, 0)}
        found = dict.fromkeys(RESULT_TYPES, 0)
        for result in self.results.values():
            found[result["type"]] += 1
        return {"processing": 0, **found}

    def to_dict(self, origin: str) -> dict[str, Any]:
        ended = self.processing_status == "ended"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.processing_status,
            "request_counts": self.counts(),
            "ended_at": _rfc3339(self.ended_at),
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.expires_at),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(self.cancel_initiated_at),
            "results_url": f"{origin}/v1/messages/batches/{self.id}/results" if ended else None,
        }

    def result_lines(self) -> Iterator[bytes]:
        for custom_id, result in self.results.items():
            yield json.dumps({"custom_id": custom_id, "result": result}).encode() + b"\n"


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class BatchHandlers:
    """The six Message Batches endpoints of one server; batches live in ``state.batches``."""

    def __init__(self, state: LocalAPIState) -> None:
        self.state = state

    # --- endpoints ----------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        return await self._respond(request, lambda: self._create(request))

    async def retrieve(self, request: web.Request) -> web.Response:
        return await self._respond(request, lambda: self._found(request))

    async def list(self, request: web.Request) -> web.Response:
        return await self._respond(request, lambda: self._list(request))

    async def cancel(self, request: web.Request) -> web.Response:
        return await self._respond(request, lambda: self._cancel(request))

    async def delete(self, request: web.Request) -> web.Response:
        return await self._respond(request, lambda: self._delete(request))

    async def results(self, request: web.Request) -> web.StreamResponse:
        from localapi.handlers import check_headers

        request_id = new_id("req_")
        try:
            check_headers(request, self.state.config)
            batch = self._batch(request)
            if batch.processing_status != "ended":
                raise invalid(f"batch {batch.id} has not ended: its results are not ready")
        except APIErrorReply as exc:
            return error_response(exc, request_id, self.state.limits)
        headers = api_headers(request_id, self.state.limits)
        headers["Content-Type"] = "application/binary"
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        for line in batch.result_lines():
            await response.write(line)
        await response.write_eof()
        return response

    # --- the work behind them -----------------------------------------------

    async def _respond(self, request: web.Request, work: Any) -> web.Response:
        from localapi.handlers import check_headers

        request_id = new_id("req_")
        try:
            check_headers(request, self.state.config)
            body = await work()
        except APIErrorReply as exc:
            return error_response(exc, request_id, self.state.limits)
        payload = json.dumps(body).encode()
        return bytes_response(200, payload, api_headers(request_id, self.state.limits))

    async def _create(self, request: web.Request) -> Any:
        from localapi.handlers import read_json

        config = self.state.config
        body = await read_json(request, config.batch_max_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise invalid("requests: Field required")
        requests = body["requests"]
        extra = sorted(set(body) - {"requests"})
        if extra:
            raise invalid(f"{extra[0]}: Extra inputs are not permitted")
        if not 1 <= len(requests) <= config.batch_max_requests:
            raise invalid(
                f"requests: a batch holds 1 to {config.batch_max_requests} requests, "
                f"not {len(requests)}"
            )
        seen: set[str] = set()
        taken: list[tuple[str, dict[str, Any]]] = []
        for n, entry in enumerate(requests):
            if not isinstance(entry, dict) or set(entry) != {"custom_id", "params"}:
                raise invalid(f"requests.{n}: each request has exactly custom_id and params")
            custom_id, params = entry["custom_id"], entry["params"]
            if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
                raise invalid(
                    f"requests.{n}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                )
            if custom_id in seen:
                raise invalid(f"requests.{n}.custom_id: duplicate custom_id {custom_id!r}")
            if not isinstance(params, dict):
                raise invalid(f"requests.{n}.params: Input should be a valid dictionary")
            seen.add(custom_id)
            taken.append((custom_id, params))
        now = time.time()
        batch = LocalBatch(
            id=new_id("msgbatch_"),
            created_at=now,
            expires_at=now + config.batch_expires_s,
            requests=taken,
        )
        store = self.state.batches
        store[batch.id] = batch
        self.state.stats.batches_created += 1
        batch.task = asyncio.get_running_loop().create_task(self._process(batch))
        return batch.to_dict(_origin(request))

    async def _found(self, request: web.Request) -> Any:
        return self._batch(request).to_dict(_origin(request))

    async def _list(self, request: web.Request) -> Any:
        query = request.query
        try:
            limit = int(query.get("limit", LIST_DEFAULT))
        except ValueError:
            raise invalid("limit: Input should be a valid integer") from None
        if not 1 <= limit <= LIST_MAX:
            raise invalid(f"limit: must be between 1 and {LIST_MAX}")
        newest_first = sorted(
            self.state.batches.values(), key=lambda b: (b.created_at, b.id), reverse=True
        )
        ids = [b.id for b in newest_first]
        if "after_id" in query:
            start = _index(ids, query["after_id"]) + 1
            page = newest_first[start : start + limit]
            has_more = start + limit < len(ids)
        elif "before_id" in query:
            end = _index(ids, query["before_id"])
            page = newest_first[max(0, end - limit) : end]
            has_more = end - limit > 0
        else:
            page, has_more = newest_first[:limit], len(ids) > limit
        origin = _origin(request)
        return {
            "data": [b.to_dict(origin) for b in page],
            "has_more": has_more,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }

    async def _cancel(self, request: web.Request) -> Any:
        batch = self._batch(request)
        if batch.processing_status == "in_progress":
            batch.processing_status = "canceling"
            batch.cancel_initiated_at = time.time()
        return batch.to_dict(_origin(request))

    async def _delete(self, request: web.Request) -> Any:
        batch = self._batch(request)
        if batch.processing_status != "ended":
            raise invalid(
                f"batch {batch.id} is still processing: cancel it, and delete it once it has ended"
            )
        del self.state.batches[batch.id]
        return {"id": batch.id, "type": "message_batch_deleted"}

    def _batch(self, request: web.Request) -> LocalBatch:
        batch_id = request.match_info["batch_id"]
        batch = self.state.batches.get(batch_id)
        if batch is None:
            raise APIErrorReply(404, f"no message batch {batch_id!r}")
        return batch

    # --- processing ---------------------------------------------------------

    async def _process(self, batch: LocalBatch) -> None:
        """Answer the requests one after another over ``batch_processing_s``; then end."""
        try:
            await self._work_through(batch)
        except Exception:
            log.exception("local API bug while processing %s", batch.id)
            for custom_id, _ in batch.requests:
                batch.results.setdefault(
                    custom_id, _errored("api_error", "internal error in the local API", None)
                )
        batch.processing_status = "ended"
        batch.ended_at = time.time()

    async def _work_through(self, batch: LocalBatch) -> None:
        config = self.state.config
        step = config.batch_processing_s / max(1, len(batch.requests))
        started = time.time()
        for n, (custom_id, params) in enumerate(batch.requests):
            due = started + (n + 1) * step
            if due > batch.expires_at:
                break  # the rest expire
            ahead = due - time.time()
            if ahead > MIN_SLEEP_S:
                await asyncio.sleep(ahead)
            if batch.processing_status == "canceling":
                break
            batch.results[custom_id] = self._result(batch, custom_id, params)
        if batch.processing_status != "canceling" and len(batch.results) < len(batch.requests):
            await asyncio.sleep(max(0.0, batch.expires_at - time.time()))
        left = "canceled" if batch.processing_status == "canceling" else "expired"
        for custom_id, _ in batch.requests:
            batch.results.setdefault(custom_id, {"type": left})

    def _result(self, batch: LocalBatch, custom_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request's result: drawn expired or errored, else answered as /v1/messages would."""
        config = self.state.config
        request_id = new_id("req_")
        try:  # an invalid request errors whatever else befalls it
            validate_request(params, max_output_tokens=config.max_output_tokens)
        except APIErrorReply as exc:
            return _errored(exc.error_type, exc.message, request_id, exc.error_code)
        draw = random.Random(f"{config.seed}:{batch.id}:{custom_id}").random()
        if draw < config.batch_rate_expired:
            return {"type": "expired"}
        if draw < config.batch_rate_expired + config.batch_rate_errored:
            return _errored("api_error", "Internal server error", request_id)
        try:
            return {"type": "succeeded", "message": self._answer(params)}
        except APIErrorReply as exc:
            return _errored(exc.error_type, exc.message, request_id, exc.error_code)

    def _answer(self, params: dict[str, Any]) -> dict[str, Any]:
        from localapi.handlers import bill, compose, measured, message_body

        state, config = self.state, self.state.config
        validate_request(params, max_output_tokens=config.max_output_tokens)
        if params.get("stream") is True:
            raise invalid("stream: streaming is not supported in a Message Batch")
        now = time.time()
        rules, window, total_tokens, cache, input_tokens = measured(state, params, now)
        prompt = prompt_text(params)
        scripted = state.script.decide(prompt) if state.script.rules else None
        if scripted is not None and scripted.fault is None and scripted.status != 200:
            raise APIErrorReply(
                scripted.status,
                scripted.message or "scripted error",
                scripted.error_type,
                error_code=scripted.error_code,
            )
        canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
        rng = reply_rng(config.seed, canonical, None)
        reply = compose(state, params, rules, window - total_tokens, rng=rng, fault=None,
                        scripted=scripted)  # fmt: skip
        message = message_body(params, reply, input_tokens, cache)
        message["usage"]["service_tier"] = "batch"
        bill(state, f"batch:{canonical}", params["model"], reply, input_tokens, cache, now,
             batch=True)  # fmt: skip
        return message


def _errored(
    error_type: str, message: str, request_id: str | None, error_code: str | None = None
) -> dict[str, Any]:
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": error_object(error_type, message, error_code),
            "request_id": request_id,
        },
    }


def _index(ids: list[str], batch_id: str) -> int:
    try:
        return ids.index(batch_id)
    except ValueError:
        raise invalid(f"no message batch {batch_id!r} to page from") from None


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"
