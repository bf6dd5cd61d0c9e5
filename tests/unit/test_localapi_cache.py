"""Prompt-cache accounting: what is created, what is read, and for how long."""

from __future__ import annotations

from typing import Any

from localapi.cache import PromptCache
from localapi.tokens import count_request_tokens, request_parts

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
