"""The live view of a batch: a progress bar and what each item is doing, from the ledger."""

from __future__ import annotations

import time
from collections import deque

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from orchestration.batch import Batch
from workers.ledger import BatchStatus


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


class RateMeter:
    """Items ended per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 10.0) -> None:
        self._window_s = window_s
        self._points: deque[tuple[float, int]] = deque()

    def add(self, ended: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._points.append((now, ended))
        while len(self._points) > 2 and now - self._points[0][0] > self._window_s:
            self._points.popleft()
        first_t, first_n = self._points[0]
        return (ended - first_n) / (now - first_t) if now > first_t else 0.0


def describe(status: BatchStatus, rate: float) -> Text:
    """One line of what is happening now."""
    remaining = status.total - status.ended
    eta = f"{remaining / rate:,.0f} s" if rate > 0 and remaining else "-"
    parts = [f"{name.replace('_', ' ')} {n:,}" for name, n in status.outcomes.items()]
    parts += [
        f"running {status.count('running'):,}",
        f"retrying {status.count('retrying'):,}",
        f"rate-limited {status.count('waiting'):,}",
        f"pending {status.count('pending'):,}",
    ]
    if status.count("cancelled"):
        parts.append(f"cancelled {status.count('cancelled'):,}")
    if status.count("skipped_budget"):
        parts.append(f"skipped for budget {status.count('skipped_budget'):,}")
    if status.count("paused"):
        parts.append(f"paused {status.count('paused'):,}")
    line = Text(" · ".join(parts))
    line.append(
        f"\n{rate:,.1f} items/s · ETA {eta} · tokens {status.input_tokens:,} in / "
        f"{status.output_tokens:,} out · cost {_money(status.cost_usd)}"
        + (f" of {_money(status.max_cost_usd)}" if status.max_cost_usd else "")
    )
    advice = outcome_advice(status)
    if advice:
        line.append(f"\n{advice}", style="yellow")
    if status.pause_message:
        line.append(f"\nPAUSED: {status.pause_message}", style="bold red")
    elif status.stop == "cancelled":
        line.append("\ncancelled: items not yet sent are skipped", style="yellow")
    elif status.stop == "budget":
        line.append("\nthe budget is reached: items not yet sent are skipped", style="yellow")
    return line


# What to do about each outcome that is not a complete answer, said once per view.
ADVICE = {
    "truncated_by_thinking": (
        "{n} cut off while thinking, with no answer: raise max_tokens (thinking counts "
        "against it) or lower output_config.effort, then `chorus retry {batch} --truncated "
        "--max-tokens N`"
    ),
    "truncated": (
        "{n} cut off at max_tokens: `chorus retry {batch} --truncated --max-tokens N` with more"
    ),
    "refused": "{n} declined by the model (refusal): `chorus results {batch}` says why",
    "context_exceeded": "{n} filled the model's context window: shorten those prompts",
}


def outcome_advice(status: BatchStatus) -> str:
    """One line per outcome that needs the user, with the command that helps."""
    lines = [
        advice.format(n=f"{status.outcomes[name]:,}", batch=status.name or status.id)
        for name, advice in ADVICE.items()
        if status.outcomes.get(name)
    ]
    return "\n".join(lines)


def follow(batch: Batch, console: Console, *, poll_s: float = 0.5) -> BatchStatus:
    """Show the live view until the batch ends (or pauses with nothing in work)."""
    meter = RateMeter()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        console=console,
    )
    status = batch.progress()
    task = bar.add_task(batch.id, total=status.total or 1)
    line = Text("")
    with Live(Group(bar, line), console=console, refresh_per_second=4) as live:
        while True:
            status = batch.progress()
            rate = meter.add(status.ended)
            bar.update(task, completed=status.ended, total=status.total or 1)
            line = describe(status, rate)
            live.update(Group(bar, line))
            if status.finished or status.stalled:
                break
            time.sleep(poll_s)
    console.print()
    return status


def status_table(status: BatchStatus) -> Table:
    """Everything the ledger knows of a batch, for ``chorus status``."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    shown_state = "cancelled" if status.stop == "cancelled" else status.state
    table.add_row("batch", f"{status.id}" + (f"  ({status.name})" if status.name else ""))
    table.add_row(
        "state", shown_state + (f" - {status.pause_message}" if status.pause_message else "")
    )
    table.add_row("items", f"{status.total:,} ({status.enqueued:,} enqueued)")
    counts = ", ".join(f"{name} {n:,}" for name, n in status.counts.items() if n)
    table.add_row("by state", counts or "-")
    outcomes = ", ".join(f"{name} {n:,}" for name, n in status.outcomes.items())
    table.add_row("by outcome", outcomes)
    advice = outcome_advice(status)
    if advice:
        table.add_row("", advice)
    table.add_row(
        "tokens",
        f"{status.input_tokens:,} in, {status.output_tokens:,} out, "
        f"{status.cache_read_tokens:,} cache read, {status.cache_write_tokens:,} cache write",
    )
    cost = _money(status.cost_usd)
    if status.max_cost_usd:
        cost += f" of a {_money(status.max_cost_usd)} budget"
    if status.cost_unknown_items:
        cost += f" (+ {status.cost_unknown_items} items at an unknown price)"
    table.add_row("cost", cost)
    table.add_row("API calls", f"{status.calls:,} ({status.cached:,} answered from the store)")
    errors = {k: v for k, v in status.errors.items() if v and k not in status.outcomes}
    if errors:
        table.add_row("errors", ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    if status.retries:
        table.add_row("retries", ", ".join(f"{k} {v}" for k, v in sorted(status.retries.items())))
    if status.rate_limit_wait_s:
        table.add_row("rate-limit wait", f"{status.rate_limit_wait_s:,.1f} s in all")
    if status.started_at is not None:
        rate = status.ended / status.elapsed_s if status.elapsed_s else 0.0
        table.add_row("time", f"{status.elapsed_s:,.1f} s, {rate:,.1f} items/s")
    return table
