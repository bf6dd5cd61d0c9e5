"""Batches-format results: each message exactly as the API sent it, read with the SDK's types.

The witness is the body on the wire: the local API answers over loopback HTTP,
the worker's own provider and call logic make the call, the ledger's record of
it goes through JSON as Redis keeps it, and each line ``chorus results
--format batches`` would write is read back with the SDK's own
``MessageBatchIndividualResponse``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message
from anthropic.types.messages import MessageBatchIndividualResponse

from localapi import LocalAPIServer
from orchestration.result_formats import as_batches_result, as_chorus_result, error_response
from workers import provider as provider_module
from workers.call import CallDeps, execute
from workers.items import state_of
from workers.ledger import STATE_NAMES, result_record
from workers.models import CallRequest, Envelope, ErrorInfo, Usage, sum_api_usage
from workers.outcomes import answer_text
from workers.provider import Provider
from workers.ratelimit.backends.stub import StubLimiter
from workers.retry import RetryPolicy

KEY = "sk-test-results"
MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPIServer]:
    with LocalAPIServer(latency_ms=0) as running:
        yield running


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every body the API answered with, as JSON, read where the provider reads it."""
    seen: list[Any] = []
    decode, translate = provider_module._decode_message, provider_module.translate_status_error

    def decoded(response: httpx2.Response, request_id: str | None) -> dict[str, Any]:
        seen.append(json.loads(response.content))
        return decode(response, request_id)

    def translated(exc: anthropic.APIStatusError) -> Any:
        seen.append(json.loads(exc.response.content))
        return translate(exc)

    monkeypatch.setattr(provider_module, "_decode_message", decoded)
    monkeypatch.setattr(provider_module, "translate_status_error", translated)
    return seen


def call(server: LocalAPIServer, prompt: str, *, base_url: str | None = None) -> Envelope:
    """One call as a worker makes it: the real provider, the call logic, one attempt."""
    provider = Provider(api_key=KEY, base_url=base_url or server.url, max_connections=1)
    deps = CallDeps(
        provider=provider,
        limiter=StubLimiter(),
        store=None,
        policy=RetryPolicy(max_attempts=1, base_delay_s=0.0, max_delay_s=0.0),
        bucket_id=lambda model: f"fp:{model}",
        estimate_input_tokens=lambda request: 10,
        rng=random.Random(0),
    )
    request = CallRequest.model_validate(
        {"model": MODEL, "max_tokens": 400, "messages": [{"role": "user", "content": prompt}]}
    )
    try:
        return execute(request, deps, time_limit_s=30)
    finally:
        provider.close()


def batches_line(item_id: str, envelope: Envelope) -> tuple[str, dict[str, Any]]:
    """(the ledger state, the Batches line ``chorus results`` writes) for a call's envelope."""
    state, _ = state_of(envelope)
    stored = json.loads(json.dumps(result_record(item_id, envelope)))  # as Redis keeps it
    line = as_batches_result(stored, state)
    assert line is not None
    return state, json.loads(json.dumps(line, ensure_ascii=False))  # as write_results writes it


SCRIPT = [
    {"match": "think", "responses": [{"blocks": ["thinking", "text"]}]},
    {
        "match": "search",
        "responses": [{"blocks": ["server_tool_use", "web_search_tool_result", "text"]}],
    },
    {
        "match": "pause",
        "responses": [
            {"blocks": ["server_tool_use", "web_search_tool_result"], "stop_reason": "pause_turn"},
            {"blocks": ["text"]},
        ],
    },
    {"match": "refuse", "responses": [{"fault": "refusal"}]},
    {
        "match": "tool",
        "responses": [
            {
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "find", "input": {"q": "é😀"}},
                ],
                "stop_reason": "tool_use",
            }
        ],
    },
    {"match": "cut", "responses": [{"stop_reason": "max_tokens"}]},
    {
        "match": "unknown block",
        "responses": [{"content": [{"type": "text", "text": "hi", "x": 1}]}],
    },
]


@pytest.mark.parametrize(
    ("prompt", "state"),
    [
        ("Say hello.", "c"),
        ("think it through", "c"),
        ("search the web for it", "c"),
        ("use a tool, please", "c"),
        ("an unknown block field", "c"),
        ("refuse this", "f"),  # answered, not complete: the Batches API calls it succeeded
        ("cut it short", "f"),
    ],
)
def test_a_succeeded_line_carries_the_message_exactly_as_the_api_sent_it(
    server: LocalAPIServer, wire: list[Any], prompt: str, state: str
) -> None:
    server.clear_script()
    server.script(SCRIPT)

    envelope = call(server, prompt)
    got_state, line = batches_line("req-1", envelope)

    (sent,) = wire
    assert got_state == state
    assert line == {"custom_id": "req-1", "result": {"type": "succeeded", "message": sent}}
    assert list(line["result"]["message"]) == list(sent)  # the fields in the API's order
    parsed = MessageBatchIndividualResponse.model_validate(line)
    assert parsed.result.type == "succeeded"
    assert parsed.result.message == Message.model_validate(sent)


@pytest.mark.parametrize(
    ("response", "error_type"),
    [
        ({"status": 400, "message": "messages: bad"}, "invalid_request_error"),
        ({"status": 404, "message": "model: not found"}, "not_found_error"),
        ({"status": 529, "message": "Overloaded"}, "overloaded_error"),
        (
            {"status": 429, "error_code": "ramp_limit_exceeded", "message": "slow down"},
            "rate_limit_error",
        ),
        ({"status": 413, "message": "too big"}, "request_too_large"),
    ],
)
def test_an_errored_line_carries_the_apis_error_response_as_sent(
    server: LocalAPIServer, wire: list[Any], response: dict[str, Any], error_type: str
) -> None:
    server.clear_script()
    server.script([{"match": "fail", "responses": [response]}])

    _, line = batches_line("req-2", call(server, "fail now"))

    (sent,) = wire
    assert sent["error"]["type"] == error_type
    assert line == {"custom_id": "req-2", "result": {"type": "errored", "error": sent}}
    if error_type != "request_too_large":  # the SDK's ErrorObject union lacks the 413's type
        parsed = MessageBatchIndividualResponse.model_validate(line)
        assert parsed.result.type == "errored"
        assert parsed.result.error.request_id == sent["request_id"]


def test_an_error_of_chorus_own_is_the_apis_api_error_naming_chorus_type(
    server: LocalAPIServer,
) -> None:
    closed = "http://127.0.0.1:9"  # nothing listens: the API cannot be reached

    _, line = batches_line("req-3", call(server, "hello", base_url=closed))

    parsed = MessageBatchIndividualResponse.model_validate(line)
    assert parsed.result.type == "errored"
    error = line["result"]["error"]
    assert error["type"] == "error" and error["request_id"] is None
    assert error["error"]["type"] == "api_error"
    assert error["error"]["message"].startswith("connection_error: could not reach the API")


@pytest.mark.parametrize(
    ("chorus_type", "api_type"),
    [
        ("deadline_exceeded", "api_error"),
        ("dead_lettered", "api_error"),
        ("internal_error", "api_error"),
        ("request_exceeds_rate_limit", "rate_limit_error"),
        ("timeout_error", "timeout_error"),
        ("billing_error", "billing_error"),
    ],
)
def test_every_error_is_written_with_a_type_the_api_uses(chorus_type: str, api_type: str) -> None:
    info = ErrorInfo(type=chorus_type, message="why", code=None)

    response = error_response(info.model_dump())

    assert response["error"]["type"] == api_type
    kept = chorus_type == api_type
    assert response["error"]["message"] == ("why" if kept else f"{chorus_type}: why")


@pytest.mark.parametrize(
    ("state", "result"),
    [("x", {"type": "canceled"}), ("b", {"type": "canceled"}), ("z", {"type": "expired"})],
)
def test_items_that_never_ran_are_canceled_or_expired(state: str, result: dict[str, str]) -> None:
    line = as_batches_result({"id": "req-4"}, state)

    assert line == {"custom_id": "req-4", "result": result}
    assert MessageBatchIndividualResponse.model_validate(line).result.type == result["type"]


@pytest.mark.parametrize("state", ["p", "r", "w", "t"])
def test_an_item_that_has_not_ended_has_no_line(state: str) -> None:
    assert as_batches_result({"id": "req-5"}, state) is None


def test_a_record_without_a_message_is_read_by_the_envelope_alone() -> None:
    # Stored before records held the message: one owner rebuilds it (Envelope).
    legacy = {
        "id": "req-6",
        "ok": True,
        "model": MODEL,
        "message_id": "msg_old",
        "text": "old answer",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }

    line = as_batches_result(legacy, "c")

    assert line is not None
    rebuilt = Envelope.model_validate({"key": "", **legacy}).message
    assert line["result"] == {"type": "succeeded", "message": rebuilt}
    parsed = MessageBatchIndividualResponse.model_validate(line)
    assert parsed.result.type == "succeeded"
    assert parsed.result.message.content[0].text == "old answer"  # type: ignore[union-attr]


def test_a_voted_items_message_is_the_majority_answer_composed_by_the_envelope() -> None:
    voted = {
        "id": "req-7",
        "ok": True,
        "outcome": "complete",
        "text": "42",
        "usage": Usage(input_tokens=30, output_tokens=6).model_dump(),
        "calls": 3,
        "votes": [{"answer": "42", "text": "42", "count": 3, "samples": [0, 1, 2]}],
    }

    line = as_batches_result(voted, "c")

    assert line is not None
    message = line["result"]["message"]
    assert message["content"] == [{"type": "text", "text": "42"}]
    assert message["id"] is None and message["model"] is None  # no single reply of the API


def test_chorus_format_reads_the_text_as_the_outcomes_do(server: LocalAPIServer) -> None:
    server.clear_script()
    server.script(SCRIPT)
    envelope = call(server, "think it through")
    stored = json.loads(json.dumps(result_record("req-8", envelope)))

    record = as_chorus_result(stored, STATE_NAMES["c"])

    assert record["text"] == answer_text(envelope.content) == envelope.text
    assert record["content"] == envelope.message["content"]  # type: ignore[index]
    assert record["usage"] == envelope.message["usage"]  # type: ignore[index]
    assert record["stop_details"] is None and record["message_id"] == envelope.message_id


def test_a_paused_turn_is_one_message_the_last_reply_holding_the_whole_turn(
    server: LocalAPIServer, wire: list[Any]
) -> None:
    # The one message chorus composes (workers.call): a turn a server tool paused
    # is sent back, and its replies kept as the last one, with every block of
    # the turn and the usage of every call, each field added.
    server.clear_script()
    server.script(SCRIPT)

    _, line = batches_line("req-9", call(server, "pause, then go on"))

    paused, last = wire
    assert paused["stop_reason"] == "pause_turn" and last["stop_reason"] == "end_turn"
    assert line["result"]["message"] == {
        **last,
        "content": [*paused["content"], *last["content"]],
        "usage": sum_api_usage(paused["usage"], last["usage"]),
    }
    assert MessageBatchIndividualResponse.model_validate(line).result.type == "succeeded"
