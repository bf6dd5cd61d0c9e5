"""The patterns as commands: ``chorus vote``, ``chorus section``, ``chorus fanout``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchestration.cli.common import (
    EFFORT,
    WAIT_FOR_WORKER,
    console,
    err,
    fail,
    interrupted,
    main,
    max_tokens_option,
    model_option,
    require_worker,
    schema_options,
    structured_option,
    timeout_option,
    with_redis,
)
from orchestration.prompts import ASPECT_PROMPT

PATTERN_TIMEOUT_S = 900.0
F = TypeVar("F", bound=Callable[..., Any])


def _pattern_common(fn: Any) -> Any:
    fn = model_option("Claude model for every call.")(fn)
    fn = max_tokens_option("Output token cap per call; thinking counts against it.")(fn)
    fn = click.option(
        "--effort", type=EFFORT, help="output_config.effort of every call: how much it thinks."
    )(fn)
    fn = click.option(
        "--min-success",
        default="0.5",
        show_default=True,
        help="Branches that must succeed: a count (2) or a ratio (0.5).",
    )(fn)
    fn = timeout_option(
        PATTERN_TIMEOUT_S,
        "Seconds to wait for the result. Branches no worker has taken by then are "
        "taken off the queue and the fan-in is revoked; branches a worker runs still end.",
    )(fn)
    fn = schema_options(fn)
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
    queue = require_worker(pattern.kind, wait_for_worker, timeout_s)
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
@click.option(
    "--vote-on",
    type=click.Choice(["field", "whole"]),
    default="field",
    show_default=True,
    help="With --schema: each field's majority, or the majority of whole answers.",
)
@_pattern_common
def vote_cmd(
    prompt: str,
    n: int,
    strategy: str,
    early_stop: bool,
    normalize: str,
    system: str | None,
    vote_on: str,
    model: str | None,
    max_tokens: int | None,
    effort: str | None,
    schema_file: str | None,
    reask: int,
    schema_method: str,
    min_success: str,
    timeout_s: float,
    wait_for_worker: bool,
    as_json: bool,
) -> None:
    """Sample PROMPT n times; print the consensus (or the judge's pick) and the vote table."""
    from config.models import DEFAULT_MAX_TOKENS
    from orchestration.client import request_from_prompt
    from orchestration.patterns import Vote

    structured = structured_option(schema_file, reask, schema_method)
    with_redis()

    def build() -> Any:
        request = request_from_prompt(
            prompt,
            model=model,
            max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
            system=system,
            effort=effort,
            structured=structured,
        )
        return Vote(
            request,
            n=n,
            strategy=strategy,  # type: ignore[arg-type]
            early_stop=early_stop,
            normalize=normalize,
            min_success=_min_success(min_success),
            vote_on=vote_on,  # type: ignore[arg-type]
        )

    _run_pattern(build, timeout_s, as_json, wait_for_worker)


def _aspect_requests(
    document: str,
    aspects: tuple[str, ...],
    model: str | None,
    max_tokens: int,
    effort: str | None = None,
    structured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One request per distinct aspect, in the order given, each reading ``document``
    (each answer matching ``structured``'s schema, when given)."""
    from orchestration.client import request_from_prompt

    return {
        a: request_from_prompt(
            ASPECT_PROMPT.format(aspect=a, document=document),
            model=model,
            max_tokens=max_tokens,
            effort=effort,
            structured=structured,
        )
        for a in dict.fromkeys(aspects)
    }


def _file_and_aspects(each: str) -> Callable[[F], F]:
    """FILE, and ``--aspect`` (``aspects``): one ``each`` per aspect."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--aspect",
            "aspects",
            multiple=True,
            required=True,
            help=f"One {each} per aspect (give it once per aspect).",
        )(fn)
        return click.argument("file", type=click.Path(dir_okay=False))(fn)

    return decorate


@main.command("section")
@_file_and_aspects("section")
@click.option(
    "--merge",
    type=click.Choice(["concat", "synthesize"]),
    default="concat",
    show_default=True,
    help="concat: the sections under headings; synthesize: one more call merges them.",
)
@_pattern_common
def section_cmd(merge: str, **options: Any) -> None:
    """Review FILE once per --aspect in parallel; merge the sections."""
    from orchestration.patterns import Section

    def build(requests: list[Any], **common: Any) -> Any:
        return Section(requests, merge=merge, **common)  # type: ignore[arg-type]

    _run_aspects(build, **options)


@main.command("fanout")
@_file_and_aspects("research call")
@click.option("--synthesize", required=True, help="The instruction for the synthesis call.")
@_pattern_common
def fanout_cmd(synthesize: str, **options: Any) -> None:
    """Research FILE from each --aspect in parallel, then synthesise one answer."""
    from orchestration.patterns import FanOut

    def build(requests: list[Any], **common: Any) -> Any:
        return FanOut(requests, synthesize, **common)

    _run_aspects(build, **options)


def _run_aspects(
    build: Any,
    *,
    file: str,
    aspects: tuple[str, ...],
    model: str | None,
    max_tokens: int | None,
    effort: str | None,
    min_success: str,
    schema_file: str | None,
    reask: int,
    schema_method: str,
    **run: Any,
) -> None:
    """A pattern of one call per aspect of FILE (section, fanout): built and run
    (``run``: :func:`_run_pattern`'s timeout, output and waiting options)."""
    from config.models import DEFAULT_MAX_TOKENS

    document = _read_document(file)
    structured = structured_option(schema_file, reask, schema_method)
    with_redis()
    limit = max_tokens or DEFAULT_MAX_TOKENS

    def pattern() -> Any:
        requests = _aspect_requests(document, aspects, model, limit, effort, structured)
        return build(requests, min_success=_min_success(min_success), model=model,
                     max_tokens=limit)  # fmt: skip

    _run_pattern(pattern, **run)
