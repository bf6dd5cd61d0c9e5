"""What a batch will cost and take before it is sent: ``chorus submit FILE --dry-run``.

Every line is validated as a submit would (nothing is enqueued). Each item's
input tokens are estimated on its model's tokenizer
(``workers.ratelimit.estimate``: characters per token, scaled by the model's
token ratio; within 17 % of the API's count on prose, docs/PERFORMANCE.md), and
its output is bounded by its ``max_tokens``. Per route:

- **input only**: what the input alone costs. Every answer costs at least this
  (a refusal before any output is free, the only exception).
- **worst case**: every answer as long as ``max_tokens`` allows, thinking
  included, and the cache writes a request marks at its dearest TTL
  (``CallRequest.worst_case_tokens``). No run costs more; ``--max-cost``
  reserves with the same sum.
- **time**: in real time, the longest of the three buckets' needs at the
  account's limits (``CHORUS_LIMITS__*``), output at its worst case; through
  the Message Batches API, within 24 hours (most within an hour).

Prices are ``config/prices.py``'s, the Batches route's at its discount.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from config.prices import Tokens
from config.settings import Settings, get_settings
from orchestration.batchfile import InputSpec, LineError
from orchestration.submission import Source, source_items
from workers.models import CallRequest
from workers.ratelimit.estimate import estimate_input_tokens
from workers.ratelimit.limitkey import model_family


@dataclass
class ModelEstimate:
    """One model's share of a batch: items, tokens, costs in USD (None: no known price)."""

    model: str
    items: int = 0
    input_tokens: int = 0
    max_output_tokens: int = 0
    input_usd: float | None = 0.0
    worst_usd: float | None = 0.0
    input_usd_batches: float | None = 0.0
    worst_usd_batches: float | None = 0.0
    minutes: float = 0.0  # in real time at the account's limits, output at its worst
    binding: str = ""  # the limit those minutes are spent waiting for


@dataclass
class Estimate:
    """A whole batch's :class:`ModelEstimate` by model, and the lines that are invalid."""

    models: dict[str, ModelEstimate] = field(default_factory=dict)
    invalid: list[LineError] = field(default_factory=list)

    @property
    def items(self) -> int:
        return sum(m.items for m in self.models.values())

    def total(self, name: str) -> float | None:
        """The sum of one cost over the models; None if any model's price is unknown."""
        values = [getattr(m, name) for m in self.models.values()]
        return None if any(v is None for v in values) else sum(values)

    @property
    def minutes(self) -> float:
        """Real time: the models' families share nothing but the queue, so the slowest."""
        return max((m.minutes for m in self.models.values()), default=0.0)

    def add(self, request: CallRequest, settings: Settings) -> None:
        """Count one item: its estimated input, its output bound, its costs by route."""
        model = self.models.setdefault(request.model, ModelEstimate(request.model))
        estimated = estimate_input_tokens(request)
        worst = request.worst_case_tokens(estimated)
        model.items += 1
        model.input_tokens += estimated
        model.max_output_tokens += request.max_tokens
        price = settings.price_for(request.model)
        only_input = Tokens(input=estimated)
        for name, tokens in (("input_usd", only_input), ("worst_usd", worst)):
            for suffix, batch in (("", False), ("_batches", True)):
                current = getattr(model, name + suffix)
                if price is None or current is None:
                    setattr(model, name + suffix, None)
                else:
                    setattr(
                        model, name + suffix, current + price.cost_usd(replace(tokens, batch=batch))
                    )

    def time(self, settings: Settings) -> None:
        """Set each model's minutes at the account's limits, once every item is counted."""
        for model in self.models.values():
            limits = settings.limits_for(model_family(model.model))
            needs = [
                (count / per_minute, name)
                for count, per_minute, name in (
                    (model.items, limits.requests_per_minute, "requests"),
                    (model.input_tokens, limits.input_tokens_per_minute, "input tokens"),
                    (model.max_output_tokens, limits.output_tokens_per_minute, "output tokens"),
                )
                if per_minute
            ]
            model.minutes, model.binding = max(needs, default=(0.0, ""))

    @property
    def binding(self) -> str:
        """The limit the slowest model waits for."""
        slowest = max(self.models.values(), key=lambda m: m.minutes, default=None)
        return slowest.binding if slowest else ""


def estimate(
    source: Source | str | Path, spec: InputSpec, settings: Settings | None = None
) -> Estimate:
    """Read ``source`` (a JSONL path or item dicts) and estimate it; enqueues nothing.

    Raises:
        BatchInputError: the source cannot be read at all.
    """
    settings = settings or get_settings()
    found = Estimate()
    for entry in source_items(source, spec):
        if isinstance(entry, LineError):
            found.invalid.append(entry)
        else:
            found.add(entry.request, settings)
    found.time(settings)
    return found
