from __future__ import annotations

from typing import Any

import pytest

from workers.errors import InvalidRequest
from workers.models import CallRequest, accepts_sampling_params
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

    assert one.key() == same.key()
    assert one.key() != sample.key()
    assert one.key() != other.key()
    assert "sample" not in sample.api_params()


def test_preview_is_the_last_user_message_shortened() -> None:
    parsed = CallRequest.model_validate(
        request(messages=[{"role": "user", "content": "word " * 100}])
    )

    assert len(parsed.preview(40)) == 40
    assert parsed.preview(40).endswith("...")
