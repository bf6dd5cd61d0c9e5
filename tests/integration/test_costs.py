"""Costs to the cent: a mixed batch, priced by chorus from the usage it got and by the local
API from what it billed, must agree."""

from __future__ import annotations

from typing import Any

import pytest

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import Workers

ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}
FIVE_MINUTES = {"type": "ephemeral"}
HANDBOOK = "The handbook says to answer briefly and cite the section. " * 60
STYLE = "Write in plain words for a busy reader. " * 40


def line(custom_id: str, model: str, question: str, system: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": model,
            "max_tokens": 1024,
            "system": system,
            "messages": [{"role": "user", "content": question}],
            **({"output_config": {"effort": "low"}} if model != "claude-haiku-4-5" else {}),
        },
    }


@pytest.mark.slow
def test_a_mixed_batch_costs_what_the_api_billed_to_the_cent(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    # Two model families; a 1-hour and a 5-minute cache write, then reads of both.
    sonnet_system = [
        {"type": "text", "text": HANDBOOK, "cache_control": ONE_HOUR},
        {"type": "text", "text": STYLE, "cache_control": FIVE_MINUTES},
    ]
    haiku_system = [{"type": "text", "text": STYLE + HANDBOOK, "cache_control": FIVE_MINUTES}]
    first = [
        line("sonnet-first", "claude-sonnet-5-5", "Which section covers refunds?", sonnet_system),
        line("haiku-first", "claude-haiku-4-5", "Which section covers refunds?", haiku_system),
    ]
    Batch.submit(first, name="warm-the-cache").wait(60)
    rest = [
        line(f"sonnet-{i}", "claude-sonnet-5-5", f"Question {i} about returns?", sonnet_system)
        for i in range(15)
    ] + [
        line(f"haiku-{i}", "claude-haiku-4-5", f"Question {i} about shipping?", haiku_system)
        for i in range(15)
    ]
    Batch.submit(rest, name="read-the-cache").wait(60)

    statuses = [Batch.get(name).progress() for name in ("warm-the-cache", "read-the-cache")]
    billed = local_api.stats()

    assert all(s.count("complete") == s.total for s in statuses)
    assert billed["cache_creation_1h_input_tokens"] > 0  # the 1-hour write...
    assert billed["cache_creation_input_tokens"] > billed["cache_creation_1h_input_tokens"]
    assert billed["cache_read_input_tokens"] > 0  # ...and reads of both
    assert billed["unpriced_calls"] == 0
    chorus_usd = sum(s.cost_usd for s in statuses)
    assert abs(chorus_usd - billed["cost_usd"]) < 0.0001, (chorus_usd, billed["cost_usd"])
    assert round(chorus_usd, 2) == round(billed["cost_usd"], 2)
    assert sum(s.cache_write_tokens for s in statuses) == billed["cache_creation_input_tokens"]
    assert sum(s.cache_read_tokens for s in statuses) == billed["cache_read_input_tokens"]
