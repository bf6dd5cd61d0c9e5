"""Results in the Message Batches API's shape, so work moves between chorus and it.

One line per ended request:
``{"custom_id": ..., "result": {"type": "succeeded", "message": {...}}}``, or
``errored`` with the API's error object, ``canceled`` for an item cancelled
or skipped for the budget, ``expired`` for one paused and never resumed.
"""

from __future__ import annotations

from typing import Any


def as_batches_result(record: dict[str, Any], state: str) -> dict[str, Any] | None:
    """The Batches API's result line for an item, or None while it has not ended."""
    custom_id = record["id"]
    if state == "c":
        message = {
            "id": record.get("message_id"),
            "type": "message",
            "role": "assistant",
            "model": record.get("model"),
            "content": record.get("content") or [{"type": "text", "text": record.get("text", "")}],
            "stop_reason": record.get("stop_reason"),
            "stop_sequence": record.get("stop_sequence"),
            "usage": record.get("usage"),
        }
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
    if state == "f":
        error = record.get("error") or {}
        return {
            "custom_id": custom_id,
            "result": {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {
                        "type": error.get("type", "api_error"),
                        "message": error.get("message", ""),
                    },
                    "request_id": error.get("request_id"),
                },
            },
        }
    if state in ("x", "b"):
        return {"custom_id": custom_id, "result": {"type": "canceled"}}
    if state == "z":
        return {"custom_id": custom_id, "result": {"type": "expired"}}
    return None
