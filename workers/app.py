"""The Celery application.

``celery -A workers worker`` and ``celery -A workers flower`` find it here.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup

from config.celery import celery_config
from config.settings import Settings, SettingsError, get_settings
from workers.compat import share_one_client_per_channel, tolerate_collected_connections


def create_app(settings: Settings) -> Celery:
    tolerate_collected_connections()
    share_one_client_per_channel()
    app = Celery("chorus", include=["workers.tasks"])
    app.conf.update(celery_config(settings))
    return app


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
    app.conf.update(celery_config(get_settings()))
    # Dropped, not closed: kombu keeps pools in a registry keyed by connection,
    # so a closed pool would come straight back for the same broker.
    app._pool = None
    app.__dict__.pop("amqp", None)
    app._backend_cache = None
    app._local = threading.local()
