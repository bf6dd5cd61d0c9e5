"""Printing pattern results for people: the answer, the branches, the votes, the bill."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workers.fanin.results import PatternResult


def money(cost: float | None) -> str:
    return "unknown (no price for the model)" if cost is None else f"${cost:,.4f}"


def print_pattern(result: PatternResult, console: Console, err: Console) -> None:
    """The merged text on stdout; the tables and the summary on stderr."""
    if result.ok and result.data is not None:
        console.print_json(data=result.data)
    elif result.ok:
        console.print(result.text, markup=False, highlight=False)

    branches = Table(title="branches", title_justify="left")
    for column in ("branch", "ok", "tokens in/out", "calls", "cost", "note"):
        branches.add_column(column)
    for branch in result.branches:
        note = ""
        if branch.skipped:
            note = "revoked: not sent"
        elif branch.error is not None:
            status = f" {branch.error.status}" if branch.error.status else ""
            note = f"{branch.error.type}{status}: {branch.error.message}"[:60]
        elif branch.from_store:
            note = "stored result"
        branches.add_row(
            escape(branch.label),
            "yes" if branch.ok else ("-" if branch.skipped else "[red]no[/red]"),
            f"{branch.usage.input_tokens}/{branch.usage.output_tokens}",
            str(branch.calls),
            money(branch.cost_usd),
            escape(note),
        )
    err.print(branches)

    if result.fields is not None:
        fields = Table(title="votes per field", title_justify="left")
        for column in ("field", "value", "agreement", "others"):
            fields.add_column(column)
        for name, vote in result.fields.items():
            others = "; ".join(f"{r.text[:20]} x{r.count}" for r in vote.rows[1:4])
            fields.add_row(
                escape(name),
                escape(vote.rows[0].text[:40]),
                f"{vote.agreement:.0%}",
                escape(others),
            )
        err.print(fields)
        for vote in result.fields.values():
            if vote.tie_break:
                err.print(f"tie broken: {vote.tie_break}", markup=False)
    if result.votes is not None:
        votes = Table(title="votes", title_justify="left")
        for column in ("answer", "votes", "samples"):
            votes.add_column(column)
        for row in result.votes:
            votes.add_row(escape(row.text[:60]), str(row.count), ", ".join(map(str, row.samples)))
        err.print(votes)
        if result.agreement is not None:
            err.print(f"agreement: {result.agreement:.0%}", markup=False)
        if result.tie_break:
            err.print(f"tie broken: {result.tie_break}", markup=False)
        if result.judge_reason:
            err.print(f"judge: {result.judge_reason}", markup=False)

    considered = result.total - result.skipped
    skipped = f", {result.skipped} revoked" if result.skipped else ""
    u = result.usage
    cache = (
        f" ({u.cache_creation_input_tokens:,} written to the prompt cache, "
        f"{u.cache_read_input_tokens:,} read from it)"
        if u.cache_creation_input_tokens or u.cache_read_input_tokens
        else ""
    )
    err.print(
        f"success rate {result.success_rate:.0%} ({result.succeeded}/{considered}{skipped}); "
        f"{u.input_tokens:,} input{cache} / {u.output_tokens:,} output tokens; "
        f"{result.calls} API calls; cost {money(result.cost_usd)}",
        markup=False,
    )
    if not result.ok and result.error is not None:
        err.print(f"[red]failed:[/red] {escape(result.error.type)}: {escape(result.error.message)}")
