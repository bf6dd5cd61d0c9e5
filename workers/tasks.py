"""Celery tasks: thin adapters that decode a payload, call plain logic, encode the result."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from pydantic import ValidationError

from workers.app import app
from workers.call import execute
from workers.models import CallRequest, Envelope, ErrorInfo
from workers.runtime import get_runtime
from workers.validation import describe_validation_error

log = logging.getLogger(__name__)


@app.task(name="chorus.call", bind=True)
def call(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """Make one Messages API call; return its envelope (``ok: false`` on failure)."""
    runtime = get_runtime()
    settings = runtime.settings
    task_id = self.request.id or "eager"
    delivery = runtime.store.count_delivery(
        task_id,
        ttl_s=int(settings.worker.visibility_timeout_s * (settings.worker.max_deliveries + 1)),
    )
    try:
        parsed = CallRequest.model_validate(request)
    except ValidationError as exc:
        # Producers validate first; this is a payload from elsewhere.
        info = ErrorInfo(type="invalid_request_error", message=describe_validation_error(exc))
        return Envelope.failure("invalid", info, delivery=delivery).model_dump(mode="json")
    if delivery > settings.worker.max_deliveries:
        log.error("chorus.call[%s] dead-lettered after %d deliveries", task_id, delivery - 1)
        info = ErrorInfo(
            type="dead_lettered",
            message=(
                f"delivered {delivery - 1} times without finishing (its worker died each "
                "time); not tried again"
            ),
        )
        return Envelope.failure(parsed.key(), info, delivery=delivery).model_dump(mode="json")
    envelope = execute(
        parsed,
        runtime.deps,
        time_limit_s=settings.worker.task_time_limit_s,
        owner=task_id,
        delivery=delivery,
    )
    return envelope.model_dump(mode="json")
