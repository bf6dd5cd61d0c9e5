"""Building the HTTP answers: ids, JSON bodies and the headers every answer carries."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aiohttp import web

from localapi.buckets import RateLimits
from localapi.errors import APIErrorReply, error_body

JSON_TYPE = "application/json"
# aiohttp knows no reason phrase for 529.
_REASONS = {529: "Overloaded"}


def new_id(prefix: str) -> str:
    """`prefix` and 24 random alphanumerics (hex), like req_/msg_ ids."""
    return prefix + os.urandom(12).hex()


def api_headers(request_id: str, limits: RateLimits) -> dict[str, str]:
    """`request-id`, the rate-limit headers and the content type."""
    headers = limits.headers(time.time())
    headers["request-id"] = request_id
    headers["Content-Type"] = JSON_TYPE
    return headers


def bytes_response(status: int, body: bytes, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, reason=_REASONS.get(status), body=body, headers=headers)


# Codes whose 429 no wait clears (the limit must be raised): no retry-after,
# and x-should-retry: false.
NOT_RETRYABLE_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached"})


def should_retry(exc: APIErrorReply) -> str | None:
    """The `x-should-retry` header an error carries (the SDK obeys it), or None.

    The API documents no rule for it; the local API says "true" where another
    attempt can succeed (408, 409, 429, 5xx) and "false" where it cannot (a
    spend limit's 429).
    """
    if exc.error_code in NOT_RETRYABLE_CODES:
        return "false"
    if exc.status in (408, 409, 429) or exc.status >= 500:
        return "true"
    return None


def error_response(exc: APIErrorReply, request_id: str, limits: RateLimits) -> web.Response:
    headers = api_headers(request_id, limits)
    retry = should_retry(exc)
    if retry is not None:
        headers["x-should-retry"] = retry
    headers.update(exc.headers)
    response = bytes_response(
        exc.status, error_body(exc.error_type, exc.message, request_id, exc.error_code), headers
    )
    if exc.status == 413:
        # The body was left unread; closing beats draining up to 32 MiB from the socket.
        response.force_close()
    return response


def admin_json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(payload).encode(), headers={"Content-Type": JSON_TYPE}
    )
