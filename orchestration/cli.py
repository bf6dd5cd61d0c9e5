"""The ``chorus`` command."""

from __future__ import annotations

import os
import signal
import sys
import time

import click
from rich.console import Console

from config.settings import Settings, SettingsError, get_settings

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"chorus: {message}", markup=False, highlight=False)
    raise SystemExit(code)


def load_settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        fail(f"bad setting: {exc}")
        raise  # unreachable: fail() exits


def with_redis() -> Settings:
    """Settings whose broker answers, starting a private Redis if that is allowed."""
    from orchestration.embedded import RedisUnavailable, ensure_redis

    settings = load_settings_or_exit()
    try:
        ensure_redis(settings, announce=lambda line: err.print(line, markup=False))
    except RedisUnavailable as exc:
        fail(str(exc))
    return get_settings()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """chorus: many Claude calls in parallel across Celery workers, under one rate limit."""


@main.command("call")
@click.argument("prompt")
@click.option("--model", help="Claude model (default: CHORUS_ANTHROPIC__DEFAULT_MODEL).")
@click.option("--max-tokens", type=int, default=None, help="Output token cap (default 2048).")
@click.option("--system", help="System prompt.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=900.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole envelope as JSON.")
def call_cmd(
    prompt: str,
    model: str | None,
    max_tokens: int | None,
    system: str | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """Enqueue one call, wait for it, print the answer, usage and attempts."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from orchestration.client import (
        DEFAULT_MAX_TOKENS,
        request_from_prompt,
        submit,
        wait,
        workers_online,
    )
    from workers.errors import InvalidRequest

    settings = with_redis()
    try:
        request = request_from_prompt(
            prompt, model=model, max_tokens=max_tokens or DEFAULT_MAX_TOKENS, system=system
        )
    except InvalidRequest as exc:
        fail(f"invalid request: {exc}")
    if not workers_online(timeout_s=1.0):
        err.print(
            "chorus: no worker answered; the call is queued and runs when one starts "
            "(`chorus worker`)",
            markup=False,
        )
    result = submit(request)
    try:
        envelope = wait(result, timeout_s=timeout_s)
    except CeleryTimeout:
        fail(f"no answer within {timeout_s:g} s (task {result.id} is still queued or running)", 1)
    if as_json:
        console.print_json(envelope.model_dump_json())
    elif envelope.ok:
        console.print(envelope.text, markup=False, highlight=False)
        u = envelope.usage
        err.print(
            f"[dim]{envelope.model} · {u.input_tokens} in / {u.output_tokens} out tokens"
            f"{f' · {u.cache_read_input_tokens} cache read' if u.cache_read_input_tokens else ''}"
            f" · {envelope.attempts} attempt{'s' if envelope.attempts != 1 else ''}"
            f"{' (stored result, no new call)' if envelope.cached else ''}"
            f" · {envelope.elapsed_ms:.0f} ms · {envelope.stop_reason}[/dim]"
        )
    del settings
    if not envelope.ok:
        assert envelope.error is not None
        e = envelope.error
        status = f" {e.status}" if e.status else ""
        request_id = f" (request id {e.request_id})" if e.request_id else ""
        fail(
            f"call failed after {envelope.attempts} attempt(s): {e.type}{status}: "
            f"{e.message}{request_id}",
            1,
        )


@main.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "--processes",
    type=int,
    default=None,
    help="Worker processes on this machine (default CHORUS_WORKER__PROCESSES).",
)
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=None,
    help="Threads per process (default CHORUS_WORKER__CONCURRENCY).",
)
@click.option("--pool", "-P", default=None, help="Celery pool (default threads).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.option("--name", default="chorus", show_default=True, help="Node name prefix.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_cmd(
    processes: int | None,
    concurrency: int | None,
    pool: str | None,
    loglevel: str,
    name: str,
    celery_args: tuple[str, ...],
) -> None:
    """Start worker processes with I/O-bound defaults; other options go to Celery."""
    from orchestration.fleet import Fleet, start_workers, worker_argv

    settings = with_redis()
    count = processes or settings.worker.processes
    if count == 1:
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
    fleet = start_workers(
        settings,
        count,
        prefix=name,
        concurrency=concurrency,
        pool=pool,
        loglevel=loglevel,
        extra=celery_args,
        fleet=Fleet(),
    )
    err.print(f"chorus: started {count} worker processes ({name}1..{name}{count})", markup=False)

    def forward(signum: int, _frame: object) -> None:
        fleet.signal_all(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    codes = [process.wait() for process in fleet.processes]
    raise SystemExit(max(codes, default=0))


@main.command(
    "mock-api",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def mock_api_cmd(args: tuple[str, ...]) -> None:
    """Run the local Anthropic API (chorus mock-api --help for its options)."""
    from localapi.__main__ import main as localapi_main

    raise SystemExit(localapi_main(list(args)))


@main.command("limits")
@click.option("--live", is_flag=True, help="Show current levels, waits and cooldowns from Redis.")
@click.option("--once", is_flag=True, help="With --live: print one snapshot and exit.")
@click.option("--interval", "interval_s", type=float, default=1.0, show_default=True)
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
    from orchestration.embedded import recorded_private_redis, redis_answers

    settings = load_settings_or_exit()
    private = recorded_private_redis()
    configured = "answers" if redis_answers(settings.broker_url) else "does not answer"
    console.print(f"configured: {settings.broker_url} ({configured})", markup=False)
    if private is not None:
        console.print(f"private:    {private.url} (pid {private.pid})", markup=False)


@redis_group.command("stop")
def redis_stop() -> None:
    from orchestration.embedded import stop_private_redis

    private = stop_private_redis()
    if private is None:
        console.print("no private redis-server is running", markup=False)
    else:
        console.print(f"stopped the private redis-server at {private.url}", markup=False)


if __name__ == "__main__":
    main()
