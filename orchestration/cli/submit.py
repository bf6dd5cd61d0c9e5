"""``chorus submit`` and ``chorus wait``: a batch sent, and followed until it ends."""

from __future__ import annotations

from typing import Any

import click

from orchestration.cli.common import (
    DURATION,
    EFFORT,
    console,
    err,
    fail,
    get_batch,
    interrupted,
    load_settings_or_exit,
    main,
    max_tokens_option,
    model_option,
    schema_options,
    structured_option,
    timeout_option,
    warn_if_no_worker,
    with_redis,
)

# How long `chorus wait` and `chorus submit --wait` follow a batch.
WAIT_TIMEOUT = timeout_option(
    None, "Seconds to follow the batch; then exit 1, the batch going on.", "no limit"
)


@main.command("submit")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--template",
    "template_file",
    type=click.Path(dir_okay=False),
    help="A text file with {field} placeholders filled from each item.",
)
@click.option(
    "--prompt-field",
    show_default="prompt",
    help='The field holding each item\'s prompt ({"id": ..., FIELD: ...} lines).',
)
@model_option("Model for items that name none.")
@max_tokens_option("Output token cap for items that set none; thinking counts against it.")
@click.option("--system", help="System prompt for items that set none.")
@click.option("--effort", type=EFFORT, help="output_config.effort for items that set none.")
@schema_options
@click.option(
    "--vote",
    type=int,
    default=None,
    help="Sample each item N times and keep the majority answer.",
)
@click.option(
    "--name",
    show_default="none: a new batch each time",
    help="Name the batch; submitting the same file under the same name resumes it.",
)
@click.option(
    "--max-cost",
    "max_cost",
    type=click.FloatRange(min=0),
    default=None,
    show_default="no budget",
    help="Budget in USD: once reached, items not yet sent are skipped.",
)
@click.option("--skip-invalid", is_flag=True, help="Enqueue the valid lines, report the rest.")
@click.option(
    "--route",
    type=click.Choice(["realtime", "batches", "auto"]),
    default="realtime",
    show_default=True,
    help="realtime: each item a Messages API call; batches: through the Message Batches "
    "API, half the price, answered within 24 hours; auto: in real time what the limits "
    "finish before --deadline, the rest through the Message Batches API.",
)
@click.option(
    "--deadline",
    type=DURATION,
    default=None,
    show_default="none",
    help="When the work should be done, from now (90s, 30m, 2h, 1d): with --route batches, "
    "what expired or errored is sent again only until then; --route auto splits by it.",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Mark the prompt prefix items share for the prompt cache; one item writes it, "
    "the rest read it at a tenth of the input price.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate and print what the batch would cost and take, per route; send nothing.",
)
@click.option(
    "--wait",
    "wait_",
    is_flag=True,
    help="Then follow the batch until it ends, as `chorus wait` does.",
)
@WAIT_TIMEOUT
def submit_cmd(
    file: str,
    template_file: str | None,
    prompt_field: str | None,
    model: str | None,
    max_tokens: int | None,
    system: str | None,
    effort: str | None,
    schema_file: str | None,
    reask: int,
    schema_method: str,
    vote: int | None,
    name: str | None,
    max_cost: float | None,
    skip_invalid: bool,
    route: str,
    deadline: float | None,
    cache: bool,
    dry_run: bool,
    wait_: bool,
    timeout_s: float | None,
) -> None:
    """Validate a JSONL FILE, enqueue its items, print the batch id.

    With --wait, follow it as `chorus wait` does (and with its exit status).
    """
    from orchestration.batch import Batch, InvalidBatchFile, StateUnavailable
    from orchestration.batchfile import BatchInputError

    if timeout_s is not None and not wait_:
        fail("--timeout goes with --wait")
    template = None
    if template_file is not None:
        try:
            with open(template_file, encoding="utf-8") as handle:
                template = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the template {template_file}: {exc}")
    structured = structured_option(schema_file, reask, schema_method)
    if dry_run:
        _dry_run(
            file, prompt_field, template, model, max_tokens, system, effort, skip_invalid, deadline
        )
        return
    with_redis()

    def created(batch: Any) -> None:
        report = batch.report
        verb = "resuming" if report.resumed else "enqueuing"
        console.print(batch.id, markup=False, highlight=False)
        err.print(f"chorus: {verb} batch {batch.id}: {report.items:,} items", markup=False)

    try:
        batch = Batch.submit(
            file,
            name=name,
            prompt_field=prompt_field,
            template=template,
            model=model,
            max_tokens=max_tokens,
            system=system,
            effort=effort,
            vote=vote,
            skip_invalid=skip_invalid,
            max_cost_usd=max_cost,
            on_created=created,
            route=route,  # type: ignore[arg-type]
            deadline_s=deadline,
            cache=cache,
            schema=structured and structured["json_schema"],
            reask=reask,
            schema_method=schema_method,
        )
    except (InvalidBatchFile, BatchInputError) as exc:
        fail(str(exc))
    except StateUnavailable as exc:
        fail(str(exc), 1)
    report = batch.report
    for model in report.unpriced:
        err.print(
            f"chorus: no price is known for {model}: its calls' cost is reported as unknown; "
            f"set CHORUS_PRICES__{model}__INPUT_PER_MTOK and __OUTPUT_PER_MTOK",
            markup=False,
        )
    for line in report.schema_notes:
        err.print(f"chorus: {line}", markup=False)
    if report.invalid_total:
        err.print(f"chorus: skipped {report.invalid_total} invalid lines:", markup=False)
        for error in report.invalid[:20]:
            err.print(f"  {error}", markup=False)
        if report.invalid_total > 20:
            err.print(f"  ... and {report.invalid_total - 20} more", markup=False)
    note = f" ({report.already_answered:,} already had a result)" if report.resumed else ""
    err.print(f"chorus: {report.enqueued:,} items enqueued{note}", markup=False)
    shares = report.prefixes.shares() if report.prefixes else []
    if shares:
        items = sum(share.requests for share in shares)
        err.print(
            f"chorus: {items:,} items share {len(shares):,} prompt prefix"
            f"{'es' if len(shares) != 1 else ''}, marked for the prompt cache (--no-cache: off)",
            markup=False,
        )
    warn_if_no_worker()
    if wait_:
        _follow(batch, name or batch.id, timeout_s)


def _dry_run(
    file: str,
    prompt_field: str | None,
    template: str | None,
    model: str | None,
    max_tokens: int | None,
    system: str | None,
    effort: str | None,
    skip_invalid: bool,
    deadline_s: float | None = None,
) -> None:
    """Print what FILE would cost and take per route (orchestration.estimate), and with a
    deadline how ``--route auto`` would split it (orchestration.routing); exit 2 when
    lines are invalid (unless --skip-invalid)."""
    from rich.table import Table

    from orchestration.batchfile import BatchInputError, InputSpec
    from orchestration.estimate import estimate
    from orchestration.routing import plan_route

    settings = load_settings_or_exit()
    spec = InputSpec.filled(
        settings,
        prompt_field=prompt_field,
        template=template,
        model=model,
        max_tokens=max_tokens,
        system=system,
        effort=effort,
    )
    try:
        found = estimate(file, spec, settings)
    except BatchInputError as exc:
        fail(str(exc))
    if found.invalid and not skip_invalid:
        shown = "\n".join(f"  {e}" for e in found.invalid[:20])
        fail(f"{len(found.invalid)} lines are invalid:\n{shown}")

    def usd(value: float | None) -> str:
        return "unknown price" if value is None else f"${value:,.4f}"

    table = Table(title=f"{file}: {found.items:,} items, nothing sent", title_justify="left")
    for column in ("route", "input only", "worst case", "time"):
        table.add_column(column, justify="left" if column == "route" else "right")
    minutes = found.minutes
    table.add_row(
        "realtime",
        usd(found.total("input_usd")),
        usd(found.total("worst_usd")),
        f"{minutes:,.1f} min at your limits" if minutes else "no limit set",
    )
    table.add_row(
        "batches",
        usd(found.total("input_usd_batches")),
        usd(found.total("worst_usd_batches")),
        "within 24 h",
    )
    plan = None
    if deadline_s is not None and found.items:
        plan = plan_route(found.items, minutes, found.binding, deadline_s)
        share = plan.realtime / found.items

        def split(name: str) -> float | None:
            full, half = found.total(name), found.total(name + "_batches")
            return None if full is None or half is None else share * full + (1 - share) * half

        table.add_row(
            "auto",
            usd(split("input_usd")),
            usd(split("worst_usd")),
            f"by the deadline ({plan.realtime:,} in real time)",
        )
    console.print(table)
    if plan is not None:
        err.print(f"chorus: auto: {plan.reason}", markup=False)
    for each in found.models.values():
        err.print(
            f"chorus: {each.model}: {each.items:,} items, about {each.input_tokens:,} input "
            f"tokens (estimated), at most {each.max_output_tokens:,} output tokens",
            markup=False,
        )
    if found.invalid:
        err.print(f"chorus: {len(found.invalid)} invalid lines would be skipped", markup=False)


def _follow(batch: Any, ref: str, timeout_s: float | None = None) -> None:
    """Show ``batch`` until it ends, then its table; exit 3 if it is paused with nothing
    left to run, 1 after ``timeout_s`` seconds, 130 on Ctrl-C (the last two leave it
    running). ``ref``: what the user calls it, for the commands suggested."""
    from orchestration.batch import BatchNotFound
    from orchestration.progress import follow, status_table

    goes_on = f"`chorus wait {ref}` follows it again, `chorus cancel {ref}` stops it"
    try:
        status = follow(batch, err, timeout_s=timeout_s)
    except TimeoutError:
        fail(f"batch {ref} not done within {timeout_s:g} s; it goes on: {goes_on}", 1)
    except KeyboardInterrupt:
        interrupted(f"stopped following batch {ref}; it goes on: {goes_on}")
    except BatchNotFound as exc:
        fail(str(exc), 1)
    err.print(status_table(status, batch.message_batches(status)))
    if status.stalled:
        raise SystemExit(3)


@main.command("wait")
@click.argument("batch_ref", metavar="BATCH")
@WAIT_TIMEOUT
def wait_cmd(batch_ref: str, timeout_s: float | None) -> None:
    """Follow a batch until it ends, then print its status.

    On a terminal the view is a live progress bar; otherwise one line every 5
    seconds. Exit status: 0 when every item ended, 3 when the batch is paused
    with nothing left to run (`chorus resume`), 1 after --timeout, 130 after
    Ctrl-C; the last two leave the batch running.
    """
    with_redis()
    _follow(get_batch(batch_ref), batch_ref, timeout_s)
