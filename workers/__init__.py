"""chorus workers: the Celery app and the tasks that each make one Messages API call.

``celery -A workers worker`` loads :data:`app` from here.
"""

from __future__ import annotations

from workers.app import app

__all__ = ["app"]
