"""The provider misbehaving: faults retried end ok, no 429 storm; unsendable items fail at once."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from config.settings import FamilyLimits
from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, FAKE_API_KEY, Workers
from tests.integration.faults.conftest import TIMEOUT_S, fleet, items, results_by_id
from workers.ratelimit.backends.redis import RedisLimiter
from workers.ratelimit.limitkey import api_fingerprint


def test_a_provider_fault_mix_ends_every_item_ok_without_a_429_storm(
    chorus_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    local_api: LocalAPIServer,
    redis_client: redis.Redis,
) -> None:
    local_api.configure(
        rate_429=0.10, rate_529=0.05, rate_500=0.02, rate_hang=0.01, rate_malformed=0.01,
        hang_s=30, retry_after_s=1, seed=14,  # 14: every kind within the first 100 draws
    )  # fmt: skip
    extra = {
        "CHORUS_RETRY__MAX_ATTEMPTS": "10",
        "CHORUS_ANTHROPIC__REQUEST_TIMEOUT_S": "2",
        # Every 429 holds the whole fleet back a second: an item can wait long.
        "CHORUS_WORKER__TASK_TIME_LIMIT_S": "120",
        "CHORUS_WORKER__VISIBILITY_TIMEOUT_S": "300",
    }
    try:
        with fleet(chorus_env, monkeypatch, prefix="faults", count=2, concurrency=10, extra=extra):
            batch = Batch.submit(items(100), **BRIEF)
            status = batch.wait(TIMEOUT_S)
    finally:
        local_api.configure(
            rate_429=0, rate_529=0, rate_500=0, rate_hang=0, rate_malformed=0, seed=0
        )

    stats = local_api.stats()
    assert status.count("complete") == 100
    assert status.calls == stats["requests"]  # every attempt counted
    injected = stats["injected"]
    # Every kind of fault happened, and each was retried under its own name.
    for fault, error_type in (
        ("429", "rate_limit_error"),
        ("529", "overloaded_error"),
        ("500", "api_error"),
        ("malformed", "malformed_response"),
        ("hang", "timeout_error"),
    ):
        assert injected[fault] > 0, injected
        assert status.retries.get(error_type, 0) >= injected[fault], (fault, status.retries)
    # No storm: 429s stay near the injected rate, and every one cooled the whole fleet.
    assert stats["by_status"].get("429", 0) <= 0.15 * stats["requests"]
    limiter = RedisLimiter(redis_client, lambda family: FamilyLimits())
    state = limiter.state(f"{api_fingerprint(FAKE_API_KEY)}:sonnet")
    assert state.cooldowns == stats["by_status"].get("429", 0)


def test_a_413_fails_that_item_with_its_type_and_request_id(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.configure(max_body_bytes=20_000)
    try:
        batch = Batch.submit([*items(5), {"id": "huge", "prompt": "word " * 6000}], **BRIEF)
        status = batch.wait(TIMEOUT_S)
    finally:
        local_api.configure(max_body_bytes=32 * 1024 * 1024)

    huge = results_by_id(batch)["huge"]
    assert status.count("complete") == 5 and status.count("failed") == 1
    assert huge["error"]["type"] == "request_too_large" and huge["error"]["status"] == 413
    assert huge["error"]["request_id"].startswith("req_")
    assert huge["calls"] == 1


def test_poison_items_fail_at_once_and_the_batch_completes(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    def line(custom_id: str, text: str, max_tokens: int) -> dict[str, Any]:
        return {
            "custom_id": custom_id,
            "params": {
                "model": "claude-sonnet-5",
                "max_tokens": max_tokens,
                "output_config": {"effort": "low"},
                "messages": [{"role": "user", "content": text}],
            },
        }

    # An account whose output-token limit is below what one call may ask for
    # (Tier 1's 8,000 a minute): a call with max_tokens above it can never be sent.
    # Input room for the oversized prompt's 1.4M estimated tokens, so that the fine
    # items never wait behind its reservation (in whatever order they run).
    tier_1 = {
        "CHORUS_LIMITS__SONNET__OUTPUT_TOKENS_PER_MINUTE": "8000",
        "CHORUS_LIMITS__SONNET__INPUT_TOKENS_PER_MINUTE": "50000000",
    }
    with fleet(chorus_env, monkeypatch, prefix="poison", extra=tier_1):
        batch = Batch.submit(
            [
                line("fine-1", "Hello.", 256),
                line("bigger-than-the-bucket", "Hello.", 16_000),  # > 8,000 output tokens/min
                line("bigger-than-the-context", "word " * 1_050_000, 256),
                line("fine-2", "Bye.", 256),
            ]
        )
        status = batch.wait(TIMEOUT_S)
    records = results_by_id(batch)

    assert status.count("complete") == 2 and status.count("failed") == 2
    bucket = records["bigger-than-the-bucket"]
    assert bucket["error"]["type"] == "request_exceeds_rate_limit" and bucket["calls"] == 0
    context = records["bigger-than-the-context"]
    assert context["error"]["type"] == "invalid_request_error" and context["calls"] == 1
    assert "prompt is too long" in context["error"]["message"]
