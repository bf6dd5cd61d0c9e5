"""Benchmark: what the same answers cost by route, against the local API's own billing.

N items (10,000 by default) ask one question each about a shared document of
about 2,000 tokens. The workers' limits allow R requests a minute, so real
time needs N / R minutes; the deadline is shorter than that. Three runs, each
on a fresh local API (its cache cold), its bill read from its stats:

- ``realtime, no cache``: every item a Messages API call, the prefix paid in full each time;
- ``realtime``: the shared prefix marked, one call writes it, the rest read it;
- ``auto``: real time for what the limit finishes in three quarters of the
  deadline, the Message Batches API (half price, 1-hour cache) for the rest.

Reported: cost per item, cache writes and reads, wall time against the
deadline, and the ratios ``auto / realtime`` and ``realtime / realtime, no cache``.

    python -m bench.cost [--items 10000] [--rpm 6000] [--deadline-s 60]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stack import save, stack

WORDS = "revenue margin churn cohort forecast ledger audit quarter region segment".split()  # noqa: SIM905


def make_file(path: Path, count: int) -> None:
    rng = random.Random(11)
    document = " ".join(rng.choice(WORDS) for _ in range(1_600))  # about 2,000 tokens
    with open(path, "w") as out:
        for i in range(count):
            prompt = f"{document}\n\nQuestion {i}: in one word, which term comes up most?"
            out.write(json.dumps({"id": f"q{i:05d}", "prompt": prompt}) + "\n")


def run(path: Path, args: argparse.Namespace, **submit: Any) -> dict[str, Any]:
    from orchestration.batch import Batch

    env = {
        "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": str(args.rpm),
        "CHORUS_LIMITS__SONNET__INPUT_TOKENS_PER_MINUTE": "1000000000",
        "CHORUS_LIMITS__SONNET__OUTPUT_TOKENS_PER_MINUTE": "1000000000",
        "CHORUS_BATCHES__POLL_MIN_S": "1",
        "CHORUS_BATCHES__POLL_MAX_S": "5",
    }
    api_args = ["--latency-ms", "50", "--batch-processing-s", str(args.batch_processing_s)]
    with stack(api_args=api_args, processes=2, concurrency=100, env=env) as s:
        started = time.time()
        batch = Batch.submit(path, max_tokens=256, effort="low", **submit)
        status = batch.wait(timeout_s=args.deadline_s * 20)
        wall_s = time.time() - started
        stats = s.api("/_mock/stats")
    return {
        "items": status.total,
        "complete": status.count("complete"),
        "wall_s": round(wall_s, 1),
        "cost_usd": round(stats["cost_usd"], 4),
        "chorus_cost_usd": round(status.cost_usd, 4),
        "cost_per_item_usd": stats["cost_usd"] / max(1, status.total),
        "paid": stats["paid"],
        "batch_paid": stats["batch_paid"],
        "duplicates_paid": stats["duplicates_paid"],
        "cache_writes": stats["cache_writes"],
        "cache_reads": stats["cache_reads"],
        "plan": status.plan,
        "pulled_back": status.pulled_back,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rpm", type=int, default=6_000)
    parser.add_argument("--deadline-s", type=float, default=60.0)
    parser.add_argument("--batch-processing-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"items": args.items, "rpm": args.rpm, "deadline_s": args.deadline_s}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "items.jsonl"
        make_file(path, args.items)
        results["realtime_no_cache"] = run(path, args, cache=False)
        results["realtime"] = run(path, args)
        results["auto"] = run(path, args, route="auto", deadline_s=args.deadline_s)
    plain, rt, auto = (results[k]["cost_usd"] for k in ("realtime_no_cache", "realtime", "auto"))
    results["cost_ratio_auto_vs_realtime"] = auto / rt if rt else None
    results["cost_ratio_realtime_vs_no_cache"] = rt / plain if plain else None
    path = save("cost", results)
    print(f"{'run':<20}{'items':>8}{'wall s':>9}{'cost $':>10}{'$/item':>11}{'writes':>8}"
          f"{'reads':>8}{'batch':>8}")  # fmt: skip
    for name in ("realtime_no_cache", "realtime", "auto"):
        r = results[name]
        print(
            f"{name:<20}{r['complete']:>8,}{r['wall_s']:>9.1f}{r['cost_usd']:>10.4f}"
            f"{r['cost_per_item_usd']:>11.6f}{r['cache_writes']:>8,}{r['cache_reads']:>8,}"
            f"{r['batch_paid']:>8,}"
        )
    print(f"deadline {args.deadline_s:.0f} s; real time at the limit needs "
          f"{args.items / args.rpm * 60:.0f} s")  # fmt: skip
    print(f"cost auto / realtime: {results['cost_ratio_auto_vs_realtime']:.3f}")
    print(f"cost realtime / realtime without the cache: "
          f"{results['cost_ratio_realtime_vs_no_cache']:.3f}")  # fmt: skip
    print(f"saved to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
