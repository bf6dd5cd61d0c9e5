"""The Celery application.

``celery -A workers worker`` and ``celery -A workers flower`` find it here.
"""

from __future__ import annotations

from celery import Celery

from config.celery import celery_config
from config.settings import Settings, SettingsError, get_settings


def create_app(settings: Settings) -> Celery:
    app = Celery("chorus", include=["workers.tasks"])
    app.conf.update(celery_config(settings))
    return app


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
    embedded Redis, the demo) before the app has opened any connection.
    """
    get_settings.cache_clear()
    app.conf.update(celery_config(get_settings()))
