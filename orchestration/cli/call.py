"""``chorus call``: one call, sent, waited for, printed."""

from __future__ import annotations

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

# One call rarely needs more; a long generation can be given more with --timeout.
CALL_TIMEOUT_S = 300.0


@main.command("call")
@click.argument("prompt")
@model_option("Claude model.")
@max_tokens_option("Output token cap; thinking counts against it.")
@click.option("--system", help="System prompt.")
@click.option("--effort", type=EFFORT, help="output_config.effort: how much the model thinks.")
@schema_options
@timeout_option(
    CALL_TIMEOUT_S,
    "Seconds to wait for the answer. A call no worker has taken by then is taken "
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
    schema_file: str | None,
    reask: int,
    schema_method: str,
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
    from workers.structured import fallback_note

    structured = structured_option(schema_file, reask, schema_method)
    settings = with_redis()
    try:
        request = request_from_prompt(
            prompt,
            model=model,
            max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
            system=system,
            effort=effort,
            structured=structured,
        )
    except InvalidRequest as exc:
        fail(f"invalid request: {exc}")
    if request.schema_method is not None:
        note = fallback_note(request.model, request.schema_method)
        if note:
            err.print(f"chorus: {note}", markup=False)
    queue = require_worker("call", wait_for_worker, timeout_s)
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
        if envelope.data is not None:
            console.print_json(data=envelope.data)
        elif envelope.text:
            console.print(envelope.text, markup=False, highlight=False)
        u = envelope.usage
        thinking = f" ({u.thinking_tokens} thinking)" if u.thinking_tokens else ""
        err.print(
            f"[dim]{envelope.model} · {u.input_tokens} in / {u.output_tokens} out tokens{thinking}"
            f"{f' · {u.cache_read_input_tokens} cache read' if u.cache_read_input_tokens else ''}"
            f" · {envelope.attempts} attempt{'s' if envelope.attempts != 1 else ''}"
            f"{f' ({envelope.reasks} re-asked)' if envelope.reasks else ''}"
            f"{' (stored result, no new call)' if envelope.from_store else ''}"
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
