"""Benchmark: chorus against the seed's asyncio pattern, in the same run, on this machine.

1. Short calls: N=2000, concurrency 100, 100 ms latency. The seed's pattern
   (one process: AsyncAnthropic + Semaphore + gather) and chorus end to end
   (submit a batch, workers call, results collected), alternating, median of
   ``--repeat`` runs. Wall times, their ratio, calls/s and CPU per call.
2. Long calls: N=5000, 5 s latency, 1000 in flight across the worker
   processes: chorus's wall time against the ideal N x L / C, and the seed's
   pattern at the same N, C and latency in the same run.
3. Throughput against concurrency for both, charted.

Both talk to the same local API process. chorus's limiter is on, with
limits far above what the run asks for: this measures overhead, not pacing
(``bench.limiter`` measures pacing).

    python -m bench.throughput [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from bench.stack import API_KEY, RESULTS, redis_url_for_bench, save
from orchestration.fleet import Fleet, start_local_api, start_workers, wait_for_workers
from workers.app import reconfigure

UNLIMITED = {
    "CHORUS_LIMITS__SONNET__REQUESTS_PER_MINUTE": str(10**9),
    "CHORUS_LIMITS__SONNET__INPUT_TOKENS_PER_MINUTE": str(10**12),
    "CHORUS_LIMITS__SONNET__OUTPUT_TOKENS_PER_MINUTE": str(10**12),
}
# Both sides send the same request: the default model, which thinks before it
# answers, asked to think little, with room for that and a short answer.
MAX_TOKENS = 256
EFFORT = "low"


@dataclass
class Run:
    system: str
    n: int
    concurrency: int
    latency_ms: int
    wall_s: float
    cpu_s: float
    ok: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def calls_per_s(self) -> float:
        return self.n / self.wall_s

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_s * 1000 / self.n


def seed(url: str, n: int, concurrency: int, latency_ms: int) -> Run:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.seed",
            "--url",
            url,
            "-n",
            str(n),
            "-c",
            str(concurrency),
            "--max-tokens",
            str(MAX_TOKENS),
            "--tag",
            uuid.uuid4().hex[:8],
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(
        "seed", n, concurrency, latency_ms, figures["wall_s"], figures["cpu_s"], int(figures["ok"])
    )


class Chorus:
    """Worker processes on a queue of their own, and a producer in this process."""

    def __init__(self, api_url: str, processes: int, threads: int, extra: dict[str, str]) -> None:
        self.redis_url = redis_url_for_bench()
        redis.Redis.from_url(self.redis_url).flushdb()
        self.env = {
            "CHORUS_BROKER_URL": self.redis_url,
            "ANTHROPIC_BASE_URL": api_url,
            "ANTHROPIC_API_KEY": API_KEY,
            "CHORUS_WORKER__QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
            **UNLIMITED,
            **extra,
        }
        os.environ.update(self.env)
        reconfigure()
        from config.settings import get_settings

        self.processes, self.threads = processes, threads
        self.fleet = start_workers(
            get_settings(),
            processes,
            env=self.env,
            prefix="bench",
            concurrency=threads,
            # What `chorus worker` runs with, its log in a file as a user's would be.
            loglevel="INFO",
            log_dir=RESULTS / "logs",
            fleet=Fleet(),
        )
        wait_for_workers(processes, timeout_s=60, fleet=self.fleet)

    def cpu_s(self) -> float:
        total = 0.0
        for process in self.fleet.processes:
            proc = psutil.Process(process.pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        return total

    def run(self, n: int, latency_ms: int) -> Run:
        from orchestration.batch import Batch

        tag = uuid.uuid4().hex[:8]
        items = [{"id": f"i{i}", "prompt": f"Summarise item {i} ({tag})."} for i in range(n)]
        cpu_workers, cpu_self = self.cpu_s(), time.process_time()
        started = time.perf_counter()
        batch = Batch.submit(items, max_tokens=MAX_TOKENS, effort=EFFORT)
        status = batch.wait()  # the default: it wakes when the last item ends
        results = list(batch.results())
        wall_s = time.perf_counter() - started
        cpu_s = (self.cpu_s() - cpu_workers) + (time.process_time() - cpu_self)
        ok = sum(1 for r in results if r["ok"])
        extra = {"processes": self.processes, "threads": self.threads, "calls": status.calls}
        return Run("chorus", n, self.processes * self.threads, latency_ms, wall_s, cpu_s, ok, extra)

    def stop(self) -> None:
        self.fleet.stop()


def short_calls(repeat: int, n: int, concurrency: int, processes: int) -> dict[str, Any]:
    latency_ms = 100
    api_url, api = start_local_api(["--latency-ms", str(latency_ms)])
    chorus = Chorus(api_url, processes, concurrency // processes, {})
    runs: list[Run] = []
    try:
        chorus.run(200, latency_ms)  # warm: connections, imports, script loads
        seed(api_url, 200, concurrency, latency_ms)
        for i in range(repeat):
            order = ["seed", "chorus"] if i % 2 == 0 else ["chorus", "seed"]
            for system in order:
                runs.append(
                    seed(api_url, n, concurrency, latency_ms)
                    if system == "seed"
                    else chorus.run(n, latency_ms)
                )
    finally:
        chorus.stop()
        api.stop()
    return summarise(runs, n * latency_ms / 1000 / concurrency)


def summarise(runs: list[Run], ideal_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"ideal_s": ideal_s}
    for system in ("seed", "chorus"):
        mine = [r for r in runs if r.system == system]
        if not mine:
            continue
        out[system] = {
            "wall_s_median": statistics.median(r.wall_s for r in mine),
            "wall_s_all": [round(r.wall_s, 3) for r in mine],
            "calls_per_s": statistics.median(r.calls_per_s for r in mine),
            "cpu_ms_per_call": statistics.median(r.cpu_ms_per_call for r in mine),
            "ok": min(r.ok for r in mine),
            "n": mine[0].n,
            **mine[0].extra,
        }
    if "seed" in out and "chorus" in out:
        out["ratio"] = out["chorus"]["wall_s_median"] / out["seed"]["wall_s_median"]
    return out


def long_calls(n: int, in_flight: int, processes: int, latency_ms: int) -> dict[str, Any]:
    api_url, api = start_local_api(["--latency-ms", str(latency_ms)])
    chorus = Chorus(api_url, processes, in_flight // processes, {})
    try:
        chorus.run(min(n, in_flight), latency_ms)  # warm: every thread opens its connection
        run = chorus.run(n, latency_ms)
        chorus.stop()
        # The baseline, against the same API process once chorus's workers are gone.
        seed_run = seed(api_url, n, in_flight, latency_ms)
    finally:
        chorus.stop()
        api.stop()
    ideal_s = n * latency_ms / 1000 / in_flight
    return {
        "seed": {
            "wall_s": seed_run.wall_s,
            "vs_ideal": seed_run.wall_s / ideal_s,
            "ok": seed_run.ok,
            "cpu_ms_per_call": seed_run.cpu_ms_per_call,
        },
        "n": n,
        "in_flight": in_flight,
        "processes": processes,
        "latency_ms": latency_ms,
        "ideal_s": ideal_s,
        "wall_s": run.wall_s,
        "vs_ideal": run.wall_s / ideal_s,
        "ok": run.ok,
        "cpu_ms_per_call": run.cpu_ms_per_call,
    }


def sweep(levels: list[int], n: int | None, processes: int) -> list[dict[str, Any]]:
    """calls/s against concurrency, seed and chorus, one run each (N = 10 x C, at least 500)."""
    latency_ms = 100
    api_url, api = start_local_api(["--latency-ms", str(latency_ms)])
    points = []
    try:
        for concurrency in levels:
            calls = n or max(500, 10 * concurrency)
            procs = min(processes, concurrency)
            chorus = Chorus(api_url, procs, max(1, concurrency // procs), {})
            try:
                chorus.run(min(calls, 200), latency_ms)
                c_run = chorus.run(calls, latency_ms)
            finally:
                chorus.stop()
            s_run = seed(api_url, calls, concurrency, latency_ms)
            points.append(
                {
                    "concurrency": concurrency,
                    "n": calls,
                    "latency_ms": latency_ms,
                    "seed": s_run.calls_per_s,
                    "chorus": c_run.calls_per_s,
                    "ideal": concurrency * 1000 / latency_ms,
                }
            )
            seed_rate, chorus_rate = s_run.calls_per_s, c_run.calls_per_s
            print(f"  C={concurrency}: seed {seed_rate:.0f}/s, chorus {chorus_rate:.0f}/s")
    finally:
        api.stop()
    return points


def chart(points: list[dict[str, Any]], path: Path) -> Path | None:
    """Throughput against concurrency for the seed and chorus, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install '.[bench]'): no chart")
        return None
    levels = [p["concurrency"] for p in points]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(levels, [p["seed"] for p in points], marker="o", label="seed (asyncio, 1 process)")
    ax.plot(levels, [p["chorus"] for p in points], marker="s", label="chorus (Celery + Redis)")
    ax.plot(levels, [p["ideal"] for p in points], linestyle=":", color="grey", label="ideal C / L")
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(level) for level in levels])
    ax.set_xlabel("concurrency (calls in flight)")
    ax.set_ylabel("calls / s")
    ax.set_title(
        f"Throughput, {points[0]['latency_ms']} ms calls, local API, {os.cpu_count()} cores"
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def table(results: dict[str, Any]) -> str:
    rows = [("", "wall s", "calls/s", "CPU ms/call", "ok", "vs", "target")]
    short = results.get("short")
    if short:
        ratio = short["ratio"]
        for system in ("seed", "chorus"):
            s = short[system]
            rows.append(
                (
                    f"short {system}",
                    f"{s['wall_s_median']:.2f}",
                    f"{s['calls_per_s']:.0f}",
                    f"{s['cpu_ms_per_call']:.2f}",
                    f"{s['ok']}/{s['n']}",
                    f"{ratio:.2f}x seed" if system == "chorus" else f"ideal {short['ideal_s']:.1f}",
                    "<= 1.25x" if system == "chorus" else "",
                )
            )
    long = results.get("long")
    if long and "seed" in long:
        s = long["seed"]
        rows.append(
            (
                "long seed",
                f"{s['wall_s']:.1f}",
                f"{long['n'] / s['wall_s']:.0f}",
                f"{s['cpu_ms_per_call']:.2f}",
                f"{s['ok']}/{long['n']}",
                f"{s['vs_ideal']:.3f}x ideal",
                "",
            )
        )
    if long:
        rows.append(
            (
                "long chorus",
                f"{long['wall_s']:.1f}",
                f"{long['n'] / long['wall_s']:.0f}",
                f"{long['cpu_ms_per_call']:.2f}",
                f"{long['ok']}/{long['n']}",
                f"{long['vs_ideal']:.3f}x ideal",
                "<= 1.1x",
            )
        )
    limited = results.get("rate_limited")
    if limited:
        rows.append(
            (
                "rate-limited",
                f"{limited['duration_s']:.0f}",
                f"{limited['served_in_duration'] / limited['duration_s']:.1f}",
                "",
                f"429s: {limited['http_429']}",
                f"{limited['utilization'] * 100:.2f}% used",
                ">= 99%, 0 429s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="short-call runs of each (median)")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="chorus worker processes (default: what `chorus worker` starts, 2 per CPU)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller N everywhere, for a look")
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument(
        "--limiter",
        type=Path,
        default=RESULTS / "limiter.json",
        help="the rate-limited figures (written by python -m bench.limiter)",
    )
    args = parser.parse_args(argv)
    if args.processes is None:
        from config.settings import get_settings

        args.processes = get_settings().worker.process_count
    n_short = 500 if args.quick else 2000
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    print(f"short calls: N={n_short}, C=100, L=100 ms, {args.repeat} runs each, alternating")
    results["short"] = short_calls(args.repeat, n_short, 100, args.processes)
    print(json.dumps(results["short"], indent=2))

    if not args.skip_long:
        n_long = 1000 if args.quick else 5000
        print(f"long calls: N={n_long}, L=5 s, 1000 in flight over {args.processes} processes")
        results["long"] = long_calls(n_long, 1000, args.processes, 5000)
        print(json.dumps(results["long"], indent=2))

    if not args.skip_sweep:
        levels = [10, 25, 50, 100, 200]
        print(f"sweep: concurrency {levels}, N=10 x C (at least 500), L=100 ms")
        results["sweep"] = sweep(levels, 500 if args.quick else None, args.processes)
        png = chart(results["sweep"], RESULTS / "throughput.png")
        if png:
            results["chart"] = str(png.relative_to(RESULTS.parent.parent))
            print(f"chart: {png}")

    if args.limiter.exists():
        limiter = json.loads(args.limiter.read_text())
        results["rate_limited"] = limiter.get("rate_limited")

    path = save("latest", results)
    print()
    print(table(results))
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
