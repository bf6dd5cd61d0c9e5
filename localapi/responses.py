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


def error_response(exc: APIErrorReply, request_id: str, limits: RateLimits) -> web.Response:
    headers = api_headers(request_id, limits)
    headers.update(exc.headers)
    response = bytes_response(
        exc.status, error_body(exc.error_type, exc.message, request_id), headers
    )
    if exc.status == 413:
        # The body was left unread; closing beats draining up to 32 MiB from the socket.
        response.force_close()
    return response


def admin_json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(payload).encode(), headers={"Content-Type": JSON_TYPE}
    )
