from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest

from workers import errors
from workers.call import CallDeps, execute
from workers.models import CallRequest, Envelope
from workers.provider import ProviderReply
from workers.ratelimit.backend import Cost, Reservation
from workers.ratelimit.backends.stub import StubLimiter
from workers.retry import RetryPolicy
from workers.store import ResultStore

Outcome = ProviderReply | errors.ProviderError


def reply(text: str = "hello", *, input_tokens: int = 10, output_tokens: int = 5) -> ProviderReply:
    return ProviderReply(
        message={
            "id": "msg_1",
            "model": "claude-sonnet-5",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        },
        request_id="req_1",
        latency_ms=12.0,
        limit_headers={"anthropic-ratelimit-requests-remaining": "10"},
    )


class FakeProvider:
    """Answers each send with the next scripted outcome."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, float]] = []

    def send(
        self, request: CallRequest, *, timeout_s: float, idempotency_key: str
    ) -> ProviderReply:
        self.sent.append((idempotency_key, timeout_s))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, errors.ProviderError):
            raise outcome
        return outcome


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


REQUEST = CallRequest.model_validate(
    {"model": "claude-sonnet-5", "max_tokens": 200, "messages": [{"role": "user", "content": "Hi"}]}
)


@pytest.fixture
def store() -> ResultStore:
    return ResultStore(fakeredis.FakeRedis(), endpoint="test", ttl_s=3600, claim_ttl_s=60)


def make_deps(
    provider: FakeProvider,
    clock: FakeClock,
    *,
    store: ResultStore | None = None,
    limiter: StubLimiter | None = None,
    policy: RetryPolicy | None = None,
) -> CallDeps:
    return CallDeps(
        provider=provider,
        limiter=limiter or StubLimiter(),
        store=store,
        policy=policy or RetryPolicy(max_attempts=4, base_delay_s=1.0, max_delay_s=4.0),
        bucket_id=lambda model: f"fp:{model}",
        estimate_input_tokens=lambda request: 7,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(0),
    )


def test_a_success_returns_the_envelope_of_the_message() -> None:
    provider, clock = FakeProvider(reply("hello")), FakeClock()

    envelope = execute(REQUEST, make_deps(provider, clock), time_limit_s=60)

    assert envelope.ok
    assert envelope.text == "hello"
    assert envelope.usage.input_tokens == 10
    assert envelope.stop_reason == "end_turn"
    assert envelope.attempts == 1
    assert envelope.idempotency_key == REQUEST.idempotency_key()
    assert envelope.error is None


def test_a_400_fails_after_one_attempt_without_raising() -> None:
    provider = FakeProvider(errors.BadRequest("bad field", 400, "req_bad", "invalid_request_error"))

    envelope = execute(REQUEST, make_deps(provider, FakeClock()), time_limit_s=60)

    assert not envelope.ok
    assert envelope.attempts == 1
    assert envelope.error is not None
    assert envelope.error.type == "invalid_request_error"
    assert envelope.error.status == 400
    assert envelope.error.request_id == "req_bad"
    assert not envelope.error.retryable


def test_two_529s_then_success_take_three_attempts() -> None:
    provider, clock = (
        FakeProvider(errors.Overloaded("busy", 529), errors.Overloaded("busy", 529), reply()),
        FakeClock(),
    )

    envelope = execute(REQUEST, make_deps(provider, clock), time_limit_s=60)

    assert envelope.ok
    assert envelope.attempts == 3
    assert len(clock.slept) == 2
    assert envelope.waited_ms == pytest.approx(sum(clock.slept) * 1000)


def test_a_429_waits_its_retry_after_and_cools_every_worker_down() -> None:
    limiter = StubLimiter()
    provider, clock = (
        FakeProvider(errors.RateLimited("slow", 429, None, None, 75.0), reply()),
        FakeClock(),
    )

    envelope = execute(REQUEST, make_deps(provider, clock, limiter=limiter), time_limit_s=600)

    assert envelope.ok
    assert clock.slept == [75.0]
    assert limiter.cooldowns == [("fp:claude-sonnet-5", 75.0)]


def test_retries_stop_at_the_attempt_bound_with_a_retryable_error() -> None:
    provider = FakeProvider(*[errors.ServerError("oops", 500)] * 4)

    envelope = execute(REQUEST, make_deps(provider, FakeClock()), time_limit_s=600)

    assert not envelope.ok
    assert envelope.attempts == 4
    assert envelope.error is not None
    assert envelope.error.status == 500
    assert envelope.error.retryable


def test_no_retry_is_started_that_the_deadline_would_cut_short() -> None:
    provider = FakeProvider(errors.RateLimited("slow", 429, "req_9", None, 50.0))

    envelope = execute(REQUEST, make_deps(provider, FakeClock()), time_limit_s=30)

    assert not envelope.ok
    assert envelope.attempts == 1
    assert envelope.error is not None
    assert envelope.error.type == "deadline_exceeded"
    assert envelope.error.request_id == "req_9"


def test_the_limiter_is_charged_the_estimate_and_settled_to_the_usage() -> None:
    limiter = StubLimiter()
    provider = FakeProvider(reply(input_tokens=11, output_tokens=3))

    execute(REQUEST, make_deps(provider, FakeClock(), limiter=limiter), time_limit_s=60)

    (reservation,) = limiter.reserved
    assert reservation.cost == Cost(1, 7, 200)
    assert limiter.settled == [(reservation, Cost(1, 11, 3))]
    assert limiter.observed[0][1] == {"anthropic-ratelimit-requests-remaining": "10"}


def test_a_failed_attempt_gives_back_its_output_tokens() -> None:
    limiter = StubLimiter()
    provider = FakeProvider(errors.BadRequest("no", 400))

    execute(REQUEST, make_deps(provider, FakeClock(), limiter=limiter), time_limit_s=60)

    assert limiter.settled[0][1] == Cost(1, 7, 0)


def test_a_request_larger_than_a_bucket_fails_at_once_without_a_call() -> None:
    class Oversize(StubLimiter):
        def reserve(self, key: str, cost: Cost) -> Reservation:
            raise errors.CostExceedsCapacity("200 output tokens > 100", "output_tokens", 200, 100)

    provider = FakeProvider()

    envelope = execute(
        REQUEST, make_deps(provider, FakeClock(), limiter=Oversize()), time_limit_s=60
    )

    assert not envelope.ok
    assert envelope.error is not None
    assert envelope.error.type == "request_exceeds_rate_limit"
    assert provider.sent == []


def test_an_unreachable_limiter_fails_closed_and_never_sends() -> None:
    class Down(StubLimiter):
        def reserve(self, key: str, cost: Cost) -> Reservation:
            raise errors.LimiterUnavailable("redis down")

    provider = FakeProvider()

    envelope = execute(REQUEST, make_deps(provider, FakeClock(), limiter=Down()), time_limit_s=600)

    assert not envelope.ok
    assert envelope.error is not None
    assert envelope.error.type == "rate_limiter_unavailable"
    assert envelope.error.retryable
    assert provider.sent == []


def test_a_limiter_back_within_its_patience_lets_the_call_go_on() -> None:
    # Redis restarts: the limiter is unreachable for ten seconds, then answers.
    clock = FakeClock()
    down_until = clock.now + 10.0

    class Restarting(StubLimiter):
        def reserve(self, key: str, cost: Cost) -> Reservation:
            if clock.now < down_until:
                raise errors.LimiterUnavailable("redis restarting")
            return super().reserve(key, cost)

    provider = FakeProvider(reply())
    deps = make_deps(provider, clock, limiter=Restarting())

    envelope = execute(REQUEST, deps, time_limit_s=600)

    assert envelope.ok
    assert len(provider.sent) == 1
    assert clock.now >= down_until
    assert len(clock.slept) > deps.policy.max_attempts  # attempts do not bound the wait


def test_the_limiters_wait_is_slept_before_sending() -> None:
    class Busy(StubLimiter):
        def reserve(self, key: str, cost: Cost) -> Reservation:
            return Reservation(granted=True, wait_s=2.5, bucket_id=key, cost=cost)

    clock = FakeClock()

    envelope = execute(
        REQUEST, make_deps(FakeProvider(reply()), clock, limiter=Busy()), time_limit_s=60
    )

    assert clock.slept == [2.5]
    assert envelope.waited_ms == 2500.0


def test_a_stored_result_is_returned_without_a_new_call(store: ResultStore) -> None:
    first = FakeProvider(reply("first answer"))
    execute(REQUEST, make_deps(first, FakeClock(), store=store), time_limit_s=60)
    again = FakeProvider()

    envelope = execute(
        REQUEST, make_deps(again, FakeClock(), store=store), time_limit_s=60, delivery=2
    )

    assert envelope.ok
    assert envelope.from_store
    assert envelope.text == "first answer"
    assert envelope.attempts == 0
    assert envelope.delivery == 2
    assert again.sent == []


def test_a_failure_is_not_stored_so_a_retry_can_succeed(store: ResultStore) -> None:
    execute(
        REQUEST,
        make_deps(FakeProvider(errors.BadRequest("no", 400)), FakeClock(), store=store),
        time_limit_s=60,
    )

    envelope = execute(
        REQUEST, make_deps(FakeProvider(reply("later")), FakeClock(), store=store), time_limit_s=60
    )

    assert envelope.ok
    assert not envelope.from_store


def test_a_duplicate_in_flight_waits_for_the_first_answer_instead_of_paying(
    store: ResultStore,
) -> None:
    # Given another worker holds the claim on this exact call
    assert store.claim(REQUEST.idempotency_key(), "other-worker")
    clock = FakeClock()
    provider = FakeProvider()
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        polls.append(seconds)
        if len(polls) == 3:  # ...which finishes while we wait
            store.put(Envelope.answered(REQUEST.idempotency_key(), reply("theirs").message))
            store.release(REQUEST.idempotency_key(), "other-worker")

    deps = make_deps(provider, clock, store=store)
    deps.sleep = sleep

    envelope = execute(REQUEST, deps, time_limit_s=60)

    assert envelope.from_store
    assert envelope.text == "theirs"
    assert provider.sent == []


def test_a_claim_left_by_a_dead_worker_is_taken_over(store: ResultStore) -> None:
    assert store.claim(REQUEST.idempotency_key(), "dead-worker")
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        store._redis.delete(f"chorus:claim:test:{REQUEST.idempotency_key()}")  # the claim expires

    provider = FakeProvider(reply("ours"))
    deps = make_deps(provider, clock, store=store)
    deps.sleep = sleep

    envelope = execute(REQUEST, deps, time_limit_s=60)

    assert envelope.ok
    assert envelope.text == "ours"
    assert len(provider.sent) == 1


def test_concurrent_duplicates_pay_once(store: ResultStore) -> None:
    gate = threading.Event()
    sends: list[str] = []

    class SlowProvider:
        def send(
            self, request: CallRequest, *, timeout_s: float, idempotency_key: str
        ) -> ProviderReply:
            sends.append(idempotency_key)
            gate.wait(5)
            return reply("only once")

    results: list[Envelope] = []

    def run() -> None:
        deps = make_deps(FakeProvider(), FakeClock(), store=store)
        deps.provider = SlowProvider()
        deps.clock = time.monotonic
        deps.sleep = time.sleep
        results.append(execute(REQUEST, deps, time_limit_s=30))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    _eventually(lambda: len(sends) >= 1)
    gate.set()
    for thread in threads:
        thread.join(10)

    assert len(sends) == 1
    assert [r.text for r in results] == ["only once"] * 4
    assert sum(not r.from_store for r in results) == 1


def _eventually(condition: Callable[[], Any], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class SteppedSleep:
    """The claim keeper's sleep, stepped by the test: one round per ``step()``."""

    def __init__(self) -> None:
        self.rounds: queue.Queue[None] = queue.Queue()
        self.waits = 0

    def __call__(self, seconds: float) -> None:
        self.waits += 1
        self.rounds.get()  # a daemon thread: blocked for good once the test ends

    def step(self) -> None:
        """Let the keeper renew once, and wait until it is back asleep."""
        before = self.waits
        self.rounds.put(None)
        _eventually(lambda: self.waits > before)


def test_a_claim_is_a_lease_renewed_while_its_holder_lives() -> None:
    client = fakeredis.FakeRedis()
    sleep = SteppedSleep()
    store = ResultStore(client, endpoint="test", ttl_s=60, claim_ttl_s=1.0, sleep=sleep)
    key = "chorus:claim:test:k1"
    assert store.claim("k1", "me")
    _eventually(lambda: sleep.waits == 1)  # the keeper is waiting for its first round

    # Each round gives the live holder's lease its whole life again...
    for _ in range(3):
        client.pexpire(key, 50)  # as good as lapsed
        sleep.step()
        assert client.pttl(key) > 500
    assert client.get(key) == b"me"
    assert not store.claim("k1", "someone else")

    # ...and a released claim is not renewed back to life.
    store.release("k1", "me")
    sleep.step()
    assert client.get(key) is None


def test_a_dead_holder_s_claim_lapses_within_its_lease() -> None:
    client = fakeredis.FakeRedis()
    client.set("chorus:claim:test:k2", "dead-worker", px=1000)  # nobody renews it
    store = ResultStore(client, endpoint="test", ttl_s=60, claim_ttl_s=1.0)

    _eventually(lambda: store.claim("k2", "me"), timeout_s=3.0)

    assert client.get("chorus:claim:test:k2") == b"me"


def test_a_duplicate_that_outwaits_its_deadline_fails_retryably_and_never_pays(
    store: ResultStore,
) -> None:
    # Given another worker holds the claim on this exact call, and keeps it
    assert store.claim(REQUEST.idempotency_key(), "slow-worker")
    provider = FakeProvider()

    envelope = execute(REQUEST, make_deps(provider, FakeClock(), store=store), time_limit_s=5)

    assert not envelope.ok
    assert envelope.error is not None
    assert envelope.error.type == "in_flight_elsewhere" and envelope.error.retryable
    assert "another worker is making this same call" in envelope.error.message
    assert provider.sent == []
    assert store._redis.get(f"chorus:claim:test:{REQUEST.idempotency_key()}") == b"slow-worker"
