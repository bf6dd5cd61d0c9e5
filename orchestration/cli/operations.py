"""Running chorus itself: ``chorus worker``, ``limits``, ``demo``, ``redis status|stop``.

``chorus mock-api`` (the local API) is ``localapi.cli``, loaded only when used
(``common.ChorusGroup.LAZY``)."""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from orchestration.cli.common import console, err, fail, load_settings_or_exit, main, with_redis


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
