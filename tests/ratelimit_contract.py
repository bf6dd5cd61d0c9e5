"""The rate limiter's contract, run against fakeredis (unit) and a real Redis (integration).

fakeredis runs the scripts on Lua 5.4 through lupa; only a real Redis (Lua
5.1, its own TIME) proves them. Both must pass the same class.
"""

from __future__ import annotations

import math
import time

import pytest
import redis

from config.settings import FamilyLimits
from workers import keys
from workers.errors import CostExceedsCapacity
from workers.ratelimit.backend import Cost
from workers.ratelimit.backends.redis import RedisLimiter

KEY = "fp0123456789:sonnet"
SMALL = FamilyLimits(
    requests_per_minute=60,  # 1 per second
    input_tokens_per_minute=60_000,
    output_tokens_per_minute=6_000,  # 100 per second
    burst_s=60,  # buckets of a full minute: round numbers for the mechanics
    max_wait_s=30,
    configured=True,  # set by the user: the server's figures may only lower them
)


def refilled_wait(wait_s: float, expected_s: float, since: float) -> bool:
    """Whether ``wait_s`` is ``expected_s`` less the refill of the time since ``since``.

    Redis's clock runs while the test drains a bucket: the buckets refill by
    that much, so a slow machine sees shorter waits, never longer ones.
    """
    elapsed = time.monotonic() - since
    return expected_s - elapsed - 0.01 <= wait_s <= expected_s + 0.01


class LimiterContract:
    """Subclasses provide ``client``: a Redis or a FakeRedis, empty."""

    client: redis.Redis

    def limiter(self, limits: FamilyLimits = SMALL) -> RedisLimiter:
        return RedisLimiter(self.client, lambda family: limits)

    def test_a_reservation_within_capacity_goes_at_once(self) -> None:
        reservation = self.limiter().reserve(KEY, Cost(1, 100, 100))

        assert reservation.granted
        assert reservation.wait_s == 0
        assert reservation.at_us > 1_700_000_000_000_000  # Redis TIME, in microseconds

    def test_waiters_get_consecutive_slots_spaced_by_the_refill(self) -> None:
        limiter = self.limiter()
        since = time.monotonic()
        for _ in range(60):  # drain the requests bucket
            assert limiter.reserve(KEY, Cost(1, 0, 0)).wait_s == 0

        waits = [limiter.reserve(KEY, Cost(1, 0, 0)).wait_s for _ in range(3)]

        # One request per second refills: each waiter a second after the last.
        assert refilled_wait(waits[0], 1.0, since)
        assert refilled_wait(waits[1], 2.0, since)
        assert refilled_wait(waits[2], 3.0, since)
        assert 0.5 < waits[2] - waits[1] <= 1.0 + 0.001

    def test_the_binding_bucket_is_named(self) -> None:
        limiter = self.limiter()
        since = time.monotonic()
        limiter.reserve(KEY, Cost(1, 0, 6_000))

        reservation = limiter.reserve(KEY, Cost(1, 0, 500))

        assert reservation.binding == "output_tokens"
        assert refilled_wait(reservation.wait_s, 5.0, since)

    def test_a_cost_above_a_buckets_capacity_fails_at_once(self) -> None:
        with pytest.raises(CostExceedsCapacity) as caught:
            self.limiter().reserve(KEY, Cost(1, 10, 6_001))

        assert caught.value.bucket == "output_tokens"
        assert caught.value.capacity == 6_000
        assert "could never be sent" in str(caught.value)

    def test_a_wait_beyond_the_debt_bound_is_refused_with_when_to_ask_again(self) -> None:
        limiter = self.limiter()
        since = time.monotonic()
        for _ in range(60 + 30):  # capacity, then 30 s of debt
            assert limiter.reserve(KEY, Cost(1, 0, 0)).granted

        refused = limiter.reserve(KEY, Cost(1, 0, 0))

        assert not refused.granted
        assert refilled_wait(refused.wait_s, 1.0, since)
        assert limiter.state(KEY).refused == 1

    def test_with_no_refill_exactly_the_capacity_is_granted(self) -> None:
        frozen = FamilyLimits(
            requests_per_minute=0,
            input_tokens_per_minute=0,
            output_tokens_per_minute=0,
            requests_capacity=5,
            input_tokens_capacity=1_000,
            output_tokens_capacity=1_000,
            configured=True,
        )
        limiter = self.limiter(frozen)

        results = [limiter.reserve(KEY, Cost(1, 1, 1)) for _ in range(8)]

        assert [r.granted for r in results] == [True] * 5 + [False] * 3
        assert math.isinf(results[-1].wait_s)

    def test_settling_refunds_the_unused_output_tokens(self) -> None:
        limiter = self.limiter()
        reservation = limiter.reserve(KEY, Cost(1, 100, 2_000))
        before = self._level(limiter, "output_tokens")

        limiter.settle(reservation, Cost(1, 100, 300))

        assert self._level(limiter, "output_tokens") == pytest.approx(before + 1_700, abs=5)

    def test_settling_corrects_the_input_estimate_both_ways(self) -> None:
        limiter = self.limiter()
        low = limiter.reserve(KEY, Cost(1, 100, 0))
        start = self._level(limiter, "input_tokens")

        limiter.settle(low, Cost(1, 400, 0))  # we estimated 300 too few

        assert self._level(limiter, "input_tokens") == pytest.approx(start - 300, abs=5)

    def test_a_refund_never_fills_a_bucket_above_its_capacity(self) -> None:
        limiter = self.limiter()
        reservation = limiter.reserve(KEY, Cost(1, 0, 10))

        limiter.settle(reservation, Cost(0, 0, -50_000))

        assert self._level(limiter, "output_tokens") <= 6_000

    def test_server_headers_pull_the_buckets_down_never_up(self) -> None:
        limiter = self.limiter()
        reservation = limiter.reserve(KEY, Cost(1, 0, 0))

        limiter.settle(
            reservation,
            Cost(1, 0, 0),
            {
                "anthropic-ratelimit-requests-remaining": "7",
                "anthropic-ratelimit-output-tokens-remaining": "999999",
            },
        )

        assert self._level(limiter, "requests") == pytest.approx(7, abs=0.2)
        assert self._level(limiter, "output_tokens") == pytest.approx(6_000, abs=5)

    def test_a_lower_server_limit_becomes_ours(self) -> None:
        limiter = self.limiter()
        reservation = limiter.reserve(KEY, Cost(1, 0, 0))

        limiter.settle(reservation, Cost(1, 0, 0), {"anthropic-ratelimit-requests-limit": "30"})

        requests = limiter.state(KEY).buckets[0]
        assert requests.per_minute == 30
        assert requests.capacity == 30

    def test_a_cost_above_the_burst_waits_for_a_full_bucket_then_goes_into_debt(self) -> None:
        # Two seconds of burst: 200 output tokens held, 100 refilled a second.
        short = SMALL.model_copy(update={"burst_s": 2.0})
        limiter = self.limiter(short)
        limiter.reserve(KEY, Cost(1, 0, 100))  # half the burst gone

        big = limiter.reserve(KEY, Cost(1, 0, 1_000))  # five times the burst

        assert big.granted and big.binding == "output_tokens"
        # Until the bucket is full, and the 0.1 s jitter allowance more; not
        # until it holds 1,000.
        assert 1.0 <= big.wait_s <= 1.1
        after = limiter.reserve(KEY, Cost(1, 0, 100))
        # The debt of 900 and its own 100, at 100 a second, after the big call's
        # slot (whose allowance the full bucket could not hold).
        assert 9.8 <= after.wait_s <= 10.2

    def test_a_call_held_back_by_one_bucket_takes_the_others_at_its_slot(self) -> None:
        # Two requests a second held over a second; output tokens binding.
        limits = SMALL.model_copy(update={"requests_per_minute": 120, "burst_s": 1.0})
        limiter = self.limiter(limits)
        first = limiter.reserve(KEY, Cost(1, 0, 100))  # the output burst (100 tokens) is spent
        held = limiter.reserve(KEY, Cost(1, 0, 100))  # waits a second for output tokens

        cheap = [limiter.reserve(KEY, Cost(1, 0, 0)) for _ in range(2)]

        assert 0.9 <= held.wait_s <= 1.0 and held.binding == "output_tokens"
        # The held call sends at its slot, when the API counts its request: the
        # requests bucket keeps its room then, so no more than two go in any
        # second (a third needs half a second of refill).
        slots = sorted(r.slot_us / 1e6 for r in (first, held, *cheap))
        third_after = zip(slots, slots[2:], strict=False)
        assert all(later - earlier >= 0.49 for earlier, later in third_after)

    def test_a_refund_never_fills_a_bucket_past_what_it_holds_at_the_slots_granted(
        self,
    ) -> None:
        # One request a second; output tokens 100 a second, at most 100 at once.
        limiter = self.limiter(SMALL.model_copy(update={"burst_s": 1.0}))
        spent = limiter.reserve(KEY, Cost(1, 0, 100))  # will use none of its 100
        calls = [(spent, 0)]
        calls += [(limiter.reserve(KEY, Cost(1, 0, 0)), 0) for _ in range(2)]
        calls.append((limiter.reserve(KEY, Cost(1, 0, 50)), 50))  # at 3 s, by requests
        limiter.settle(spent, Cost(1, 0, 0))
        calls += [(limiter.reserve(KEY, Cost(0, 0, n)), n) for n in (100, 50)]

        # The API's output bucket, taking what each call uses at its slot,
        # never goes below empty: the 100 given back cannot also be the 50
        # the call at 3 s takes then.
        level, last = 100.0, None
        for reservation, used in sorted(calls, key=lambda call: call[0].slot_us):
            at = reservation.slot_us / 1e6
            if last is not None:
                level = min(100.0, level + 100 * (at - last))
            level, last = level - used, at
            assert level >= -0.5, f"the API's bucket at {level:.1f} tokens"

    def test_workers_with_other_settings_share_a_debt_as_time(self) -> None:
        # One worker allows a hundred times the output tokens another does (a
        # fleet part way through a change of settings); requests bind both.
        held = SMALL.model_copy(update={"burst_s": 1.0})  # one request a second, no more
        ample = self.limiter(held.model_copy(update={"output_tokens_per_minute": 600_000}))
        for _ in range(20):
            last = ample.reserve(KEY, Cost(1, 0, 100))
        assert 18.5 <= last.wait_s <= 19.0 and last.binding == "requests"

        strict = self.limiter(held).reserve(KEY, Cost(1, 0, 100))

        # The ample worker's calls hold its output bucket until their slots,
        # 19 s away at most: the other worker reads that as 19 s too (and its
        # own call's second), not as the hundred times longer its own refill
        # would take for the same tokens (refused: above max_wait_s).
        assert strict.granted and strict.wait_s <= 20.5

    def test_a_key_with_no_limits_set_learns_them_from_one_call_first(self) -> None:
        guessed = SMALL.model_copy(update={"configured": False})
        limiter = self.limiter(guessed)

        probe = limiter.reserve(KEY, Cost(1, 10, 10))
        held = limiter.reserve(KEY, Cost(1, 10, 10))

        assert probe.granted and probe.wait_s == 0
        assert not held.granted and held.binding == "learning" and 0 < held.wait_s <= 0.25
        # The probe's response states the account's limits, higher than the guess.
        limiter.settle(
            probe,
            Cost(1, 10, 10),
            {
                "anthropic-ratelimit-requests-limit": "120",
                "anthropic-ratelimit-input-tokens-limit": "90000",
                "anthropic-ratelimit-output-tokens-limit": "9000",
            },
        )
        state = limiter.state(KEY)
        assert [b.per_minute for b in state.buckets] == [120, 90_000, 9_000]
        assert state.learned_at is not None and not state.configured
        assert limiter.reserve(KEY, Cost(1, 10, 10)).granted

    def test_limits_the_user_set_stay_a_cap_on_what_the_server_says(self) -> None:
        limiter = self.limiter()  # configured: 60 requests a minute
        reservation = limiter.reserve(KEY, Cost(1, 0, 0))

        limiter.settle(reservation, Cost(1, 0, 0), {"anthropic-ratelimit-requests-limit": "120"})

        assert limiter.state(KEY).buckets[0].per_minute == 60
        assert limiter.reserve(KEY, Cost(1, 0, 0)).granted  # no probe for a configured key

    def test_a_cooldown_holds_every_caller_back_until_it_ends(self) -> None:
        first, second = self.limiter(), self.limiter()  # two workers

        first.cooldown(KEY, 4.0)
        reservation = second.reserve(KEY, Cost(1, 0, 0))

        assert reservation.binding in ("cooldown", "requests")
        assert reservation.wait_s >= 3.9
        assert second.state(KEY).cooldowns == 1

    def test_time_is_stored_as_exact_integer_microseconds(self) -> None:
        self.limiter().reserve(KEY, Cost(1, 0, 0))

        stored = self.client.hget(keys.limit(KEY), "t")

        assert stored is not None
        assert stored.isdigit(), stored  # "1795505552450590", never "1.7955055524506e+15"

    def test_state_reports_levels_grants_and_waits(self) -> None:
        limiter = self.limiter()
        since = time.monotonic()
        for _ in range(61):
            limiter.reserve(KEY, Cost(1, 10, 10))

        state = limiter.state(KEY)

        assert state.granted == 61
        assert refilled_wait(state.waited_s, 1.0, since)
        assert [b.bucket for b in state.buckets] == ["requests", "input_tokens", "output_tokens"]
        assert state.buckets[0].level < 0  # one reservation in debt

    def _level(self, limiter: RedisLimiter, bucket: str) -> float:
        state = limiter.state(KEY)
        return next(b.level for b in state.buckets if b.bucket == bucket)
