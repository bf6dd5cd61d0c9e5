"""Request validation: each problem is a 400 naming its field, an unknown model a 404."""

from __future__ import annotations

from typing import Any

import pytest

from localapi.errors import APIErrorReply
from localapi.validation import validate_request

MAX_OUTPUT = 1000


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not DROP}


DROP = object()


def problem(body: object, *, counting: bool = False) -> tuple[int, str, str]:
    with pytest.raises(APIErrorReply) as caught:
        validate_request(body, max_output_tokens=MAX_OUTPUT, counting=counting)
    return caught.value.status, caught.value.error_type, caught.value.message


def test_a_well_formed_request_passes() -> None:
    validate_request(
        valid(
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            temperature=0.5,
            top_p=1,
            top_k=0,
            stop_sequences=["END"],
            metadata={"user_id": "u"},
            tools=[],
            thinking={"type": "disabled"},
        ),
        max_output_tokens=MAX_OUTPUT,
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": DROP}, "model"),
        ({"model": 3}, "model"),
        ({"max_tokens": DROP}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": MAX_OUTPUT + 1}, "max_tokens"),
        ({"messages": DROP}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image", "source": {}}]}]},
            "messages.0.content",
        ),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": []}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0.type"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0"),
        ({"temperature": 1.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 1.5}, "top_k"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stop_sequences": ["END", 3]}, "stop_sequences.1"),
        ({"system": 3}, "system"),
        ({"system": [{"type": "image", "source": {}}]}, "system.0.type"),
        ({"metadata": "u"}, "metadata"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_each_invalid_field_is_a_400_naming_it(changes: dict[str, Any], field: str) -> None:
    status, error_type, message = problem(valid(**changes))
    assert (status, error_type) == (400, "invalid_request_error")
    assert message.startswith(field)


def test_a_stream_flag_must_be_a_boolean() -> None:
    assert "stream: Input should be a valid boolean" in problem(valid(stream="yes"))[2]


def test_a_body_that_is_not_an_object_is_a_400() -> None:
    assert problem([1, 2])[:2] == (400, "invalid_request_error")


def test_a_model_outside_the_claude_family_is_not_found() -> None:
    assert problem(valid(model="gpt-4")) == (404, "not_found_error", "model: gpt-4")


def test_counting_tokens_needs_no_max_tokens() -> None:
    validate_request(valid(max_tokens=DROP), max_output_tokens=MAX_OUTPUT, counting=True)
    assert problem(valid(max_tokens=DROP))[2].startswith("max_tokens")


def test_sampling_parameters_are_extra_inputs_on_api_version_2026_10_21() -> None:
    body = valid(model="claude-sonnet-4-6", temperature=0.5)

    with pytest.raises(APIErrorReply) as caught:
        validate_request(body, max_output_tokens=128_000, api_version="2026-10-21")

    assert caught.value.status == 400
    assert caught.value.message == "temperature: Extra inputs are not permitted"


def test_newer_models_refuse_sampling_parameters_on_any_version() -> None:
    body = valid(model="claude-sonnet-5", top_p=0.9)

    with pytest.raises(APIErrorReply) as caught:
        validate_request(body, max_output_tokens=128_000, api_version="2023-06-01")

    assert caught.value.message == "`top_p` is deprecated for this model."


def test_older_models_take_sampling_parameters_on_2023_06_01() -> None:
    validate_request(
        valid(model="claude-haiku-4-5", temperature=0.0),
        max_output_tokens=128_000,
        api_version="2023-06-01",
    )
