"""The server's own rate limits: continuously refilled token buckets, as Anthropic runs them.

Each limit N per minute refills at N/60 per second, and is enforced over a
short interval (`limit_interval_s`, 1 s by default): its bucket holds only
that interval's refill. The documentation says a per-minute limit "might be
enforced as" its per-second share (60 requests a minute as 1 a second) and
that short bursts above it are refused (platform.claude.com/docs/en/api/
rate-limits); 1 s is the strictest it names, so a client that survives it
survives the real API.

A request takes 1 from the requests bucket, its uncached input tokens (cache
reads are free) from the input bucket and `max_tokens` from the output bucket,
all or nothing; when it ends, the output tokens it did not use go back. A cost
larger than a bucket holds (a 4,096-token `max_tokens` against 8,000 output
tokens a minute held over 1 s) is admitted once the bucket is full and leaves
it in debt: one big request at the pace of the refill. Only a cost above the
whole per-minute limit can never be admitted.
"""

from __future__ import annotations

import math
import time

# What the headers report for a limit that is not set.
NOMINAL_LIMIT = 1_000_000_000
BUCKET_NAMES = ("requests", "input-tokens", "output-tokens")


def rfc3339(unix_s: float) -> str:
    """`unix_s` rounded up to the second, as RFC 3339 UTC (2026-11-24T10:00:00Z)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.ceil(unix_s)))


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, rounded up and at least 1: what a 429's `retry-after` carries."""
    return str(max(1, math.ceil(wait_s)))


def retry_after_headers(wait_s: float) -> dict[str, str]:
    """`retry-after` in whole seconds and `retry-after-ms` to the millisecond.

    The SDK reads `retry-after-ms` first (`_base_client.py`, `_parse_retry_after_header`).
    """
    return {
        "retry-after": retry_after_header(wait_s),
        "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
    }


def round_to_thousand(tokens: int) -> int:
    """Token `remaining` figures are "rounded to the nearest thousand" (api/rate-limits)."""
    return round(tokens / 1000.0) * 1000


class TokenBucket:
    """One limit per minute held over `interval_s`; `limit_per_minute` None or 0: unlimited."""

    __slots__ = ("capacity", "level", "limit_per_minute", "rate_per_s", "updated_at")

    def __init__(self, limit_per_minute: int | None, now: float, interval_s: float = 60.0) -> None:
        self.limit_per_minute = limit_per_minute or None
        per_minute = float(self.limit_per_minute or NOMINAL_LIMIT)
        self.rate_per_s = per_minute / 60.0
        self.capacity = self.rate_per_s * min(60.0, interval_s)
        self.level = self.capacity
        self.updated_at = now

    @property
    def unlimited(self) -> bool:
        return self.limit_per_minute is None

    def _refill(self, now: float) -> None:
        if now > self.updated_at:
            self.level = min(self.capacity, self.level + (now - self.updated_at) * self.rate_per_s)
            self.updated_at = now

    def wait_s(self, amount: float, now: float) -> float:
        """Seconds until `amount` may be taken (0 if it may now).

        An amount above the bucket's capacity may be taken once the bucket is
        full (it then goes into debt). An amount above the whole per-minute
        limit never fits; the answer is then the time until the bucket is
        full, so a client backs off for a while rather than hammering.
        """
        if self.unlimited:
            return 0.0
        self._refill(now)
        missing = min(amount, self.capacity) - self.level
        if self.limit_per_minute is not None and amount > self.limit_per_minute:
            missing = max(missing, 1e-9)
        return max(0.0, missing / self.rate_per_s)

    def take(self, amount: float, now: float) -> None:
        if not self.unlimited:
            self._refill(now)
            self.level -= amount

    def give_back(self, amount: float, now: float) -> None:
        if not self.unlimited and amount > 0:
            self._refill(now)
            self.level = min(self.capacity, self.level + amount)

    def remaining(self, now: float) -> int:
        if self.unlimited:
            return NOMINAL_LIMIT
        self._refill(now)
        return max(0, math.floor(self.level))

    def full_at(self, now: float) -> float:
        """The unix time at which the bucket will be full again."""
        if self.unlimited:
            return now
        self._refill(now)
        return now + (self.capacity - self.level) / self.rate_per_s


class RateLimits:
    """The three buckets Anthropic enforces: requests, input and output tokens per minute."""

    def __init__(
        self,
        rpm: int | None,
        itpm: int | None,
        otpm: int | None,
        now: float | None = None,
        interval_s: float = 60.0,
    ) -> None:
        start = time.time() if now is None else now
        self.requests = TokenBucket(rpm, start, interval_s)
        self.input_tokens = TokenBucket(itpm, start, interval_s)
        self.output_tokens = TokenBucket(otpm, start, interval_s)

    def _buckets(self) -> tuple[tuple[str, TokenBucket, str], ...]:
        return (
            ("requests", self.requests, "requests"),
            ("input-tokens", self.input_tokens, "input tokens"),
            ("output-tokens", self.output_tokens, "output tokens"),
        )

    def try_acquire(
        self, input_tokens: int, max_tokens: int, now: float
    ) -> tuple[str, float] | None:
        """Take one request, its input tokens and `max_tokens`, or nothing.

        Returns None when granted, else (a message naming the binding limit,
        seconds until that limit has room).
        """
        costs = (1, input_tokens, max_tokens)
        worst: tuple[str, float] | None = None
        for (_, bucket, noun), cost in zip(self._buckets(), costs, strict=True):
            wait_s = bucket.wait_s(cost, now)
            if wait_s > 0 and (worst is None or wait_s > worst[1]):
                message = (
                    "This request would exceed the rate limit for your organization of "
                    f"{bucket.limit_per_minute} {noun} per minute."
                )
                worst = (message, wait_s)
        if worst is not None:
            return worst
        for (_, bucket, _), cost in zip(self._buckets(), costs, strict=True):
            bucket.take(cost, now)
        return None

    def refund_output(self, unused_tokens: int, now: float) -> None:
        """Give back output tokens charged at `max_tokens` but not produced."""
        self.output_tokens.give_back(unused_tokens, now)

    def headers(self, now: float) -> dict[str, str]:
        """The twelve `anthropic-ratelimit-*` headers as of `now`.

        Requests, input tokens and output tokens each have `-limit`,
        `-remaining` (token figures rounded to the nearest thousand) and
        `-reset` (RFC 3339); `tokens-*` is the most restrictive limit in
        effect, which without a workspace limit is input plus output tokens
        (platform.claude.com/docs/en/api/rate-limits, "Response headers").
        """
        headers: dict[str, str] = {}
        for name, bucket, _ in self._buckets():
            prefix = f"anthropic-ratelimit-{name}-"
            remaining = bucket.remaining(now)
            if name != "requests":
                remaining = round_to_thousand(remaining)
            headers[prefix + "limit"] = str(bucket.limit_per_minute or NOMINAL_LIMIT)
            headers[prefix + "remaining"] = str(remaining)
            headers[prefix + "reset"] = rfc3339(bucket.full_at(now))
        tokens = (self.input_tokens, self.output_tokens)
        headers["anthropic-ratelimit-tokens-limit"] = str(
            sum(b.limit_per_minute or NOMINAL_LIMIT for b in tokens)
        )
        headers["anthropic-ratelimit-tokens-remaining"] = str(
            round_to_thousand(sum(b.remaining(now) for b in tokens))
        )
        headers["anthropic-ratelimit-tokens-reset"] = rfc3339(max(b.full_at(now) for b in tokens))
        return headers
