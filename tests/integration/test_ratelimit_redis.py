"""The limiter on a real Redis: the contract, contention across processes, the window
bound, clock independence, and real workers against a strict local API."""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from unittest import mock

import pytest
import redis

from config.settings import FamilyLimits
from localapi import LocalAPIServer
from orchestration.batch import Batch
from orchestration.client import call_signature, request_from_prompt
from tests.integration.conftest import BRIEF, chorus, own_queue, start_test_workers
from tests.ratelimit_contract import KEY, LimiterContract
from workers.ratelimit.backend import Cost, Reservation
from workers.ratelimit.backends.redis import RedisLimiter
from workers.ratelimit.limitkey import api_fingerprint


class TestLimiterOnRealRedis(LimiterContract):
    @pytest.fixture(autouse=True)
    def _client(self, redis_client: redis.Redis) -> None:
        self.client = redis_client


FROZEN = FamilyLimits(
    requests_per_minute=0,
    input_tokens_per_minute=0,
    output_tokens_per_minute=0,
    requests_capacity=200,
    input_tokens_capacity=10**9,
    output_tokens_capacity=10**9,
    configured=True,
)


def _race(url: str, threads: int, tries: int, out: multiprocessing.Queue[int]) -> None:
    limiter = RedisLimiter(redis.Redis.from_url(url), lambda family: FROZEN)
    granted = 0
    lock = threading.Lock()

    def run() -> None:
        nonlocal granted
        for _ in range(tries):
            if limiter.reserve(KEY, Cost(1, 1, 1)).granted:
                with lock:
                    granted += 1

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    out.put(granted)


def test_under_contention_exactly_the_capacity_is_granted(redis_url: str) -> None:
    # Given 4 processes x 12 threads racing 10 times each for 200 tokens that never refill
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = context.Queue()
    processes = [context.Process(target=_race, args=(redis_url, 12, 10, out)) for _ in range(4)]
    for process in processes:
        process.start()
    counts = [out.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    # Then exactly 200 were granted, out of 480 tries
    assert sum(counts) == 200
    assert all(p.exitcode == 0 for p in processes)


SAFETY = FamilyLimits(
    requests_per_minute=600,
    input_tokens_per_minute=10**9,
    output_tokens_per_minute=60_000,
    requests_capacity=20,
    output_tokens_capacity=2_000,
    max_wait_s=900,
    configured=True,
)


def _max_in_window(slots: list[tuple[int, int]], window_us: int) -> int:
    """The largest total cost whose slots fall in any window of ``window_us``."""
    best = total = start = 0
    for end in range(len(slots)):
        total += slots[end][1]
        while slots[end][0] - slots[start][0] > window_us:
            total -= slots[start][1]
            start += 1
        best = max(best, total)
    return best


def test_grants_in_any_window_never_exceed_capacity_plus_rate_times_window(
    redis_client: redis.Redis,
) -> None:
    # Given four threads reserving calls of mixed sizes far beyond the limits
    limiter = RedisLimiter(redis_client, lambda family: SAFETY)
    reservations: list[Reservation] = []
    lock = threading.Lock()

    def run(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            reservation = limiter.reserve(KEY, Cost(1, 0, rng.randint(5, 400)))
            if reservation.granted:
                with lock:
                    reservations.append(reservation)

    pool = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(reservations) > 1000

    # Then in every window W, what may go at its slot is within capacity + rate x W
    for bucket, capacity, per_minute in (("requests", 20, 600), ("output_tokens", 2_000, 60_000)):
        slots = sorted((r.slot_us, getattr(r.cost, bucket)) for r in reservations)
        for window_s in (0.1, 1.0, 5.0, 30.0, 60.0):
            allowed = capacity + per_minute / 60 * window_s
            seen = _max_in_window(slots, int(window_s * 1_000_000))
            assert seen <= allowed + 1, (bucket, window_s, seen, allowed)
        if bucket == "output_tokens":  # the binding one (~5 calls/s < 10 requests/s)
            # ...and the limit is used, not just respected: a 30 s window runs full.
            full = capacity + per_minute / 2
            assert _max_in_window(slots, 30_000_000) >= full * 0.95


def _decisions(limiter: RedisLimiter, key: str) -> list[tuple[bool, str, float]]:
    out = []
    for cost in [Cost(1, 0, 1_000)] * 3 + [Cost(1, 0, 50)] * 5:
        r = limiter.reserve(key, cost)
        out.append((r.granted, r.binding, round(r.wait_s, 1)))
    return out


@pytest.mark.parametrize("skew_s", [-60.0, 60.0])
def test_a_worker_with_a_skewed_clock_gets_the_same_decisions(
    redis_client: redis.Redis, skew_s: float
) -> None:
    limits = FamilyLimits(
        requests_per_minute=600,
        input_tokens_per_minute=10**9,
        output_tokens_per_minute=60_000,
        output_tokens_capacity=2_000,
        configured=True,
    )
    limiter = RedisLimiter(redis_client, lambda family: limits)
    honest = _decisions(limiter, "fp:honest")

    real_time, real_time_ns = time.time, time.time_ns
    with (
        mock.patch("time.time", lambda: real_time() + skew_s),
        mock.patch("time.time_ns", lambda: real_time_ns() + int(skew_s * 1e9)),
    ):
        assert abs(time.time() - real_time() - skew_s) < 1
        skewed = _decisions(limiter, "fp:skewed")

    assert skewed == honest
    assert any(wait > 0 for _, _, wait in honest)  # the sequence did have to wait


def test_a_cooldown_set_in_one_process_holds_back_another(redis_url: str) -> None:
    setter = (
        "import redis;"
        "from config.settings import FamilyLimits;"
        "from workers.ratelimit.backends.redis import RedisLimiter;"
        f"RedisLimiter(redis.Redis.from_url({redis_url!r}),"
        " lambda f: FamilyLimits(configured=True))"
        f".cooldown({KEY!r}, 5.0)"
    )
    subprocess.run([sys.executable, "-c", setter], check=True, timeout=30)

    other = RedisLimiter(
        redis.Redis.from_url(redis_url), lambda family: FamilyLimits(configured=True)
    )
    reservation = other.reserve(KEY, Cost(1, 10, 10))

    assert reservation.granted
    assert reservation.binding == "cooldown"
    assert 4.0 < reservation.wait_s <= 5.0


@pytest.fixture
def strict_api(local_api: LocalAPIServer) -> Iterator[LocalAPIServer]:
    local_api.configure(rpm=600, latency_ms=20)
    yield local_api
    local_api.configure(rpm=None, latency_ms=20)


def test_workers_under_a_strict_limit_receive_zero_429s(
    chorus_env: dict[str, str],
    strict_api: LocalAPIServer,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 2 worker processes holding chorus to the server's 600 requests/min
    # (and no others: the session's workers are not told the limit)
    workers = start_test_workers(
        chorus_env,
        2,
        prefix="strict",
        concurrency=20,
        extra_env={
            **own_queue(monkeypatch, "strict"),
            "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": "600",
            "CHORUS_RETRY__MAX_ATTEMPTS": "1",  # a 429 would fail the call
        },
    )
    try:
        # When 150 calls are sent at once: fifteen times what the server's
        # one-second bucket holds
        from celery import group

        from workers.errors import TaskFailed

        requests = [request_from_prompt(f"strict item {i}", **BRIEF) for i in range(150)]
        result = group(call_signature(r) for r in requests).apply_async()
        replies = result.get(timeout=120, interval=0.1, propagate=False)
        envelopes = [r.value if isinstance(r, TaskFailed) else r for r in replies]
    finally:
        workers.fleet.stop()

    # Then every call succeeded, the server answered no 429, and chorus did the waiting
    stats = strict_api.stats()
    failed = [(e["idempotency_key"], e["outcome"], e["error"]) for e in envelopes if not e["ok"]]
    assert not failed, (failed[:3], stats["by_status"])
    assert stats["rate_limited"] == 0
    assert stats["by_status"] == {"200": 150}
    limiter = RedisLimiter(redis_client, lambda family: FamilyLimits(requests_per_minute=600))
    state = limiter.state(f"{api_fingerprint(chorus_env['ANTHROPIC_API_KEY'])}:sonnet")
    assert state.granted == 150
    assert state.waited_s > 1.0


@pytest.mark.parametrize("configured", [False, True], ids=["learned", "configured"])
def test_a_fresh_fleet_meets_a_strict_burst_with_zero_429s_configured_or_not(
    chorus_env: dict[str, str],
    local_api: LocalAPIServer,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    configured: bool,
) -> None:
    # A server enforcing 600 requests a minute with 5 s of burst, as an
    # independent strict one did; chorus told nothing (it guesses Tier 4's
    # 4,000 a minute) or told 600.
    local_api.configure(rpm=600, limit_interval_s=5.0, latency_ms=20)
    extra = {**own_queue(monkeypatch, "burst"), "CHORUS_RETRY__MAX_ATTEMPTS": "1"}
    if configured:
        extra["CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE"] = "600"
    workers = start_test_workers(chorus_env, 1, prefix="burst", concurrency=100, extra_env=extra)
    try:
        items = [{"id": f"b{i}", "prompt": f"Burst item {i}."} for i in range(200)]
        status = Batch.submit(items, **BRIEF).wait(90)
    finally:
        workers.fleet.stop()
        local_api.configure(rpm=None, limit_interval_s=1.0)

    stats = local_api.stats()
    assert status.count("complete") == 200
    assert stats["rate_limited"] == 0 and stats["by_status"] == {"200": 200}
    # Once running, the limit is used: ten calls a second.
    arrivals = sorted(entry["t"] for entry in local_api.requests_log("Burst item"))
    running = arrivals[1:]  # the first call alone learns the limits when none are set
    rate = (len(running) - 1) / (running[-1] - running[0])
    assert rate >= 0.95 * 600 / 60, f"{rate:.2f} calls/s of 10"
    # Told or learned, the bucket is the server's 600 a minute; the server said so.
    state = RedisLimiter(redis_client, lambda family: FamilyLimits(configured=configured)).state(
        f"{api_fingerprint(chorus_env['ANTHROPIC_API_KEY'])}:sonnet"
    )
    assert next(b.per_minute for b in state.buckets) == 600
    assert state.learned_at is not None
    # `chorus limits --live` says which, and when the API told it.
    wide = {**os.environ, **extra, "COLUMNS": "300"}  # one line per key, as on a wide terminal
    shown = chorus("limits", "--live", "--once", env=wide)
    assert shown.returncode == 0, shown.stderr
    assert ("configured (the API said at" if configured else "learned: the API said at") in (
        " ".join(shown.stdout.split())
    )
