"""`POST /v1/messages` and `POST /v1/messages/count_tokens`.

A valid call is decided in this order: a matching script rule, then the
server's own rate limits, then an injected fault, then a reply
(``localapi.compose``: thinking, tools, text, each stop reason) after the
configured latency, as one JSON body or, with ``"stream": true``, as
server-sent events (``localapi.streaming``). Every answer carries `request-id` and the rate-limit
headers; every /v1/messages call is counted and logged, including those the
client abandoned (logged with status 499, nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from typing import Any

from aiohttp import web

from config.models import ModelRules, min_cache_tokens, rules_for
from localapi.buckets import retry_after_headers
from localapi.cache import CacheUsage
from localapi.compose import ReplyInputs, ReplyParts, compose_reply
from localapi.config import OUTCOME_FAULTS, STREAM_FAULTS, LocalAPIConfig
from localapi.errors import APIErrorReply, error_object, invalid
from localapi.replies import reply_rng
from localapi.responses import (
    NOT_RETRYABLE_CODES,
    api_headers,
    bytes_response,
    error_response,
    new_id,
)
from localapi.script import ScriptedResponse
from localapi.state import LocalAPIState
from localapi.stats import LOG_PROMPT_CHARS, LogEntry
from localapi.streaming import encode, error_event, message_events, output_tokens_in
from localapi.tokens import prompt_text, request_parts
from localapi.validation import validate_request

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499
# Faults that answer an error (or hang) instead of a reply.
ERROR_FAULTS = frozenset({"429", "529", "500", "hang"})
# The longest a stream stays silent: a ping goes out at least this often.
PING_INTERVAL_S = 5.0
_DEFAULT_MESSAGES = {
    400: "invalid request",
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "Number of requests has exceeded your rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}


def _default_message(status: int) -> str:
    return _DEFAULT_MESSAGES.get(status, f"error {status}")


def check_headers(request: web.Request, config: LocalAPIConfig) -> None:
    key = request.headers.get("x-api-key")
    if not key:
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            key = authorization[7:].strip()
    if not key or (config.api_key is not None and key != config.api_key):
        raise APIErrorReply(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        raise invalid("anthropic-version: header is required")


async def read_json(request: web.Request, max_body_bytes: int) -> Any:
    too_large = APIErrorReply(413, _DEFAULT_MESSAGES[413])
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > max_body_bytes:
            raise too_large
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise invalid(f"body: the request body is not valid JSON: {exc}") from exc


class APIHandlers:
    """The two API endpoints of one server."""

    def __init__(self, state: LocalAPIState) -> None:
        self.state = state

    async def count_tokens(self, request: web.Request) -> web.Response:
        state = self.state
        request_id = new_id("req_")
        state.stats.count_tokens_requests += 1
        try:
            check_headers(request, state.config)
            body = await read_json(request, state.config.max_body_bytes)
            validate_request(
                body,
                max_output_tokens=state.config.max_output_tokens,
                counting=True,
                api_version=request.headers.get("anthropic-version"),
            )
            tokens = sum(part.tokens for part in request_parts(body))
        except APIErrorReply as exc:
            return error_response(exc, request_id, state.limits)
        payload = json.dumps({"input_tokens": tokens}).encode()
        return bytes_response(200, payload, api_headers(request_id, state.limits))

    async def messages(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        entry = LogEntry(t=time.time())
        state.stats.begin()
        # Stays 499 ("client closed request") if the client goes away and the handler is cancelled.
        status = CLIENT_CLOSED
        try:
            response = await self._answer(request, entry)
            status = response.status
            return response
        finally:
            entry.t_end = time.time()
            entry.status = status
            state.stats.end(status)
            state.log.append(entry)

    async def _answer(self, request: web.Request, entry: LogEntry) -> web.StreamResponse:
        request_id = new_id("req_")
        try:
            return await self._messages(request, entry, request_id)
        except APIErrorReply as exc:
            return error_response(exc, request_id, self.state.limits)
        except Exception:
            log.exception("local API bug while answering %s", request_id)
            bug = APIErrorReply(500, "internal error in the local API")
            return error_response(bug, request_id, self.state.limits)

    async def _messages(
        self, request: web.Request, entry: LogEntry, request_id: str
    ) -> web.StreamResponse:
        state = self.state
        config = state.config
        check_headers(request, config)
        body = await read_json(request, config.max_body_bytes)
        # Known before validation, so that refused calls show in the log too.
        prompt = prompt_text(body) if isinstance(body, dict) else ""
        entry.prompt = prompt[:LOG_PROMPT_CHARS]
        # The same call streamed or not is the same call: same identity, same reply.
        unstreamed = (
            {k: v for k, v in body.items() if k != "stream"} if isinstance(body, dict) else body
        )
        canonical = json.dumps(unstreamed, sort_keys=True, separators=(",", ":"))
        body_sha256 = hashlib.sha256(canonical.encode()).hexdigest()
        chorus_key = request.headers.get("x-chorus-key")
        identity = chorus_key or body_sha256
        entry.key = identity
        validate_request(
            body,
            max_output_tokens=config.max_output_tokens,
            api_version=request.headers.get("anthropic-version"),
        )
        now = time.time()
        rules, window, total_tokens, cache, input_tokens = measured(state, body, now)
        entry.input_tokens = input_tokens

        scripted = state.script.decide(prompt) if state.script.rules else None
        if scripted is not None:
            entry.scripted = True
            state.stats.scripted += 1
            if scripted.fault is None and scripted.status != 200:
                await self._scripted_error(scripted)

        max_tokens: int = body["max_tokens"]
        denial = state.limits.try_acquire(input_tokens + cache.creation_tokens, max_tokens, now)
        if denial is not None:
            state.stats.rate_limited += 1
            message, wait_s = denial
            raise APIErrorReply(429, message, headers=retry_after_headers(wait_s))

        streaming = body.get("stream") is True
        settled = False
        try:
            fault = scripted.fault if scripted is not None else state.faults.draw()
            if streaming and fault == "malformed":
                fault = "stream_cut"  # a stream breaks off instead
            if fault in STREAM_FAULTS and not streaming:
                fault = None
            entry.fault = fault
            if fault is not None and scripted is None:
                state.stats.injected[fault] += 1
            if fault in ERROR_FAULTS:
                await self._fault(fault)
            reply = compose(
                state,
                body,
                rules,
                window - total_tokens,
                rng=reply_rng(config.seed, body_sha256, chorus_key),
                fault=fault if fault in OUTCOME_FAULTS else None,
                scripted=scripted,
            )
            answer = message_body(body, reply, input_tokens, cache)
            extra_headers = scripted.headers if scripted is not None and scripted.headers else {}
            # A stream pays its per-token time event by event (_stream), not up front too.
            latency_ms = self._latency_ms(scripted, 0 if streaming else reply.output_tokens)
            response: web.StreamResponse | None = None

            def finished() -> None:
                """The output was produced: the unused part goes back, the call is billed."""
                nonlocal settled
                end = time.time()
                state.limits.refund_output(max(0, max_tokens - reply.output_tokens), end)
                settled = True
                if fault != "stream_error":
                    bill(state, identity, body["model"], reply, input_tokens, cache, end)

            try:
                if streaming:
                    # A stream's headers go out before its body, with the bucket levels of then.
                    headers = {**api_headers(request_id, state.limits), **extra_headers}
                    response = await self._stream(request, answer, headers, latency_ms, fault)
                else:
                    await self._sleep_ms(latency_ms)
            except (asyncio.CancelledError, ConnectionResetError):
                if config.honest_billing and fault != "stream_error":
                    # The client went away; the call is finished and billed all the same.
                    finished()
                    state.stats.abandoned_billed += 1
                raise
            finished()
            entry.output_tokens = reply.output_tokens
            if response is not None:
                return response
            payload = json.dumps(answer).encode()
            if fault == "malformed":
                # A 200 whose JSON breaks off half way, as a dropped proxy stream would.
                payload = payload[: len(payload) // 2]
            headers = {**api_headers(request_id, state.limits), **extra_headers}
            return bytes_response(200, payload, headers)
        finally:
            if not settled:
                # Failed or abandoned: none of the output was produced.
                state.limits.refund_output(max_tokens, time.time())

    async def _stream(
        self,
        request: web.Request,
        message: dict[str, Any],
        headers: dict[str, str],
        latency_ms: float,
        fault: str | None,
    ) -> web.StreamResponse:
        """Send ``message`` as server-sent events, paced by the configured latency.

        ``message_start`` and a ``ping`` go at once; the first content event
        waits for the call's latency (the time to the first token); each delta
        then waits ``ms_per_output_token`` per token it carries, with a
        ``ping`` at least every :data:`PING_INTERVAL_S` of silence.
        ``stream_error`` ends the stream half way with an ``error`` event;
        ``stream_cut`` drops the connection there.
        """
        headers = {**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        events = message_events(message)
        breaks_at = len(events) // 2 if fault in STREAM_FAULTS else None
        # message_start and a ping go at once, as the API sends them; the call's
        # latency is the wait for the first content event after them.
        for event in events[:2]:
            await response.write(encode(event))
        await self._wait_streaming(response, latency_ms / 1000.0)
        per_token_s = self.state.config.ms_per_output_token / 1000.0
        for position, event in enumerate(events[2:], start=2):
            if position == breaks_at:
                if fault == "stream_error":
                    overloaded = error_object("overloaded_error", "Overloaded")
                    await response.write(encode(error_event(overloaded)))
                    await response.write_eof()
                else:
                    assert request.transport is not None
                    request.transport.close()
                return response
            await self._wait_streaming(response, per_token_s * output_tokens_in(event))
            await response.write(encode(event))
        await response.write_eof()
        return response

    @staticmethod
    async def _wait_streaming(response: web.StreamResponse, seconds: float) -> None:
        while seconds > PING_INTERVAL_S:
            await asyncio.sleep(PING_INTERVAL_S)
            seconds -= PING_INTERVAL_S
            await response.write(encode(("ping", {"type": "ping"})))
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _scripted_error(self, scripted: ScriptedResponse) -> None:
        if scripted.latency_ms:
            await self._sleep_ms(scripted.latency_ms)
        headers: dict[str, str] = {}
        if scripted.status == 429 and scripted.error_code not in NOT_RETRYABLE_CODES:
            retry_after_s = scripted.retry_after_s
            if retry_after_s is None:
                retry_after_s = self.state.config.retry_after_s
            headers.update(retry_after_headers(retry_after_s))
        headers.update(scripted.headers or {})
        message = scripted.message or _default_message(scripted.status)
        raise APIErrorReply(
            scripted.status, message, scripted.error_type, headers, scripted.error_code
        )

    async def _fault(self, fault: str) -> None:
        config = self.state.config
        if fault == "429":
            raise APIErrorReply(
                429,
                "Number of requests has exceeded your rate limit (injected).",
                headers=retry_after_headers(config.retry_after_s),
            )
        if fault == "529":
            raise APIErrorReply(529, "Overloaded")
        if fault == "500":
            raise APIErrorReply(500, "Internal server error")
        # A hang: ends early only if the client goes away (the handler is cancelled).
        await asyncio.sleep(config.hang_s)
        raise APIErrorReply(500, f"the request hung for {config.hang_s:g} s and gave up")

    def _latency_ms(self, scripted: ScriptedResponse | None, output_tokens: int) -> float:
        if scripted is not None and scripted.latency_ms is not None:
            return float(scripted.latency_ms)
        config = self.state.config
        return (
            config.latency_ms
            + self.state.faults.jitter_ms()
            + config.ms_per_output_token * output_tokens
        )

    @staticmethod
    async def _sleep_ms(latency_ms: float) -> None:
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000.0)


def measured(
    state: LocalAPIState, body: dict[str, Any], now: float
) -> tuple[ModelRules | None, int, int, CacheUsage, int]:
    """A valid request's model rules, context window, prompt tokens, cache use and the
    input tokens billed at the base rate.

    Raises:
        APIErrorReply: the prompt is longer than the window (400).
    """
    rules = rules_for(body["model"])
    parts = request_parts(body)
    total_tokens = sum(part.tokens for part in parts)
    window = state.config.context_window or (rules.context_window if rules else 200_000)
    if total_tokens > window:
        raise invalid(f"prompt is too long: {total_tokens} tokens > {window} maximum")
    min_tokens = state.config.cache_min_tokens
    if min_tokens is None:
        min_tokens = min_cache_tokens(body["model"])
    cache = state.cache.lookup(body["model"], parts, now, min_tokens)
    input_tokens = total_tokens - cache.read_tokens - cache.creation_tokens
    return rules, window, total_tokens, cache, input_tokens


def compose(
    state: LocalAPIState,
    body: dict[str, Any],
    rules: ModelRules | None,
    context_room: int,
    *,
    rng: random.Random,
    fault: str | None,
    scripted: ScriptedResponse | None,
) -> ReplyParts:
    """The reply a valid request gets (``localapi.compose``), with the server's settings."""
    config = state.config
    return compose_reply(
        body,
        ReplyInputs(
            rules=rules,
            rng=rng,
            reply_min_tokens=config.reply_min_tokens,
            reply_max_tokens=config.reply_max_tokens,
            context_room=context_room,
            fault=fault,
            scripted=scripted,
            thinking_scale=config.thinking_scale,
            rate_invalid_output=config.rate_invalid_output,
        ),
    )


def bill(
    state: LocalAPIState,
    identity: str,
    model: str,
    reply: ReplyParts,
    input_tokens: int,
    cache: CacheUsage,
    end: float,
    *,
    batch: bool = False,
) -> None:
    """Count a reply by its stop reason (and, answering a structured request, by how it
    asked) and bill it (``batch``: at the Message Batches discount); the cache writes it
    made become readable."""
    state.stats.stop_reasons[reply.stop_reason] = (
        state.stats.stop_reasons.get(reply.stop_reason, 0) + 1
    )
    if reply.structured is not None:
        answer = reply.structured
        state.stats.structured(answer.method, invalid=answer.invalid, followup=answer.followup)
    if reply.stop_reason == "refusal" and reply.output_tokens == 0:
        # "Requests declined before any output is generated are not billed."
        return
    state.cache.store(cache, end)
    state.stats.paid_call(
        identity,
        input_tokens,
        reply.output_tokens,
        cache.creation_tokens,
        cache.read_tokens,
        cache_creation_1h=cache.creation_1h_tokens,
        thinking_tokens=reply.thinking_tokens,
        server_tool_use=reply.server_tool_use,
        model=model,
        batch=batch,
    )


def message_body(
    body: dict[str, Any], reply: ReplyParts, input_tokens: int, cache: CacheUsage
) -> dict[str, Any]:
    """The reply body: a message, with the full usage object the API reports.

    ``usage`` holds every field of the API reference's example (alphabetical,
    as there): the cache writes split by TTL, the server tool requests, the
    thinking tokens within ``output_tokens``, the service tier.
    """
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": reply.stop_details,
        "container": reply.container,
        "usage": {
            "cache_creation": {
                "ephemeral_1h_input_tokens": cache.creation_1h_tokens,
                "ephemeral_5m_input_tokens": cache.creation_5m_tokens,
            },
            "cache_creation_input_tokens": cache.creation_tokens,
            "cache_read_input_tokens": cache.read_tokens,
            "inference_geo": "global",
            "input_tokens": input_tokens,
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"thinking_tokens": reply.thinking_tokens},
            "server_tool_use": dict(reply.server_tool_use),
            "service_tier": "standard",
        },
    }
