"""The ``chorus`` command."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import click
from rich.console import Console

from config.settings import Settings, SettingsError, get_settings

console = Console()
# Notices stay one line however narrow the terminal: easier to grep, to copy.
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"chorus: {message}", err=True)
    raise SystemExit(code)


def load_settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        fail(f"bad setting: {exc}")
        raise  # unreachable: fail() exits


def warn_if_no_worker() -> None:
    from orchestration.queueing import workers_consuming

    queue = get_settings().worker.queue
    if not workers_consuming(queue):
        err.print(
            f"chorus: no worker consumes the queue {queue!r}; the work waits there and runs "
            "when one starts (`chorus worker`)",
            markup=False,
        )


# The exit status of a command stopped by Ctrl-C (128 + SIGINT), as a shell's.
INTERRUPTED = 130


def interrupted(message: str) -> None:
    """Say what Ctrl-C left behind, on a line of its own, and exit 130."""
    click.echo(err=True)  # the terminal shows ^C where the cursor was
    fail(message, INTERRUPTED)


def with_redis() -> Settings:
    """Settings whose broker answers, starting a private Redis if that is allowed."""
    from orchestration.embedded import RedisUnavailable, ensure_redis

    settings = load_settings_or_exit()
    try:
        ensure_redis(settings, announce=lambda line: err.print(line, markup=False))
    except RedisUnavailable as exc:
        fail(str(exc))
    return get_settings()


class ChorusGroup(click.Group):
    """The ``chorus`` group; a command named in ``LAZY`` is imported only when used
    or listed (``mock-api`` brings the local API and aiohttp: 0.4 s of imports that
    every other command would pay)."""

    LAZY = {"mock-api": ("localapi.cli", "mock_api")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            import importlib

            module, name = self.LAZY[cmd_name]
            self.add_command(getattr(importlib.import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=ChorusGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chorus", message="chorus %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """chorus: many Claude calls in parallel across Celery workers, under one rate limit."""
    from orchestration.queueing import release_results

    # Before the interpreter shuts down, or Celery's result objects print tracebacks then.
    ctx.call_on_close(release_results)


# output_config.effort: how much a model thinks, where it thinks (config.models.EFFORTS).
EFFORT = click.Choice(["low", "medium", "high", "xhigh", "max"])
# One call rarely needs more; a long generation can be given more with --timeout.
CALL_TIMEOUT_S = 300.0
WAIT_FOR_WORKER = click.option(
    "--wait-for-worker",
    is_flag=True,
    help="Send even when no worker consumes the queue, and wait (up to --timeout) for one "
    "to start. Without it nothing is sent then, and the exit status is 1.",
)
PATTERN_TIMEOUT_S = 900.0
# How long `chorus wait` and `chorus submit --wait` follow a batch.
WAIT_TIMEOUT = click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    show_default="no limit",
    help="Seconds to follow the batch; then exit 1, the batch going on.",
)


@main.command("call")
@click.argument("prompt")
@click.option(
    "--model",
    show_default="CHORUS_ANTHROPIC__DEFAULT_MODEL",
    help="Claude model.",
)
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    show_default="2048",
    help="Output token cap; thinking counts against it.",
)
@click.option("--system", help="System prompt.")
@click.option("--effort", type=EFFORT, help="output_config.effort: how much the model thinks.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=CALL_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the answer. A call no worker has taken by then is taken "
    "off the queue; one a worker runs still ends, and its answer is stored.",
)
@WAIT_FOR_WORKER
@click.option("--json", "as_json", is_flag=True, help="Print the whole envelope as JSON.")
def call_cmd(
    prompt: str,
    model: str | None,
    max_tokens: int | None,
    system: str | None,
    effort: str | None,
    timeout_s: float,
    wait_for_worker: bool,
    as_json: bool,
) -> None:
    """Send one call, wait for it, print the answer; usage and attempts on stderr.

    Exit status: 0 for a complete answer; 1 when the answer is not complete, the
    call failed, no worker consumes the queue, or --timeout passed; 2 for a bad
    option or setting; 130 after Ctrl-C. A call no worker has taken when the
    command gives up is taken off the queue: it is never sent later, unseen.
    """
    from celery.exceptions import TimeoutError as CeleryTimeout

    from config.models import DEFAULT_MAX_TOKENS
    from orchestration.client import request_from_prompt, submit, wait
    from workers.errors import InvalidRequest

    settings = with_redis()
    try:
        request = request_from_prompt(
            prompt,
            model=model,
            max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
            system=system,
            effort=effort,
        )
    except InvalidRequest as exc:
        fail(f"invalid request: {exc}")
    queue = _require_worker("call", wait_for_worker, timeout_s)
    result = submit(request)
    try:
        envelope = wait(result, timeout_s=timeout_s)
    except CeleryTimeout:
        fail(f"no answer within {timeout_s:g} s; {_give_up(result.id, queue)}", 1)
    except KeyboardInterrupt:
        interrupted(f"interrupted; {_give_up(result.id, queue)}")
    if as_json:
        console.print_json(envelope.model_dump_json())
    elif envelope.outcome.answered:
        # The answer so far too when it is not complete (truncated, say): it was paid for.
        if envelope.text:
            console.print(envelope.text, markup=False, highlight=False)
        u = envelope.usage
        thinking = f" ({u.thinking_tokens} thinking)" if u.thinking_tokens else ""
        err.print(
            f"[dim]{envelope.model} · {u.input_tokens} in / {u.output_tokens} out tokens{thinking}"
            f"{f' · {u.cache_read_input_tokens} cache read' if u.cache_read_input_tokens else ''}"
            f" · {envelope.attempts} attempt{'s' if envelope.attempts != 1 else ''}"
            f"{' (stored result, no new call)' if envelope.cached else ''}"
            f" · {envelope.elapsed_ms:.0f} ms · {envelope.stop_reason}[/dim]"
        )
    del settings
    if not envelope.ok:
        assert envelope.error is not None
        e = envelope.error
        if envelope.outcome.answered:
            fail(f"the answer is not complete ({envelope.outcome.value}): {e.message}", 1)
        status = f" {e.status}" if e.status else ""
        request_id = f" (request id {e.request_id})" if e.request_id else ""
        fail(
            f"call failed after {envelope.attempts} attempt(s): {e.type}{status}: "
            f"{e.message}{request_id}",
            1,
        )


def _require_worker(what: str, wait_for_worker: bool, timeout_s: float) -> str:
    """The queue, once a worker consumes it; without one, exit 1 before anything is
    sent, unless ``wait_for_worker`` (then say how long it will be waited for)."""
    from orchestration.queueing import workers_consuming

    queue = get_settings().worker.queue
    if workers_consuming(queue):
        return queue
    if not wait_for_worker:
        fail(
            f"no worker consumes the queue {queue!r}, so the {what} was not sent: start one "
            "(`chorus worker`), or pass --wait-for-worker to send it and wait for one",
            1,
        )
    err.print(
        f"chorus: no worker consumes the queue {queue!r} yet; waiting up to {timeout_s:g} s "
        "for one to start and answer",
        markup=False,
    )
    return queue


def _give_up(task_id: str, queue: str) -> str:
    """Take a call nobody waits for any more off its queue; say what became of it."""
    from orchestration.queueing import take_back

    try:
        taken_back = take_back(task_id, queue)
    except Exception as exc:  # the broker went away: say so, not a traceback
        return f"the call (task {task_id}) could not be taken off the queue: {exc}"
    if taken_back:
        return "no worker had taken the call: it was taken off the queue, nothing was sent"
    return (
        f"a worker had taken the call (task {task_id}): it still ends, and its answer is "
        "stored, so the same command run again is answered from the store, not paid twice"
    )


@main.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "--processes",
    type=int,
    default=None,
    help="Worker processes on this machine (default CHORUS_WORKER__PROCESSES, else 2 per CPU).",
)
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=None,
    help="Threads per process (default CHORUS_WORKER__CONCURRENCY).",
)
@click.option("--pool", "-P", default=None, help="Celery pool (default threads).")
@click.option(
    "--loglevel",
    "-l",
    default="INFO",
    show_default=True,
    help="Celery's log level (DEBUG, INFO, WARNING, ...).",
)
@click.option("--name", default="chorus", show_default=True, help="Node name prefix.")
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Write each process's output to DIR/<node name>.log, rotated (default "
    "CHORUS_WORKER__LOG_DIR; unset: this terminal, each line led by its node name).",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_cmd(
    processes: int | None,
    concurrency: int | None,
    pool: str | None,
    loglevel: str,
    name: str,
    log_dir: str | None,
    celery_args: tuple[str, ...],
) -> None:
    """Start worker processes with I/O-bound defaults; other options go to Celery."""
    from pathlib import Path

    from orchestration.fleet import Fleet, LogFiles, start_workers, worker_argv

    settings = with_redis()
    count = processes or settings.worker.process_count
    logs_in = Path(log_dir) if log_dir else settings.worker.log_dir
    if count == 1 and logs_in is None:
        import socket

        argv = worker_argv(
            settings,
            name=f"{name}1@{socket.gethostname()}",
            concurrency=concurrency,
            pool=pool,
            loglevel=loglevel,
            extra=celery_args,
        )
        os.execv(sys.executable, argv)
    nodes = f"{name}1" if count == 1 else f"{name}1..{name}{count}"
    if logs_in is None:
        where = "their logs follow on stdout, each line led by its node name"
    else:
        files = LogFiles.from_settings(settings, logs_in)
        where = f"logs: {files.describe([f'{name}{n}' for n in range(1, count + 1)])}"
    processes_word = "process" if count == 1 else "processes"
    err.print(f"chorus: starting {count} worker {processes_word} ({nodes}); {where}", markup=False)
    try:
        fleet = start_workers(
            settings,
            count,
            prefix=name,
            log_dir=logs_in,
            echo=sys.stdout,
            concurrency=concurrency,
            pool=pool,
            loglevel=loglevel,
            extra=celery_args,
            fleet=Fleet(),
        )
    except OSError as exc:
        fail(f"cannot write the worker logs: {exc}")
        raise  # unreachable: fail() exits

    def forward(signum: int, _frame: object) -> None:
        fleet.signal_all(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    codes = fleet.wait()
    raise SystemExit(max(codes, default=0))


def _pattern_common(fn: Any) -> Any:
    fn = click.option(
        "--model",
        show_default="CHORUS_ANTHROPIC__DEFAULT_MODEL",
        help="Claude model for every call.",
    )(fn)
    fn = click.option(
        "--max-tokens",
        type=int,
        default=None,
        show_default="2048",
        help="Output token cap per call; thinking counts against it.",
    )(fn)
    fn = click.option(
        "--effort", type=EFFORT, help="output_config.effort of every call: how much it thinks."
    )(fn)
    fn = click.option(
        "--min-success",
        default="0.5",
        show_default=True,
        help="Branches that must succeed: a count (2) or a ratio (0.5).",
    )(fn)
    fn = click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(min=0, min_open=True),
        default=PATTERN_TIMEOUT_S,
        show_default=True,
        help="Seconds to wait for the result. Branches no worker has taken by then are "
        "taken off the queue and the fan-in is revoked; branches a worker runs still end.",
    )(fn)
    fn = WAIT_FOR_WORKER(fn)
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(fn)


def _min_success(value: str) -> int | float:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        fail(f"--min-success: {value!r} is neither a count nor a ratio")
        raise


def _run_pattern(build: Any, timeout_s: float, as_json: bool, wait_for_worker: bool) -> None:
    """Build and start a pattern, wait for it, print it; exit 1 if it failed, timed out or
    found no worker, 130 on Ctrl-C."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from orchestration.patterns import Pattern, PatternError
    from orchestration.report import print_pattern
    from workers.errors import InvalidRequest

    try:
        pattern: Pattern = build()
        pattern.signature()  # checks every argument before a worker is looked for
    except (InvalidRequest, PatternError) as exc:
        fail(str(exc))
    queue = _require_worker(pattern.kind, wait_for_worker, timeout_s)
    try:
        handle = pattern.start()
    except PatternError as exc:
        fail(str(exc))
    try:
        result = handle.wait(timeout_s)
    except CeleryTimeout:
        progress = handle.progress()
        fail(
            f"not done within {timeout_s:g} s ({progress.done}/{progress.total} branches); "
            f"{_give_up_pattern(handle, queue)}",
            1,
        )
    except KeyboardInterrupt:
        interrupted(f"interrupted; {_give_up_pattern(handle, queue)}")
    if as_json:
        console.print_json(result.model_dump_json())
    else:
        print_pattern(result, console, err)
    if not result.ok:
        raise SystemExit(1)


def _give_up_pattern(handle: Any, queue: str) -> str:
    """Take a pattern nobody waits for any more off its queue; say what became of it."""
    from orchestration.queueing import take_back

    header = handle.result.parent
    branches = [str(child.id) for child in (header.results if header is not None else [])]
    try:
        taken_back = sum(take_back(task_id, queue) for task_id in branches)
        take_back(str(handle.result.id), queue)  # the fan-in, revoked if not queued yet
    except Exception as exc:  # the broker went away: say so, not a traceback
        return f"its tasks could not be taken off the queue: {exc}"
    running = len(branches) - taken_back
    return (
        f"{taken_back} branch(es) no worker had taken were taken off the queue and the "
        f"fan-in was revoked; {running} taken by a worker still end, their answers stored"
    )


def _read_document(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    if not text.strip():
        fail(f"{path} is empty")
    return text


@main.command("vote")
@click.argument("prompt")
@click.option("-n", "n", type=int, default=5, show_default=True, help="Samples to draw.")
@click.option(
    "--strategy",
    type=click.Choice(["majority", "judge"]),
    default="majority",
    show_default=True,
    help="majority: the answer most samples give; judge: one more call picks the best "
    "sample and says why.",
)
@click.option(
    "--early-stop",
    is_flag=True,
    help="Once one answer holds a majority of n, samples not yet sent are not sent.",
)
@click.option(
    "--normalize",
    type=click.Choice(["text", "exact", "first_line", "number", "choice"]),
    default="text",
    show_default=True,
    help="How answers are compared: text (case, spaces and end punctuation ignored), exact, "
    "first_line, number (the first number), choice (the first letter A-J).",
)
@click.option("--system", help="System prompt.")
@_pattern_common
def vote_cmd(
    prompt: str,
    n: int,
    strategy: str,
    early_stop: bool,
    normalize: str,
    system: str | None,
    model: str | None,
    max_tokens: int | None,
    effort: str | None,
    min_success: str,
    timeout_s: float,
    wait_for_worker: bool,
    as_json: bool,
) -> None:
    """Sample PROMPT n times; print the consensus (or the judge's pick) and the vote table."""
    from config.models import DEFAULT_MAX_TOKENS
    from orchestration.client import request_from_prompt
    from orchestration.patterns import Vote

    with_redis()

    def build() -> Any:
        request = request_from_prompt(
            prompt,
            model=model,
            max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
            system=system,
            effort=effort,
        )
        return Vote(
            request,
            n=n,
            strategy=strategy,  # type: ignore[arg-type]
            early_stop=early_stop,
            normalize=normalize,
            min_success=_min_success(min_success),
        )

    _run_pattern(build, timeout_s, as_json, wait_for_worker)


ASPECT_PROMPT = "Review the document below for {aspect}. Be specific and brief.\n\n{document}"


def _aspect_requests(
    document: str,
    aspects: tuple[str, ...],
    model: str | None,
    max_tokens: int,
    effort: str | None = None,
) -> dict[str, Any]:
    """One request per distinct aspect, in the order given, each reading ``document``."""
    from orchestration.client import request_from_prompt

    return {
        a: request_from_prompt(
            ASPECT_PROMPT.format(aspect=a, document=document),
            model=model,
            max_tokens=max_tokens,
            effort=effort,
        )
        for a in dict.fromkeys(aspects)
    }


@main.command("section")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--aspect",
    "aspects",
    multiple=True,
    required=True,
    help="One section per aspect (give it once per aspect).",
)
@click.option(
    "--merge",
    type=click.Choice(["concat", "synthesize"]),
    default="concat",
    show_default=True,
    help="concat: the sections under headings; synthesize: one more call merges them.",
)
@_pattern_common
def section_cmd(
    file: str,
    aspects: tuple[str, ...],
    merge: str,
    model: str | None,
    max_tokens: int | None,
    effort: str | None,
    min_success: str,
    timeout_s: float,
    wait_for_worker: bool,
    as_json: bool,
) -> None:
    """Review FILE once per --aspect in parallel; merge the sections."""
    from config.models import DEFAULT_MAX_TOKENS
    from orchestration.patterns import Section

    document = _read_document(file)
    with_redis()

    def build() -> Any:
        limit = max_tokens or DEFAULT_MAX_TOKENS
        requests = _aspect_requests(document, aspects, model, limit, effort)
        return Section(
            requests,
            merge=merge,  # type: ignore[arg-type]
            min_success=_min_success(min_success),
            model=model,
            max_tokens=limit,
        )

    _run_pattern(build, timeout_s, as_json, wait_for_worker)


@main.command("fanout")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--aspect",
    "aspects",
    multiple=True,
    required=True,
    help="One research call per aspect (give it once per aspect).",
)
@click.option("--synthesize", required=True, help="The instruction for the synthesis call.")
@_pattern_common
def fanout_cmd(
    file: str,
    aspects: tuple[str, ...],
    synthesize: str,
    model: str | None,
    max_tokens: int | None,
    effort: str | None,
    min_success: str,
    timeout_s: float,
    wait_for_worker: bool,
    as_json: bool,
) -> None:
    """Research FILE from each --aspect in parallel, then synthesise one answer."""
    from config.models import DEFAULT_MAX_TOKENS
    from orchestration.patterns import FanOut

    document = _read_document(file)
    with_redis()

    def build() -> Any:
        limit = max_tokens or DEFAULT_MAX_TOKENS
        requests = _aspect_requests(document, aspects, model, limit, effort)
        return FanOut(
            requests,
            synthesize,
            min_success=_min_success(min_success),
            model=model,
            max_tokens=limit,
        )

    _run_pattern(build, timeout_s, as_json, wait_for_worker)


def _batch(id_or_name: str) -> Any:
    from orchestration.batch import Batch, BatchNotFound

    try:
        return Batch.get(id_or_name)
    except BatchNotFound as exc:
        fail(str(exc))


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
@click.option(
    "--model",
    show_default="CHORUS_ANTHROPIC__DEFAULT_MODEL",
    help="Model for items that name none.",
)
@click.option(
    "--max-tokens",
    type=int,
    default=None,
    show_default="2048",
    help="Output token cap for items that set none; thinking counts against it.",
)
@click.option("--system", help="System prompt for items that set none.")
@click.option("--effort", type=EFFORT, help="output_config.effort for items that set none.")
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
    vote: int | None,
    name: str | None,
    max_cost: float | None,
    skip_invalid: bool,
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
    if report.invalid_total:
        err.print(f"chorus: skipped {report.invalid_total} invalid lines:", markup=False)
        for error in report.invalid[:20]:
            err.print(f"  {error}", markup=False)
        if report.invalid_total > 20:
            err.print(f"  ... and {report.invalid_total - 20} more", markup=False)
    note = f" ({report.already_answered:,} already had a result)" if report.resumed else ""
    err.print(f"chorus: {report.enqueued:,} items enqueued{note}", markup=False)
    warn_if_no_worker()
    if wait_:
        _follow(batch, name or batch.id, timeout_s)


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
    err.print(status_table(status))
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
    _follow(_batch(batch_ref), batch_ref, timeout_s)


@main.command("status")
@click.argument("batch_ref", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print the whole status as JSON.")
def status_cmd(batch_ref: str, as_json: bool) -> None:
    """A batch's counts, tokens, cost and errors (constant time, whatever its size)."""
    from orchestration.progress import status_table

    with_redis()
    status = _batch(batch_ref).progress()
    if as_json:
        console.print_json(status.model_dump_json())
    else:
        console.print(status_table(status))


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
    type=click.Choice(["chorus", "batches"]),
    default="chorus",
    show_default=True,
    help="'batches': the Message Batches API's results shape.",
)
def results_cmd(batch_ref: str, output: str | None, failed_only: bool, fmt: str) -> None:
    """One JSON line per input item, in input order."""
    import json

    with_redis()
    batch = _batch(batch_ref)
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
    status = _batch(batch_ref).cancel()
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
        count = _batch(batch_ref).retry(
            None if all_failed or not chosen else chosen, max_tokens=max_tokens
        )
    except InvalidRequest as exc:
        fail(f"invalid request: {exc}")
    what = (
        "items without a complete answer"
        if all_failed or not chosen
        else ("items (" + ", ".join(sorted(chosen)) + ")")
    )
    err.print(f"chorus: {count:,} {what} enqueued again", markup=False)
    if count:
        warn_if_no_worker()


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
    count = batch.resume()
    err.print(f"chorus: {count:,} items enqueued again", markup=False)
    if count:
        warn_if_no_worker()


@main.command("rm")
@click.argument("batch_ref", metavar="BATCH")
def rm_cmd(batch_ref: str) -> None:
    """Delete a batch and its results now (they expire by themselves after a while)."""
    with_redis()
    batch = _batch(batch_ref)
    batch.remove()
    err.print(f"chorus: batch {batch.id} removed", markup=False)


@main.command("limits")
@click.option("--live", is_flag=True, help="Show current levels, waits and cooldowns from Redis.")
@click.option("--once", is_flag=True, help="With --live: print one snapshot and exit.")
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="With --live: seconds between refreshes.",
)
def limits_cmd(live: bool, once: bool, interval_s: float) -> None:
    """The rate limits per model family, or (--live) the buckets as they are now."""
    from orchestration.limits_view import configured_table, live_table

    if not live:
        console.print(configured_table(load_settings_or_exit()))
        return
    settings = with_redis()
    if once:
        console.print(live_table(settings))
        return
    from rich.live import Live

    with Live(live_table(settings), console=console, refresh_per_second=4) as view:
        try:
            while True:
                time.sleep(interval_s)
                view.update(live_table(settings))
        except KeyboardInterrupt:
            pass


@main.command("demo")
def demo_cmd() -> None:
    """Start what is missing, send a handful of calls, print results, stop everything."""
    from orchestration.demo import run_demo

    raise SystemExit(run_demo())


@main.group("redis")
def redis_group() -> None:
    """The private redis-server chorus starts when no Redis answers."""


@redis_group.command("status")
def redis_status() -> None:
    """The configured Redis (whether it answers), and the private one if chorus started it."""
    from orchestration.embedded import recorded_private_redis, redis_answers

    settings = load_settings_or_exit()
    private = recorded_private_redis()
    configured = "answers" if redis_answers(settings.broker_url) else "does not answer"
    console.print(f"configured: {settings.broker_url} ({configured})", markup=False)
    if private is not None:
        console.print(f"private:    {private.url} (pid {private.pid})", markup=False)


@redis_group.command("stop")
def redis_stop() -> None:
    """Stop the private redis-server chorus started, if one runs."""
    from orchestration.embedded import stop_private_redis

    private = stop_private_redis()
    if private is None:
        console.print("no private redis-server is running", markup=False)
    else:
        console.print(f"stopped the private redis-server at {private.url}", markup=False)


if __name__ == "__main__":
    main(prog_name="chorus")
