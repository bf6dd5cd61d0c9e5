"""An item's result as ``chorus results`` writes it: chorus's format, or the Message Batches API's.

The ledger keeps each call's message exactly as the API sent it (the body of
its reply, or for a streamed call the message the SDK assembled from the
events); both formats hand it on untouched (every content block, every usage
field, the stop details), never rebuilt. A turn a server tool paused is sent
back (``pause_turn``) and kept as one message: the last reply, with the whole
turn's content and the usage of every call summed (``workers.call``).

**chorus's format**, one line per input item: ``id``, ``ok`` (a complete
answer), ``outcome`` (``complete``, ``truncated``, ``truncated_by_thinking``,
``refused``, ``context_exceeded``, ``paused_turn``, ``empty``, ``failed``, ...),
``state``, ``text`` (the text blocks joined: ``workers.outcomes.answer_text``),
then the message's own fields as received (``model``, ``message_id``,
``content``, ``stop_reason``, ``stop_sequence``, ``stop_details``, ``usage``),
``cost_usd``, ``calls``, ``delivery``, ``from_store`` and ``error``; a structured
answer's item adds ``data`` (the value, valid against the schema), ``reasks``
and ``reask_cost_usd`` (``workers.structured``).

**The Batches API's format**, one line per ended request, each a
``MessageBatchIndividualResponse`` (SDK
``anthropic/types/messages/message_batch_individual_response.py``; the
results file of platform.claude.com/docs/en/build-with-claude/batch-processing,
"Retrieving batch results")::

    {"custom_id": "...", "result": {"type": "succeeded", "message": {...}}}
    {"custom_id": "...", "result": {"type": "errored", "error": {"type": "error",
        "error": {"type": "...", "message": "..."}, "request_id": "req_..."}}}
    {"custom_id": "...", "result": {"type": "canceled"}}
    {"custom_id": "...", "result": {"type": "expired"}}

A structured answer's line adds ``data``, its value, beside ``custom_id``
(chorus's own field; the message is the API's, untouched).
``succeeded`` for every item the API answered (a truncated or refused message
included, as the Batches API itself reports them: read ``stop_reason``),
``errored`` with the API's error object for a call that failed, ``canceled``
for an item cancelled or skipped for the budget, ``expired`` for one paused
and never resumed.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from workers.models import Envelope
from workers.outcomes import answer_text

# The message's fields, as chorus's format shows them at the top level.
_MESSAGE_FIELDS = (
    ("model", "model"),
    ("message_id", "id"),
    ("content", "content"),
    ("stop_reason", "stop_reason"),
    ("stop_sequence", "stop_sequence"),
    ("stop_details", "stop_details"),
    ("usage", "usage"),
)


def _api_error_types() -> frozenset[str]:
    from anthropic.types.shared.error_type import ErrorType

    # The SDK's ErrorType, and the 413's type the errors page names
    # (platform.claude.com/docs/en/api/errors, "HTTP errors"), which it lacks.
    return frozenset(typing.get_args(ErrorType)) | {"request_too_large"}


# Error types the API itself sends: an error chorus received is written as it came.
API_ERROR_TYPES = _api_error_types()
# chorus's own error types that have an API counterpart; the others are the
# API's "api_error" (an error inside the service, not in the request).
_AS_API_ERROR_TYPE = {"request_exceeds_rate_limit": "rate_limit_error"}


def as_chorus_result(stored: dict[str, Any], state_name: str) -> dict[str, Any]:
    """chorus's line for an item, from what the ledger stored of it
    (``workers.ledger.result_record``) and its state's name."""
    message = stored.get("message")
    if "message" not in stored:
        return {**stored, "state": state_name}  # a voted item's record, or an older one
    record: dict[str, Any] = {
        "id": stored["id"],
        "ok": stored["ok"],
        "outcome": stored.get("outcome"),
        "state": state_name,
        "text": answer_text((message or {}).get("content") or []),
    }
    for name, field in _MESSAGE_FIELDS:
        record[name] = None if message is None else message.get(field)
    for name in ("cost_usd", "calls", "delivery", "from_store", "error"):
        record[name] = stored.get(name)
    if stored.get("data") is not None or stored.get("reasks"):
        # A structured answer (workers.structured): its value, and the re-asks it took.
        for name in ("data", "reasks", "reask_cost_usd"):
            record[name] = stored.get(name)
    if "cached" in stored and "from_store" not in stored:  # recorded by an older version
        record["from_store"] = stored["cached"]
    return record


def as_batches_result(stored: dict[str, Any], state: str) -> dict[str, Any] | None:
    """The Batches API's result line for an item (the shapes above), or None while it has not ended.

    ``stored``: what the ledger keeps of the item (``workers.ledger.result_record``);
    ``state``: its ledger state code (``workers.ledger.STATE_NAMES``).
    """
    custom_id = stored["id"]
    if state in ("c", "f"):
        message = stored["message"] if "message" in stored else _rebuilt_message(stored)
        if message is not None:
            line = {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
            if stored.get("data") is not None:
                line["data"] = stored["data"]  # chorus's own: the structured answer's value
            return line
        error = stored.get("error") or {
            "type": "api_error",
            "message": "chorus kept no message and no error for this item",
        }
        return {
            "custom_id": custom_id,
            "result": {"type": "errored", "error": error_response(error)},
        }
    if state in ("x", "b"):
        return {"custom_id": custom_id, "result": {"type": "canceled"}}
    if state == "z":
        return {"custom_id": custom_id, "result": {"type": "expired"}}
    return None


def error_response(error: Mapping[str, Any]) -> dict[str, Any]:
    """The API's error response for a failed call, from chorus's record of the error
    (``workers.models.ErrorInfo`` as JSON).

    ``{"type": "error", "error": {"type", "message"[, "details": {"error_code"}]},
    "request_id"}``: the shape of platform.claude.com/docs/en/api/errors ("Error
    shapes") and of the SDK's ``types/shared/error_response.py``. An error the
    API sent keeps its type, message, ``error_code`` and request id. An error of
    chorus's own (the API unreachable, a deadline, a dead-lettered task...) has
    no API type: it is written as the API's ``api_error`` (``rate_limit_error``
    for a request larger than the account's rate limit), its message led by
    chorus's type (``"connection_error: ..."``), and ``request_id`` null.
    """
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or "")
    if kind not in API_ERROR_TYPES:
        message = f"{kind}: {message}" if message else kind
        kind = _AS_API_ERROR_TYPE.get(kind, "api_error")
    error_object: dict[str, Any] = {"type": kind, "message": message}
    if error.get("code"):
        error_object["details"] = {"error_code": error["code"]}
    return {"type": "error", "error": error_object, "request_id": error.get("request_id")}


def _rebuilt_message(stored: dict[str, Any]) -> dict[str, Any] | None:
    """The message of a record that does not hold one: a voted item's (its majority
    text and summed usage, no id or model: no single reply of the API), or one
    stored before records held the message. Rebuilt by the envelope's own reading
    of such records (``Envelope._from_legacy``); None for a failure."""
    try:
        return Envelope.model_validate({"idempotency_key": "", **stored}).message
    except ValidationError:
        return None


def table_fields(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The fields of the first structured value among ``records`` that is an object:
    ``chorus results --format csv``'s columns when ``--fields`` names none."""
    for record in records:
        data = record.get("data")
        if isinstance(data, Mapping):
            return [str(name) for name in data]
    return []


def table_rows(records: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> Iterator[list[str]]:
    """A header, then one row per record (chorus's format): ``id``, ``outcome``, each of
    ``fields`` read from the item's ``data`` (``a.b`` reads a nested field, ``a.0``
    a list's first), and ``error``.

    An item without a valid value has empty field cells, its outcome (``failed``,
    ``invalid_output``, ...) or its state when it has not ended (``pending``), and
    its error's message. A cell holding an object or a list is its JSON; a boolean
    is ``true`` or ``false``, as in JSON.
    """
    yield ["id", "outcome", *fields, "error"]
    for record in records:
        data = record.get("data")
        error = record.get("error")
        message = error.get("message", "") if isinstance(error, Mapping) else ""
        outcome = record.get("outcome") if record.get("outcome") else record.get("state", "")
        cells = [_cell(_dig(data, name)) for name in fields]
        yield [str(record.get("id", "")), str(outcome or ""), *cells, str(message)]


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
