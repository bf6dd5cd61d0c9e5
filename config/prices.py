"""USD per million tokens, per model: what turns ``usage`` into cost.

Anthropic's list prices as published in 2026 (platform.claude.com, models
overview). Cache writes (5-minute) cost 1.25x the input price and cache reads
0.1x, unless a model's entry says otherwise. A model missing here has no known
price: its cost is reported as unknown, never as zero. Add or correct prices
with ``CHORUS_PRICES__<model>__INPUT_PER_MTOK=...`` or a ``[prices."<model>"]``
table in chorus.toml.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_write_per_mtok: float | None = Field(None, ge=0)
    cache_read_per_mtok: float | None = Field(None, ge=0)

    def cost_usd(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
    ) -> float:
        write = self.cache_write_per_mtok
        if write is None:
            write = self.input_per_mtok * 1.25
        read = self.cache_read_per_mtok
        if read is None:
            read = self.input_per_mtok * 0.1
        return (
            input_tokens * self.input_per_mtok
            + output_tokens * self.output_per_mtok
            + cache_creation_input_tokens * write
            + cache_read_input_tokens * read
        ) / 1_000_000


def _p(input_per_mtok: float, output_per_mtok: float) -> dict[str, float]:
    return {"input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok}


DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "claude-fable-5-1": _p(10.0, 50.0),
    "claude-opus-5-5": _p(4.0, 20.0),
    "claude-opus-5": _p(5.0, 25.0),
    "claude-sonnet-5": _p(2.0, 10.0),
    "claude-haiku-4-5": _p(1.0, 5.0),
    "claude-opus-4-8": _p(5.0, 25.0),
    "claude-opus-4-7": _p(5.0, 25.0),
    "claude-opus-4-6": _p(5.0, 25.0),
    "claude-opus-4-5": _p(5.0, 25.0),
    "claude-sonnet-4-6": _p(3.0, 15.0),
    "claude-sonnet-4-5": _p(3.0, 15.0),
}

_SNAPSHOT = re.compile(r"-\d{8}$")


def base_model(model: str) -> str:
    """``claude-haiku-4-5-20251001`` is priced as ``claude-haiku-4-5``."""
    return _SNAPSHOT.sub("", model)
