"""The local API held to account by the installed SDK's own types.

Every shape the local API can produce (each content block type, each stop
reason, each error and error code, each streamed event) is fetched over HTTP
and validated against the SDK's typed models (``anthropic.types``), strictly:
a field the SDK does not know, a missing required field or a wrong type fails.
The coverage tests compare the local API's repertoire with the SDK's unions,
so an SDK upgrade that adds a block type, a stop reason or an event type the
stand-in cannot produce fails here first.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic._error_classes import ERROR_CLASSES
from anthropic.types import ContentBlock, Message, RawMessageStreamEvent, StopReason
from anthropic.types.shared.error_details import ErrorDetails
from anthropic.types.shared.error_object import ErrorObject
from anthropic.types.shared.error_response import ErrorResponse
from pydantic import BaseModel, TypeAdapter

from localapi import LocalAPIServer
from localapi.blocks import BLOCK_TYPES
from localapi.errors import ERROR_CODES, ERROR_TYPES

KEY = "sk-test-contract"
USER = [{"role": "user", "content": "Tell me about the weather."}]
RATE_LIMIT_HEADERS = [
    f"anthropic-ratelimit-{bucket}-{what}"
    for bucket in ("requests", "tokens", "input-tokens", "output-tokens")
    for what in ("limit", "remaining", "reset")
]


def _union_members(union: Any) -> tuple[type[BaseModel], ...]:
    """The models of an SDK union (``Annotated[Union[...], UnionDiscriminator]``)."""
    inner = typing.get_args(union)[0] if typing.get_origin(union) is typing.Annotated else union
    return typing.get_args(inner)


def _literal_type(model: type[BaseModel]) -> str:
    (value,) = typing.get_args(model.model_fields["type"].annotation)
    return str(value)


def _no_unknown_fields(value: Any, where: str) -> None:
    if isinstance(value, BaseModel):
        extra = value.model_extra or {}
        assert not extra, f"{where}: fields the SDK does not know: {sorted(extra)}"
        for name in type(value).model_fields:
            _no_unknown_fields(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_unknown_fields(item, f"{where}[{index}]")


def strictly(kind: Any, data: Any, where: str = "body") -> Any:
    """``data`` validated as the SDK's ``kind``, with no field the SDK does not know."""
    parsed = TypeAdapter(kind).validate_python(data)
    _no_unknown_fields(parsed, where)
    return parsed


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPIServer]:
    with LocalAPIServer(latency_ms=0) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server: LocalAPIServer) -> None:
    server.reset()
    server.configure(rpm=None, itpm=None, otpm=None, **{f"rate_{k}": 0.0 for k in _FAULTS})


_FAULTS = (
    "429", "529", "500", "hang", "malformed", "refusal", "context_exceeded", "pause_turn",
    "stream_error", "stream_cut",
)  # fmt: skip


@pytest.fixture(scope="module")
def client(server: LocalAPIServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0) as sdk:
        yield sdk


def create(client: anthropic.Anthropic, **params: Any) -> tuple[Message, dict[str, Any], Any]:
    """(the SDK's message, the raw body, the headers) of one call."""
    arguments: dict[str, Any] = {"model": "claude-sonnet-5", "max_tokens": 4096, "messages": USER}
    arguments.update(params)
    raw = client.messages.with_raw_response.create(**arguments)
    body = json.loads(raw.http_response.content)
    strictly(Message, body)
    return raw.parse(), body, raw.http_response.headers


# --- coverage: what the SDK knows, the local API can produce --------------------------


def test_every_content_block_type_the_sdk_knows_has_a_builder() -> None:
    known = {_literal_type(model) for model in _union_members(ContentBlock)}

    assert known == BLOCK_TYPES, (
        f"the SDK knows {sorted(known - BLOCK_TYPES)} that localapi/blocks.py cannot build; "
        f"localapi/blocks.py builds {sorted(BLOCK_TYPES - known)} the SDK does not know"
    )


def test_every_error_type_the_sdk_knows_has_a_status() -> None:
    known = {_literal_type(model) for model in _union_members(ErrorObject)}

    assert known <= set(ERROR_TYPES.values())


def test_every_error_code_the_local_api_sends_maps_to_its_sdk_class() -> None:
    for code, status in ERROR_CODES.items():
        assert (status, code) in ERROR_CLASSES, f"the SDK has no class for {status} {code}"


# --- content blocks -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BLOCK_TYPES))
def test_each_content_block_parses_into_the_sdks_own_type(
    server: LocalAPIServer, client: anthropic.Anthropic, kind: str
) -> None:
    server.script([{"match": "weather", "responses": [{"blocks": [kind]}]}])

    message, body, _ = create(client)

    types = [block.type for block in message.content]
    assert kind in types
    for index, block in enumerate(body["content"]):
        strictly(ContentBlock, block, f"content[{index}]")


def test_thinking_by_default_spends_output_tokens_and_comes_back_signed(
    client: anthropic.Anthropic,
) -> None:
    message, body, _ = create(client, thinking={"type": "adaptive", "display": "summarized"})

    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.thinking and thinking.signature
    details = message.usage.output_tokens_details
    assert details is not None and 0 < details.thinking_tokens < message.usage.output_tokens
    assert body["usage"]["output_tokens_details"] == {"thinking_tokens": details.thinking_tokens}


# --- stop reasons ---------------------------------------------------------------------

WEB_SEARCH = [{"type": "web_search_20250305", "name": "web_search"}]
WEATHER_TOOL = [
    {
        "name": "get_weather",
        "description": "The weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    }
]
STOP_REASON_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "end_turn": ({}, {}),
    "max_tokens": ({}, {"max_tokens": 20}),
    "stop_sequence": ({"text": "Sunny. STOP here."}, {"stop_sequences": ["STOP"]}),
    "tool_use": ({}, {"tools": WEATHER_TOOL, "tool_choice": {"type": "any"}}),
    "pause_turn": ({"fault": "pause_turn"}, {"tools": WEB_SEARCH}),
    "refusal": ({"fault": "refusal"}, {}),
    "model_context_window_exceeded": ({"fault": "context_exceeded"}, {}),
}  # fmt: skip


def test_every_stop_reason_the_sdk_knows_is_covered() -> None:
    assert set(typing.get_args(StopReason)) == set(STOP_REASON_CASES)


@pytest.mark.parametrize("stop_reason", sorted(STOP_REASON_CASES))
def test_each_stop_reason_parses_into_the_sdks_own_types(
    server: LocalAPIServer, client: anthropic.Anthropic, stop_reason: str
) -> None:
    scripted, params = STOP_REASON_CASES[stop_reason]
    if scripted:
        server.script([{"match": "weather", "responses": [scripted]}])

    message, body, _ = create(client, **params)

    assert message.stop_reason == stop_reason
    if stop_reason == "refusal":
        assert body["content"] == [] and message.stop_details is not None
        assert message.stop_details.type == "refusal"
    if stop_reason == "tool_use":
        tool = message.content[-1]
        assert tool.type == "tool_use" and isinstance(tool.input, dict) and "city" in tool.input
    if stop_reason == "pause_turn":
        assert [b.type for b in message.content][-2:] == [
            "server_tool_use",
            "web_search_tool_result",
        ]
        assert message.usage.server_tool_use is not None
        assert message.usage.server_tool_use.web_search_requests == 1


def test_a_small_max_tokens_on_a_thinking_model_ends_with_thinking_and_no_text(
    client: anthropic.Anthropic,
) -> None:
    # claude-sonnet-5 thinks by default; 20 tokens are spent before any text.
    message, _, _ = create(client, max_tokens=20)

    assert message.stop_reason == "max_tokens"
    assert [b.type for b in message.content] == ["thinking"]
    assert message.usage.output_tokens == 20
    assert message.usage.output_tokens_details is not None
    assert message.usage.output_tokens_details.thinking_tokens == 20


def test_a_paused_turn_sent_back_as_it_is_goes_on_to_an_answer(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    server.script([{"match": "weather", "responses": [{"fault": "pause_turn"}]}])
    paused, body, _ = create(client, tools=WEB_SEARCH)
    server.clear_script()

    resumed, _, _ = create(
        client,
        tools=WEB_SEARCH,
        messages=[*USER, {"role": "assistant", "content": body["content"]}],
    )

    assert paused.stop_reason == "pause_turn"
    assert resumed.stop_reason == "end_turn"
    assert resumed.content[-1].type == "text"


# --- usage ----------------------------------------------------------------------------


def test_usage_splits_cache_writes_by_ttl_and_counts_server_tools(
    client: anthropic.Anthropic,
) -> None:
    one_hour = {"type": "ephemeral", "ttl": "1h"}
    # Each prefix past claude-sonnet-5's minimum cacheable length (1,024 tokens).
    system = [
        {"type": "text", "text": "One hour of context. " * 200, "cache_control": one_hour},
        {"type": "text", "text": "Five minutes. " * 40, "cache_control": {"type": "ephemeral"}},
    ]

    message, body, _ = create(client, system=system, tools=WEB_SEARCH)

    usage = message.usage
    assert usage.cache_creation is not None
    written_1h = usage.cache_creation.ephemeral_1h_input_tokens
    written_5m = usage.cache_creation.ephemeral_5m_input_tokens
    assert written_1h > 0 and written_5m > 0
    assert written_1h + written_5m == usage.cache_creation_input_tokens
    assert usage.server_tool_use is not None and usage.server_tool_use.web_search_requests == 1
    assert usage.service_tier == "standard"
    assert set(body["usage"]) == {
        "cache_creation", "cache_creation_input_tokens", "cache_read_input_tokens",
        "inference_geo", "input_tokens", "output_tokens", "output_tokens_details",
        "server_tool_use", "service_tier",
    }  # fmt: skip


# --- errors ---------------------------------------------------------------------------


def _error(client: anthropic.Anthropic, **params: Any) -> anthropic.APIStatusError:
    with pytest.raises(anthropic.APIStatusError) as caught:
        create(client, **params)
    body = caught.value.body
    if caught.value.status_code == 413:
        # The one documented type the SDK's ErrorObject union lacks: Cloudflare
        # answers it before the API does (platform.claude.com/docs/en/api/errors).
        assert isinstance(body, dict) and body["error"]["type"] == "request_too_large"
        assert set(body) == {"type", "error", "request_id"}
        assert set(body["error"]) - {"details"} == {"type", "message"}
    else:
        strictly_error(body)
    return caught.value


def strictly_error(body: Any) -> None:
    """An error body as the SDK types it: the error object, and its ``details`` apart.

    The SDK types ``error.details`` on its own (``ErrorDetails``, by
    ``error_code``), and reads it into ``APIStatusError.details``.
    """
    assert isinstance(body, dict)
    error = dict(body["error"])
    details = error.pop("details", None)
    strictly(ErrorResponse, {**body, "error": error})
    if details is not None:
        parsed = strictly(ErrorDetails, details, "error.details")
        assert parsed.error_code == details["error_code"]


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (402, anthropic.PaymentRequiredError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (413, anthropic.ContentTooLargeError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (504, anthropic.GatewayTimeoutError),
        (529, anthropic.OverloadedError),
    ],
)
def test_each_error_status_parses_into_the_sdks_error_class(
    server: LocalAPIServer,
    client: anthropic.Anthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
) -> None:
    server.script([{"match": "weather", "responses": [{"status": status}]}])

    error = _error(client)

    assert type(error) is error_class and error.status_code == status
    assert error.type == ERROR_TYPES[status]
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert all(name in error.response.headers for name in RATE_LIMIT_HEADERS)


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_each_documented_error_code_reaches_the_sdks_error_code(
    server: LocalAPIServer, client: anthropic.Anthropic, code: str
) -> None:
    status = ERROR_CODES[code]
    server.script([{"match": "weather", "responses": [{"status": status, "error_code": code}]}])

    error = _error(client)

    assert error.error_code == code
    assert type(error) is ERROR_CLASSES[(status, code)]


def test_a_spend_limit_429_says_not_to_retry_and_gives_no_wait(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    spend_limit = {"status": 429, "error_code": "enforced_spend_limit_reached"}
    server.script([{"match": "weather", "responses": [spend_limit]}])

    headers = _error(client).response.headers

    assert headers["x-should-retry"] == "false"
    assert "retry-after" not in headers and "retry-after-ms" not in headers


def test_a_rate_limit_429_gives_its_wait_in_seconds_and_milliseconds(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    server.configure(rpm=1)
    create(client)

    headers = _error(client).response.headers

    assert headers["x-should-retry"] == "true"
    assert int(headers["retry-after"]) >= 1
    assert 0 < int(headers["retry-after-ms"]) <= int(headers["retry-after"]) * 1000


def test_the_model_rules_answer_400_as_the_api_does(client: anthropic.Anthropic) -> None:
    error = _error(client, model="claude-sonnet-5-5", thinking={"type": "disabled"})

    assert type(error) is anthropic.BadRequestError
    assert error.api_message is not None and "between_tools" in error.api_message


# --- headers --------------------------------------------------------------------------


def test_token_figures_are_rounded_and_the_combined_tokens_family_is_sent(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    server.configure(itpm=50_000, otpm=20_000)

    _, _, headers = create(client, max_tokens=1000)

    assert all(name in headers for name in RATE_LIMIT_HEADERS)
    for bucket in ("tokens", "input-tokens", "output-tokens"):
        assert int(headers[f"anthropic-ratelimit-{bucket}-remaining"]) % 1000 == 0
    assert headers["anthropic-ratelimit-tokens-limit"] == "70000"


# --- streaming ------------------------------------------------------------------------


def _raw_events(server: LocalAPIServer, **params: Any) -> list[tuple[str, Any]]:
    body = {"model": "claude-sonnet-5", "max_tokens": 4096, "messages": USER, "stream": True}
    body.update(params)
    headers = {"authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}
    response = httpx2.post(f"{server.url}/v1/messages", json=body, headers=headers, timeout=10)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for chunk in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


STREAM_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "thinking and text": ({}, {"thinking": {"type": "adaptive", "display": "summarized"}}),
    "every block type": ({"blocks": sorted(BLOCK_TYPES)}, {}),
    "a tool call": ({}, {"tools": WEATHER_TOOL, "tool_choice": {"type": "any"}}),
    "a refusal": ({"fault": "refusal"}, {}),
    "a paused turn": ({"fault": "pause_turn"}, {"tools": WEB_SEARCH}),
}


@pytest.mark.parametrize("case", sorted(STREAM_CASES))
def test_each_streamed_event_parses_and_the_stream_adds_up_to_the_message(
    server: LocalAPIServer, client: anthropic.Anthropic, case: str
) -> None:
    scripted, params = STREAM_CASES[case]
    rules = [{"match": "weather", "responses": [scripted]}] if scripted else []
    if rules:
        server.script(rules)
    events = _raw_events(server, **params)

    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    for name, data in events:
        assert data["type"] == name
        if name == "ping":
            assert data == {"type": "ping"}
        else:
            strictly(RawMessageStreamEvent, data, name)

    # The SDK's own assembly of the stream equals the same call answered whole.
    server.reset()
    if rules:
        server.script(rules)
    arguments: dict[str, Any] = {"model": "claude-sonnet-5", "max_tokens": 4096, "messages": USER}
    with client.messages.stream(**{**arguments, **params}) as stream:
        streamed = stream.get_final_message().to_dict()
    server.reset()
    if rules:
        server.script(rules)
    _, whole, _ = create(client, **params)
    streamed, whole = ({k: v for k, v in m.items() if k != "id" and v is not None}
                       for m in (streamed, whole))  # fmt: skip
    assert streamed == whole


def test_a_stream_takes_its_per_token_time_once(server: LocalAPIServer) -> None:
    # 200 output tokens at 5 ms each: a second as the events go out, not two.
    server.configure(ms_per_output_token=5.0, reply_min_tokens=200, reply_max_tokens=200)
    started = time.monotonic()
    events = _raw_events(server, thinking={"type": "disabled"})
    took_s = time.monotonic() - started
    assert events[-2][1]["usage"]["output_tokens"] == 200
    assert 0.6 <= took_s < 1.7  # paid twice, it takes 1.85 s or more


def test_a_stream_that_fails_part_way_raises_the_errors_own_type(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    server.script([{"match": "weather", "responses": [{"fault": "stream_error"}]}])

    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model="claude-sonnet-5", max_tokens=4096, messages=USER) as stream,
    ):
        stream.get_final_message()

    strictly_error({**caught.value.body, "request_id": None})  # type: ignore[dict-item]
    assert caught.value.type == "overloaded_error"
