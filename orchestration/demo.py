"""``make demo``: start what is missing, send a handful of calls, print them, stop everything.

Without ``ANTHROPIC_API_KEY`` the calls go to the local Anthropic API, started
here; with it, to the API the key belongs to (say so, it costs money). The
demo uses its own queue, so workers of another chorus on the same Redis
never take its calls.
"""

from __future__ import annotations

import os
import time
import uuid

from celery import group
from rich import box
from rich.console import Console
from rich.table import Table

from config.settings import get_settings
from orchestration.embedded import RedisUnavailable, ensure_redis, stop_redis_server
from orchestration.fleet import Fleet, start_local_api, start_workers, wait_for_workers
from workers.app import reconfigure

PROMPTS = [
    "Summarise the plot of Hamlet in one sentence.",
    "Give three tips for writing a clear commit message.",
    "Explain a token bucket rate limiter to a new engineer.",
    "What is the difference between a process and a thread?",
    "Name two trade-offs of at-least-once delivery.",
    "Write a haiku about message queues.",
    "Why do retries need jitter?",
    "Suggest a name for a tool that runs many LLM calls at once.",
]
DEMO_KEY = "sk-ant-local-demo-not-a-real-key"
LOCAL_LATENCY_MS = 400
WORKERS = 2


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
        if os.environ.get("ANTHROPIC_API_KEY"):
            where = os.environ.get("ANTHROPIC_BASE_URL") or "the real Anthropic API"
            say(f"[bold]ANTHROPIC_API_KEY is set: calls go to {where} and are billed.[/bold]")
        else:
            url, _ = start_local_api(
                ["--latency-ms", str(LOCAL_LATENCY_MS), "--seed", "7"], fleet=fleet
            )
            os.environ["ANTHROPIC_BASE_URL"] = url
            os.environ["ANTHROPIC_API_KEY"] = DEMO_KEY
            say(
                f"Local Anthropic API at {url} ({LOCAL_LATENCY_MS} ms per call); "
                "set ANTHROPIC_API_KEY to use the real one."
            )
        reconfigure()
        settings = get_settings()

        start_workers(settings, WORKERS, prefix="demo", fleet=fleet)
        names = wait_for_workers(WORKERS, timeout_s=60, fleet=fleet)
        say(f"{len(names)} worker processes up: {', '.join(names)}")
        return _send_calls(console)
    finally:
        fleet.stop()
        if started_redis is not None:
            stop_redis_server(started_redis.pid)


def _send_calls(console: Console) -> int:
    from orchestration.client import call_signature, request_from_prompt
    from workers.models import Envelope

    requests = [request_from_prompt(p, max_tokens=300) for p in PROMPTS]
    started = time.perf_counter()
    result = group(
        call_signature(r, item_id=f"demo-{i}") for i, r in enumerate(requests)
    ).apply_async()
    raw = result.get(timeout=300, interval=0.05)
    wall_s = time.perf_counter() - started
    envelopes = [Envelope.model_validate(r) for r in raw]

    table = Table(title=f"{len(envelopes)} calls through chorus", box=box.SIMPLE, pad_edge=False)
    for column in ("#", "prompt", "answer", "in", "out", "tries", "ms"):
        numeric = column in ("#", "in", "out", "tries", "ms")
        table.add_column(
            column, no_wrap=True, justify="right" if numeric else "left", min_width=len(column)
        )
    for index, (prompt, env) in enumerate(zip(PROMPTS, envelopes, strict=True)):
        answer = env.text if env.ok else f"[red]{env.error.type if env.error else 'error'}[/red]"
        table.add_row(
            str(index),
            _clip(prompt, 22),
            _clip(answer, 22),
            str(env.usage.input_tokens),
            str(env.usage.output_tokens),
            str(env.attempts),
            f"{env.elapsed_ms:.0f}",
        )
    console.print(table)

    ok = sum(e.ok for e in envelopes)
    tokens_in = sum(e.usage.input_tokens for e in envelopes)
    tokens_out = sum(e.usage.output_tokens for e in envelopes)
    slowest = max((e.elapsed_ms for e in envelopes), default=0.0) / 1000.0
    console.print(
        f"[bold]{len(envelopes)} calls, {ok} ok, in {wall_s:.2f} s wall "
        f"(slowest call {slowest:.2f} s: one round of latency, not {len(envelopes)}); "
        f"{tokens_in} input / {tokens_out} output tokens; "
        f"{sum(e.attempts for e in envelopes)} attempts[/bold]"
    )
    return 0 if ok == len(envelopes) else 1


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
