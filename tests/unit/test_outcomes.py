"""How a call ended: every stop reason has its outcome, and only a complete answer is ok."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from anthropic.types import StopReason

from orchestration.result_formats import as_chorus_result
from workers.items import BatchOption
from workers.models import Envelope, Usage
from workers.outcomes import COMPLETE_STOP_REASONS, Outcome, classify
from workers.tasks import receipt

THINKING = {"type": "thinking", "thinking": "", "signature": "c2ln"}
TEXT = {"type": "text", "text": "Paris."}
TOOL_CALL = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}


def message(
    stop_reason: str | None,
    content: list[dict[str, Any]],
    *,
    output_tokens: int = 30,
    thinking_tokens: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "output_tokens": output_tokens,
            "output_tokens_details": {"thinking_tokens": thinking_tokens},
        },
        **extra,
    }


@pytest.mark.parametrize(
    ("stop_reason", "content", "expected"),
    [
        ("end_turn", [THINKING, TEXT], Outcome.COMPLETE),
        ("stop_sequence", [TEXT], Outcome.COMPLETE),
        ("tool_use", [THINKING, TOOL_CALL], Outcome.COMPLETE),
        ("end_turn", [THINKING], Outcome.EMPTY),
        ("end_turn", [{"type": "text", "text": "  \n"}], Outcome.EMPTY),
        ("max_tokens", [THINKING, TEXT], Outcome.TRUNCATED),
        ("max_tokens", [], Outcome.TRUNCATED),
        ("refusal", [], Outcome.REFUSED),
        ("model_context_window_exceeded", [TEXT], Outcome.CONTEXT_EXCEEDED),
        ("pause_turn", [TOOL_CALL], Outcome.PAUSED_TURN),
        ("a_stop_reason_of_2027", [TEXT], Outcome.INCOMPLETE),
        (None, [TEXT], Outcome.INCOMPLETE),
    ],
)
def test_each_stop_reason_has_its_outcome(
    stop_reason: str | None, content: list[dict[str, Any]], expected: Outcome
) -> None:
    outcome, why = classify(message(stop_reason, content))

    assert outcome is expected
    assert (why == "") is (expected is Outcome.COMPLETE)


def test_every_stop_reason_the_sdk_knows_is_classified_by_name() -> None:
    for stop_reason in typing.get_args(StopReason):
        outcome, _ = classify(message(stop_reason, [TEXT, TOOL_CALL]))
        assert outcome is not Outcome.INCOMPLETE, stop_reason
        assert (outcome is Outcome.COMPLETE) is (stop_reason in COMPLETE_STOP_REASONS)


def test_max_tokens_spent_thinking_is_named_and_says_what_fixes_it() -> None:
    outcome, why = classify(
        message("max_tokens", [THINKING], output_tokens=150, thinking_tokens=150), max_tokens=150
    )

    assert outcome is Outcome.TRUNCATED_BY_THINKING
    assert "max_tokens=150" in why and "Raise max_tokens" in why and "effort" in why


def test_a_refusal_says_its_category_and_explanation() -> None:
    details = {"type": "refusal", "category": "cyber", "explanation": "Declined."}
    _, why = classify(message("refusal", [], stop_details=details))

    assert "category cyber" in why and "Declined." in why


def test_only_a_complete_answer_is_ok_and_every_other_answer_says_why() -> None:
    complete = Envelope.answered("k", message("end_turn", [THINKING, TEXT]))
    truncated = Envelope.answered(
        "k", message("max_tokens", [THINKING], output_tokens=20, thinking_tokens=20), max_tokens=20
    )

    assert complete.ok and complete.outcome is Outcome.COMPLETE and complete.error is None
    assert not truncated.ok and truncated.outcome is Outcome.TRUNCATED_BY_THINKING
    assert truncated.error is not None and truncated.error.type == "truncated_by_thinking"
    assert truncated.outcome.answered and not Outcome.FAILED.answered


def test_the_receipt_flower_lists_names_the_outcome_and_is_ok_only_when_complete() -> None:
    item = BatchOption(id="b-1", index=0, item="q1")
    refused = Envelope.answered("k", message("refusal", []))
    complete = Envelope.answered("k", message("end_turn", [TEXT]))

    said = receipt(refused, item)
    assert (said["ok"], said["outcome"], said["error"]) == (False, "refused", "refused")
    said = receipt(complete, item)
    assert (said["ok"], said["outcome"], said["error"]) == (True, "complete", None)


def test_an_envelope_keeps_the_message_exactly_as_received_through_json() -> None:
    received = message(
        "end_turn",
        [THINKING, {"type": "redacted_thinking", "data": "ZW5j"}, TEXT],
        stop_details=None,
        container=None,
    )
    received["usage"] |= {
        "cache_creation": {"ephemeral_1h_input_tokens": 7, "ephemeral_5m_input_tokens": 0},
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
        "service_tier": "standard",
        "inference_geo": "global",
        "a_field_of_2027": {"nested": [1, 2]},
    }
    envelope = Envelope.answered("k", json.loads(json.dumps(received)))

    again = Envelope.model_validate_json(envelope.model_dump_json())

    assert again.message == received
    assert again.text == "Paris."
    assert again.usage.cache_creation.ephemeral_1h_input_tokens == 7
    assert again.usage.server_tool_use.web_search_requests == 2


def test_usage_views_add_up_field_by_field() -> None:
    one = Usage.from_api(
        {"input_tokens": 5, "output_tokens": 3, "output_tokens_details": {"thinking_tokens": 2}}
    )
    two = Usage.from_api(
        {"input_tokens": 1, "output_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 4}}
    )

    both = one + two

    assert (both.input_tokens, both.output_tokens, both.thinking_tokens) == (6, 4, 2)
    assert both.cache_creation.ephemeral_1h_input_tokens == 4


def test_an_envelope_stored_before_messages_were_kept_whole_still_reads() -> None:
    legacy = {
        "ok": True,
        "key": "v1:abc",
        "model": "claude-sonnet-5",
        "message_id": "msg_old",
        "text": "Paris.",
        "content": [TEXT],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 2},
        "attempts": 1,
    }

    envelope = Envelope.model_validate(legacy)

    assert envelope.ok and envelope.outcome is Outcome.COMPLETE
    assert envelope.text == "Paris." and envelope.message_id == "msg_old"
    assert envelope.usage.output_tokens == 2


def test_a_result_stored_by_an_older_version_reads_cached_as_from_store() -> None:
    # "cached" meant "from chorus's result store", beside the API's prompt-cache fields.
    stored = Envelope.answered("v1:abc", {"content": [TEXT], "stop_reason": "end_turn"})
    old = {**stored.model_dump(mode="json", exclude={"from_store"}), "cached": True}

    assert Envelope.model_validate(old).from_store
    assert "cached" not in Envelope.model_validate(old).model_dump()
    record = as_chorus_result({"id": "i1", **old}, "complete")
    assert record["from_store"] is True and "cached" not in record
