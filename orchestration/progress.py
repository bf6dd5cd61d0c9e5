"""The view of a batch as it runs, from the ledger: on a terminal a live progress bar
and what each item is doing; elsewhere (a file, a pipe, CI) a plain line every few
seconds."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from orchestration.batch import Batch
from orchestration.routing import plan_reason
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


def _counts(status: BatchStatus) -> str:
    """Items by outcome and by state: "complete 9 · failed 1 · running 2 · ..."."""
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
    return " · ".join(parts)


def _pace(status: BatchStatus, rate: float) -> str:
    """Rate, time left, tokens and cost: "4.2 items/s · ETA 19 s · tokens ..."."""
    remaining = status.total - status.ended
    eta = f"{remaining / rate:,.0f} s" if rate > 0 and remaining else "-"
    return (
        f"{rate:,.1f} items/s · ETA {eta} · tokens {status.input_tokens:,} in / "
        f"{status.output_tokens:,} out · cost {_money(status.cost_usd)}"
        + (f" of {_money(status.max_cost_usd)}" if status.max_cost_usd else "")
    )


def describe(status: BatchStatus, rate: float) -> Text:
    """What is happening now, under the progress bar: counts, pace, and what needs the user."""
    line = Text(_counts(status))
    line.append(f"\n{_pace(status, rate)}")
    for _, notice, style in _notices(status):
        line.append(f"\n{notice}", style=style)
    return line


def _notices(status: BatchStatus) -> list[tuple[str, str, str]]:
    """What needs the user now, as (what it is about, the line, its style)."""
    found = [(name, line, "yellow") for name, line in _advice(status)]
    if status.pause_message:
        found.append(("paused", f"PAUSED: {status.pause_message}", "bold red"))
    elif status.stop == "cancelled":
        found.append(("cancelled", "cancelled: items not yet sent are skipped", "yellow"))
    elif status.stop == "budget":
        found.append(("budget", "the budget is reached: items not yet sent are skipped", "yellow"))
    return found


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
    return "\n".join(line for _, line in _advice(status))


def _advice(status: BatchStatus) -> list[tuple[str, str]]:
    return [
        (name, advice.format(n=f"{status.outcomes[name]:,}", batch=status.name or status.id))
        for name, advice in ADVICE.items()
        if status.outcomes.get(name)
    ]


def plain_line(status: BatchStatus, rate: float) -> str:
    """The batch in one line without styles, for a log: ids, ended/total, counts, pace."""
    name = f" ({status.name})" if status.name else ""
    percent = 100.0 * status.ended / status.total if status.total else 100.0
    return (
        f"{status.id}{name}: {status.ended:,}/{status.total:,} ended ({percent:.0f}%) · "
        f"{_counts(status)} · {_pace(status, rate)}"
    )


# How often a plain view (no terminal) prints its line, in seconds.
PLAIN_EVERY_S = 5.0


def follow(
    batch: Batch,
    console: Console,
    *,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    plain_every_s: float = PLAIN_EVERY_S,
) -> BatchStatus:
    """Show the batch until every item ended, or it is paused with nothing in work;
    returns its status then.

    On a terminal the view is live: a progress bar, the counts, the pace, and
    what needs the user. Elsewhere (``console`` writes to a file or a pipe)
    :func:`plain_line` is printed every ``plain_every_s`` seconds and once at
    the end, and each notice (advice, a pause) once when it first appears.
    Follows as :meth:`Batch.wait` waits: items whose messages were lost are
    sent again. ``poll_s``: seconds between reads of the ledger at most.

    Raises:
        TimeoutError: not ended within ``timeout_s`` seconds; the batch goes on.
        BatchNotFound: the batch expired or was removed meanwhile.
    """
    if console.is_terminal and not console.is_dumb_terminal:
        return _follow_live(batch, console, poll_s, timeout_s)
    return _follow_plain(batch, console, poll_s, timeout_s, plain_every_s)


def _follow_live(
    batch: Batch, console: Console, poll_s: float, timeout_s: float | None
) -> BatchStatus:
    meter = RateMeter()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        console=console,
    )
    task = bar.add_task(batch.id, total=batch.progress().total or 1)
    with Live(Group(bar, Text("")), console=console, refresh_per_second=4) as live:

        def show(status: BatchStatus) -> None:
            rate = meter.add(status.ended)
            bar.update(task, completed=status.ended, total=status.total or 1)
            live.update(Group(bar, describe(status, rate)))

        status = batch.wait(timeout_s, poll_s=poll_s, on_progress=show)
    console.print()
    return status


def _follow_plain(
    batch: Batch, console: Console, poll_s: float, timeout_s: float | None, every_s: float
) -> BatchStatus:
    meter = RateMeter()
    notices: set[str] = set()
    shown = ""
    shown_at = float("-inf")
    rate = 0.0

    def emit(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    def show(status: BatchStatus) -> None:
        nonlocal rate, shown, shown_at
        now = time.monotonic()
        rate = meter.add(status.ended, now)
        for about, notice, _ in _notices(status):
            if about not in notices:  # once each: its figures are in the lines
                notices.add(about)
                emit(notice)
        if now - shown_at >= every_s:
            shown, shown_at = plain_line(status, rate), now
            emit(shown)

    status = batch.wait(timeout_s, poll_s=poll_s, on_progress=show)
    if plain_line(status, rate) != shown:
        emit(plain_line(status, rate))
    return status


def status_table(
    status: BatchStatus, message_batches: dict[str, dict[str, Any]] | None = None
) -> Table:
    """Everything the ledger knows of a batch, for ``chorus status``; ``message_batches``:
    those its items went in, by id (``Ledger.upstream``), on the Message Batches route."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    shown_state = "cancelled" if status.stop == "cancelled" else status.state
    table.add_row("batch", f"{status.id}" + (f"  ({status.name})" if status.name else ""))
    table.add_row(
        "state", shown_state + (f" - {status.pause_message}" if status.pause_message else "")
    )
    table.add_row("items", f"{status.total:,} ({status.enqueued:,} enqueued)")
    if status.route in ("batches", "auto"):
        deadline = ""
        if status.deadline_at is not None:
            left = status.deadline_at - time.time()
            deadline = f", deadline in {_span(left)}" if left > 0 else ", deadline passed"
        if status.route == "batches":
            table.add_row("route", f"Message Batches API (half price){deadline}")
        else:
            table.add_row("route", f"auto{deadline}")
            if status.plan:
                table.add_row("", plan_reason(status.plan))
            if status.pulled_back:
                table.add_row(
                    "", f"{status.pulled_back:,} taken back to real time as the deadline neared"
                )
        waiting = sum(
            len(r.get("indexes", []))
            for r in (message_batches or {}).values()
            if r.get("status") != "read"
        )
        if waiting:
            table.add_row("", f"{waiting:,} items in a Message Batch now")
        for upstream_id, record in (message_batches or {}).items():
            counts = record.get("counts") or {}
            said = (
                ", ".join(f"{k} {v:,}" for k, v in counts.items())
                or f"polled {record.get('polls', 0)} times"
            )
            size = len(record.get("indexes", []))
            table.add_row("", f"{upstream_id}: {record.get('status')}, {size:,} items ({said})")
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
    table.add_row("API calls", f"{status.calls:,} ({status.from_store:,} answered from the store)")
    errors = {k: v for k, v in status.errors.items() if v and k not in status.outcomes}
    if errors:
        table.add_row("errors", ", ".join(f"{k} {v}" for k, v in sorted(errors.items())))
    if status.retries:
        table.add_row("retries", ", ".join(f"{k} {v}" for k, v in sorted(status.retries.items())))
    if status.rate_limit_wait_s:
        table.add_row("rate-limit wait", f"{status.rate_limit_wait_s:,.1f} s in all")
    if status.restored:
        table.add_row("restored", f"{status.restored:,} sent again after their worker died")
    if status.started_at is not None:
        rate = status.ended / status.elapsed_s if status.elapsed_s else 0.0
        table.add_row("time", f"{status.elapsed_s:,.1f} s, {rate:,.1f} items/s")
    return table


def _span(seconds: float) -> str:
    """``seconds`` as the unit that reads best: 45 s, 12.5 min, 3.2 h."""
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"
