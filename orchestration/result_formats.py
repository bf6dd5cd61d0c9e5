"""An item's result as ``chorus results`` writes it: chorus's format, or the Message Batches API's.

The ledger keeps each call's message exactly as the API sent it; both
formats hand it on untouched (the content blocks, every usage field, the
stop details), never rebuilt.

**chorus's format**, one line per input item: ``id``, ``ok`` (a complete
answer), ``outcome`` (``complete``, ``truncated``, ``truncated_by_thinking``,
``refused``, ``context_exceeded``, ``paused_turn``, ``empty``, ``failed``, ...),
``state``, ``text``, then the message's own fields as received (``model``,
``message_id``, ``content``, ``stop_reason``, ``stop_sequence``,
``stop_details``, ``usage``), ``cost_usd``, ``calls``, ``delivery``,
``cached`` and ``error``.

**The Batches API's format**, one line per ended request:
``{"custom_id": ..., "result": {"type": "succeeded", "message": {...}}}`` for
every item the API answered (a truncated or refused message included, as the
Batches API itself reports them: read ``stop_reason``), ``errored`` with the
API's error object for a call that failed, ``canceled`` for an item cancelled
or skipped for the budget, ``expired`` for one paused and never resumed.
"""

from __future__ import annotations

from typing import Any

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


def as_chorus_result(stored: dict[str, Any], state_name: str) -> dict[str, Any]:
    """chorus's line for an item from what the ledger stored of it."""
    message = stored.get("message")
    if "message" not in stored:
        return {**stored, "state": state_name}  # a voted item's record, or an older one
    record: dict[str, Any] = {
        "id": stored["id"],
        "ok": stored["ok"],
        "outcome": stored.get("outcome"),
        "state": state_name,
        "text": "".join(
            block.get("text", "")
            for block in (message or {}).get("content") or []
            if block.get("type") == "text"
        ),
    }
    for name, field in _MESSAGE_FIELDS:
        record[name] = None if message is None else message.get(field)
    for name in ("cost_usd", "calls", "delivery", "cached", "error"):
        record[name] = stored.get(name)
    return record


def as_batches_result(stored: dict[str, Any], state: str) -> dict[str, Any] | None:
    """The Batches API's result line for an item, or None while it has not ended."""
    custom_id = stored["id"]
    message = stored.get("message")
    if state in ("c", "f") and message is not None:
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
    if state == "c":  # a voted item, or one stored before messages were kept whole
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": _legacy(stored)}}
    if state == "f":
        error = stored.get("error") or {}
        error_object: dict[str, Any] = {
            "type": error.get("type", "api_error"),
            "message": error.get("message", ""),
        }
        if error.get("code"):
            error_object["details"] = {"error_code": error["code"]}
        return {
            "custom_id": custom_id,
            "result": {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": error_object,
                    "request_id": error.get("request_id"),
                },
            },
        }
    if state in ("x", "b"):
        return {"custom_id": custom_id, "result": {"type": "canceled"}}
    if state == "z":
        return {"custom_id": custom_id, "result": {"type": "expired"}}
    return None


def _legacy(stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": stored.get("message_id"),
        "type": "message",
        "role": "assistant",
        "model": stored.get("model"),
        "content": stored.get("content") or [{"type": "text", "text": stored.get("text", "")}],
        "stop_reason": stored.get("stop_reason"),
        "stop_sequence": stored.get("stop_sequence"),
        "usage": stored.get("usage"),
    }
