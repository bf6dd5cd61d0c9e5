"""Long generations through the SDK's streaming API: events in, one message out.

A call whose ``max_tokens`` makes a long generation possible is streamed.
The threshold is the SDK's own rule: it refuses a non-streaming request whose
``3600 * max_tokens / 128000`` seconds exceed ten minutes, i.e. ``max_tokens``
above 21,333 (``_base_client.py``, ``_calculate_nonstreaming_timeout``), and
the documentation says to stream long requests (api/errors, "Long requests").

The SDK parses the server-sent events and assembles them into the same message
a non-streamed call returns (``lib/streaming/_messages.py``); chorus keeps
that message. The timeout is on silence, not on length: each read waits at
most ``silence_s`` for the next bytes (the API's ``ping`` events keep a quiet
stream alive), so a generation may run as long as tokens keep coming.

A stream that breaks off part way (an ``error`` event, a dropped connection, a
silence) raises the error its status would, carrying the usage seen so far in
``partial_usage``: those tokens may have been billed.
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import httpx2

from workers.errors import ConnectionFailed, ProviderError, ProviderTimeout, error_for_status
from workers.models import CallRequest

STREAM_ABOVE_MAX_TOKENS = 21_333
# The status each error type comes with, for an `error` event mid-stream (whose
# response was a 200): classified as the same error answered up front would be.
STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# Characters per output token, to estimate what a broken stream generated.
CHARS_PER_TOKEN = 4


class _Progress:
    """What a stream has delivered so far: enough to say what it may have cost."""

    def __init__(self) -> None:
        self.started = False
        self.usage: dict[str, int] = {}
        self.delta_chars = 0

    def see(self, event: Any) -> None:
        kind = getattr(event, "type", "")
        if kind == "message_start":
            self.started = True
            raw = event.message.usage.to_dict()
            self.usage = {k: v for k, v in raw.items() if isinstance(v, int)}
        elif kind == "content_block_delta":
            delta = event.delta
            for name in ("text", "thinking", "partial_json"):
                value = getattr(delta, name, None)
                if isinstance(value, str):
                    self.delta_chars += len(value)
        elif kind == "message_delta":
            self.usage["output_tokens"] = event.usage.output_tokens

    def partial_usage(self) -> dict[str, int]:
        estimated = self.delta_chars // CHARS_PER_TOKEN
        return {**self.usage, "output_tokens": max(self.usage.get("output_tokens", 0), estimated)}


def stream_message(
    client: anthropic.Anthropic,
    request: CallRequest,
    *,
    headers: dict[str, str],
    extra_body: dict[str, Any] | None,
    silence_s: float,
    connect_s: float,
) -> tuple[dict[str, Any], httpx2.Response, float]:
    """Stream one call: (the assembled message, the HTTP response, seconds taken).

    Raises:
        ProviderError: as a non-streamed call would, with ``partial_usage`` set
            when the stream broke off after it began.
    """
    from workers.provider import translate_status_error

    progress = _Progress()
    started = time.perf_counter()
    try:
        with client.messages.stream(
            **request.api_params(),
            extra_headers=headers,
            extra_body=extra_body,
            timeout=httpx2.Timeout(silence_s, connect=min(connect_s, silence_s)),
        ) as stream:
            for event in stream:
                progress.see(event)
            message = stream.get_final_message().to_dict(mode="json")
            response = stream.response
    except anthropic.APIStatusError as exc:
        if exc.status_code == 200:  # an `error` event part way through
            raise _broke(_mid_stream_error(exc), progress) from exc
        raise translate_status_error(exc) from exc
    except (anthropic.APITimeoutError, httpx2.TimeoutException) as exc:
        silent = ProviderTimeout(f"the stream was silent for {silence_s:g} s")
        raise _broke(silent, progress) from exc
    except (anthropic.APIConnectionError, httpx2.HTTPError) as exc:
        cut = ConnectionFailed(f"the stream broke off: {exc.__cause__ or exc}")
        raise _broke(cut, progress) from exc
    return message, response, time.perf_counter() - started


def _mid_stream_error(exc: anthropic.APIStatusError) -> ProviderError:
    error_type = exc.type or "api_error"
    status = STATUS_OF_ERROR_TYPE.get(error_type, 500)
    message = exc.api_message or f"the stream ended with an {error_type} event"
    return error_for_status(
        status, message, request_id=exc.request_id, api_type=error_type, error_code=exc.error_code
    )


def _broke(error: ProviderError, progress: _Progress) -> ProviderError:
    if progress.started:
        error.partial_usage = progress.partial_usage()
    return error
