"""The Celery application.

``celery -A workers worker`` and ``celery -A workers flower`` find it here.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
from celery import Celery
from celery.signals import (
    celeryd_after_setup,
    celeryd_init,
    task_received,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from config.celery import celery_config
from config.settings import Settings, SettingsError, get_settings
from workers import keys
from workers.backend import backend_url
from workers.compat import share_one_client_per_channel, tolerate_collected_connections


def create_app(settings: Settings) -> Celery:
    tolerate_collected_connections()
    share_one_client_per_channel()
    app = Celery("chorus", include=["workers.tasks", "workers.batches_api"])
    app.conf.update(app_config(settings))
    return app


def app_config(settings: Settings) -> dict[str, Any]:
    """Celery's settings (``config.celery``), the result backend being chorus's own class."""
    conf = celery_config(settings)
    conf["result_backend"] = backend_url(conf["result_backend"])
    return conf


# Lines for every task received and finished (Celery) and every HTTP request
# (the SDK's httpx), at INFO.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "httpx", "httpx2")


def _quiet_per_task_lines(**_: Any) -> None:
    """Drop the per-task INFO lines unless CHORUS_WORKER__LOG_TASKS is set.

    At hundreds of tasks a second they are noise, and formatting them costs
    about 8 % of a worker's CPU per call (docs/PERFORMANCE.md); the ledger,
    ``chorus status`` and Flower tell the same story. Failures still log.
    Celery reads these levels when it builds its tracers and strategies, after
    this signal.
    """
    if not get_settings().worker.log_tasks:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


celeryd_after_setup.connect(_quiet_per_task_lines, weak=False)

# Connections a worker's broker channel may open beyond one per pool slot:
# the consumer's own, the event dispatcher's, the unacked-message sweep.
SPARE_BROKER_CONNECTIONS = 8


def broker_connections_for(concurrency: int, transport_options: dict[str, Any]) -> dict[str, Any]:
    """``transport_options`` with room for every pool slot to acknowledge at once.

    kombu's Redis transport caps each channel's connection pool at 10. With
    ``task_acks_late`` every task acknowledges its own message from its own
    slot, so more than 10 slots finishing together run out: redis-py raises
    ``MaxConnectionsError``, Celery logs "Couldn't ack", and the message comes
    back after the visibility timeout (its result is stored, so it is not
    paid twice, but its task runs again, an hour later by default). The gevent
    pool hit this at once (hundreds of failed acks in 5,000 calls); the threads
    pool showed none in the same runs, its slots taking turns at the GIL, but
    nothing else bounds it. A connection is opened only when needed, so the
    larger cap costs nothing until then.
    """
    needed = concurrency + SPARE_BROKER_CONNECTIONS
    current = int(transport_options.get("max_connections") or 10)
    return {**transport_options, "max_connections": max(current, needed)}


def _room_for_every_slot(conf: Any = None, options: dict[str, Any] | None = None, **_: Any) -> None:
    """Sent before the worker connects: its ``--concurrency`` is known by then."""
    concurrency = (options or {}).get("concurrency") or conf.worker_concurrency
    try:
        slots = int(concurrency)
    except (TypeError, ValueError):
        slots = os.cpu_count() or 1  # Celery's default (or "auto"): one per CPU
    conf.broker_transport_options = broker_connections_for(
        slots, dict(conf.broker_transport_options or {})
    )


celeryd_init.connect(_room_for_every_slot, weak=False)


def _events_if_a_flower_watches(conf: Any = None, **_: Any) -> None:
    """Task events from the first task when a Flower runs (``orchestration.flowerapp``).

    Flower turns events on in the workers it sees every few seconds; the tasks
    a new worker runs before that would never be listed.
    """
    if conf.worker_send_task_events:
        return
    try:
        with redis.Redis.from_url(
            conf.broker_url, socket_timeout=2, socket_connect_timeout=2
        ) as client:
            watching = client.exists(keys.flower_watching())
    except (redis.RedisError, ValueError):
        return  # not a Redis broker, or away: Flower turns events on when it sees us
    if watching:
        conf.worker_send_task_events = True
        # Said once Celery's logging is set up (celeryd_after_setup).
        celeryd_after_setup.connect(_say_a_flower_watches, weak=False)


def _say_a_flower_watches(**_: Any) -> None:
    logging.getLogger(__name__).info("a Flower is watching: task events from the first task")


celeryd_init.connect(_events_if_a_flower_watches, weak=False)


def _start_sweeper(sender: Any = None, **_: Any) -> None:
    """A dead worker's messages run again within seconds (workers.sweeper)."""
    from workers.sweeper import start_in_worker

    start_in_worker(sender)


def _stop_taking_work(sender: Any = None, **_: Any) -> None:
    from workers.sweeper import shutting_down

    shutting_down(str(sender))


def _stop_sweeper(sender: Any = None, **_: Any) -> None:
    from workers.sweeper import stop_in_worker

    stop_in_worker(getattr(sender, "hostname", ""))


def _list_what_was_received(sender: Any = None, **_: Any) -> None:
    from workers.sweeper import received

    received(str(getattr(sender, "hostname", "")))


worker_ready.connect(_start_sweeper, weak=False)
task_received.connect(_list_what_was_received, weak=False)
worker_shutting_down.connect(_stop_taking_work, weak=False)
worker_shutdown.connect(_stop_sweeper, weak=False)


def _load() -> Celery:
    try:
        return create_app(get_settings())
    except SettingsError as exc:
        # One line naming the variable, not a traceback through Celery's loader.
        raise SystemExit(f"chorus: bad setting: {exc}") from None


app = _load()


def reconfigure() -> None:
    """Derive the app's config again after the environment changed.

    For producers that choose their Redis, queue or API at run time (the
    embedded Redis, the demo, tests). Celery caches its connection pool, its
    producer pool, its result backend (per thread) and its routing at first
    use: those are dropped too, so the next use builds them from the new
    settings.
    """
    get_settings.cache_clear()
    app.conf.update(app_config(get_settings()))
    # Dropped, not closed: kombu keeps pools in a registry keyed by connection,
    # so a closed pool would come straight back for the same broker.
    app._pool = None
    app.__dict__.pop("amqp", None)
    app._backend_cache = None
    app._local = threading.local()
