"""Benchmark: enqueueing a large batch from a producer.

Submits N items from a JSONL file with no worker running (the queue holds
them), in a fresh process per size so peak memory is the producer's own.
Prints the producer's wall time, items/s, peak RSS for 10,000 and 100,000
items (flat memory means the two are close), and how long ``status`` takes on
the 100,000-item batch: in process, and as the ``chorus status`` command.

    python -m bench.enqueue [--items 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from bench.stack import redis_url_for_bench, save


def make_file(path: Path, count: int) -> None:
    with open(path, "w") as out:
        for i in range(count):
            text = f"Summarise review {i}: the kettle broke after two weeks; support replied."
            out.write(json.dumps({"id": f"item-{i:06d}", "prompt": text}) + "\n")


def _child(path: str) -> None:
    """Runs in a fresh process: submit, report figures as JSON on stdout."""
    from orchestration.batch import Batch

    before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    batch = Batch.submit(path, max_tokens=100)
    wall_s = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    latencies = []
    for _ in range(200):
        t = time.perf_counter()
        batch.progress()
        latencies.append(time.perf_counter() - t)
    print(
        json.dumps(
            {
                "batch": batch.id,
                "items": batch.report.enqueued,
                "wall_s": wall_s,
                "items_per_s": batch.report.enqueued / wall_s,
                "rss_before_mib": before_kib / 1024,
                "rss_peak_mib": peak_kib / 1024,
                "status_median_ms": statistics.median(latencies) * 1000,
                "status_p99_ms": sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000,
            }
        )
    )


def run(count: int, env: dict[str, str], folder: Path) -> dict[str, Any]:
    path = folder / f"items-{count}.jsonl"
    make_file(path, count)
    done = subprocess.run(
        [sys.executable, "-m", "bench.enqueue", "--child", str(path)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["file_mib"] = path.stat().st_size / 2**20
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.enqueue")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child)
        return 0

    url = redis_url_for_bench()
    client = redis.Redis.from_url(url)
    client.flushdb()
    queue = f"bench-enqueue-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "CHORUS_BROKER_URL": url, "CHORUS_WORKER__QUEUE": queue}
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in sorted({10_000, args.items}):
            results[count] = run(count, env, Path(folder))
            print(
                f"{count:>7,} items: {results[count]['wall_s']:6.1f} s, "
                f"{results[count]['items_per_s']:7,.0f} items/s, peak RSS "
                f"{results[count]['rss_peak_mib']:5.0f} MiB "
                f"(after imports {results[count]['rss_before_mib']:.0f} MiB; "
                f"file {results[count]['file_mib']:.0f} MiB)"
            )
        big = results[args.items]
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "status", big["batch"]],
            env=env,
            capture_output=True,
            check=True,
        )
        cli_s = time.perf_counter() - started
    print(
        f"status on the {args.items:,}-item batch: {big['status_median_ms']:.2f} ms median, "
        f"{big['status_p99_ms']:.2f} ms p99 in process; `chorus status` {cli_s:.2f} s "
        "(mostly Python start-up and imports)"
    )
    print(f"queue length: {client.llen(queue):,}")
    client.flushdb()
    path = save("enqueue", {"runs": results, "chorus_status_cli_s": cli_s})
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
