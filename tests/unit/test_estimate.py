"""The local input-token estimate against the local API's tokenizer: the documented error."""

from __future__ import annotations

import pytest

from localapi.tokens import count_request_tokens
from workers.models import CallRequest
from workers.ratelimit.estimate import estimate_input_tokens

PROSE = [
    "Summarise the plot of Hamlet in one sentence.",
    "Explain a token bucket rate limiter to a new engineer.",
    "Name two trade-offs of at-least-once delivery.",
    "Write a haiku about message queues.",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Summarise the following customer review in one sentence: I bought this kettle in "
    "March and it stopped working after two weeks; support never answered my three emails.",
]
CODE = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n" * 10


def _error(text: str) -> float:
    body = {
        "model": "claude-sonnet-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": text}],
    }
    estimate = estimate_input_tokens(CallRequest.model_validate(body))
    return estimate / count_request_tokens(body) - 1


@pytest.mark.parametrize("text", PROSE)
def test_on_prose_the_estimate_is_within_fifteen_percent(text: str) -> None:
    assert abs(_error(text)) <= 0.15


def test_on_code_the_estimate_runs_low_by_at_most_forty_percent() -> None:
    assert -0.40 <= _error(CODE) < 0


def test_images_and_tools_are_counted() -> None:
    plain = CallRequest.model_validate(
        {
            "model": "claude-sonnet-5",
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    rich = CallRequest.model_validate(
        {
            "model": "claude-sonnet-5",
            "max_tokens": 1,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                    ],
                }
            ],
            "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        }
    )

    assert estimate_input_tokens(rich) >= estimate_input_tokens(plain) + 1600 + 10
