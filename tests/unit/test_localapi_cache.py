"""Prompt-cache accounting: what is created, what is read, and for how long."""

from __future__ import annotations

from typing import Any

import pytest

from localapi.cache import NO_CACHE, PromptCache
from localapi.config import LocalAPIConfig
from localapi.handlers import measured
from localapi.state import LocalAPIState
from localapi.tokens import count_request_tokens, count_text_tokens, request_parts

T0 = 1_800_000_000.0
CACHED = {"type": "ephemeral"}


def body(question: str, *, marks: int = 1) -> dict[str, Any]:
    system: list[dict[str, Any]] = [
        {"type": "text", "text": "A long shared context " * 20, "cache_control": CACHED},
    ]
    if marks == 2:
        system.append({"type": "text", "text": "more context " * 10, "cache_control": CACHED})
    return {"system": system, "messages": [{"role": "user", "content": question}]}


def lookup(cache: PromptCache, request: dict[str, Any], now: float = T0) -> tuple[int, int]:
    usage = cache.lookup("claude-test", request_parts(request), now)
    cache.store(usage, now)
    return usage.read_tokens, usage.creation_tokens


def test_the_first_call_creates_the_prefix_and_later_calls_read_it() -> None:
    cache = PromptCache()
    system_only = {"system": body("")["system"], "messages": []}
    prefix_tokens = count_request_tokens(system_only)
    assert lookup(cache, body("first question")) == (0, prefix_tokens)
    assert lookup(cache, body("another question")) == (prefix_tokens, 0)


def test_top_level_cache_control_marks_the_end_of_the_last_message() -> None:
    cache = PromptCache()
    request = {"cache_control": CACHED, "messages": [{"role": "user", "content": "hello there"}]}
    total = count_request_tokens(request)
    assert lookup(cache, request) == (0, total)
    assert lookup(cache, request) == (total, 0)


def test_a_call_without_cache_control_neither_reads_nor_creates() -> None:
    cache = PromptCache()
    plain = {"messages": [{"role": "user", "content": "hi"}]}
    assert lookup(cache, plain) == (0, 0)
    assert len(cache) == 0


def test_a_prefix_is_not_readable_until_a_call_that_created_it_succeeds() -> None:
    cache = PromptCache()
    parts = request_parts(body("q"))
    first = cache.lookup("claude-test", parts, T0)
    assert cache.lookup("claude-test", parts, T0).creation_tokens == first.creation_tokens
    cache.store(first, T0)
    assert cache.lookup("claude-test", parts, T0).read_tokens == first.creation_tokens


def test_a_longer_prefix_reads_the_cached_part_and_creates_the_rest() -> None:
    cache = PromptCache()
    read, created_one = lookup(cache, body("q"))
    read, created_two = lookup(cache, body("q", marks=2))
    assert read == created_one
    second_block_only = {"system": body("q", marks=2)["system"][1:], "messages": []}
    assert created_two == count_request_tokens(second_block_only)


def test_prefixes_are_per_model_and_expire_after_five_minutes_without_a_read() -> None:
    cache = PromptCache()
    request = body("q")
    _, created = lookup(cache, request)
    other_model = cache.lookup("claude-other", request_parts(request), T0)
    assert other_model.read_tokens == 0
    assert lookup(cache, request, T0 + 299) == (created, 0)  # renews the entry
    assert lookup(cache, request, T0 + 299 + 299) == (created, 0)
    assert lookup(cache, request, T0 + 299 + 299 + 301) == (0, created)


# --- the minimum cacheable length -----------------------------------------------------


def words(tokens: int) -> str:
    """Text of exactly `tokens` tokens."""
    text = "word " * tokens
    assert count_text_tokens(text) == tokens
    return text


def marked(*texts: str, model: str = "claude-test", question: str = "q") -> dict[str, Any]:
    """A request whose system blocks are `texts`, each a cache breakpoint."""
    system = [{"type": "text", "text": text, "cache_control": CACHED} for text in texts]
    return {"model": model, "system": system, "messages": [{"role": "user", "content": question}]}


def call(state: LocalAPIState, request: dict[str, Any]) -> tuple[int, int, int]:
    """(read, created, input tokens) of one successful call through the handler's measure."""
    _, _, total, usage, input_tokens = measured(state, request, T0)
    state.cache.store(usage, T0)
    assert usage.read_tokens + usage.creation_tokens + input_tokens == total
    return usage.read_tokens, usage.creation_tokens, input_tokens


def test_a_prefix_below_the_minimum_is_neither_written_nor_read() -> None:
    cache = PromptCache()
    parts = request_parts(marked(words(99)))
    for _ in range(2):
        usage = cache.lookup("claude-test", parts, T0, min_tokens=100)
        assert usage == NO_CACHE  # nothing read, nothing created: all of it is input
        cache.store(usage, T0)
    assert len(cache) == 0


def test_a_prefix_at_the_minimum_is_cached() -> None:
    cache = PromptCache()
    parts = request_parts(marked(words(100)))
    first = cache.lookup("claude-test", parts, T0, min_tokens=100)
    assert (first.read_tokens, first.creation_tokens) == (0, 100)
    cache.store(first, T0)
    second = cache.lookup("claude-test", parts, T0, min_tokens=100)
    assert (second.read_tokens, second.creation_tokens) == (100, 0)


def test_the_handler_bills_a_short_prefix_as_plain_input() -> None:
    state = LocalAPIState(LocalAPIConfig(cache_min_tokens=100))
    short = marked(words(99))
    total = count_request_tokens(short)
    assert call(state, short) == (0, 0, total)
    assert call(state, short) == (0, 0, total)
    long_enough = marked(words(100))
    after = count_request_tokens(long_enough) - 100
    assert call(state, long_enough) == (0, 100, after)
    assert call(state, long_enough) == (100, 0, after)


@pytest.mark.parametrize(("model", "minimum"), [("claude-haiku-4-5", 4096), ("claude-opus-5", 512)])
def test_each_model_s_own_minimum_applies_when_the_config_names_none(
    model: str, minimum: int
) -> None:
    state = LocalAPIState()
    assert state.config.cache_min_tokens is None
    # Tokens the model counts (its tokenizer's ratio applied), just under and at its minimum.
    ratio = request_parts(marked(words(1000), model=model))[0].tokens / 1000
    below = next(n for n in range(minimum, 0, -1) if round(n * ratio) < minimum)
    at = next(n for n in range(below, minimum + 1) if round(n * ratio) >= minimum)
    assert call(state, marked(words(below), model=model))[:2] == (0, 0)
    assert call(state, marked(words(below), model=model))[:2] == (0, 0)
    _, created, _ = call(state, marked(words(at), model=model))
    assert minimum <= created < minimum + 2
    assert call(state, marked(words(at), model=model))[:2] == (created, 0)


def test_a_dated_snapshot_takes_its_model_s_minimum() -> None:
    state = LocalAPIState()
    request = marked(words(4000), model="claude-haiku-4-5-20251001")
    assert call(state, request)[:2] == (0, 0)


def test_a_number_in_the_config_overrides_every_model_s_minimum() -> None:
    state = LocalAPIState(LocalAPIConfig(cache_min_tokens=0))
    assert call(state, marked(words(10), model="claude-haiku-4-5"))[:2] == (0, 10)


def test_only_the_breakpoints_that_reach_the_minimum_are_cached() -> None:
    cache = PromptCache()
    parts = request_parts(marked(words(60), words(60)))
    usage = cache.lookup("claude-test", parts, T0, min_tokens=100)
    # The second breakpoint's prefix (120) caches, through it; the first's (60) does not.
    assert (usage.read_tokens, usage.creation_tokens, len(usage.writes)) == (0, 120, 1)
    cache.store(usage, T0)
    again = cache.lookup("claude-test", parts, T0, min_tokens=100)
    assert (again.read_tokens, again.creation_tokens) == (120, 0)
    # The first breakpoint alone, with something else after it: nothing was cached for it.
    first_only = request_parts(marked(words(60), "more " * 100))
    other = cache.lookup("claude-test", first_only, T0, min_tokens=100)
    assert (other.read_tokens, other.creation_tokens) == (0, 60 + 100)
