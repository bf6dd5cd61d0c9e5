"""When to try a failed call again, and how long to wait first.

Whether an error is worth another attempt is decided by its class (see
``workers.errors``); this module only decides the wait: exponential backoff
with full jitter (AWS's "Exponential Backoff and Jitter": a random wait in
``[0, min(cap, base * 2**n))``, so retrying workers spread out instead of
returning together), or exactly ``retry-after`` when the server sent one,
also above the SDK's 60 s cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from config.settings import RetrySettings
from workers.errors import ProviderError


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded attempts, backoff with full jitter, and the longest wait accepted."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_wait_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: RetrySettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            base_delay_s=settings.base_delay_s,
            max_delay_s=settings.max_delay_s,
            max_wait_s=settings.max_wait_s,
        )

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """A full-jitter wait after the ``attempt``-th failure (1-based)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** min(attempt - 1, 62))
        return rng.uniform(0.0, ceiling)

    def wait_s(self, error: ProviderError, attempt: int, rng: random.Random) -> float | None:
        """How long to wait before the next attempt, or None to give up.

        Gives up when the error is permanent (or the API said ``x-should-retry:
        false``), the attempts are spent, or the server asks for a longer wait
        than ``max_wait_s``. ``x-should-retry: true`` makes any error worth
        another attempt, as the SDK takes it.
        """
        retryable = error.retryable if error.should_retry is None else error.should_retry
        if not retryable or attempt >= self.max_attempts:
            return None
        if error.retry_after_s is not None and error.retry_after_s > 0:
            if error.retry_after_s > self.max_wait_s:
                return None
            return error.retry_after_s
        return self.backoff_s(attempt, rng)
