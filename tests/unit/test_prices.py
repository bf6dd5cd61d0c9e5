"""Prices: a row for every model the SDK knows, and costs from the whole usage object."""

from __future__ import annotations

import typing
from typing import Any

import pytest
from anthropic.types import Model

from config.prices import Tokens
from config.settings import load_settings
from workers.models import CallRequest, Usage


def price(model: str) -> Any:
    found = load_settings().price_for(model)
    assert found is not None, model
    return found


def test_every_model_the_sdk_lists_has_a_price_row() -> None:
    listed = typing.get_args(typing.get_args(Model)[0])
    settings = load_settings()

    missing = [model for model in listed if settings.price_for(model) is None]

    assert not missing, f"config/prices.py has no price for {missing}"


def test_one_hour_cache_writes_cost_twice_the_input_price() -> None:
    # 100,000 tokens written with the 1-hour TTL on claude-sonnet-5 ($2 input):
    # $4 a million, not the 5-minute $2.50.
    usage = Usage.from_api(
        {
            "input_tokens": 0,
            "output_tokens": 7,
            "cache_creation_input_tokens": 100_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 0,
                "ephemeral_1h_input_tokens": 100_000,
            },
        }
    )

    assert price("claude-sonnet-5").cost_usd(usage.tokens()) == pytest.approx(0.40007)


def test_a_mixed_usage_is_priced_part_by_part() -> None:
    usage = Usage.from_api(
        {
            "input_tokens": 1_000,
            "output_tokens": 500,
            "cache_creation_input_tokens": 3_000,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 2_000,
                "ephemeral_1h_input_tokens": 1_000,
            },
            "cache_read_input_tokens": 10_000,
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 2},
        }
    )

    cost = price("claude-sonnet-5-5").cost_usd(usage.tokens())

    expected = (
        1_000 * 2.0 + 500 * 10.0 + 2_000 * 2.5 + 1_000 * 4.0 + 10_000 * 0.10
    ) / 1e6 + 3 * 0.01
    assert cost == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "read_per_mtok"),
    [
        ("claude-sonnet-5-5", 0.10),  # 0.05 x input
        ("claude-opus-5-5", 0.20),  # 0.05 x input
        ("claude-fable-5-1", 0.25),  # 0.025 x input
        ("claude-sonnet-5", 0.20),
        ("claude-haiku-4-5-20251001", 0.10),  # a dated snapshot priced as its model
    ],
)
def test_cache_reads_cost_each_models_own_rate(model: str, read_per_mtok: float) -> None:
    assert price(model).cost_usd(Tokens(cache_read=1_000_000)) == pytest.approx(read_per_mtok)


def test_the_batches_api_halves_token_prices_and_us_only_inference_adds_a_tenth() -> None:
    plain = Tokens(input=1_000_000, output=100_000)

    sonnet = price("claude-sonnet-5-5")
    batch = Usage.from_api(
        {"input_tokens": 1_000_000, "output_tokens": 100_000, "service_tier": "batch"}
    )
    us_only = Usage.from_api(
        {"input_tokens": 1_000_000, "output_tokens": 100_000, "inference_geo": "us"}
    )

    assert sonnet.cost_usd(plain) == pytest.approx(3.0)
    assert sonnet.cost_usd(batch.tokens()) == pytest.approx(1.5)
    assert sonnet.cost_usd(us_only.tokens()) == pytest.approx(3.3)
    # The 4.5 line refuses US-only inference: no surcharge there.
    assert price("claude-haiku-4-5").cost_usd(Tokens(input=10**6, us_only=True)) == 1.0


def test_a_long_prompt_on_haiku_5_5_is_billed_at_five_times_every_rate() -> None:
    haiku = price("claude-haiku-5-5")

    short = haiku.cost_usd(Tokens(input=100_000, output=1_000))
    long = haiku.cost_usd(Tokens(input=100_001, output=1_000))

    assert short == pytest.approx((100_000 * 0.10 + 1_000 * 0.50) / 1e6)
    assert long == pytest.approx(5 * (100_001 * 0.10 + 1_000 * 0.50) / 1e6)


def test_a_budget_reserves_a_cache_write_at_its_ttls_price() -> None:
    marked = CallRequest.model_validate(
        {
            "model": "claude-sonnet-5",
            "max_tokens": 7,
            "system": [
                {
                    "type": "text",
                    "text": "context",
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ],
            "messages": [{"role": "user", "content": "Hi"}],
        }
    )

    worst = marked.worst_case_tokens(estimated_input=100_000)

    assert worst == Tokens(output=7, cache_write=100_000, cache_write_1h=100_000)
    assert price("claude-sonnet-5").cost_usd(worst) == pytest.approx(0.40007)


def test_setting_one_price_keeps_the_rest_of_the_models_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHORUS_PRICES__claude-sonnet-5-5__INPUT_PER_MTOK", "2.5")

    changed = load_settings().price_for("claude-sonnet-5-5")

    assert changed is not None
    assert (changed.input_per_mtok, changed.output_per_mtok) == (2.5, 10.0)
    assert changed.cache_read_per_mtok == 0.10
