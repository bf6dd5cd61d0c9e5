"""The Messages API through the official SDK: one attempt per call, errors translated.

The SDK runs with ``max_retries=0`` (docs/ARCHITECTURE.md, "Retries belong to
chorus"): each attempt is ours, so it passes through the rate limiter and is
counted. Every SDK error is translated here, at one boundary, into
``workers.errors`` with ``__cause__`` kept.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from config.models import SAMPLING_API_VERSION
from workers.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    MalformedResponse,
    ProviderError,
    ProviderTimeout,
    error_for_status,
)
from workers.models import CallRequest
from workers.streaming import STREAM_ABOVE_MAX_TOKENS, stream_message

RATELIMIT_HEADER_PREFIX = "anthropic-ratelimit-"
# Sent with every call so the local API can tell a paid duplicate from a
# new sample; the real API ignores it. It is a content hash, not a secret.
KEY_HEADER = "x-chorus-key"


@dataclass(frozen=True)
class ProviderReply:
    """One successful attempt: the message body and what the headers said."""

    message: dict[str, Any]
    request_id: str | None
    latency_ms: float
    limit_headers: dict[str, str] = field(default_factory=dict)


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds from a ``retry-after`` header: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now_s is None else now_s
    return max(0.0, parsed.timestamp() - now)


@contextmanager
def _translated(timeout_s: float, what: str = "") -> Iterator[None]:
    """The SDK's errors raised inside, as chorus's (``workers.errors``); ``what``
    prefixes their message."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        raise translate_status_error(exc) from exc
    except anthropic.APITimeoutError as exc:
        raise ProviderTimeout(f"{what}no answer within {timeout_s:g} s") from exc
    except anthropic.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        raise ConnectionFailed(f"{what}could not reach the API: {cause}") from exc


def _limit_headers(headers: httpx2.Headers) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith(RATELIMIT_HEADER_PREFIX)}


class ClientPool:
    """SDK clients of one HTTP connection each, lent to one thread at a time.

    One client shared by every thread would do, but its connection pool walks
    all the connections it holds on each request and again on each response:
    with 250 threads a call paid for 250 connections' checks. Here a thread
    borrows a client (O(1)), so each request sees one connection, and at most
    ``size`` connections are open: a thread past that waits for one.
    """

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout_s: float,
        connect_timeout_s: float,
        size: int,
    ) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
        self._size = size
        # Building an SSL context costs about 20 ms of CPU: one for every client.
        self._ssl = httpx2.create_ssl_context()
        self._idle: list[anthropic.Anthropic] = []
        self._all: list[anthropic.Anthropic] = []
        self._changed = threading.Condition()
        self._generation = 0  # one more at each close(): lent clients are then stale

    def _new(self) -> anthropic.Anthropic:
        http_client = anthropic.DefaultHttpxClient(
            limits=httpx2.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=self._timeout,
            verify=self._ssl,
        )
        # A placeholder keeps the SDK from hunting for profiles on disk; no
        # call is made without a real key (see Provider.send()).
        return anthropic.Anthropic(
            api_key=self._api_key or "missing",
            base_url=self._base_url,
            max_retries=0,
            http_client=http_client,
        )

    @contextmanager
    def client(self) -> Iterator[anthropic.Anthropic]:
        """A client for this thread alone until the block ends."""
        with self._changed:
            while not self._idle and len(self._all) >= self._size:
                self._changed.wait()
            generation = self._generation
            if self._idle:
                # The most recently used: its connection is the likeliest alive.
                client = self._idle.pop()
            else:
                client = self._new()
                self._all.append(client)
        try:
            yield client
        finally:
            with self._changed:
                returned = generation == self._generation
                if returned:
                    self._idle.append(client)
                    self._changed.notify()
            if not returned:  # the pool was closed while it was lent
                client.close()

    @property
    def open_clients(self) -> int:
        return len(self._all)

    def close(self) -> None:
        """Close the idle clients now, and each lent one when it comes back."""
        with self._changed:
            idle, self._all, self._idle = self._idle, [], []
            self._generation += 1
        for client in idle:
            client.close()


class Provider:
    """The Messages API for a worker process, shared by its threads."""

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 1000,
        stream_above_max_tokens: int = STREAM_ABOVE_MAX_TOKENS,
        stream_silence_s: float = 180.0,
    ) -> None:
        self._has_key = api_key is not None
        self._connect_timeout_s = connect_timeout_s
        self._stream_above = stream_above_max_tokens
        self._stream_silence_s = stream_silence_s
        self._clients = ClientPool(
            api_key=api_key,
            base_url=base_url,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            size=max_connections,
        )

    def close(self) -> None:
        self._clients.close()

    def count_tokens(self, request: CallRequest, *, timeout_s: float = 10.0) -> int:
        """The exact input tokens of ``request``, from the API (one request more).

        Raises:
            ProviderError: as :meth:`send` does.
        """
        params = {k: v for k, v in request.api_params().items() if k in COUNT_TOKENS_PARAMS}
        with _translated(timeout_s, "count_tokens: "), self._clients.client() as client:
            counted = client.messages.count_tokens(**params, timeout=timeout_s)
        return int(counted.input_tokens)

    # --- the Message Batches API (SDK resources/messages/batches.py) ---------

    def create_batch(self, requests: list[dict[str, Any]], *, timeout_s: float = 120.0) -> Any:
        """Create a Message Batch of ``requests`` (``custom_id``, ``params``); the SDK's
        ``MessageBatch``.

        Raises:
            ProviderError: as :meth:`send` does (the whole batch was refused).
        """
        with self._calling(timeout_s, "batch create: ") as client:
            return client.messages.batches.create(
                requests=requests,  # type: ignore[arg-type]
                timeout=timeout_s,
            )

    def retrieve_batch(self, batch_id: str, *, timeout_s: float = 30.0) -> Any:
        """The SDK's ``MessageBatch`` now. Raises ProviderError."""
        with self._calling(timeout_s, "batch retrieve: ") as client:
            return client.messages.batches.retrieve(batch_id, timeout=timeout_s)

    def cancel_batch(self, batch_id: str, *, timeout_s: float = 30.0) -> Any:
        """Ask the API to cancel a Message Batch; the SDK's ``MessageBatch``. Raises
        ProviderError."""
        with self._calling(timeout_s, "batch cancel: ") as client:
            return client.messages.batches.cancel(batch_id, timeout=timeout_s)

    def batch_results(self, batch_id: str, *, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        """An ended Message Batch's result lines, each as the API sent it (``custom_id``,
        ``result``). Raises ProviderError."""
        with self._calling(timeout_s, "batch results: ") as client:
            lines = client.messages.batches.results(batch_id, timeout=timeout_s)
            return [line.to_dict() for line in lines]

    @contextmanager
    def _calling(self, timeout_s: float, what: str = "") -> Iterator[anthropic.Anthropic]:
        """A pooled client, once the key is known to be set; the SDK's errors inside
        raised as chorus's (:func:`_translated`, ``what`` before their message)."""
        self._require_key()
        with _translated(timeout_s, what), self._clients.client() as client:
            yield client

    def _require_key(self) -> None:
        if not self._has_key:
            raise AuthenticationFailed(
                "ANTHROPIC_API_KEY is not set in the worker's environment", 401
            )

    def streams(self, request: CallRequest) -> bool:
        """Whether ``request`` goes through the streaming API (a long generation is possible)."""
        return request.max_tokens > self._stream_above

    def send(
        self, request: CallRequest, *, timeout_s: float, idempotency_key: str
    ) -> ProviderReply:
        """Make one attempt.

        A long generation (``max_tokens`` above ``stream_above_max_tokens``) is
        streamed (``workers.streaming``): no time limit but silence.

        Raises:
            ProviderError: a subclass saying whether another attempt may help.
        """
        self._require_key()
        headers = {KEY_HEADER: idempotency_key}
        extra_body: dict[str, Any] | None = None
        if request.uses_sampling_params:
            headers["anthropic-version"] = SAMPLING_API_VERSION
            extra_body = request.sampling_params()
        if self.streams(request):
            with self._clients.client() as client:
                message, response, seconds = stream_message(
                    client,
                    request,
                    headers=headers,
                    extra_body=extra_body,
                    silence_s=self._stream_silence_s,
                    connect_s=self._connect_timeout_s,
                )
            return ProviderReply(
                message=message,
                request_id=response.headers.get("request-id"),
                latency_ms=seconds * 1000.0,
                limit_headers=_limit_headers(response.headers),
            )
        started = time.perf_counter()
        with _translated(timeout_s), self._clients.client() as client:
            raw = client.messages.with_raw_response.create(
                **request.api_params(),
                extra_headers=headers,
                extra_body=extra_body,
                timeout=httpx2.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s)),
            )
            # Read (a no-op: the SDK reads non-streamed bodies) before the
            # client, and its one connection, goes back to the pool.
            raw.http_response.read()
        latency_ms = (time.perf_counter() - started) * 1000.0
        response = raw.http_response
        request_id = response.headers.get("request-id")
        message = _decode_message(response, request_id)
        return ProviderReply(
            message=message,
            request_id=request_id,
            latency_ms=latency_ms,
            limit_headers=_limit_headers(response.headers),
        )


COUNT_TOKENS_PARAMS = (
    "messages",
    "model",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
)


def translate_status_error(exc: anthropic.APIStatusError) -> ProviderError:
    """An SDK status error as one of ours, keeping the provider's type, code and request id.

    The wait is ``retry-after-ms`` when sent, else ``retry-after``; an
    ``x-should-retry`` header overrides whether to retry (both as the SDK reads
    them: ``_base_client.py``).
    """
    message = exc.api_message or f"HTTP {exc.status_code}"
    headers = exc.response.headers
    return error_for_status(
        exc.status_code,
        message,
        request_id=exc.request_id,
        api_type=exc.type,
        retry_after_s=retry_after_s(headers),
        error_code=exc.error_code,
        should_retry=should_retry(headers),
    )


def retry_after_s(headers: httpx2.Headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (milliseconds), else ``retry-after``."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def should_retry(headers: httpx2.Headers) -> bool | None:
    """``x-should-retry``: True or False when the API said, None when it did not."""
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _decode_message(response: httpx2.Response, request_id: str | None) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, httpx2.HTTPError) as exc:
        raise MalformedResponse(
            f"the API answered {response.status_code} with a body that is not JSON",
            response.status_code,
            request_id,
        ) from exc
    if not isinstance(body, dict) or not isinstance(body.get("content"), list):
        raise MalformedResponse(
            f"the API answered {response.status_code} without a message body",
            response.status_code,
            request_id,
        )
    return body
