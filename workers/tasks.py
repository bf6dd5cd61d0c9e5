"""Celery tasks: thin adapters that decode a payload, call plain logic, encode the result.

- ``chorus.call``: one Messages API call (``workers.call.execute``).
- ``chorus.fan_in``: a chord's callback (``workers.fanin.combine.fan_in``);
  it makes at most one call of its own (a synthesis or a judge).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from pydantic import BaseModel, ValidationError

from workers.app import app
from workers.call import Guard, Phase, execute
from workers.fanin.combine import FanInSpec, fan_in
from workers.fanin.voting import VoteBoard, normalize
from workers.items import BatchOption, finish_pattern_item, run_item
from workers.models import CallRequest, Envelope, ErrorInfo
from workers.runtime import Runtime, get_runtime
from workers.validation import describe_validation_error

log = logging.getLogger(__name__)


class VoteOption(BaseModel):
    """What a voting sample knows of its vote."""

    id: str
    n: int
    normalize: str = "text"
    early_stop: bool = False


class TaskOptions(BaseModel):
    vote: VoteOption | None = None
    batch: BatchOption | None = None


REVOKED = ErrorInfo(
    type="revoked",
    message="the vote was decided before this sample was sent; not sent, not paid for",
)


def _delivery(task: Task, runtime: Runtime) -> int:
    worker = runtime.settings.worker
    return runtime.store.count_delivery(
        task.request.id or "eager",
        ttl_s=int(worker.visibility_timeout_s * (worker.max_deliveries + 1)),
    )


def _dead_letter(task_id: str, key: str, delivery: int) -> Envelope:
    log.error("task %s dead-lettered after %d deliveries", task_id, delivery - 1)
    info = ErrorInfo(
        type="dead_lettered",
        message=(
            f"delivered {delivery - 1} times without finishing (its worker died each "
            "time); not tried again"
        ),
    )
    return Envelope.failure(key, info, delivery=delivery)


@app.task(name="chorus.call", bind=True)
def call(
    self: Task, request: dict[str, Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Make one Messages API call; return its envelope (``ok: false`` on failure).

    ``options`` carries what a pattern needs of the call: ``{"vote": {"id",
    "n", "normalize"}}`` for a voting sample, which is revoked (not sent) once
    its vote is decided.
    """
    runtime = get_runtime()
    delivery = _delivery(self, runtime)
    try:
        parsed = CallRequest.model_validate(request)
    except ValidationError as exc:
        # Producers validate first; this is a payload from elsewhere.
        info = ErrorInfo(type="invalid_request_error", message=describe_validation_error(exc))
        return Envelope.failure("invalid", info, delivery=delivery).model_dump(mode="json")
    if delivery > runtime.settings.worker.max_deliveries:
        return _dead_letter(self.request.id, parsed.key(), delivery).model_dump(mode="json")

    opts = TaskOptions.model_validate(options or {})
    vote = opts.vote
    guard: Guard | None = None
    board = VoteBoard(runtime.redis) if vote is not None and vote.early_stop else None
    if board is not None and vote is not None:
        vote_id = vote.id

        def guard(phase: Phase) -> ErrorInfo | None:
            return REVOKED if board.decided(vote_id) else None

    limits = {
        "time_limit_s": runtime.settings.worker.task_time_limit_s,
        "owner": self.request.id,
        "delivery": delivery,
    }
    if opts.batch is not None:
        outcome = run_item(
            parsed, opts.batch, runtime.ledger, runtime.deps, extra_guard=guard, **limits
        )
        envelope = outcome or Envelope.failure(
            parsed.key(), ErrorInfo(type="duplicate", message="the item had already ended")
        )
    else:
        envelope = execute(parsed, runtime.deps, guard=guard, **limits)
    if board is not None and vote is not None and envelope.ok:
        board.record(vote.id, vote.n, normalize(envelope.text, vote.normalize))
    return envelope.model_dump(mode="json")


@app.task(name="chorus.fan_in", bind=True)
def fan_in_task(
    self: Task, results: list[Any], spec: dict[str, Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Combine a chord's branch results into one pattern result.

    With ``{"batch": ...}`` in ``options`` the pattern is one batch item
    (``--vote``): its result ends that item in the ledger.
    """
    runtime = get_runtime()
    delivery = _delivery(self, runtime)
    parsed = FanInSpec.model_validate(spec)

    def make_call(request: CallRequest) -> Envelope:
        if delivery > runtime.settings.worker.max_deliveries:
            return _dead_letter(self.request.id, request.key(), delivery)
        return execute(
            request,
            runtime.deps,
            time_limit_s=runtime.settings.worker.task_time_limit_s,
            owner=self.request.id,
            delivery=delivery,
        )

    result = fan_in(results, parsed, make_call)
    batch = TaskOptions.model_validate(options or {}).batch
    if batch is not None:
        finish_pattern_item(runtime.ledger, batch, result)
    return result.model_dump(mode="json")
