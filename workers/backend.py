"""The result backend: Celery's Redis backend, with failed branches still delivered to a chord.

A chorus task whose call failed raises :class:`workers.errors.TaskFailed`, so
Celery records it as it is: state FAILURE in the result store, a
``task-failed`` event, a row in Flower's Failed tab and its workers' Failed
counters. A chord's fan-in must still receive that branch, though: a vote
counts its failed samples, a section reports the aspect that failed, and
``min_success`` decides. Celery's own Redis backend turns any failed header
task into a ``ChordError`` and never runs the callback.

The one hook both needs meet in is the backend's ``on_chord_part_return``,
which Celery calls with each header task's state and result when it ends
(``celery/backends/base.py`` ``mark_as_failure`` and ``mark_as_done``). Here a
``TaskFailed`` is handed on to the chord as the value it carries, with state
SUCCESS; anything else (a real crash) is handed on unchanged, so Celery's own
rule still holds for it. The task's own state stays FAILURE.

Celery loads this class from the URL's scheme, ``workers.backend:ChorusRedisBackend+redis://...``
(``celery/app/backends.py`` ``by_url``): see :func:`backend_url`.

docs/ARCHITECTURE.md, "A failure is FAILURE to Celery, and still a value to a chord".
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend

from workers.errors import TaskFailed

BACKEND_CLASS = "workers.backend:ChorusRedisBackend"


class ChorusRedisBackend(RedisBackend):  # type: ignore[misc]
    """Celery's Redis result backend; a ``TaskFailed`` reaches a chord as its value."""

    def on_chord_part_return(
        self, request: Any, state: str, result: Any, propagate: Any = None, **kwargs: Any
    ) -> Any:
        if state == states.FAILURE and isinstance(result, TaskFailed):
            state, result = states.SUCCESS, result.value
        return super().on_chord_part_return(request, state, result, propagate=propagate, **kwargs)


def backend_url(url: str) -> str:
    """The ``result_backend`` setting for a Redis URL: this module's class, that server.

    Other schemes are returned as they are (Celery's own backend for them).
    """
    scheme = url.partition("://")[0]
    if scheme in ("redis", "rediss"):
        return f"{BACKEND_CLASS}+{url}"
    return url
