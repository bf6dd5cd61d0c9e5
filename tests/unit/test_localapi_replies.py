"""Deterministic replies and the limits they obey."""

from __future__ import annotations

import pytest

from localapi.replies import apply_limits, generate_reply, generate_text, reply_rng
from localapi.tokens import count_text_tokens


@pytest.mark.parametrize("n_tokens", [1, 2, 3, 7, 20, 120, 500])
def test_generated_text_holds_exactly_the_drawn_number_of_tokens(n_tokens: int) -> None:
    for seed in range(20):
        text = generate_text(reply_rng(seed, "body", None), n_tokens)
        assert count_text_tokens(text) == n_tokens


def test_the_same_call_gets_the_same_reply() -> None:
    first = generate_reply(reply_rng(0, "abc", "key-1"), 20, 120)
    again = generate_reply(reply_rng(0, "abc", "key-1"), 20, 120)
    assert first == again


def test_another_key_body_or_seed_gets_another_reply() -> None:
    base = generate_reply(reply_rng(0, "abc", "key-1"), 20, 120)
    assert generate_reply(reply_rng(0, "abc", "key-2"), 20, 120) != base
    assert generate_reply(reply_rng(0, "abd", "key-1"), 20, 120) != base
    assert generate_reply(reply_rng(1, "abc", "key-1"), 20, 120) != base


def test_reply_lengths_stay_in_the_configured_range() -> None:
    lengths = {
        count_text_tokens(generate_reply(reply_rng(0, str(i), None), 5, 9)) for i in range(200)
    }
    assert lengths == {5, 6, 7, 8, 9}


def test_a_reply_longer_than_max_tokens_is_cut_there() -> None:
    reply = apply_limits("one two six four five", max_tokens=3)
    assert reply.text == "one two six"
    assert reply.stop_reason == "max_tokens"
    assert reply.stop_sequence is None


def test_a_reply_stops_before_the_first_stop_sequence() -> None:
    reply = apply_limits("alpha beta gamma delta", 100, ["delta", "beta"])
    assert reply.text == "alpha "
    assert reply.stop_reason == "stop_sequence"
    assert reply.stop_sequence == "beta"


def test_a_reply_that_fits_ends_its_turn() -> None:
    reply = apply_limits("short answer", 100, ["absent"])
    assert (reply.text, reply.stop_reason, reply.stop_sequence) == (
        "short answer",
        "end_turn",
        None,
    )
