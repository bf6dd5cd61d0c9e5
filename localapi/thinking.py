"""How much a call thinks, as each model's documentation describes it.

The model's rules (``config.models``) say whether it thinks when
``thinking`` is omitted (adaptive by default on the Sonnet 5 family and
later, always on for some), and which forms it accepts; requests it refuses
never get here (``localapi.validation``). What is left is the amount:

- ``adaptive``: drawn from a range set by ``output_config.effort`` (the
  model's default effort when unset): low thinks little or not at all, max
  thinks a lot. Scaled by the server's ``thinking_scale``.
- ``enabled``: up to ``budget_tokens`` (a quarter to all of it).
- ``disabled``, ``between_tools`` (no tool call in a plain reply), or a model
  that thinks only when asked: none.

Thinking tokens are output tokens: they count inside ``max_tokens``, so a
small ``max_tokens`` ends with ``stop_reason: max_tokens`` and a thinking
block but no text, exactly as the real API can. ``display`` (``summarized``
or ``omitted``, the model's default when unset) decides whether the block's
text comes back; its tokens are spent either way.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.models import ModelRules, effective_effort

# Thinking tokens an adaptive call spends, by effort (before thinking_scale).
EFFORT_RANGES: dict[str, tuple[int, int]] = {
    "low": (0, 60),
    "medium": (60, 240),
    "high": (160, 600),
    "xhigh": (320, 1_200),
    "max": (640, 2_400),
}


@dataclass(frozen=True, slots=True)
class ThinkingPlan:
    """How a call thinks: ``tokens`` of it (0: no thinking block), shown or not."""

    mode: str
    tokens: int = 0
    display: str = "omitted"


NO_THINKING = ThinkingPlan("off")


def plan_thinking(
    body: Mapping[str, Any], rules: ModelRules | None, rng: random.Random, scale: float = 1.0
) -> ThinkingPlan:
    """The thinking a valid request gets. ``rules`` None: a model this server does not know."""
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind is None:
        kind = "adaptive" if rules is not None and rules.thinks_by_default else "off"
    if kind in ("off", "disabled", "between_tools"):
        return NO_THINKING
    display = thinking.get("display") if isinstance(thinking, Mapping) else None
    if not isinstance(display, str):
        display = rules.display_default if rules is not None else "summarized"
    if kind == "enabled":
        budget = int(thinking.get("budget_tokens", 1024)) if isinstance(thinking, Mapping) else 0
        return ThinkingPlan("enabled", rng.randint(budget // 4, budget), display)
    effort = effective_effort(rules, body) if rules is not None else None
    low, high = EFFORT_RANGES.get(effort or "high", EFFORT_RANGES["high"])
    tokens = round(rng.randint(low, high) * scale)
    return ThinkingPlan("adaptive", tokens, display)
