from __future__ import annotations

import random

from workers import errors
from workers.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=8.0, max_wait_s=120.0)


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [POLICY.backoff_s(attempt, rng) for _ in range(500)]
        assert min(waits) >= 0.0
        assert max(waits) <= ceiling
        # Full jitter spreads over the whole range, not around the ceiling.
        assert min(waits) < ceiling * 0.1
        assert max(waits) > ceiling * 0.9


def test_retry_after_is_honoured_exactly_even_above_sixty_seconds() -> None:
    error = errors.RateLimited("slow", 429, None, None, 90.0)

    assert POLICY.wait_s(error, attempt=1, rng=random.Random()) == 90.0


def test_a_retry_after_beyond_the_longest_accepted_wait_gives_up() -> None:
    error = errors.RateLimited("slow", 429, None, None, 3600.0)

    assert POLICY.wait_s(error, attempt=1, rng=random.Random()) is None


def test_permanent_errors_are_never_retried() -> None:
    for status in (400, 401, 403, 404, 413):
        error = errors.error_for_status(status, "no")
        assert POLICY.wait_s(error, attempt=1, rng=random.Random()) is None


def test_attempts_are_bounded() -> None:
    error = errors.Overloaded("busy", 529)

    assert POLICY.wait_s(error, attempt=4, rng=random.Random()) is not None
    assert POLICY.wait_s(error, attempt=5, rng=random.Random()) is None


def test_x_should_retry_overrides_the_class_both_ways() -> None:
    policy = RetryPolicy(max_attempts=5)
    rng = random.Random(0)
    told_not_to = errors.Overloaded("busy", 529, should_retry=False)
    told_to = errors.BadRequest("odd", 400, should_retry=True)

    assert policy.wait_s(told_not_to, 1, rng) is None
    assert policy.wait_s(told_to, 1, rng) is not None
