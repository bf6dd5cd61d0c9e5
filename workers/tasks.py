"""Celery tasks: thin adapters that decode a payload, call plain logic, encode the result.

- ``chorus.call``: one Messages API call (``workers.call.execute``), or one call
  of a batch item (``workers.items.run_item``).
- ``chorus.fan_in``: a chord's callback (``workers.fanin.combine.fan_in``);
  it makes at most one call of its own (a synthesis or a judge).

Three rules keep work from being lost:

- Whatever a task's logic raises, expected or not (a bug, a bad character, a
  library's error), ends as an ``ok: false`` result with the error's type and
  message, and a batch item ends ``failed`` in the ledger: nothing is left
  pending, and a chord's fan-in always runs.

- A message is counted each time it is delivered; past
  ``max_deliveries`` (its worker died every time) it is dead-lettered: it
  ends as failed, in the ledger too, and is not tried again.
- When Redis cannot be reached before a call is made, the task waits for it
  and puts its work back in the queue instead of failing: nothing was paid,
  and the work runs again once Redis is back. After a call was paid, its
  result is written with retries (``workers.durable``).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, NoReturn

import redis
from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from pydantic import BaseModel, ValidationError

from workers import deliveries
from workers.app import app
from workers.call import IN_FLIGHT_ELSEWHERE, execute
from workers.durable import TRANSIENT
from workers.errors import TaskFailed
from workers.fanin.combine import FanInSpec, fan_in
from workers.fanin.results import PatternResult
from workers.fanin.voting import VoteBoard, canonical_json, normalize
from workers.hooks import NO_HOOKS, CallHooks
from workers.items import BatchOption, fail_item, finish_pattern_item, run_item, state_of
from workers.ledger import ItemState
from workers.models import CallRequest, Envelope, ErrorInfo
from workers.prefetch import BatchItem, prefetch
from workers.prefix_gate import PrefixOption, lead_returned, wait_for_lead
from workers.runtime import Runtime, get_runtime
from workers.validation import describe_validation_error

log = logging.getLogger(__name__)

# How long a task waits for Redis to come back before handing its message
# back anyway, and the pause before that last resort.
REDIS_PATIENCE_S = 120.0
REQUEUE_PAUSE_S = 2.0


class VoteOption(BaseModel):
    """What a voting sample knows of its vote."""

    id: str
    n: int
    normalize: str = "text"
    early_stop: bool = False


class TaskOptions(BaseModel):
    vote: VoteOption | None = None
    batch: BatchOption | None = None
    prefix: PrefixOption | None = None


# Redis away (or read-only during a failover): the work waits and goes back to the
# queue. Any other Redis error (a script's error, a bug) is a failure like any other.
REDIS_AWAY = (*TRANSIENT, redis.ReadOnlyError)

# Celery's own control flow, raised through a task on purpose: never an envelope.
CONTROL_FLOW = (Retry, Reject, Ignore)

# Results that are not ok yet not failures: nothing failed, nothing was spent in
# vain. A sample its vote no longer needed, a duplicate of an item that already
# ended, a call another worker is making, an item of a stopped batch.
NOT_FAILURES = frozenset(
    {"revoked", "duplicate", IN_FLIGHT_ELSEWHERE, "cancelled", "paused", "budget_exceeded"}
)

REVOKED = ErrorInfo(
    type="revoked",
    message="the vote was decided before this sample was sent; not sent, not paid for",
)


def _delivery(task: Task, runtime: Runtime) -> int:
    ttl = deliveries.ttl_s(runtime.settings.worker)
    return deliveries.count(runtime.store.redis, task.request.id or "eager", ttl)


def _requeue(task: Task, runtime: Runtime, exc: redis.RedisError) -> NoReturn:
    """Put this work back in the queue once Redis answers again.

    kombu records a delivered message as unacknowledged in a second step after
    popping it, so a message popped just as Redis went away may exist only in
    this worker's memory: handing it back with a reject would find nothing to
    restore. Re-publishing it (``retry``, same task id) keeps it, and the
    original is acknowledged only once the copy is safe in the queue.
    """
    log.warning("task %s: Redis unreachable (%s); waiting for it", task.request.id, exc)
    if wait_for_redis(runtime.redis, patience_s=REDIS_PATIENCE_S):
        try:
            raise task.retry(exc=exc, countdown=0, max_retries=None)
        except redis.RedisError:
            pass  # gone again: fall back to the unacknowledged copy
    time.sleep(REQUEUE_PAUSE_S)
    raise Reject(f"Redis unreachable: {exc}", requeue=True) from exc


def wait_for_redis(client: redis.Redis, *, patience_s: float) -> bool:
    deadline = time.monotonic() + patience_s
    delay = 0.2
    while time.monotonic() < deadline:
        try:
            if client.ping():
                return True
        except redis.RedisError:
            pass
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    return False


# TaskFailed is expected: Celery records the FAILURE and sends task-failed, but logs
# it at INFO without a traceback (Task.throws); chorus logs the failure itself.
@app.task(name="chorus.call", bind=True, throws=(TaskFailed,))
def call(
    self: Task, request: dict[str, Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Make one Messages API call; return its envelope (``ok: false`` on failure).

    ``options``: ``{"vote": {...}}`` for a voting sample (revoked, not sent,
    once its vote is decided); ``{"batch": {...}}`` for a batch item, whose
    result goes to the batch's ledger; ``{"prefix": {...}}`` for a call that
    shares a cached prefix: it leads, or waits for its lead (``workers.prefix_gate``).
    """
    runtime = get_runtime()
    try:
        opts = _options(options)
    except ValidationError as exc:
        # Not chorus's own payload: no batch to tell, and the call must not run
        # without the options it was sent with (a batch item outside its batch).
        info = ErrorInfo(type="invalid_request_error", message=describe_validation_error(exc))
        failed = Envelope.failure("invalid", info)
        return _reported(failed, failed.model_dump(mode="json"), in_batch=False)
    try:
        if opts.prefix is not None and not opts.prefix.lead:
            wait_for_lead(runtime.redis, opts.prefix.digest, runtime.settings.cache.lead_wait_s)
        envelope = _call(self, runtime, request, opts)
    except REDIS_AWAY as exc:
        _requeue(self, runtime, exc)
    except CONTROL_FLOW:
        raise
    except Exception as exc:
        envelope = _after_a_crash(self, runtime, request, opts, exc)
    if opts.prefix is not None and opts.prefix.lead:
        _lead_returned(runtime, opts.prefix.digest)
    try:
        if opts.batch is not None and not opts.batch.part:
            # The answer is in the batch's ledger and nobody reads this task's
            # return value: return a receipt, which Celery formats (for its log
            # and Flower's event) far more cheaply than the whole message.
            value = receipt(envelope, opts.batch)
        else:
            value = envelope.model_dump(mode="json")
    except Exception as exc:
        log.exception("task %s: its result could not be encoded", self.request.id)
        envelope = _crashed(exc, envelope.idempotency_key)
        value = envelope.model_dump(mode="json")
    return _reported(envelope, value, in_batch=opts.batch is not None)


def _lead_returned(runtime: Runtime, digest: str) -> None:
    """Let the calls that share this call's prefix go (``workers.prefix_gate``)."""
    try:
        lead_returned(runtime.redis, digest)
    except redis.RedisError:
        # They go anyway after CHORUS_CACHE__LEAD_WAIT_S: a wait, never a lost item.
        log.warning("prefix %s: its lead call returned but could not say so", digest)


def _options(options: dict[str, Any] | None) -> TaskOptions:
    """Raises pydantic's ValidationError for options that are not chorus's."""
    return TaskOptions.model_validate(options or {})


def _after_a_crash(
    task: Task, runtime: Runtime, request: Any, opts: TaskOptions, exc: Exception
) -> Envelope:
    """The result of a task whose logic raised ``exc``: never pending, never a lost answer.

    A complete answer already stored for this call (the crash came after it)
    is the result. Otherwise a failure naming the exception. A batch item ends
    with it (an item already ended stays as it was); if even that cannot be
    written, it is logged, and the task still reports.
    """
    log.exception("task %s raised %s; it ends as failed", task.request.id, type(exc).__name__)
    key = _key_of(request)
    envelope = _stored_answer(runtime, key) or _crashed(exc, key)
    if opts.batch is not None:
        try:
            fail_item(runtime.ledger, opts.batch, envelope)
        except Exception:
            log.exception("task %s: its item could not be ended failed", task.request.id)
    return envelope


def _stored_answer(runtime: Runtime, key: str) -> Envelope | None:
    if key == "invalid" or runtime.store is None:
        return None
    try:
        stored = runtime.store.stored(key)
    except Exception:
        return None
    return stored if stored is not None and stored.ok else None


def _key_of(request: Any) -> str:
    try:
        return CallRequest.model_validate(request).idempotency_key()
    except Exception:
        return "invalid"


def _crashed(exc: Exception, key: str) -> Envelope:
    """The envelope of a task whose logic raised: the error named, nothing pending."""
    info = ErrorInfo(
        type="internal_error",
        message=f"the worker raised {type(exc).__name__}: {exc}",
    )
    return Envelope.failure(key, info)


def _reported(
    outcome: Envelope | PatternResult, value: dict[str, Any], *, in_batch: bool
) -> dict[str, Any]:
    """``value``, returned; or raised inside a ``TaskFailed`` when ``outcome`` is a failure.

    A failure is then a failure to Celery and Flower (state FAILURE, a
    ``task-failed`` event) while a chord and a producer still receive
    ``value`` (``workers.backend``, ``orchestration.client.result_of``). A
    batch item is a failure exactly when the ledger counts it failed.
    """
    if outcome.ok or outcome.error is None:
        return value
    error = outcome.error
    if error.type in NOT_FAILURES or (in_batch and state_of(outcome)[0] != ItemState.FAILED):
        return value
    raise TaskFailed(f"{error.type}: {error.message}", value)


def _call(task: Task, runtime: Runtime, request: dict[str, Any], opts: TaskOptions) -> Envelope:
    try:
        parsed = CallRequest.model_validate(request)
    except ValidationError as exc:
        # Producers validate first; this is a payload from elsewhere.
        info = ErrorInfo(type="invalid_request_error", message=describe_validation_error(exc))
        invalid = Envelope.failure("invalid", info, delivery=_delivery(task, runtime))
        if opts.batch is not None:
            fail_item(runtime.ledger, opts.batch, invalid)
        return invalid

    # One round trip before the call: count this delivery, start the batch
    # item, claim the call and look for its stored result (workers.prefetch).
    key, owner = parsed.idempotency_key(), task.request.id or f"eager:{uuid.uuid4().hex}"
    batch = opts.batch
    first = prefetch(
        counter=runtime.store.redis,  # deliveries are counted beside the store (as fan-ins')
        store=runtime.store,
        call_key=key,
        owner=owner,
        deliveries_ttl_s=deliveries.ttl_s(runtime.settings.worker),
        ledger=runtime.ledger,
        item=None if batch is None else BatchItem(batch.id, batch.index, batch.again),
    )

    if first.delivery > runtime.settings.worker.max_deliveries:
        if first.look.claimed:
            runtime.store.release(key, owner)
        envelope = deliveries.dead_letter(task.request.id, key, first.delivery)
        if batch is not None:
            fail_item(runtime.ledger, batch, envelope)
        return envelope

    vote = opts.vote
    hooks = VoteHooks(VoteBoard(runtime.redis), vote.id) if vote and vote.early_stop else None
    time_limit_s = runtime.settings.worker.task_time_limit_s
    if batch is not None:
        outcome = run_item(
            parsed,
            batch,
            runtime.ledger,
            runtime.deps,
            time_limit_s=time_limit_s,
            owner=owner,
            prefetch=first,
            hooks=hooks,
        )
        envelope = outcome or Envelope.failure(
            key, ErrorInfo(type="duplicate", message="the item had already ended")
        )
    else:
        envelope = execute(
            parsed,
            runtime.deps,
            time_limit_s=time_limit_s,
            owner=owner,
            delivery=first.delivery,
            hooks=hooks or NO_HOOKS,
            look=first.look,
        )
    if hooks is not None and vote is not None and envelope.ok:
        # A structured answer votes with its value's canonical JSON (a per-field vote
        # stops early only when whole answers already agree).
        said = envelope.text if envelope.data is None else canonical_json(envelope.data)
        hooks.board.record(vote.id, vote.n, normalize(said, vote.normalize))
    return envelope


class VoteHooks(CallHooks):
    """A voting sample's hooks: not sent once its vote is decided (early stop)."""

    def __init__(self, board: VoteBoard, vote_id: str) -> None:
        self.board = board
        self._vote_id = vote_id

    def before_reserve(self) -> ErrorInfo | None:
        return REVOKED if self.board.decided(self._vote_id) else None

    before_send = before_reserve


RECEIPT_TEXT_CHARS = 80


def receipt(envelope: Envelope, option: BatchOption) -> dict[str, Any]:
    """What a batch item's task returns: where its result went, and its gist."""
    text = envelope.text
    return {
        "ok": envelope.ok,
        "outcome": envelope.outcome.value,
        "batch": option.id,
        "item": option.item,
        "text": text if len(text) <= RECEIPT_TEXT_CHARS else text[:RECEIPT_TEXT_CHARS] + "...",
        "error": None if envelope.error is None else envelope.error.type,
        "attempts": envelope.attempts,
        "from_store": envelope.from_store,
        "output_tokens": envelope.usage.output_tokens,
    }


@app.task(name="chorus.fan_in", bind=True, throws=(TaskFailed,))
def fan_in_task(
    self: Task, results: list[Any], spec: dict[str, Any], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Combine a chord's branch results into one pattern result.

    With ``{"batch": ...}`` in ``options`` the pattern is one batch item
    (``--vote``): its result ends that item in the ledger.
    """
    runtime = get_runtime()
    try:
        opts = _options(options)
    except ValidationError:
        opts = TaskOptions()
    try:
        result = _fan_in(self, runtime, results, spec, opts)
    except REDIS_AWAY as exc:
        _requeue(self, runtime, exc)
    except CONTROL_FLOW:
        raise
    except Exception as exc:
        log.exception("task %s raised %s; it ends as failed", self.request.id, type(exc).__name__)
        crashed = _crashed(exc, "fan-in")
        kind = spec.get("kind") if spec.get("kind") in ("section", "vote", "fanout") else "section"
        result = PatternResult(kind=kind, ok=False, error=crashed.error, total=len(results))
        if opts.batch is not None:
            try:
                finish_pattern_item(runtime.ledger, opts.batch, result)
            except Exception:
                log.exception("task %s: its item could not be ended failed", self.request.id)
    return _reported(result, result.model_dump(mode="json"), in_batch=opts.batch is not None)


def _fan_in(
    task: Task, runtime: Runtime, results: list[Any], spec: dict[str, Any], opts: TaskOptions
) -> PatternResult:
    delivery = _delivery(task, runtime)
    parsed = FanInSpec.model_validate(spec)

    def make_call(request: CallRequest) -> Envelope:
        if delivery > runtime.settings.worker.max_deliveries:
            return deliveries.dead_letter(task.request.id, request.idempotency_key(), delivery)
        return execute(
            request,
            runtime.deps,
            time_limit_s=runtime.settings.worker.task_time_limit_s,
            owner=task.request.id,
            delivery=delivery,
        )

    result = fan_in(results, parsed, make_call)
    if opts.batch is not None:
        finish_pattern_item(runtime.ledger, opts.batch, result)
    return result
