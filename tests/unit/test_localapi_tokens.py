"""The local tokenizer: what counts as a token, and what a request's input tokens are."""

from __future__ import annotations

import json
from typing import Any

import pytest

from localapi.tokens import (
    count_request_tokens,
    count_text_tokens,
    prompt_text,
    request_parts,
    truncate_to_tokens,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("Hello, world!", 6),  # Hell o , worl d !
        ("cat", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("12345", 2),  # 123 45
        ("a1b2", 4),
        ("ünï", 3),  # letters outside A-Z are one token each
    ],
)
def test_text_tokens_are_letter_chunks_digit_chunks_and_single_symbols(
    text: str, tokens: int
) -> None:
    assert count_text_tokens(text) == tokens


def test_truncation_keeps_the_longest_prefix_within_the_token_budget() -> None:
    assert truncate_to_tokens("Hello, world!", 3) == "Hello,"
    assert truncate_to_tokens("Hello, world!", 100) == "Hello, world!"
    assert truncate_to_tokens("Hello", 0) == ""
    assert count_text_tokens(truncate_to_tokens("abcdefghij klm", 2)) == 2


def test_request_tokens_add_system_messages_overhead_and_tools() -> None:
    tool_use = {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    body: dict[str, Any] = {
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": tools,
        "messages": [
            {"role": "user", "content": "Hello, world!"},
            {"role": "assistant", "content": [{"type": "text", "text": "cat"}, tool_use]},
        ],
    }
    expected = (
        count_text_tokens("Be brief.")
        + count_text_tokens(json.dumps(tools))
        + 3
        + 6
        + 3
        + 1
        + count_text_tokens(json.dumps(tool_use))
    )
    assert count_request_tokens(body) == expected
    assert sum(part.tokens for part in request_parts(body)) == expected


def test_a_system_string_counts_like_its_text() -> None:
    with_system = {"system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]}
    without = {"messages": [{"role": "user", "content": "hi"}]}
    assert count_request_tokens(with_system) - count_request_tokens(without) == 4  # Be brie f .


def test_the_prompt_text_is_system_then_every_message_text_on_its_own_line() -> None:
    body = {
        "system": [{"type": "text", "text": "S1"}, {"type": "text", "text": "S2"}],
        "messages": [
            {"role": "user", "content": "first"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "second"},
                    {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                ],
            },
        ],
    }
    assert prompt_text(body) == "S1\nS2\nfirst\nsecond"
    assert prompt_text({"messages": [{"role": "user", "content": "x"}]}) == "x"
