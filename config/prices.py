"""USD per million tokens, per model: what turns a whole ``usage`` object into cost.

One row per model the installed SDK lists (``anthropic.types.Model``; a dated
snapshot id is priced as its model): input, output, cache writes with the
5-minute and the 1-hour TTL, cache reads, each with its source and the date it
was read. Unless a row says otherwise, a 5-minute cache write costs 1.25 x
input, a 1-hour write 2 x input and a cache read 0.1 x input; the Message
Batches API charges half of every token price; a web search costs $10 per
1,000 (web fetch adds only its tokens); US-only inference (``inference_geo:
"us"``) costs 1.1 x on Opus 4.6, Sonnet 4.6 and later models; Haiku 5.5 bills
a prompt above 100,000 tokens (input, cache reads and writes together) at 5 x
every rate (about-claude/pricing, each model's overview page).

A model missing here has no known price: its cost is reported as unknown,
never as zero, and ``--max-cost`` refuses it. Add or correct prices with
``CHORUS_PRICES__<model>__INPUT_PER_MTOK=...`` (and ``__OUTPUT_PER_MTOK``,
``__CACHE_WRITE_PER_MTOK``, ``__CACHE_WRITE_1H_PER_MTOK``,
``__CACHE_READ_PER_MTOK``) or a ``[prices."<model>"]`` table in chorus.toml.

``tests/unit/test_prices.py`` fails when the SDK lists a model this table lacks.

Beside the prices, :data:`DEFAULT_LIMITS`: the rate limits per model family
that chorus assumes until told the account's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# Read 2026-11-29: platform.claude.com/docs/en/about-claude/pricing (a snapshot of
# early September 2026) and each model's overview page, translated copies where
# the English one was not to hand.
PRICING_PAGE = "platform.claude.com/docs/en/about-claude/pricing (read 2026-11-29)"
WEB_SEARCH_USD_PER_1000 = 10.0
BATCH_DISCOUNT = 0.5
US_INFERENCE_MULTIPLIER = 1.1


@dataclass(frozen=True, slots=True)
class Tokens:
    """What one call (or a sum of calls) used, as the API's ``usage`` reports it.

    ``cache_write_1h`` of the cache writes had the 1-hour TTL; the rest, the
    5-minute one. ``batch``: billed through the Message Batches API.
    ``us_only``: inference held to the US (``inference_geo: "us"``).
    """

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    cache_read: int = 0
    web_search_requests: int = 0
    batch: bool = False
    us_only: bool = False

    @property
    def prompt(self) -> int:
        """The prompt's tokens, however they were billed."""
        return self.input + self.cache_write + self.cache_read


class LongContextRate(BaseModel):
    """Every rate times ``multiplier`` for a prompt above ``threshold_tokens``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold_tokens: int = Field(gt=0)
    multiplier: float = Field(gt=0)


class ModelPrice(BaseModel):
    """One model's list prices, USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    # 5-minute cache writes; None: 1.25 x input.
    cache_write_per_mtok: float | None = Field(None, ge=0)
    # 1-hour cache writes; None: 2 x input.
    cache_write_1h_per_mtok: float | None = Field(None, ge=0)
    # Cache reads (hits and refreshes); None: 0.1 x input.
    cache_read_per_mtok: float | None = Field(None, ge=0)
    long_context: LongContextRate | None = None
    # Whether US-only inference costs US_INFERENCE_MULTIPLIER more (4.6 and later).
    us_only_surcharge: bool = True
    # Where the figures come from, and what in them is not from Anthropic.
    source: str = PRICING_PAGE

    @property
    def cache_write_5m(self) -> float:
        return (
            self.input_per_mtok * 1.25
            if self.cache_write_per_mtok is None
            else self.cache_write_per_mtok
        )

    @property
    def cache_write_1h(self) -> float:
        return (
            self.input_per_mtok * 2.0
            if self.cache_write_1h_per_mtok is None
            else self.cache_write_1h_per_mtok
        )

    @property
    def cache_read(self) -> float:
        return (
            self.input_per_mtok * 0.1
            if self.cache_read_per_mtok is None
            else self.cache_read_per_mtok
        )

    def cost_usd(self, tokens: Tokens) -> float:
        """What ``tokens`` cost, in USD.

        Token charges: input, output, cache writes at their TTL's rate, cache
        reads at the model's own rate; then the long-context band, the Batches
        discount and the US-only surcharge where they apply. Web searches are
        added at $10 per 1,000.
        """
        five_minute = max(0, tokens.cache_write - tokens.cache_write_1h)
        token_usd = (
            tokens.input * self.input_per_mtok
            + tokens.output * self.output_per_mtok
            + five_minute * self.cache_write_5m
            + tokens.cache_write_1h * self.cache_write_1h
            + tokens.cache_read * self.cache_read
        ) / 1_000_000
        if self.long_context is not None and tokens.prompt > self.long_context.threshold_tokens:
            token_usd *= self.long_context.multiplier
        if tokens.batch:
            token_usd *= BATCH_DISCOUNT
        if tokens.us_only and self.us_only_surcharge:
            token_usd *= US_INFERENCE_MULTIPLIER
        return token_usd + tokens.web_search_requests * WEB_SEARCH_USD_PER_1000 / 1000


def _p(
    input_per_mtok: float,
    output_per_mtok: float,
    cache_read: float | None = None,
    *,
    source: str = PRICING_PAGE,
    **more: object,
) -> dict[str, object]:
    row: dict[str, object] = {
        "input_per_mtok": input_per_mtok,
        "output_per_mtok": output_per_mtok,
        "source": source,
        **more,
    }
    if cache_read is not None:
        row["cache_read_per_mtok"] = cache_read
    return row


_THIRD_PARTY_CACHE = "; cache and Batches rates from third-party trackers (Anthropic's not to hand)"

# Every model id of the SDK's Model type (2.14), newest first.
DEFAULT_PRICES: dict[str, dict[str, object]] = {
    "claude-fable-5-2": _p(
        8.0, 40.0, 0.20,
        source="platform.claude.com/docs/id/models/sonnet-5/overview (lineup table)"
        + _THIRD_PARTY_CACHE,
    ),
    "claude-mythos-5-2": _p(
        8.0, 40.0, 0.20,
        source="as Fable 5.2: same specs and price per a third-party launch note; "
        "Anthropic's migration guide sentence cut off in the copy read",
    ),
    "claude-haiku-5-5": _p(
        0.10, 0.50, 0.01,
        long_context={"threshold_tokens": 100_000, "multiplier": 5.0},
        source="platform.claude.com/docs/zh-CN/models/haiku-5-5/overview (both bands)"
        + _THIRD_PARTY_CACHE,
    ),
    "claude-sonnet-5-5": _p(
        2.0, 10.0, 0.10,
        source="platform.claude.com/docs/en/models/sonnet-5-5/migration-guide "
        "(cache reads $0.10, half Sonnet 5's)",
    ),
    "claude-fable-5-1": _p(10.0, 50.0, 0.25),
    "claude-opus-5-5": _p(
        4.0, 20.0, 0.20, source="platform.claude.com/docs/zh-CN/models/opus-5-5/overview"
    ),
    "claude-mythos-5-1": _p(10.0, 50.0, 0.25, source=PRICING_PAGE + " (limited availability)"),
    "claude-sonnet-5": _p(
        2.0, 10.0, 0.20, source="platform.claude.com/docs/zh-CN/models/sonnet-5/overview"
    ),
    "claude-fable-5": _p(10.0, 50.0, 1.0),
    "claude-mythos-5": _p(10.0, 50.0, 1.0, source=PRICING_PAGE + " (limited availability)"),
    "claude-opus-5": _p(5.0, 25.0),
    "claude-opus-4-8": _p(5.0, 25.0),
    "claude-opus-4-7": _p(5.0, 25.0),
    "claude-mythos-preview": _p(
        25.0, 125.0,
        source="third-party only (partner access; Fable 5's launch called it 'less than half "
        "the price of Claude Mythos Preview'); cache rates assumed at the default multipliers",
    ),
    "claude-opus-4-6": _p(5.0, 25.0),
    "claude-sonnet-4-6": _p(3.0, 15.0),
    "claude-haiku-4-5": _p(1.0, 5.0, us_only_surcharge=False),
    "claude-opus-4-5": _p(5.0, 25.0, us_only_surcharge=False),
    "claude-sonnet-4-5": _p(
        3.0, 15.0, us_only_surcharge=False,
        source="platform.claude.com/docs/zh-CN/models/sonnet-4-5/overview (retires 2026-11-30)",
    ),
}  # fmt: skip


# The account's rate limits per model family, beside what its tokens cost: Anthropic's
# published Tier 4 limits (2026, platform.claude.com/docs/en/api/rate-limits). Set your
# own account's with CHORUS_LIMITS__<FAMILY>__... or a [limits.<family>] table in
# chorus.toml (config.settings reads this table under them).
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "default": {
        "requests_per_minute": 4_000,
        "input_tokens_per_minute": 2_000_000,
        "output_tokens_per_minute": 400_000,
    },
    "haiku": {
        "requests_per_minute": 4_000,
        "input_tokens_per_minute": 4_000_000,
        "output_tokens_per_minute": 800_000,
    },
}
