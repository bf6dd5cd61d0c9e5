"""What the ``chorus`` commands share: the group they register on, the consoles, the
exits, the settings and Redis they need, the checks for a worker, the batch look-up,
and the options more than one takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from config.models import DEFAULT_MAX_TOKENS
from config.settings import Settings, SettingsError, get_settings

F = TypeVar("F", bound=Callable[..., Any])

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


def require_worker(what: str, wait_for_worker: bool, timeout_s: float) -> str:
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


def warn_if_no_worker() -> None:
    from orchestration.queueing import workers_consuming

    queue = get_settings().worker.queue
    if not workers_consuming(queue):
        err.print(
            f"chorus: no worker consumes the queue {queue!r}; the work waits there and runs "
            "when one starts (`chorus worker`)",
            markup=False,
        )


def get_batch(id_or_name: str) -> Any:
    """The batch of that id or name; exit 2 when there is none."""
    from orchestration.batch import Batch, BatchNotFound

    try:
        return Batch.get(id_or_name)
    except BatchNotFound as exc:
        fail(str(exc))


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


class Duration(click.ParamType[float]):
    """A span of time: seconds, or a number with s, m, h or d (``90s``, ``30m``, ``2h``)."""

    name = "DURATION"
    UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        unit = self.UNITS.get(text[-1:], None)
        number = text[:-1] if unit is not None else text
        try:
            seconds = float(number) * (unit or 1.0)
        except ValueError:
            self.fail(f"{value!r} is not a duration (90s, 30m, 2h, 1d)", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r}: must be more than 0", param, ctx)
        return seconds


DURATION = Duration()


def model_option(help: str) -> Callable[[F], F]:
    """``--model``: which Claude model; the settings' default model when not given."""
    return click.option("--model", show_default="CHORUS_ANTHROPIC__DEFAULT_MODEL", help=help)


def max_tokens_option(help: str) -> Callable[[F], F]:
    """``--max-tokens``: the output cap, config.models.DEFAULT_MAX_TOKENS when not given."""
    return click.option(
        "--max-tokens", type=int, default=None, show_default=str(DEFAULT_MAX_TOKENS), help=help
    )


def timeout_option(
    default: float | None, help: str, show_default: str | bool = True
) -> Callable[[F], F]:
    """``--timeout`` (seconds, more than 0) as ``timeout_s``."""
    return click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(min=0, min_open=True),
        default=default,
        show_default=show_default,
        help=help,
    )


WAIT_FOR_WORKER = click.option(
    "--wait-for-worker",
    is_flag=True,
    help="Send even when no worker consumes the queue, and wait (up to --timeout) for one "
    "to start. Without it nothing is sent then, and the exit status is 1.",
)


def schema_options(fn: F) -> F:
    """``--schema FILE``, ``--reask N`` and ``--schema-method``: a structured answer."""
    fn = click.option(
        "--schema-method",
        type=click.Choice(["auto", "native", "tool", "prompt"]),
        default="auto",
        show_default=True,
        help="How the schema is asked for: auto (output_config.format where the model "
        "takes it, else a forced tool call, else the system prompt), or one of them.",
    )(fn)
    fn = click.option(
        "--reask",
        type=click.IntRange(0, 10),
        default=1,
        show_default=True,
        help="With --schema: follow-up calls when an answer does not match it, each "
        "sending the answer and what is wrong back; then the item ends invalid_output.",
    )(fn)
    return click.option(
        "--schema",
        "schema_file",
        type=click.Path(dir_okay=False),
        help="A JSON Schema file: every answer must match it, and is validated and "
        "returned parsed (data).",
    )(fn)


def structured_option(
    schema_file: str | None, reask: int, schema_method: str
) -> dict[str, Any] | None:
    """The request's ``structured`` field from ``--schema``, ``--reask`` and
    ``--schema-method``; exit 2 for an unreadable or invalid schema."""
    from workers.structured import load_schema_file, spec

    if schema_file is None:
        if schema_method != "auto":
            fail("--schema-method goes with --schema")
        return None
    try:
        schema = load_schema_file(schema_file)
    except ValueError as exc:
        fail(f"--schema {exc}")
        raise  # unreachable: fail() exits
    return spec(schema, reask=reask, method=schema_method)
