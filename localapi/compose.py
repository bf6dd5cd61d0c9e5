"""What a successful call answers: content blocks, stop reason and output tokens.

A reply is built as the real API builds one, in the order its blocks come:

1. **thinking**, when the call thinks (``localapi.thinking``). Its tokens are
   output tokens; when they fill ``max_tokens`` the reply ends there, with
   ``stop_reason: max_tokens`` and no text.
2. **a server tool's call and result**, when the request offers a server tool
   (web search, web fetch, code execution, tool search) and the call is not
   already the continuation of a paused turn; with the ``pause_turn`` fault the
   reply stops after it (``stop_reason: pause_turn``) and waits to be sent back.
3. **a tool call** when ``tool_choice`` forces one (``any`` or ``tool``):
   ``stop_reason: tool_use``, its input drawn from the tool's input schema
   (``localapi.schema_values``); cut part way, as text is, when it does not fit.
4. **text**, cut at what is left of ``max_tokens`` (``max_tokens``), at the
   context window (``model_context_window_exceeded``) or before a stop
   sequence (``stop_sequence``).

A request that asks for a structured answer (``localapi.structured``: the
schema in ``output_config.format``, chorus's answer tool forced, or the schema
in the prompt) gets, in place of 3 or 4, JSON that matches its schema, or with
``rate_invalid_output`` an invalid answer; ``ReplyParts.structured`` says how
it asked and whether the answer is invalid.

The ``refusal`` fault answers ``stop_reason: refusal`` with ``stop_details``
and no content, as a request declined before any output is; the
``context_exceeded`` fault stops the text part way with
``model_context_window_exceeded``. A script may replace any part (see
``localapi.script``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.models import ModelRules, last_assistant_block
from localapi.blocks import (
    RESULT_BLOCK_TYPES,
    SERVER_TOOLS,
    Block,
    BlockContext,
    build_blocks,
    server_tool_turn,
    text_block,
    thinking_block,
    tool_use_block,
)
from localapi.replies import apply_limits, generate_reply, generate_text
from localapi.schema_values import text_is_valid, value_for_schema
from localapi.script import ScriptedResponse
from localapi.structured import (
    UNSET,
    StructuredAnswer,
    answer_text,
    partial_object,
    structured_request,
    tool_input,
)
from localapi.thinking import plan_thinking
from localapi.tokens import count_block_tokens, count_text_tokens, truncate_to_tokens

REFUSAL_CATEGORIES = ("cyber", "bio", "frontier_llm", "reasoning_extraction", "general_harms")
# The server tool requests each result block counts in usage.server_tool_use.
_REQUEST_COUNTERS = {
    "web_search_tool_result": "web_search_requests",
    "web_fetch_tool_result": "web_fetch_requests",
}


@dataclass(slots=True)
class ReplyParts:
    """A reply before it is serialised: its content and what usage says of it."""

    content: list[Block]
    stop_reason: str
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    output_tokens: int = 0
    thinking_tokens: int = 0
    server_tool_use: dict[str, int] = field(
        default_factory=lambda: {"web_search_requests": 0, "web_fetch_requests": 0}
    )
    container: dict[str, Any] | None = None
    # Set when the reply answers a structured request (None: it asked for none,
    # or got no answer: a refusal, thinking that filled max_tokens, a script's blocks).
    structured: StructuredAnswer | None = None


@dataclass(frozen=True, slots=True)
class ReplyInputs:
    """What a reply is made from, besides the request body."""

    rules: ModelRules | None
    rng: random.Random
    reply_min_tokens: int
    reply_max_tokens: int
    # Output tokens left before the context window is full (None: not binding).
    context_room: int | None = None
    fault: str | None = None
    scripted: ScriptedResponse | None = None
    thinking_scale: float = 1.0
    # The share of answers to structured requests that come back invalid.
    rate_invalid_output: float = 0.0


def compose_reply(body: Mapping[str, Any], inputs: ReplyInputs) -> ReplyParts:
    """The reply to a valid request ``body`` (see the module docstring)."""
    scripted = inputs.scripted
    if scripted is not None and scripted.content is not None:
        parts = _counted(list(scripted.content), scripted.stop_reason or "end_turn")
    elif scripted is not None and scripted.blocks is not None:
        parts = _scripted_blocks(body, inputs, scripted.blocks)
    elif inputs.fault == "refusal":
        parts = _refusal(inputs.rng)
    else:
        parts = _generated(body, inputs)
    if scripted is not None:
        if scripted.stop_reason is not None:
            parts.stop_reason = scripted.stop_reason
        if scripted.output_tokens is not None:
            parts.output_tokens = int(scripted.output_tokens)
        if scripted.stop_details is not None:
            parts.stop_details = dict(scripted.stop_details)
    if parts.stop_reason == "refusal" and parts.stop_details is None:
        parts.stop_details = _refusal_details(inputs.rng)
    return parts


def _counted(content: list[Block], stop_reason: str) -> ReplyParts:
    parts = ReplyParts(content, stop_reason)
    for block in content:
        parts.output_tokens += count_block_tokens(block)
        counter = _REQUEST_COUNTERS.get(str(block.get("type")))
        if counter is not None:
            parts.server_tool_use[counter] += 1
    return parts


def _scripted_blocks(
    body: Mapping[str, Any], inputs: ReplyInputs, kinds: Sequence[str]
) -> ReplyParts:
    display = inputs.rules.display_default if inputs.rules is not None else "summarized"
    content = build_blocks(list(kinds), BlockContext(str(body["model"]), inputs.rng, display))
    last = content[-1]["type"] if content else ""
    stop_reason = "tool_use" if last == "tool_use" else "end_turn"
    if last in ("server_tool_use", *RESULT_BLOCK_TYPES):
        stop_reason = "pause_turn"
    return _counted(content, stop_reason)


def _refusal_details(rng: random.Random) -> dict[str, Any]:
    return {
        "type": "refusal",
        "category": rng.choice(REFUSAL_CATEGORIES),
        "explanation": "The request was declined by the local API's injected refusal.",
    }


def _refusal(rng: random.Random) -> ReplyParts:
    # Declined before any output: no content, no output tokens.
    return ReplyParts([], "refusal", stop_details=_refusal_details(rng))


def _generated(body: Mapping[str, Any], inputs: ReplyInputs) -> ReplyParts:
    rng = inputs.rng
    model = str(body["model"])
    max_tokens = int(body["max_tokens"])
    room = max_tokens
    cut_reason = "max_tokens"
    if inputs.context_room is not None and inputs.context_room < room:
        room, cut_reason = max(0, inputs.context_room), "model_context_window_exceeded"
    parts = ReplyParts([], "end_turn")

    plan = plan_thinking(body, inputs.rules, rng, inputs.thinking_scale)
    if plan.tokens > 0:
        spent = min(plan.tokens, room)
        parts.content.append(thinking_block(model, generate_text(rng, spent), display=plan.display))
        parts.output_tokens += spent
        parts.thinking_tokens = spent
        if spent >= room:
            parts.stop_reason = cut_reason
            return parts

    continuing = _continues_paused_turn(body.get("messages"))
    server_tool = _server_tool(body) if not continuing else None
    if server_tool is not None and _tool_choice_type(body) != "none":
        turn = server_tool_turn(server_tool, rng)
        parts.content += turn
        parts.output_tokens += count_block_tokens(turn[0])
        counter = _REQUEST_COUNTERS.get(server_tool)
        if counter is not None:
            parts.server_tool_use[counter] += 1
        if server_tool == "code_execution_tool_result":
            parts.container = {"id": f"container_{rng.getrandbits(64):016x}",
                               "expires_at": "2026-11-30T10:00:00Z"}  # fmt: skip
    # A drawn pause lets a continuation go on; a scripted one pauses every time.
    scripted_pause = inputs.scripted is not None and inputs.scripted.fault == "pause_turn"
    if inputs.fault == "pause_turn" and (scripted_pause or not continuing):
        if server_tool is None:
            turn = server_tool_turn("web_search_tool_result", rng)
            parts.content += turn
            parts.output_tokens += count_block_tokens(turn[0])
            parts.server_tool_use["web_search_requests"] += 1
        parts.stop_reason = "pause_turn"
        return parts

    forced = _forced_tool(body)
    asked = structured_request(body, forced)
    scripted = inputs.scripted
    scripted_json = scripted.json if scripted is not None else UNSET
    invalid = False
    left = room - parts.output_tokens
    context_fault = inputs.fault == "context_exceeded"
    if forced is not None:
        name, schema = forced
        if asked is not None and asked.method == "tool":
            value, invalid = tool_input(asked, rng, inputs.rate_invalid_output, scripted_json)
            parts.structured = StructuredAnswer("tool", invalid, asked.followup)
        elif scripted_json is not UNSET:
            value = scripted_json
        else:
            drawn = value_for_schema(schema, rng)
            value = drawn if isinstance(drawn, dict) else {}  # a tool's input is an object
        block = {**tool_use_block(name, {}, rng), "input": value}
        return _tool_call(parts, block, left, cut_reason, context_fault)

    if scripted is not None and scripted.text is not None:
        text = scripted.text
        lenient = asked is not None and asked.method == "prompt"
        invalid = asked is not None and text_is_valid(text, asked.schema, lenient=lenient) is False
    elif asked is not None:
        text, invalid = answer_text(asked, rng, inputs.rate_invalid_output, scripted_json)
    elif scripted_json is not UNSET:
        text = json.dumps(scripted_json)
    else:
        text = generate_reply(rng, inputs.reply_min_tokens, inputs.reply_max_tokens)
    if asked is not None:
        parts.structured = StructuredAnswer(asked.method, invalid, asked.followup)
    if context_fault:
        left = min(left, max(1, count_text_tokens(text) // 2))
        cut_reason = "model_context_window_exceeded"
    limited = apply_limits(text, max(0, left), body.get("stop_sequences") or ())
    if limited.text:
        parts.content.append(text_block(limited.text))
    parts.output_tokens += count_text_tokens(limited.text)
    parts.stop_reason = cut_reason if limited.stop_reason == "max_tokens" else limited.stop_reason
    parts.stop_sequence = limited.stop_sequence
    return parts


def _tool_call(
    parts: ReplyParts, block: Block, left: int, cut_reason: str, context_fault: bool
) -> ReplyParts:
    """The reply ends with the tool call ``block`` (``tool_use``), or with as much of its
    input as fits in the ``left`` output tokens (``cut_reason``), as text is cut."""
    tokens = count_block_tokens(block)
    if context_fault:
        left = min(left, max(1, tokens // 2))
        cut_reason = "model_context_window_exceeded"
    if tokens <= left:
        parts.content.append(block)
        parts.output_tokens += tokens
        parts.stop_reason = "tool_use"
        return parts
    parts.stop_reason = cut_reason
    if left <= 0:
        return parts
    # Cut part way: the block holds what was written of its input.
    written = max(0, left - count_block_tokens({**block, "input": {}}))
    block["input"] = partial_object(truncate_to_tokens(json.dumps(block["input"]), written))
    parts.content.append(block)
    parts.output_tokens += left
    return parts


def _continues_paused_turn(messages: object) -> bool:
    """The conversation ends with an assistant turn a server tool paused (sent back as-is)."""
    return last_assistant_block(messages) in ("server_tool_use", *RESULT_BLOCK_TYPES)


def _tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = body.get("tools")
    return [t for t in tools if isinstance(t, Mapping)] if isinstance(tools, list) else []


def _server_tool(body: Mapping[str, Any]) -> str | None:
    """The result block type of the first server tool the request offers."""
    for tool in _tools(body):
        kind = str(tool.get("type", ""))
        for prefix, (_, result_type) in SERVER_TOOLS.items():
            if kind.startswith(prefix):
                return result_type
    return None


def _tool_choice_type(body: Mapping[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    return kind if isinstance(kind, str) else None


def _forced_tool(body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """(name, input schema) of the client tool ``tool_choice`` forces, if it forces one."""
    kind = _tool_choice_type(body)
    if kind not in ("any", "tool"):
        return None
    choice = body.get("tool_choice")
    wanted = choice.get("name") if kind == "tool" and isinstance(choice, Mapping) else None
    for tool in _tools(body):
        if "input_schema" not in tool:
            continue  # a server tool
        if wanted is None or tool.get("name") == wanted:
            schema = tool.get("input_schema")
            return str(tool.get("name")), schema if isinstance(schema, Mapping) else {}
    return None
