"""The server's own token buckets: refill, all-or-nothing charges, refunds and retry-after."""

from __future__ import annotations

import calendar
import time

import pytest

from localapi.buckets import (
    NOMINAL_LIMIT,
    RateLimits,
    TokenBucket,
    retry_after_header,
    rfc3339,
)

T0 = 1_800_000_000.0


def test_a_bucket_starts_full_with_one_minutes_worth() -> None:
    bucket = TokenBucket(60, T0)
    assert bucket.remaining(T0) == 60
    assert bucket.wait_s(60, T0) == 0.0


def test_a_bucket_refills_continuously_at_the_limit_per_second_over_sixty() -> None:
    bucket = TokenBucket(60, T0)
    bucket.take(60, T0)
    assert bucket.remaining(T0) == 0
    assert bucket.wait_s(1, T0) == pytest.approx(1.0)
    assert bucket.remaining(T0 + 10) == 10
    assert bucket.remaining(T0 + 1000) == 60  # never above capacity


def test_the_wait_is_the_time_until_the_missing_amount_has_refilled() -> None:
    bucket = TokenBucket(600, T0)  # 10 per second
    bucket.take(600, T0)
    assert bucket.wait_s(25, T0) == pytest.approx(2.5)
    assert bucket.full_at(T0) == pytest.approx(T0 + 60)


def test_an_amount_larger_than_the_bucket_never_fits() -> None:
    bucket = TokenBucket(100, T0)
    assert bucket.wait_s(101, T0) > 0


def test_a_refund_goes_back_into_the_bucket_but_not_above_capacity() -> None:
    bucket = TokenBucket(100, T0)
    bucket.take(80, T0)
    bucket.give_back(50, T0)
    assert bucket.remaining(T0) == 70
    bucket.give_back(500, T0)
    assert bucket.remaining(T0) == 100


def test_output_tokens_are_charged_at_max_tokens_and_the_unused_part_refunded() -> None:
    limits = RateLimits(rpm=None, itpm=None, otpm=1000, now=T0)
    assert limits.try_acquire(input_tokens=10, max_tokens=800, now=T0) is None
    assert limits.output_tokens.remaining(T0) == 200
    limits.refund_output(800 - 50, T0)
    assert limits.output_tokens.remaining(T0) == 950


def test_a_denied_request_takes_nothing_and_names_the_binding_limit() -> None:
    limits = RateLimits(rpm=10, itpm=100, otpm=None, now=T0)
    assert limits.try_acquire(90, 1, T0) is None
    denial = limits.try_acquire(50, 1, T0)
    assert denial is not None
    message, wait_s = denial
    assert "100 input tokens per minute" in message
    assert wait_s == pytest.approx(40 / (100 / 60))
    assert limits.requests.remaining(T0) == 9  # the denied call took no request


def test_the_request_limit_answers_once_a_minutes_worth_is_spent() -> None:
    limits = RateLimits(rpm=3, itpm=None, otpm=None, now=T0)
    for _ in range(3):
        assert limits.try_acquire(1, 1, T0) is None
    denial = limits.try_acquire(1, 1, T0)
    assert denial is not None
    assert denial[1] == pytest.approx(20.0)
    assert limits.try_acquire(1, 1, T0 + 20.0) is None


def test_unlimited_buckets_report_a_nominal_limit_and_never_deny() -> None:
    limits = RateLimits(rpm=None, itpm=0, otpm=None, now=T0)
    for _ in range(1000):
        assert limits.try_acquire(10**6, 10**5, T0) is None
    headers = limits.headers(T0)
    for name in ("requests", "input-tokens", "output-tokens"):
        assert headers[f"anthropic-ratelimit-{name}-limit"] == str(NOMINAL_LIMIT)
        assert headers[f"anthropic-ratelimit-{name}-remaining"] == str(NOMINAL_LIMIT)


def test_headers_report_limit_remaining_and_the_time_the_bucket_is_full_again() -> None:
    limits = RateLimits(rpm=60, itpm=None, otpm=None, now=T0)
    limits.try_acquire(1, 1, T0)
    headers = limits.headers(T0)
    assert headers["anthropic-ratelimit-requests-limit"] == "60"
    assert headers["anthropic-ratelimit-requests-remaining"] == "59"
    reset = time.strptime(headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%SZ")
    assert calendar.timegm(reset) == T0 + 1


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(0.0) == "1"
    assert retry_after_header(1.2) == "2"
    assert retry_after_header(3.0) == "3"


def test_times_are_rfc3339_utc() -> None:
    assert rfc3339(0.5) == "1970-01-01T00:00:01Z"


@pytest.mark.parametrize("limit", [123, 245, 490, 60_000])
def test_a_whole_minutes_worth_fits_a_full_bucket_whatever_the_float_rounding(limit: int) -> None:
    # limit / 60 * 60 falls just below the limit for these; the comparison reads the limit itself.
    assert TokenBucket(limit, T0).wait_s(limit, T0) == 0.0
    assert TokenBucket(limit, T0).wait_s(limit + 1, T0) > 0
