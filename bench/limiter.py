"""Benchmark: the cluster-wide rate limiter.

1. Acquires per second from one process against local Redis: chorus's limiter
   (three buckets, cooldown, counters) beside a plain one-bucket Lua token
   bucket measured in the same run, one thread and two threads.
2. A rate-limited run: the local API enforcing 600 requests/min and an
   output-token limit, 4 worker processes driving more calls than the limit
   admits for ``--duration`` seconds. Prints the utilization of the binding
   limit, the 429s received, and the most calls the server saw in any 60 s
   window against what the limit allows.

    python -m bench.limiter [--duration 120]
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import redis
from celery import group

from bench.stack import redis_url_for_bench, save, stack
from config.settings import FamilyLimits
from orchestration.client import call_signature, request_from_prompt
from workers.errors import TaskFailed
from workers.ratelimit.backend import Cost
from workers.ratelimit.backends.redis import RedisLimiter

RPM = 600
# The local API holds each limit over this many seconds of refill (its default:
# the strictest interval the rate-limits page names).
INTERVAL_S = 1.0
# Output tokens are held too, but not binding: a call reserves its max_tokens
# until its usage is known, so 600 calls a minute reserve 307,200 at most.
OTPM = 400_000
MAX_TOKENS = 512
LATENCY_MS = 200

# The usual single-bucket script, for scale: what a plain Lua limiter costs.
PLAIN_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(s[1]) or tonumber(ARGV[1])
local at = tonumber(s[2]) or now
level = math.min(tonumber(ARGV[1]), level + (now - at) * tonumber(ARGV[2]))
local ok = 0
if level >= 1 then level = level - 1; ok = 1 end
local fmt = function(x) return string.format('%.17g', x) end
redis.call('HSET', KEYS[1], 'level', fmt(level), 'at', fmt(now))
return ok
"""


def _rate(fn: Any, n: int, threads: int) -> float:
    per_thread = n // threads

    def run() -> None:
        for _ in range(per_thread):
            fn()

    pool = [threading.Thread(target=run) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return per_thread * threads / (time.perf_counter() - started)


def acquires_per_second(n: int = 20_000) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url_for_bench())
    client.flushdb()
    huge = FamilyLimits(
        requests_per_minute=10**9,
        input_tokens_per_minute=10**12,
        output_tokens_per_minute=10**12,
        configured=True,  # limits set by the user: every reserve is a grant, no probe
    )
    limiter = RedisLimiter(client, lambda family: huge)
    plain = client.register_script(PLAIN_BUCKET)
    cost = Cost(1, 100, 100)
    limiter.reserve("bench:sonnet", cost)
    plain(keys=["bench:plain"], args=[10**9, 1000])
    figures = {
        "plain_bucket_1_thread": _rate(
            lambda: plain(keys=["bench:plain"], args=[10**9, 1000]), n, 1
        ),
        "chorus_1_thread": _rate(lambda: limiter.reserve("bench:sonnet", cost), n, 1),
        "chorus_2_threads": _rate(lambda: limiter.reserve("bench:sonnet", cost), n, 2),
    }
    figures["chorus_vs_plain_1_thread"] = (
        figures["chorus_1_thread"] / figures["plain_bucket_1_thread"]
    )
    return figures


def _max_in_window(times: list[float], window_s: float) -> int:
    best = start = 0
    for end in range(len(times)):
        while times[end] - times[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def rate_limited_run(duration_s: float) -> dict[str, Any]:
    limit_env = {
        "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": str(RPM),
        "CHORUS_LIMITS__SONNET__OUTPUT_TOKENS_PER_MINUTE": str(OTPM),
    }
    api_args = [
        "--rpm", str(RPM), "--otpm", str(OTPM), "--latency-ms", str(LATENCY_MS),
        "--limit-interval-s", str(INTERVAL_S),
    ]  # fmt: skip
    # Enough demand to keep the limit binding for the whole run, and a little more.
    demand = int(RPM * duration_s / 60 + RPM / 6)
    with stack(api_args=api_args, processes=4, concurrency=25, env=limit_env) as s:
        requests = [
            request_from_prompt(
                f"Rate-limited item {i}: summarise.", max_tokens=MAX_TOKENS, effort="low"
            )
            for i in range(demand)
        ]
        started = time.time()
        result = group(call_signature(r) for r in requests).apply_async()
        replies = result.get(timeout=duration_s * 3 + 300, interval=0.5, propagate=False)
        # A failed call's task ends FAILURE and carries its envelope (workers.errors).
        envelopes = [r.value if isinstance(r, TaskFailed) else r for r in replies]
        wall_s = time.time() - started
        log = s.api("/_mock/log")
        stats = s.api("/_mock/stats")
    arrivals = sorted(e["t"] for e in log if e["status"] == 200)
    t0 = arrivals[0]
    served = sum(1 for t in arrivals if t < t0 + duration_s)
    burst = RPM * INTERVAL_S / 60
    allowed = burst + RPM / 60 * duration_s  # a full bucket, then the refill
    return {
        "demand": demand,
        "ok": sum(1 for e in envelopes if e["ok"]),
        "wall_s": wall_s,
        "duration_s": duration_s,
        "served_in_duration": served,
        "allowed_in_duration": allowed,
        "utilization": served / allowed,
        "http_429": stats["by_status"].get("429", 0),
        "server_rate_limited": stats["rate_limited"],
        "max_in_60s_window": _max_in_window(arrivals, 60.0),
        "allowed_in_60s_window": burst + RPM,  # capacity + rate x 60 s
        "binding_limit": f"{RPM} requests/min",
        "attempts": sum(e["attempts"] for e in envelopes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limiter")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of binding load")
    args = parser.parse_args(argv)

    speed = acquires_per_second()
    print("limiter acquires/s from one process against local Redis:")
    print(f"  plain one-bucket Lua, 1 thread   {speed['plain_bucket_1_thread']:9,.0f}/s")
    print(f"  chorus limiter,       1 thread   {speed['chorus_1_thread']:9,.0f}/s"
          f"  ({speed['chorus_vs_plain_1_thread']:.2f}x the plain bucket)")  # fmt: skip
    print(f"  chorus limiter,       2 threads  {speed['chorus_2_threads']:9,.0f}/s")

    run = rate_limited_run(args.duration)
    print(f"rate-limited run: {run['demand']} calls, 4 worker processes x 25 threads, "
          f"local API at {RPM} requests/min and {OTPM:,} output tokens/min")  # fmt: skip
    print(f"  ok                       {run['ok']} / {run['demand']}")
    print(f"  utilization of the limit {run['utilization']:.2%} "
          f"({run['served_in_duration']} served in {run['duration_s']:g} s, "
          f"{run['allowed_in_duration']:.0f} allowed)")  # fmt: skip
    print(f"  429s received            {run['http_429']}")
    print(f"  most in any 60 s window  {run['max_in_60s_window']} "
          f"(the limit allows {run['allowed_in_60s_window']})")  # fmt: skip
    print(f"  attempts                 {run['attempts']}")
    path = save("limiter", {"acquires_per_second": speed, "rate_limited": run})
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
