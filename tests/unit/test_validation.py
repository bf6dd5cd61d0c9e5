from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from orchestration.client import request_from_prompt
from workers.errors import InvalidRequest
from workers.models import CallRequest, MessageParam, accepts_sampling_params
from workers.validation import validate_request


def request(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"model": None}, "model: is required"),
        ({"model": ""}, "model: String should have at least 1 character"),
        ({"max_tokens": None}, "max_tokens: is required"),
        ({"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
        ({"messages": []}, "messages: List should have at least 1 item"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role: Input should be"),
        (
            {"messages": [{"role": "user", "content": "  "}]},
            "messages[0].content: must not be empty",
        ),
        (
            {"messages": [{"role": "user", "content": []}]},
            "messages[0].content: must hold at least",
        ),
        ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "block 0 has no 'type'"),
        ({"messages": [{"role": "user"}]}, "messages[0].content: is required"),
        ({"system": [{"type": "image"}]}, "system: block 0 must be a text block"),
        ({"stop_sequences": [""]}, "stop_sequences: must not contain an empty string"),
        ({"temperature": 0.5}, "temperature: claude-sonnet-5 does not accept sampling parameters"),
        ({"model": "claude-sonnet-4-6", "temperature": 1.5}, "temperature: Input should be less"),
        ({"model": "claude-sonnet-4-6", "top_p": -0.1}, "top_p: Input should be greater"),
        ({"temprature": 1}, "temprature: is not a parameter chorus knows"),
        ({"sample": -1}, "sample: Input should be greater than or equal to 0"),
    ],
)
def test_each_invalid_field_is_named_before_anything_is_enqueued(
    changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request(**changes))

    assert expected in str(caught.value)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request({"messages": []})

    assert "model: is required" in str(caught.value)
    assert "max_tokens: is required" in str(caught.value)
    assert "messages:" in str(caught.value)


@pytest.mark.parametrize(
    ("model", "accepts"),
    [
        ("claude-3-5-sonnet-20241022", None),  # retired: not a model the SDK lists
        ("claude-sonnet-4-6", True),
        ("claude-haiku-4-5-20251001", True),
        ("claude-opus-4-7", False),
        ("claude-sonnet-5", False),
        ("claude-haiku-5-5", False),
        ("claude-fable-5-1", False),
        ("my-own-proxy-model", None),
    ],
)
def test_sampling_parameters_follow_the_model(model: str, accepts: bool | None) -> None:
    assert accepts_sampling_params(model) is accepts


def test_sampling_parameters_are_sent_apart_from_the_sdk_arguments() -> None:
    parsed = CallRequest.model_validate(request(model="claude-sonnet-4-6", temperature=0.2))

    assert "temperature" not in parsed.api_params()
    assert parsed.sampling_params() == {"temperature": 0.2}


def test_equal_requests_share_a_key_and_samples_do_not() -> None:
    one = CallRequest.model_validate(request())
    same = CallRequest.model_validate(request())
    sample = CallRequest.model_validate(request(sample=1))
    other = CallRequest.model_validate(request(max_tokens=101))

    assert one.idempotency_key() == same.idempotency_key()
    assert one.idempotency_key() != sample.idempotency_key()
    assert one.idempotency_key() != other.idempotency_key()
    assert "sample" not in sample.api_params()


def test_preview_is_the_last_user_message_shortened() -> None:
    parsed = CallRequest.model_validate(
        request(messages=[{"role": "user", "content": "word " * 100}])
    )

    assert len(parsed.preview(40)) == 40
    assert parsed.preview(40).endswith("...")


SURROGATE_WHY = (
    "not Unicode text, so the API cannot accept it "
    "(only a pair of JSON escapes, \\uD8xx\\uDCxx, decodes to a character)"
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"messages": [{"role": "user", "content": "caf\ud800"}]},
            "messages[0].content: holds a lone surrogate \\ud800 at character 4",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a\udfff"}]}]},
            "messages[0].content[0].text: holds a lone surrogate \\udfff at character 2",
        ),
        ({"system": "\udc80"}, "system: holds a lone surrogate \\udc80 at character 1"),
        ({"stop_sequences": ["END\ud800"]}, "stop_sequences[0]: holds a lone surrogate"),
        (
            {"tools": [{"name": "t", "input_schema": {"properties": {"k\ud83d": {}}}}]},
            "tools[0].input_schema.properties.k\\ud83d: a field name holds a lone surrogate",
        ),
        ({"metadata": {"user_id": "u\ud800"}}, "metadata.user_id: holds a lone surrogate"),
    ],
)
def test_a_lone_surrogate_anywhere_in_a_request_is_refused_naming_its_field(
    changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        validate_request(request(**changes))

    assert str(refused.value).startswith(expected)
    assert str(refused.value).endswith(SURROGATE_WHY)
    str(refused.value).encode("utf-8")  # the message itself prints anywhere


def test_surrogates_are_text_only_as_a_decoded_json_pair() -> None:
    # JSON's escaped pair decodes to one character; in a Python str, the two
    # surrogate code points stay two and are no more text than one alone.
    decoded = json.loads('"\\ud83d\\ude00"')

    assert validate_request(request(messages=[{"role": "user", "content": decoded}]))
    with pytest.raises(InvalidRequest, match="holds a lone surrogate \\\\ud83d at character 1"):
        validate_request(request(messages=[{"role": "user", "content": "\ud83d\ude00"}]))


def test_a_lone_surrogate_is_refused_when_a_request_is_built_in_python() -> None:
    with pytest.raises(InvalidRequest, match=r"messages\[0\]\.content: holds a lone surrogate"):
        request_from_prompt("caf\ud800", model="claude-sonnet-5")
    with pytest.raises(ValidationError, match="holds a lone surrogate"):
        CallRequest(
            model="claude-sonnet-5",
            max_tokens=10,
            messages=[MessageParam(role="user", content="caf\ud800")],
        )  # type: ignore[list-item]
