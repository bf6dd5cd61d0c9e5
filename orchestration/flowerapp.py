"""The Celery app as Flower should load it: chorus's own figures join Flower's ``/metrics``.

    celery -A orchestration.flowerapp flower --basic-auth=user:password

is ``celery -A workers flower`` (which works too) plus
:class:`orchestration.metrics.ChorusCollector` in prometheus_client's default
registry, the one Flower serves on ``/metrics``.
"""

from __future__ import annotations

from orchestration.metrics import register
from workers.app import app

register()

__all__ = ["app"]
