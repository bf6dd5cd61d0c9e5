"""Structured answers on the worker: how each model is asked, reading, validation, re-asks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from config.prices import ModelPrice
from config.structured import ANSWER_TOOL, SCHEMA_OPEN
from tests.unit.test_call import FakeClock, FakeProvider, make_deps
from workers import structured
from workers.call import execute
from workers.models import CallRequest
from workers.outcomes import Outcome
from workers.provider import ProviderReply

VERDICT = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["positive", "negative", "mixed"]},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["label", "score"],
    "additionalProperties": False,
}


def request(model: str = "claude-sonnet-5", **structured_fields: Any) -> CallRequest:
    return CallRequest.model_validate(
        {
            "model": model,
            "max_tokens": 300,
            "messages": [{"role": "user", "content": "Rate this review."}],
            "structured": {"json_schema": VERDICT, **structured_fields},
        }
    )


def text_reply(
    text: str, *, output_tokens: int = 20, model: str = "claude-sonnet-5"
) -> ProviderReply:
    return ProviderReply(
        message={
            "id": "msg_1",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": output_tokens},
        },
        request_id="req_1",
        latency_ms=5.0,
        limit_headers={},
    )


# --- how each model is asked -------------------------------------------------


def test_a_model_that_takes_structured_outputs_gets_the_sdks_transform_in_output_config() -> None:
    params = request("claude-sonnet-5").api_params()

    sent = params["output_config"]["format"]
    assert sent["type"] == "json_schema"
    # The SDK's transform: unsupported bounds move into the description.
    assert "minimum" not in sent["schema"]["properties"]["score"]
    assert "minimum: 1" in sent["schema"]["properties"]["score"]["description"]
    assert "structured" not in params  # chorus's own field never reaches the API
    assert "tools" not in params


def test_a_model_without_structured_outputs_but_with_forced_tools_gets_a_forced_tool_call() -> None:
    req = request("claude-haiku-5-5")
    params = req.api_params()

    assert req.schema_method == "tool"
    assert "format" not in params.get("output_config", {})
    assert params["tool_choice"] == {"type": "tool", "name": ANSWER_TOOL}
    assert params["tools"][-1]["input_schema"] == VERDICT


def test_a_model_that_refuses_both_gets_the_schema_in_the_system_prompt() -> None:
    # Sonnet 5.5: no output_config.format, and a forced tool choice answers 400.
    req = request("claude-sonnet-5-5")
    params = req.api_params()

    assert req.schema_method == "prompt"
    assert "tool_choice" not in params and "output_config" not in params
    assert SCHEMA_OPEN in params["system"]
    assert json.dumps(VERDICT) in params["system"]
    assert "claude-sonnet-5-5 takes no output_config.format" in (
        structured.fallback_note("claude-sonnet-5-5", "prompt") or ""
    )
    assert structured.fallback_note("claude-sonnet-5", "native") is None


def test_the_prompt_method_keeps_the_requests_own_system_prompt() -> None:
    req = request("claude-sonnet-5-5").model_copy(update={"system": "You are terse."})
    assert req.api_params()["system"].startswith("You are terse.\n\n")


def test_a_method_the_model_refuses_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValidationError, match=r"takes no output_config\.format"):
        request("claude-sonnet-5-5", method="native")
    with pytest.raises(ValidationError, match="refuses a forced tool choice"):
        request("claude-sonnet-5-5", method="tool")


def test_an_invalid_schema_is_refused_naming_where() -> None:
    bad = {"type": "object", "properties": {"x": {"type": "strin"}}}
    with pytest.raises(
        ValidationError, match=r"not a valid JSON Schema at \$\.properties\.x\.type"
    ):
        CallRequest.model_validate(
            {
                "model": "claude-sonnet-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "structured": {"json_schema": bad},
            }
        )


def test_a_schema_given_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="give the schema once"):
        CallRequest.model_validate(
            {
                "model": "claude-sonnet-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
                "output_config": {"format": {"type": "json_schema", "schema": VERDICT}},
                "structured": {"json_schema": VERDICT},
            }
        )


def test_the_schema_is_part_of_the_content_address() -> None:
    other = {**VERDICT, "required": ["label"]}
    a = request()
    b = a.model_copy(update={"structured": a.structured.model_copy(update={"json_schema": other})})  # type: ignore[union-attr]
    assert a.idempotency_key() != b.idempotency_key()


# --- reading and validating --------------------------------------------------


def test_a_valid_answer_reads_as_its_value() -> None:
    message = text_reply('{"label": "mixed", "score": 6}').message
    reading = structured.read(message, VERDICT, "native")
    assert reading.valid and reading.data == {"label": "mixed", "score": 6}


def test_a_schema_violation_names_the_path_and_the_rule_the_api_does_not_enforce() -> None:
    # minimum/maximum are not enforced by constrained decoding: chorus checks them.
    reading = structured.read(
        text_reply('{"label": "mixed", "score": 11}').message, VERDICT, "native"
    )
    assert not reading.valid
    assert "at $.score" in (reading.problem or "")
    assert "maximum of 10" in (reading.problem or "")


def test_not_json_says_where_it_broke() -> None:
    reading = structured.read(text_reply('{"label": "mixed", "sco').message, VERDICT, "native")
    assert reading.problem is not None and reading.problem.startswith("the answer is not JSON")
    assert "column" in reading.problem


def test_the_prompt_method_reads_through_a_code_fence_and_a_line_of_prose() -> None:
    fenced = '```json\n{"label": "positive", "score": 9}\n```'
    prosed = 'Here is the answer:\n{"label": "negative", "score": 2}'
    assert structured.read(text_reply(fenced).message, VERDICT, "prompt").data["score"] == 9
    assert structured.read(text_reply(prosed).message, VERDICT, "prompt").data["score"] == 2
    # The native method's answer is JSON by construction: no leniency there.
    assert not structured.read(text_reply(fenced).message, VERDICT, "native").valid


def test_the_tool_method_reads_the_forced_calls_input() -> None:
    message = {
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": ANSWER_TOOL, "input": {"label": "x"}}
        ],
        "stop_reason": "tool_use",
    }
    reading = structured.read(message, VERDICT, "tool")
    assert "at $.label" in (reading.problem or "") or "'score' is a required" in (
        reading.problem or ""
    )
    turns = structured.reask_turns(message, reading.problem or "", "tool")
    assert turns[0]["role"] == "assistant" and turns[0]["content"][0]["id"] == "toolu_1"
    result = turns[1]["content"][0]
    assert (
        result["type"] == "tool_result"
        and result["is_error"]
        and result["tool_use_id"] == "toolu_1"
    )


# --- re-asks through the call ------------------------------------------------

PRICE = ModelPrice(input_per_mtok=2.0, output_per_mtok=10.0)


def deps_for(provider: FakeProvider) -> Any:
    deps = make_deps(provider, FakeClock())
    deps.price_for = lambda model: PRICE
    return deps


def test_an_invalid_answer_is_asked_again_and_the_corrected_one_is_the_result() -> None:
    provider = FakeProvider(
        text_reply('{"label": "great", "score": 5}', output_tokens=20),
        text_reply('{"label": "positive", "score": 5}', output_tokens=30),
    )
    seen: list[CallRequest] = []
    original_send = provider.send

    def send(req: CallRequest, **kw: Any) -> ProviderReply:
        seen.append(req)
        return original_send(req, **kw)

    provider.send = send  # type: ignore[method-assign]
    envelope = execute(request(), deps_for(provider), time_limit_s=60)

    assert envelope.ok and envelope.outcome is Outcome.COMPLETE
    assert envelope.data == {"label": "positive", "score": 5}
    assert envelope.reasks == 1 and envelope.attempts == 2
    # The re-ask sent the invalid answer back, and the validator's message.
    followup = seen[1].messages
    assert followup[-2].role == "assistant" and "great" in followup[-2].text()
    assert "at $.label" in followup[-1].text() and "'great' is not one of" in followup[-1].text()
    # Usage sums both calls; the re-ask's cost is counted apart and inside the total.
    assert envelope.usage.output_tokens == 50 and envelope.usage.input_tokens == 200
    first = PRICE.cost_usd(_tokens(100, 20))
    assert envelope.cost_usd == pytest.approx(PRICE.cost_usd(_tokens(200, 50)))
    assert envelope.reask_cost_usd == pytest.approx(envelope.cost_usd - first)


def _tokens(input_tokens: int, output_tokens: int) -> Any:
    from config.prices import Tokens

    return Tokens(input=input_tokens, output=output_tokens)


def test_an_answer_still_invalid_after_the_reasks_ends_invalid_output() -> None:
    provider = FakeProvider(*(text_reply("not json") for _ in range(3)))
    envelope = execute(request(reask=2), deps_for(provider), time_limit_s=60)

    assert not envelope.ok and envelope.outcome is Outcome.INVALID_OUTPUT
    assert envelope.reasks == 2 and envelope.attempts == 3
    assert envelope.data is None
    assert envelope.error is not None and envelope.error.type == "invalid_output"
    assert "after 2 re-asks" in envelope.error.message
    assert envelope.cost_usd and envelope.cost_usd > 0  # every call was paid for


def test_no_reask_when_asked_for_none() -> None:
    provider = FakeProvider(text_reply("not json"))
    envelope = execute(request(reask=0), deps_for(provider), time_limit_s=60)
    assert envelope.outcome is Outcome.INVALID_OUTPUT and envelope.attempts == 1


def test_a_truncated_structured_answer_is_not_asked_again_and_says_raise_max_tokens() -> None:
    cut = text_reply('{"label": "pos')
    cut.message["stop_reason"] = "max_tokens"
    provider = FakeProvider(cut)
    envelope = execute(request(), deps_for(provider), time_limit_s=60)

    assert envelope.outcome is Outcome.TRUNCATED and envelope.attempts == 1
    assert envelope.error is not None
    assert "Raise max_tokens" in envelope.error.message
    assert "not valid JSON" in envelope.error.message


def test_the_budget_worst_case_counts_the_reasks() -> None:
    one = request(reask=0).worst_case_tokens(100)
    two = request(reask=1).worst_case_tokens(100)
    assert one.output == 300 and two.output == 600
    assert two.input == 2 * 100 + 300  # the second call carries the first answer
