"""The API's error answers: status, error type and the JSON body the SDK parses.

`APIErrorReply` is raised inside a handler and turned into
`{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`
at one place, the handler's boundary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for(status: int) -> str:
    """The API's error type for `status`; unlisted 4xx are invalid requests, 5xx api errors."""
    known = ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    return json.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    ).encode()


class APIErrorReply(Exception):
    """Raised when a call is to be answered with an API error."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, error_type, headers)
        self.status = status
        self.message = message
        self.error_type = error_type or error_type_for(status)
        self.headers = dict(headers or {})


def invalid(message: str) -> APIErrorReply:
    """A 400 invalid_request_error."""
    return APIErrorReply(400, message)
