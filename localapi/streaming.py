"""A message as the API streams it: server-sent events, in the documented order.

``message_start`` (the message with no content, ``stop_reason`` null, the
input side of ``usage``), a ``ping``, then for each content block
``content_block_start`` (the block with its text, thinking or input empty),
its deltas (``text_delta``, ``thinking_delta`` then one ``signature_delta``
just before the stop, ``input_json_delta`` for tool inputs; result blocks
arrive whole in their start event) and ``content_block_stop``; then
``message_delta`` (stop reason, stop details, the cumulative output usage)
and ``message_stop``. A stream can fail part way with an ``error`` event, as
the API's does when it is overloaded mid-answer.

Source: platform.claude.com/docs/en/build-with-claude/streaming; the SDK's
``types/raw_*_event.py`` and ``lib/streaming/_messages.py`` (how it
assembles the events back into a message).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

Event = tuple[str, dict[str, Any]]
# Characters of text per delta event: a handful of tokens, as the API sends them.
TEXT_CHUNK_CHARS = 24
JSON_CHUNK_CHARS = 32
# The usage fields message_delta repeats (its SDK type has no others).
_DELTA_USAGE_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "output_tokens_details",
    "server_tool_use",
)


def _chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def _block_events(index: int, block: dict[str, Any]) -> Iterator[Event]:
    kind = block.get("type")
    if kind == "text":
        yield "content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {**block, "text": ""},
        }  # fmt: skip
        for piece in _chunks(block.get("text", ""), TEXT_CHUNK_CHARS):
            yield _delta(index, {"type": "text_delta", "text": piece})
    elif kind == "thinking":
        yield "content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {**block, "thinking": "", "signature": ""},
        }  # fmt: skip
        for piece in _chunks(block.get("thinking", ""), TEXT_CHUNK_CHARS):
            yield _delta(index, {"type": "thinking_delta", "thinking": piece})
        yield _delta(index, {"type": "signature_delta", "signature": block.get("signature", "")})
    elif kind in ("tool_use", "server_tool_use"):
        yield "content_block_start", {
            "type": "content_block_start", "index": index,
            "content_block": {**block, "input": {}},
        }  # fmt: skip
        encoded = json.dumps(block.get("input", {}), separators=(",", ":"))
        for piece in _chunks(encoded, JSON_CHUNK_CHARS):
            yield _delta(index, {"type": "input_json_delta", "partial_json": piece})
    else:  # redacted thinking, server tool results, uploads: whole in the start event
        yield "content_block_start", {
            "type": "content_block_start", "index": index, "content_block": block,
        }  # fmt: skip
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def _delta(index: int, delta: dict[str, Any]) -> Event:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def message_events(message: dict[str, Any]) -> list[Event]:
    """The events that stream ``message`` (a complete Messages API reply body)."""
    usage = dict(message.get("usage") or {})
    start_usage = {**usage, "output_tokens": min(1, int(usage.get("output_tokens", 0)))}
    start_usage.pop("output_tokens_details", None)
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": start_usage,
    }
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message.get("content") or []):
        events += _block_events(index, block)
    delta: dict[str, Any] = {
        "stop_reason": message.get("stop_reason"),
        "stop_sequence": message.get("stop_sequence"),
        "stop_details": message.get("stop_details"),
    }
    if message.get("container") is not None:
        delta["container"] = message["container"]
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": delta,
                "usage": {k: usage[k] for k in _DELTA_USAGE_FIELDS if k in usage},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def error_event(error: dict[str, Any]) -> Event:
    """A stream that fails part way ends with this (``error``: the API's error object)."""
    return "error", {"type": "error", "error": error}


def encode(event: Event) -> bytes:
    name, data = event
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def output_tokens_in(event: Event) -> int:
    """A rough count of the output tokens an event carries, to pace a stream by."""
    name, data = event
    if name != "content_block_delta":
        return 0
    delta = data["delta"]
    text = delta.get("text") or delta.get("thinking") or delta.get("partial_json") or ""
    return max(1, len(text) // 4) if text else 0
