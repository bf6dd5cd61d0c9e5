"""How a call ended, in the API's words: only a complete answer is a success.

A message can come back and still not answer: cut off at ``max_tokens``
(perhaps with every token spent thinking and no text at all), declined
(``refusal``), stopped by the context window, left paused by a server tool, or
empty. Each is an :class:`Outcome`; :func:`classify` reads it off the message
and says why, with the advice that fixes it. Everything downstream (votes,
fan-ins, ``min_success``, batch status, Flower, metrics) counts
:attr:`Outcome.COMPLETE` alone as a success.

Stop reasons: the SDK's ``types/stop_reason.py``; what each means:
platform.claude.com/docs/en/build-with-claude/handling-stop-reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How one call ended. Every value but ``complete`` and ``failed`` is an answered call."""

    COMPLETE = "complete"  # end_turn, stop_sequence or tool_use, with something to read
    TRUNCATED = "truncated"  # max_tokens, with the answer so far
    TRUNCATED_BY_THINKING = "truncated_by_thinking"  # max_tokens reached while thinking: no text
    REFUSED = "refused"  # refusal (stop_details says why, when it can)
    CONTEXT_EXCEEDED = "context_exceeded"  # model_context_window_exceeded
    PAUSED_TURN = "paused_turn"  # pause_turn, still paused after chorus's continuations
    EMPTY = "empty"  # a natural end with no text and no tool call
    INCOMPLETE = "incomplete"  # a stop reason chorus does not know
    INVALID_OUTPUT = "invalid_output"  # a structured answer that stayed invalid after re-asks
    FAILED = "failed"  # no message: the call failed (the error says why)

    @property
    def answered(self) -> bool:
        """A message came back (and was paid for), whether or not it answers."""
        return self is not Outcome.FAILED


COMPLETE_STOP_REASONS = frozenset({"end_turn", "stop_sequence", "tool_use"})
# An answered outcome other than complete ends its item failed, with this
# error type (the ledger counts items by it).
NOT_COMPLETE = frozenset(o.value for o in Outcome if o.answered and o is not Outcome.COMPLETE)


def answer_text(content: Sequence[Mapping[str, Any]]) -> str:
    """The text blocks joined: what a person reads (thinking is not part of it)."""
    return "".join(str(block.get("text", "")) for block in content if block.get("type") == "text")


def classify(message: Mapping[str, Any], max_tokens: int | None = None) -> tuple[Outcome, str]:
    """(outcome, why): why is "" for a complete answer, else a sentence with its remedy."""
    content = [b for b in message.get("content") or [] if isinstance(b, Mapping)]
    stop_reason = message.get("stop_reason")
    has_text = bool(answer_text(content).strip())
    has_tool_call = any(b.get("type") == "tool_use" for b in content)
    usage = message.get("usage") or {}
    output_tokens = int(usage.get("output_tokens") or 0)
    limit = f"max_tokens={max_tokens}" if max_tokens is not None else "max_tokens"
    if stop_reason in COMPLETE_STOP_REASONS:
        if has_text or has_tool_call:
            return Outcome.COMPLETE, ""
        return Outcome.EMPTY, (
            f"the reply ended ({stop_reason}) with no text and no tool call: nothing to read"
        )
    if stop_reason == "max_tokens":
        if has_text or has_tool_call:
            return Outcome.TRUNCATED, (
                f"the answer was cut off at {limit} ({output_tokens} output tokens); the text "
                "so far is kept. Raise max_tokens for the whole answer"
            )
        thinking = _thinking_tokens(usage, content)
        if thinking:
            return Outcome.TRUNCATED_BY_THINKING, (
                f"every output token ({output_tokens}, {limit}) went to thinking and no answer "
                "came. Raise max_tokens (thinking counts against it), or lower "
                "output_config.effort, or turn thinking off where the model allows it"
            )
        return Outcome.TRUNCATED, f"the reply was cut off at {limit} before any text"
    if stop_reason == "refusal":
        details = message.get("stop_details") or {}
        category = details.get("category") if isinstance(details, Mapping) else None
        explanation = details.get("explanation") if isinstance(details, Mapping) else None
        why = "the model declined to answer (stop_reason refusal"
        why += f", category {category})" if category else ")"
        return Outcome.REFUSED, why + (f": {explanation}" if explanation else "")
    if stop_reason == "model_context_window_exceeded":
        return Outcome.CONTEXT_EXCEEDED, (
            "the model's context window filled before the answer ended; shorten the prompt "
            "or lower max_tokens"
        )
    if stop_reason == "pause_turn":
        return Outcome.PAUSED_TURN, (
            "a server tool paused the turn and it was still paused after chorus sent it back "
            "as many times as CHORUS_ANTHROPIC__MAX_CONTINUATIONS allows"
        )
    return Outcome.INCOMPLETE, f"the reply stopped with an unknown stop_reason {stop_reason!r}"


def _thinking_tokens(usage: Mapping[str, Any], content: Sequence[Mapping[str, Any]]) -> int:
    details = usage.get("output_tokens_details")
    if isinstance(details, Mapping) and details.get("thinking_tokens"):
        return int(details["thinking_tokens"])
    # Without the breakdown, a thinking block alone says the same.
    if any(b.get("type") in ("thinking", "redacted_thinking") for b in content):
        return int(usage.get("output_tokens") or 1)
    return 0
