"""Seeded fault injection and latency jitter.

One uniform draw per call picks at most one fault: the configured rates are
laid end to end on [0, 1) in the order 429, 529, 500, hang, malformed. With a
fixed seed and the same order of arrivals the same calls fail; concurrent
arrivals may interleave differently from run to run.
"""

from __future__ import annotations

import random

from localapi.config import FAULT_KINDS, LocalAPIConfig


class FaultInjector:
    """Draws faults and jitter from RNGs seeded by the server seed."""

    def __init__(self, config: LocalAPIConfig) -> None:
        self._fault_rng = random.Random(f"faults:{config.seed}")
        self._jitter_rng = random.Random(f"jitter:{config.seed}")
        self.configure(config)

    def configure(self, config: LocalAPIConfig) -> None:
        """Take new rates and jitter without reseeding."""
        thresholds: list[tuple[float, str]] = []
        total = 0.0
        for kind in FAULT_KINDS:
            rate = config.fault_rates()[kind]
            if rate > 0:
                total += rate
                thresholds.append((total, kind))
        self._thresholds = thresholds
        self._jitter_ms = config.jitter_ms

    def draw(self) -> str | None:
        """A fault kind ("429", "529", "500", "hang", "malformed") or None."""
        if not self._thresholds:
            return None
        draw = self._fault_rng.random()
        for threshold, kind in self._thresholds:
            if draw < threshold:
                return kind
        return None

    def jitter_ms(self) -> float:
        """Uniform in [-jitter_ms, +jitter_ms]."""
        if not self._jitter_ms:
            return 0.0
        return self._jitter_rng.uniform(-self._jitter_ms, self._jitter_ms)
