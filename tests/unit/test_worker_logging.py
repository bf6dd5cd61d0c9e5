"""Per-task INFO lines are off unless asked for; failures log either way."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from config.settings import get_settings
from workers.app import PER_TASK_LOGGERS, _quiet_per_task_lines


@pytest.fixture(autouse=True)
def restore_levels() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in PER_TASK_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    get_settings.cache_clear()


def test_per_task_lines_are_dropped_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHORUS_WORKER__LOG_TASKS", raising=False)
    get_settings.cache_clear()

    _quiet_per_task_lines()

    for name in PER_TASK_LOGGERS:
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO), name
        assert logger.isEnabledFor(logging.ERROR), name


def test_log_tasks_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_WORKER__LOG_TASKS", "true")
    get_settings.cache_clear()
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)

    _quiet_per_task_lines()

    assert all(logging.getLogger(n).level == logging.NOTSET for n in PER_TASK_LOGGERS)
