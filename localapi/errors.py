"""The API's error answers: status, error type and the JSON body the SDK parses.

`APIErrorReply` is raised inside a handler and turned into
`{"type": "error", "error": {"type": ..., "message": ..., "details": {"error_code": ...}},
"request_id": ...}` at one place, the handler's boundary; `details` only when
the error has a code (the SDK reads it into `APIStatusError.error_code`).

The documented codes the local API can answer with (SDK `types/shared/*_details.py`,
platform.claude.com/docs/en/api/errors), by status: see :data:`ERROR_CODES`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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


# error.details.error_code values and the status each comes with.
ERROR_CODES: dict[str, int] = {
    "enforced_spend_limit_reached": 429,
    "contract_spend_limit_reached": 429,
    "ramp_limit_exceeded": 429,
    "linked_organization_spend_limit_reached": 402,
    "organization_on_hold": 400,
    "request_body_encoding_invalid": 400,
    "request_body_encoding_unsupported": 400,
    "request_body_too_large_after_decoding": 413,
}


def error_type_for(status: int) -> str:
    """The API's error type for `status`; unlisted 4xx are invalid requests, 5xx api errors."""
    known = ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "invalid_request_error" if status < 500 else "api_error"


def error_object(error_type: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    """The API's `error` object; `details.error_code` names the cause when there is one."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return error


def error_body(
    error_type: str, message: str, request_id: str, error_code: str | None = None
) -> bytes:
    return json.dumps(
        {
            "type": "error",
            "error": error_object(error_type, message, error_code),
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
        error_code: str | None = None,
    ) -> None:
        super().__init__(status, message, error_type, headers, error_code)
        self.status = status
        self.message = message
        self.error_type = error_type or error_type_for(status)
        self.headers = dict(headers or {})
        self.error_code = error_code


def invalid(message: str) -> APIErrorReply:
    """A 400 invalid_request_error."""
    return APIErrorReply(400, message)
