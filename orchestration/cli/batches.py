"""The batches there are: ``chorus status``, ``ls``, ``results``, ``cancel``, ``retry``,
``resume``, ``rm``."""

from __future__ import annotations

import json
import sys
import time

import click

from orchestration.cli.common import (
    console,
    err,
    fail,
    get_batch,
    main,
    warn_if_no_worker,
    with_redis,
)


@main.command("status")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print the whole status as JSON.")
def status_cmd(batch_ref: str, as_json: bool) -> None:
    """A batch's counts, tokens, cost and errors (constant time, whatever its size)."""
    from orchestration.progress import status_table

    with_redis()
    batch = get_batch(batch_ref)
    status = batch.progress()
    upstream = batch.message_batches(status)
    if as_json:
        console.print_json(
            json.dumps({**status.model_dump(mode="json"), "message_batches": upstream})
        )
    else:
        console.print(status_table(status, upstream))


@main.command("ls")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Batches to list."
)
def ls_cmd(limit: int) -> None:
    """The newest batches."""
    from rich import box
    from rich.table import Table

    from orchestration.batch import Batch

    with_redis()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("batch", "name", "state", "items", "ok", "failed", "cost", "created"):
        # An id is for copying: never cut it; a long name may wrap.
        table.add_column(column, no_wrap=column != "name")
    for status in Batch.recent(limit):
        created = time.strftime("%m-%d %H:%M", time.localtime(status.created_at or 0))
        shown = "cancelled" if status.stop == "cancelled" else status.state
        table.add_row(
            status.id,
            status.name or "",
            shown,
            f"{status.total:,}",
            f"{status.count('complete'):,}",
            f"{status.count('failed'):,}",
            f"${status.cost_usd:,.4f}",
            created,
        )
    console.print(table)


@main.command("results")
@click.argument("batch_ref", metavar="BATCH")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    show_default="stdout",
    help="Write the JSON lines to this file.",
)
@click.option("--failed", "failed_only", is_flag=True, help="Only the failed items.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["chorus", "batches", "csv"]),
    default="chorus",
    show_default=True,
    help="'batches': the Message Batches API's results shape; 'csv': a table of the "
    "structured answers' fields (--schema), one row per item.",
)
@click.option(
    "--fields",
    show_default="the first answer's fields",
    help="With --format csv: the columns, comma-separated (a.b reads a nested field).",
)
def results_cmd(
    batch_ref: str, output: str | None, failed_only: bool, fmt: str, fields: str | None
) -> None:
    """One JSON line per input item, in input order (or with --format csv, one row)."""
    import json

    if fields is not None and fmt != "csv":
        fail("--fields goes with --format csv")
    with_redis()
    batch = get_batch(batch_ref)
    if fmt == "csv":
        if failed_only:
            fail("--failed goes with the JSON formats; the table marks each failed row")
        columns = None if fields is None else [f.strip() for f in fields.split(",") if f.strip()]
        if output is None:
            batch.write_table(sys.stdout, columns)
            return
        with open(output, "w", encoding="utf-8", newline="") as out:
            written = batch.write_table(out, columns)
        err.print(f"chorus: wrote {written:,} rows to {output}", markup=False)
        return
    if output is not None:
        written = batch.write_results(output, failed_only=failed_only, fmt=fmt)
        err.print(f"chorus: wrote {written:,} results to {output}", markup=False)
        return
    for record in batch.results(failed_only=failed_only, fmt=fmt):
        click.echo(json.dumps(record, ensure_ascii=False))


@main.command("cancel")
@click.argument("batch_ref", metavar="BATCH")
def cancel_cmd(batch_ref: str) -> None:
    """Stop a batch: items not yet sent are marked cancelled."""
    with_redis()
    status = get_batch(batch_ref).cancel()
    err.print(
        f"chorus: batch {status.id} cancelled; {status.count('pending'):,} pending items will "
        f"not be sent, {status.active:,} in flight finish",
        markup=False,
    )


@main.command("retry")
@click.argument("batch_ref", metavar="BATCH")
@click.option(
    "--failed",
    "all_failed",
    is_flag=True,
    help="Every item without a complete answer: what no option means too.",
)
@click.option("--truncated", is_flag=True, help="Items cut off at max_tokens (thinking included).")
@click.option("--refused", is_flag=True, help="Items the model declined (stop_reason refusal).")
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    metavar="OUTCOME",
    help="Items with this outcome (truncated, truncated_by_thinking, refused, "
    "context_exceeded, paused_turn, empty, failed, ...); may be given more than once.",
)
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    show_default="each item's own",
    help="Send them with this output token cap instead.",
)
def retry_cmd(
    batch_ref: str,
    all_failed: bool,
    truncated: bool,
    refused: bool,
    outcomes: tuple[str, ...],
    max_tokens: int | None,
) -> None:
    """Run again a batch's items that ended without a complete answer.

    With no option, every one of them; --truncated, --refused and --outcome
    choose some (they add up).

    An answer that came back incomplete (truncated, refused, ...) is asked
    again, not served from the result store. A truncated answer is likely to
    be cut again at the same cap: give it more with --max-tokens.
    """
    from workers.outcomes import NOT_COMPLETE

    chosen = set(outcomes)
    unknown = chosen - NOT_COMPLETE - {"failed"}
    if unknown:
        fail(f"no such outcome: {', '.join(sorted(unknown))} (one of "
             f"{', '.join(sorted(NOT_COMPLETE | {'failed'}))})")  # fmt: skip
    if truncated:
        chosen |= {"truncated", "truncated_by_thinking"}
    if refused:
        chosen.add("refused")
    from workers.errors import InvalidRequest

    with_redis()
    try:
        count = get_batch(batch_ref).retry(
            None if all_failed or not chosen else chosen, max_tokens=max_tokens
        )
    except InvalidRequest as exc:
        fail(f"invalid request: {exc}")
    what = (
        "items without a complete answer"
        if all_failed or not chosen
        else ("items (" + ", ".join(sorted(chosen)) + ")")
    )
    _enqueued_again(count, what)


@main.command("resume")
@click.argument("batch_ref", metavar="BATCH")
def resume_cmd(batch_ref: str) -> None:
    """Lift a pause (after a 401) and send what never went out.

    A batch that Redis no longer knows (it restarted empty) is rebuilt from
    its input file, if it was submitted from this machine; calls answered
    before come from the result store.
    """
    from orchestration.batch import Batch, BatchNotFound, rebuild
    from orchestration.batchfile import BatchInputError

    with_redis()
    try:
        batch = Batch.get(batch_ref)
    except BatchNotFound:
        try:
            batch = rebuild(batch_ref)
        except (BatchNotFound, BatchInputError) as exc:
            fail(str(exc))
        report = batch.report
        console.print(batch.id, markup=False, highlight=False)
        err.print(
            f"chorus: Redis had forgotten {batch_ref!r}; rebuilt it as {batch.id} from its "
            f"input file: {report.enqueued:,} items enqueued",
            markup=False,
        )
        warn_if_no_worker()
        return
    _enqueued_again(batch.resume(), "items")


def _enqueued_again(count: int, what: str) -> None:
    err.print(f"chorus: {count:,} {what} enqueued again", markup=False)
    if count:
        warn_if_no_worker()


@main.command("rm")
@click.argument("batch_ref", metavar="BATCH")
def rm_cmd(batch_ref: str) -> None:
    """Delete a batch and its results now (they expire by themselves after a while)."""
    with_redis()
    batch = get_batch(batch_ref)
    batch.remove()
    err.print(f"chorus: batch {batch.id} removed", markup=False)
