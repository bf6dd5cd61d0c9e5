"""``make demo``: chorus's showcase on this machine, starting what is missing and stopping it after.

1. A batch of 200 customer reviews to summarise, followed with the live progress bar.
2. A vote: the same question five times, the majority kept.
3. A fan-out: three analyses in parallel, then one synthesis call.
4. A summary table: items, success rate, calls/s, tokens, cost, 429s.

Without ``ANTHROPIC_API_KEY`` the calls go to the local Anthropic API, started
here with realistic latency and a few injected faults (429s, 529s) that
chorus retries through. With the key set, the same steps run against the
API the key belongs to, on 20 reviews instead of 200, and are billed.
The demo uses a queue of its own, so workers of another chorus on the same
Redis never take its calls.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from config.settings import get_settings
from orchestration.embedded import RedisUnavailable, ensure_redis, stop_redis_server
from orchestration.fleet import Fleet, start_local_api, start_workers, wait_for_workers
from workers.app import reconfigure
from workers.fanin.results import PatternResult

DEMO_KEY = "sk-ant-local-demo-not-a-real-key"
WORKERS = 2
THREADS = 50
# Injected 529s show retries at work. Not injected 429s: a 429 cools every
# worker down and drains the buckets (right when the API is out of capacity),
# so random ones would only slow the demo; the 429 column shows the limiter
# keeping them at zero.
LOCAL_API_ARGS = [
    "--latency-ms", "300", "--jitter-ms", "150", "--rpm", "3000",
    "--rate-529", "0.03", "--seed", "7",
]  # fmt: skip
REAL_API_ITEMS = 20
# The default model thinks before it answers (adaptive thinking is on by
# default on the Sonnet 5 line), and thinking counts against max_tokens: a
# one-sentence summary with max_tokens=150 can end with every token spent
# thinking and no text. So each step says how hard to think (effort) and
# leaves room for the thinking as well as the answer.
BATCH_MAX_TOKENS, BATCH_EFFORT = 1024, "low"  # a one-sentence summary
VOTE_MAX_TOKENS, VOTE_EFFORT = 1024, "low"  # a one-word label
RESEARCH_MAX_TOKENS, RESEARCH_EFFORT = 2048, "medium"  # a paragraph of analysis
SYNTHESIS_MAX_TOKENS = 4096  # the model's default effort (high): room to think


def data_file(name: str) -> Path:
    return Path(str(resources.files("orchestration") / "data" / name))


@dataclass
class Row:
    what: str
    items: int
    ok: int
    calls: int
    seconds: float
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    http_429: int | None
    # Answers that were not complete (or calls that failed), by outcome.
    not_complete: dict[str, int] = field(default_factory=dict)


class LocalStats:
    """The local API's own counts: the demo's witness for 429s."""

    def __init__(self, url: str | None) -> None:
        self.url = url

    def http_429(self) -> int | None:
        if self.url is None:
            return None
        with urllib.request.urlopen(f"{self.url}/_mock/stats", timeout=5) as response:
            import json

            stats: dict[str, Any] = json.loads(response.read())
        return int(stats["by_status"].get("429", 0))


def run_demo(console: Console | None = None) -> int:
    console = console or Console()
    say = console.print
    fleet = Fleet()
    started_redis = None
    try:
        try:
            choice = ensure_redis(get_settings(), announce=lambda line: say(line, markup=False))
        except RedisUnavailable as exc:
            say(f"chorus: {exc}", markup=False)
            return 2
        started_redis = choice.started
        os.environ["CHORUS_WORKER__QUEUE"] = f"chorus-demo-{uuid.uuid4().hex[:8]}"
        local_url = None
        if os.environ.get("ANTHROPIC_API_KEY"):
            where = os.environ.get("ANTHROPIC_BASE_URL") or "the real Anthropic API"
            say(
                f"[bold]ANTHROPIC_API_KEY is set: calls go to {where} and are billed; "
                f"the batch is cut to {REAL_API_ITEMS} reviews.[/bold]"
            )
        else:
            local_url, _ = start_local_api(
                [*LOCAL_API_ARGS, "--script", str(data_file("demo_script.json"))], fleet=fleet
            )
            os.environ["ANTHROPIC_BASE_URL"] = local_url
            os.environ["ANTHROPIC_API_KEY"] = DEMO_KEY
            say(
                f"Local Anthropic API at {local_url}: 300 ms a call, 3,000 requests/min, "
                "3 % injected 529s (overloaded). Set ANTHROPIC_API_KEY to use the real one."
            )
        reconfigure()
        settings = get_settings()
        start_workers(settings, WORKERS, prefix="demo", concurrency=THREADS, fleet=fleet)
        names = wait_for_workers(WORKERS, timeout_s=60, fleet=fleet)
        say(f"{len(names)} worker processes x {THREADS} threads: {', '.join(names)}\n")

        witness = LocalStats(local_url)
        rows = [
            _batch(console, witness, limit=None if local_url else REAL_API_ITEMS),
            _vote(console, witness),
            _fan_out(console, witness),
        ]
        console.print(_summary(rows))
        return 0 if all(r.ok == r.items for r in rows) else 1
    finally:
        fleet.stop()
        if started_redis is not None:
            stop_redis_server(started_redis.pid)


def _batch(console: Console, witness: LocalStats, limit: int | None) -> Row:
    import json

    from orchestration.batch import Batch
    from orchestration.progress import follow

    rows = data_file("sample_reviews.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in rows[:limit]]
    console.print(f"[bold]1. A batch: {len(items)} customer reviews to summarise[/bold]")
    before = witness.http_429()
    started = time.perf_counter()
    batch = Batch.submit(
        items,
        max_tokens=BATCH_MAX_TOKENS,
        effort=BATCH_EFFORT,
        name=f"demo-{uuid.uuid4().hex[:6]}",
    )
    status = follow(batch, console)
    seconds = time.perf_counter() - started
    sample = next((r for r in batch.results() if r["ok"]), None)
    if sample is not None:
        console.print(f"   e.g. {sample['id']}: {sample['text'][:90]}...", markup=False)
    console.print(f"   results: chorus results {batch.id} -o reviews.out.jsonl\n", markup=False)
    return Row(
        "reviews",
        status.total,
        status.count("complete"),
        status.calls,
        seconds,
        status.input_tokens,
        status.output_tokens,
        status.cost_usd,
        _diff(witness.http_429(), before),
        {name: n for name, n in status.outcomes.items() if name != "complete" and n},
    )


def _vote(console: Console, witness: LocalStats) -> Row:
    from orchestration.client import request_from_prompt
    from orchestration.patterns import voting

    question = (
        "A customer wrote: 'It feels sturdy, but it stopped working after two weeks and "
        "support never answered.' Is the review positive, negative or mixed? Answer with one word."
    )
    console.print("[bold]2. A vote: the same question 5 times, the majority kept[/bold]")
    before = witness.http_429()
    started = time.perf_counter()
    request = request_from_prompt(question, max_tokens=VOTE_MAX_TOKENS, effort=VOTE_EFFORT)
    result = voting(request, n=5).wait(300)
    seconds = time.perf_counter() - started
    table = ", ".join(f"{row.text!r} x{row.count}" for row in result.votes or [])
    console.print(
        f"   winner: {result.text!r}; votes: {table}; agreement {result.agreement or 0:.0%}\n",
        markup=False,
    )
    return Row("vote (n=5)", 1, int(result.ok), result.calls, seconds,
               result.usage.input_tokens, result.usage.output_tokens, result.cost_usd,
               _diff(witness.http_429(), before), _not_complete(result))  # fmt: skip


def _fan_out(console: Console, witness: LocalStats) -> Row:
    from orchestration.client import request_from_prompt
    from orchestration.patterns import fan_out_fan_in

    reviews = "\n".join(
        line for line in data_file("sample_reviews.jsonl").read_text().splitlines()[:12]
    )
    aspects = ("product quality", "delivery", "customer support")
    subtasks = {
        a: request_from_prompt(
            f"From these reviews, what do buyers say about {a}?\n\n{reviews}",
            max_tokens=RESEARCH_MAX_TOKENS,
            effort=RESEARCH_EFFORT,
        )
        for a in aspects
    }
    console.print("[bold]3. A fan-out: 3 analyses in parallel, then one synthesis[/bold]")
    before = witness.http_429()
    started = time.perf_counter()
    result = fan_out_fan_in(
        subtasks,
        "Write a short report for the product team from these analyses.",
        max_tokens=SYNTHESIS_MAX_TOKENS,
    ).wait(300)
    seconds = time.perf_counter() - started
    console.print(f"   {result.text[:160]}...\n", markup=False)
    return Row("fan-out", 1, int(result.ok), result.calls, seconds,
               result.usage.input_tokens, result.usage.output_tokens, result.cost_usd,
               _diff(witness.http_429(), before), _not_complete(result))  # fmt: skip


def _not_complete(result: PatternResult) -> dict[str, int]:
    """The pattern's branches that did not answer completely, by outcome."""
    counts: dict[str, int] = {}
    for branch in result.branches:
        if not branch.ok and not branch.skipped:
            counts[branch.outcome] = counts.get(branch.outcome, 0) + 1
    return counts


def _diff(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def _summary(rows: list[Row]) -> Table:
    # Collapsed padding: eight columns fit the 80 a pipe or a CI log gives.
    table = Table(title="summary", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in (
        "run",
        "items",
        "ok",
        "not ok",
        "calls/s",
        "tokens in/out",
        "cost",
        "429s",
    ):
        table.add_column(column, justify="left" if column == "run" else "right", no_wrap=True)
    for row in rows:
        table.add_row(
            row.what,
            f"{row.items:,}",
            f"{row.ok / row.items:.0%}" if row.items else "-",
            ", ".join(f"{n} {name}" for name, n in row.not_complete.items()) or "-",
            f"{row.calls / row.seconds:,.1f}" if row.seconds else "-",
            f"{row.tokens_in:,}/{row.tokens_out:,}",
            "unknown" if row.cost_usd is None else f"${row.cost_usd:,.4f}",
            "-" if row.http_429 is None else f"{row.http_429:,}",
        )
    table.caption = (
        "ok: complete answers; not ok: the rest, by outcome (truncated, refused, ...)\n"
        "429s: rate-limit refusals the API answered (chorus's limiter aims for 0)"
    )
    return table
