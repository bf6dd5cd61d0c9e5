"""Prompt caching of shared prefixes (orchestration.prefix, workers.prefix_gate) against the
local API, which caches by prefix with each model's minimum length: one call writes the
prefix, the others read it, and chorus's reported cost is the local API's bill."""

from __future__ import annotations

import random
from typing import Any

import pytest

from localapi import LocalAPIServer
from orchestration.batch import Batch
from orchestration.client import request_from_prompt as ask
from orchestration.patterns import sectioning, voting
from tests.integration.conftest import BRIEF, Workers

pytestmark = pytest.mark.integration

TIMEOUT_S = 120
WORDS = [
    "revenue",
    "margin",
    "churn",
    "cohort",
    "forecast",
    "ledger",
    "audit",
    "quarter",
    "region",
    "segment",
]


def document(words: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def questions(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"id": f"q{i:03d}", "prompt": f"{prefix}\n\nQuestion {i}: one word?"} for i in range(n)]


def test_a_vote_over_a_long_document_writes_the_cache_once_and_reads_it_four_times(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    doc = document(4_000)  # about 5,000 tokens on the local API's tokenizer
    request = ask(f"{doc}\n\nIn one word, what is this about?", **BRIEF)
    result = voting(request, n=5).wait(TIMEOUT_S)

    assert result.ok, result.error
    stats = local_api.stats()
    assert stats["paid"] == 5
    assert (stats["cache_writes"], stats["cache_reads"]) == (1, 4)
    assert stats["cache_read_input_tokens"] >= 4 * 4_500
    # The pattern reports what the API billed: the same tokens, the same cost.
    usage = result.usage
    assert usage.cache_creation_input_tokens == stats["cache_creation_input_tokens"]
    assert usage.cache_read_input_tokens == stats["cache_read_input_tokens"]
    assert usage.input_tokens == stats["input_tokens"]
    assert result.cost_usd == pytest.approx(stats["cost_usd"], rel=1e-9)


def test_sections_of_one_document_read_the_prefix_the_first_wrote(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    doc = document(4_000, seed=9)
    aspects = ("clarity", "accuracy", "tone")
    requests = {a: ask(f"{doc}\n\nReview it for {a} in one line.", **BRIEF) for a in aspects}

    result = sectioning(requests).wait(TIMEOUT_S)

    assert result.ok, result.error
    stats = local_api.stats()
    assert (stats["paid"], stats["cache_writes"], stats["cache_reads"]) == (3, 1, 2)
    assert result.usage.cache_read_input_tokens == stats["cache_read_input_tokens"]
    assert result.cost_usd == pytest.approx(stats["cost_usd"], rel=1e-9)


def test_a_batch_sharing_a_prefix_pays_for_it_once_and_reads_it_after(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    shared = document(1_600)  # about 2,000 tokens
    batch = Batch.submit(questions(40, shared), **BRIEF)
    status = batch.wait(TIMEOUT_S)

    assert status.count("complete") == 40
    stats = local_api.stats()
    assert (stats["cache_writes"], stats["cache_reads"]) == (1, 39)
    assert status.cache_write_tokens == stats["cache_creation_input_tokens"]
    assert status.cache_read_tokens == stats["cache_read_input_tokens"]
    # The ledger counts each item's cost in whole micro-dollars.
    assert status.cost_usd == pytest.approx(stats["cost_usd"], abs=40e-6)
    cached_cost = stats["cost_usd"]

    # The same questions on another document, the cache off: every call pays full input.
    local_api.restore()
    plain = Batch.submit(questions(40, document(1_600, seed=8)), cache=False, **BRIEF)
    plain_status = plain.wait(TIMEOUT_S)
    assert plain_status.count("complete") == 40
    stats = local_api.stats()
    assert stats["cache_writes"] == stats["cache_reads"] == 0
    assert cached_cost < 0.35 * stats["cost_usd"]


def test_a_prefix_below_the_models_minimum_is_not_marked(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    batch = Batch.submit(questions(10, document(200)), **BRIEF)  # about 250 tokens

    assert batch.wait(TIMEOUT_S).count("complete") == 10
    assert not batch.report.prefixes or not batch.report.prefixes.shares()
    stats = local_api.stats()
    assert stats["cache_writes"] == stats["cache_reads"] == 0


def test_the_batches_route_marks_the_prefix_with_the_one_hour_ttl(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.configure(batch_processing_s=0.2)
    batch = Batch.submit(questions(30, document(1_600)), route="batches", **BRIEF)
    status = batch.wait(TIMEOUT_S)

    assert status.count("complete") == 30
    stats = local_api.stats()
    assert stats["batch_paid"] == 30
    assert stats["cache_writes"] >= 1 and stats["cache_reads"] >= 25
    assert stats["cache_creation_1h_input_tokens"] == stats["cache_creation_input_tokens"] > 0
    assert status.cost_usd == pytest.approx(stats["cost_usd"], abs=30e-6)
