"""chorus configuration: settings from the environment and the Celery config derived from them."""

from __future__ import annotations

from config.celery import celery_config
from config.settings import (
    DEFAULT_MODEL,
    DEFAULT_REDIS_URL,
    FamilyLimits,
    Settings,
    SettingsError,
    get_settings,
    load_settings,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_REDIS_URL",
    "FamilyLimits",
    "Settings",
    "SettingsError",
    "celery_config",
    "get_settings",
    "load_settings",
]
