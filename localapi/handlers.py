"""`POST /v1/messages` and `POST /v1/messages/count_tokens`.

A valid call is decided in this order: a matching script rule, then the
server's own rate limits, then an injected fault, then success after the
configured latency. Every answer carries `request-id` and the rate-limit
headers; every /v1/messages call is counted and logged, including those the
client abandoned (logged with status 499, nginx's "client closed request").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from localapi.buckets import retry_after_header
from localapi.cache import CacheUsage
from localapi.config import LocalAPIConfig
from localapi.errors import APIErrorReply, invalid
from localapi.replies import apply_limits, generate_reply, reply_rng
from localapi.responses import api_headers, bytes_response, error_response, new_id
from localapi.script import ScriptedResponse
from localapi.state import LocalAPIState
from localapi.stats import LOG_PROMPT_CHARS, LogEntry
from localapi.tokens import count_block_tokens, count_text_tokens, prompt_text, request_parts
from localapi.validation import validate_request

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499
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


def _check_headers(request: web.Request, config: LocalAPIConfig) -> None:
    key = request.headers.get("x-api-key")
    if not key:
        authorization = request.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            key = authorization[7:].strip()
    if not key or (config.api_key is not None and key != config.api_key):
        raise APIErrorReply(401, "invalid x-api-key")
    if not request.headers.get("anthropic-version"):
        raise invalid("anthropic-version: header is required")


async def _read_json(request: web.Request, max_body_bytes: int) -> Any:
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


@dataclass(frozen=True, slots=True)
class ReplyParts:
    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int


class APIHandlers:
    """The two API endpoints of one server."""

    def __init__(self, state: LocalAPIState) -> None:
        self.state = state

    async def count_tokens(self, request: web.Request) -> web.Response:
        state = self.state
        request_id = new_id("req_")
        state.stats.count_tokens_requests += 1
        try:
            _check_headers(request, state.config)
            body = await _read_json(request, state.config.max_body_bytes)
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

    async def messages(self, request: web.Request) -> web.Response:
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

    async def _answer(self, request: web.Request, entry: LogEntry) -> web.Response:
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
    ) -> web.Response:
        state = self.state
        config = state.config
        _check_headers(request, config)
        body = await _read_json(request, config.max_body_bytes)
        # Known before validation, so that refused calls show in the log too.
        prompt = prompt_text(body) if isinstance(body, dict) else ""
        entry.prompt = prompt[:LOG_PROMPT_CHARS]
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        body_sha256 = hashlib.sha256(canonical.encode()).hexdigest()
        chorus_key = request.headers.get("x-chorus-key")
        identity = chorus_key or body_sha256
        entry.key = identity
        validate_request(
            body,
            max_output_tokens=config.max_output_tokens,
            api_version=request.headers.get("anthropic-version"),
        )

        parts = request_parts(body)
        total_tokens = sum(part.tokens for part in parts)
        if total_tokens > config.context_window:
            raise invalid(
                f"prompt is too long: {total_tokens} tokens > {config.context_window} maximum"
            )
        now = time.time()
        cache = state.cache.lookup(body["model"], parts, now)
        input_tokens = total_tokens - cache.read_tokens - cache.creation_tokens
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
            raise APIErrorReply(429, message, headers={"retry-after": retry_after_header(wait_s)})

        settled = False
        try:
            fault = scripted.fault if scripted is not None else state.faults.draw()
            entry.fault = fault
            if fault is not None and scripted is None:
                state.stats.injected[fault] += 1
            if fault is not None and fault != "malformed":
                await self._fault(fault)
            reply = self._reply(body, body_sha256, chorus_key, scripted)
            await self._sleep_ms(self._latency_ms(scripted, reply.output_tokens))
            end = time.time()
            state.limits.refund_output(max(0, max_tokens - reply.output_tokens), end)
            settled = True
            state.cache.store(cache, end)
            state.stats.paid_call(
                identity,
                input_tokens,
                reply.output_tokens,
                cache.creation_tokens,
                cache.read_tokens,
            )
            entry.output_tokens = reply.output_tokens
            payload = self._message_json(body["model"], reply, input_tokens, cache)
            if fault == "malformed":
                # A 200 whose JSON breaks off half way, as a dropped proxy stream would.
                payload = payload[: len(payload) // 2]
            return bytes_response(200, payload, api_headers(request_id, state.limits))
        finally:
            if not settled:
                # Failed or abandoned: none of the output was produced.
                state.limits.refund_output(max_tokens, time.time())

    async def _scripted_error(self, scripted: ScriptedResponse) -> None:
        if scripted.latency_ms:
            await self._sleep_ms(scripted.latency_ms)
        headers: dict[str, str] = {}
        if scripted.status == 429:
            retry_after_s = scripted.retry_after_s
            if retry_after_s is None:
                retry_after_s = self.state.config.retry_after_s
            headers["retry-after"] = retry_after_header(retry_after_s)
        message = scripted.message or _default_message(scripted.status)
        raise APIErrorReply(scripted.status, message, scripted.error_type, headers)

    async def _fault(self, fault: str) -> None:
        config = self.state.config
        if fault == "429":
            raise APIErrorReply(
                429,
                "Number of requests has exceeded your rate limit (injected).",
                headers={"retry-after": retry_after_header(config.retry_after_s)},
            )
        if fault == "529":
            raise APIErrorReply(529, "Overloaded")
        if fault == "500":
            raise APIErrorReply(500, "Internal server error")
        # A hang: ends early only if the client goes away (the handler is cancelled).
        await asyncio.sleep(config.hang_s)
        raise APIErrorReply(500, f"the request hung for {config.hang_s:g} s and gave up")

    def _reply(
        self,
        body: dict[str, Any],
        body_sha256: str,
        chorus_key: str | None,
        scripted: ScriptedResponse | None,
    ) -> ReplyParts:
        """What a successful call answers."""
        config = self.state.config
        stop_sequence: str | None = None
        if scripted is not None and scripted.content is not None:
            content = scripted.content
            output_tokens = sum(count_block_tokens(block) for block in content)
            stop_reason = "end_turn"
        else:
            if scripted is not None and scripted.text is not None:
                text = scripted.text
            else:
                rng = reply_rng(config.seed, body_sha256, chorus_key)
                text = generate_reply(rng, config.reply_min_tokens, config.reply_max_tokens)
            limited = apply_limits(text, body["max_tokens"], body.get("stop_sequences") or ())
            content = [{"type": "text", "text": limited.text}]
            output_tokens = count_text_tokens(limited.text)
            stop_reason, stop_sequence = limited.stop_reason, limited.stop_sequence
        if scripted is not None:
            if scripted.stop_reason is not None:
                stop_reason = scripted.stop_reason
            if scripted.output_tokens is not None:
                output_tokens = int(scripted.output_tokens)
        return ReplyParts(content, stop_reason, stop_sequence, output_tokens)

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

    @staticmethod
    def _message_json(model: str, reply: ReplyParts, input_tokens: int, cache: CacheUsage) -> bytes:
        return json.dumps(
            {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": reply.content,
                "stop_reason": reply.stop_reason,
                "stop_sequence": reply.stop_sequence,
                "usage": {
                    "input_tokens": input_tokens,
                    "output_tokens": reply.output_tokens,
                    "cache_creation_input_tokens": cache.creation_tokens,
                    "cache_read_input_tokens": cache.read_tokens,
                },
            }
        ).encode()
