"""A batch item's life on a worker: start it, guard it, watch it wait, end it in the ledger.

The call itself is :func:`workers.call.execute`; around it:

- **start**: a duplicate of an item that already ended does nothing; an item of
  a cancelled, paused or out-of-budget batch is marked so and never sent.
- **guard**: just before sending, the batch may have been cancelled or paused
  meanwhile; with a budget, the call's worst case (estimated input,
  ``max_tokens`` output, at list price) is reserved first, so the spent plus
  the reserved never passes ``--max-cost``.
- **observe**: waits on the rate limit and before retries show in the
  ledger's counts (waiting, retrying), with their reasons.
- **finish**: the result and the call's spend are recorded once; a 401, a spend
  limit or an organisation on hold pauses the whole batch with one message
  instead of failing every item.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel

from workers.call import (
    IN_FLIGHT_ELSEWHERE,
    CallDeps,
    Guard,
    Observer,
    Phase,
    execute,
    release_quietly,
)
from workers.durable import retrying
from workers.errors import blocks_the_account
from workers.fanin.results import PatternResult
from workers.ledger import ItemState, Ledger, micro_usd, result_record
from workers.models import CallRequest, Envelope, ErrorInfo
from workers.redisio import Command, run_together

# Without a budget, a cancel or a pause reaches a call that sends within this
# long of its start through the start check alone: one Redis read saved.
RECHECK_AFTER_S = 1.0

STOPPED = {
    "gone": ErrorInfo(type="cancelled", message="the batch no longer exists; not sent"),
    "cancelled": ErrorInfo(
        type="cancelled", message="the batch was cancelled before this item was sent"
    ),
    "budget": ErrorInfo(
        type="budget_exceeded",
        message="the batch's --max-cost was reached before this item was sent; not sent",
    ),
    "paused": ErrorInfo(
        type="paused",
        message=(
            "the batch is paused (the API refused the key, or the account cannot make calls "
            "now); `chorus resume` sends it again"
        ),
    ),
}
# The item state each outcome ends in.
STATE_FOR_ERROR = {
    "cancelled": ItemState.CANCELLED,
    "budget_exceeded": ItemState.SKIPPED_BUDGET,
    "paused": ItemState.PAUSED,
}


class BatchOption(BaseModel):
    """Which batch item a task works on. ``part``: one call of a multi-call item (a vote).

    ``again``: sent again by ``chorus retry``; a stored answer that is not
    complete is asked again instead of returned.
    """

    id: str
    index: int
    item: str
    part: bool = False
    again: bool = False


class LedgerObserver(Observer):
    def __init__(self, ledger: Ledger, option: BatchOption) -> None:
        self._ledger = ledger
        self._option = option
        self._waiting = False

    def waiting(self, kind: Literal["rate_limit", "retry"], seconds: float, reason: str) -> None:
        state = ItemState.WAITING if kind == "rate_limit" else ItemState.RETRYING
        self._ledger.move(self._option.id, self._option.index, state, reason, seconds)
        self._waiting = True

    def sending(self) -> None:
        if self._waiting:
            self._ledger.move(self._option.id, self._option.index, ItemState.RUNNING)
            self._waiting = False


def worst_case_micros(request: CallRequest, deps: CallDeps) -> int:
    """The most the call can cost, micro-USD, priced as its answer would be."""
    price = deps.price_for(request.model)
    if price is None:
        return 0  # unknown price: a batch with a budget refuses such items at submit
    worst = request.worst_case_tokens(deps.estimate_input_tokens(request))
    return micro_usd(price.cost_usd(worst))


def state_of(outcome: Envelope | PatternResult) -> tuple[ItemState, str]:
    """(item state, error type for the ledger's error counts)."""
    if outcome.ok:
        return ItemState.COMPLETE, ""
    if outcome.error is not None and pause_reason(outcome.error) is not None:
        return ItemState.PAUSED, ""
    error_type = outcome.error.type if outcome.error is not None else "unknown_error"
    state = STATE_FOR_ERROR.get(error_type, ItemState.FAILED)
    return state, (error_type if state == ItemState.FAILED else "")


def pause_reason(error: ErrorInfo) -> str | None:
    """What to tell the user when ``error`` means no call can succeed until they act.

    A refused key (401), a spend limit reached (its ``error_code``, or the 400
    of a limit set in the Console), the organisation on hold: every other item
    would fail the same way, so the batch pauses instead, and resumes when asked.
    """
    if error.type == "authentication_error":
        return "the API refused the key; fix ANTHROPIC_API_KEY on the workers"
    if blocks_the_account(error.status, error.code, error.message):
        limit = error.code or "a spend limit you set"
        return (
            f"the account cannot make calls now ({limit}); raise the limit in the Console "
            "(or wait for it to reset)"
        )
    return None


def pause_message(outcome: Envelope | PatternResult, batch_id: str) -> str:
    error = outcome.error
    why = pause_reason(error) if error is not None else None
    if error is None or why is None:
        return ""
    request = f" (request {error.request_id})" if error.request_id else ""
    status = f"{error.status} " if error.status else ""
    return (
        f"{why}: {status}{error.type}: {error.message}{request}. "
        f"Batch paused; then `chorus resume {batch_id}`."
    )


def run_item(
    request: CallRequest,
    option: BatchOption,
    ledger: Ledger,
    deps: CallDeps,
    *,
    time_limit_s: float,
    owner: str,
    delivery: int,
    extra_guard: Guard | None = None,
    started: tuple[str, str] | None = None,
    looked: tuple[Envelope | None, bool] | None = None,
) -> Envelope | None:
    """Run one call of a batch item; None when the item needs nothing (already ended).

    ``started`` and ``looked``: the replies of :meth:`Ledger.start_command` and
    :meth:`ResultStore.look_commands`, when the caller sent them with its own
    first commands (one round trip); without them they are sent here.
    """
    verdict, detail = started or ledger.start(option.id, option.index)
    if verdict in ("done", "gone", "stop") and looked is not None and looked[1]:
        # The caller claimed the call with its first look: nothing will be sent.
        release_quietly(deps, request.key(), owner)
    if verdict in ("done", "gone"):
        return None
    if verdict == "stop":
        stopped = Envelope.failure(request.key(), STOPPED.get(detail, STOPPED["cancelled"]))
        if not option.part:
            _end(ledger, option, stopped, call=None, reserved_micros=0)
        return stopped

    has_budget = detail not in ("", "0")
    began = time.monotonic()
    reserved = 0

    def guard(phase: Phase) -> ErrorInfo | None:
        nonlocal reserved
        if extra_guard is not None and (stop := extra_guard(phase)) is not None:
            return stop
        if phase != "send":
            return None
        if has_budget and reserved == 0:
            worst = worst_case_micros(request, deps)
            answer = ledger.reserve_budget(option.id, worst)
            if answer != "ok":
                return STOPPED.get(answer, STOPPED["cancelled"])
            reserved = worst
        elif time.monotonic() - began > RECHECK_AFTER_S:
            reason = ledger.stop_reason(option.id)
            if reason is not None:
                return STOPPED.get(reason, STOPPED["cancelled"])
        return None

    def writes(envelope: Envelope) -> list[Command]:
        if envelope.error is not None and envelope.error.type == IN_FLIGHT_ELSEWHERE:
            # A duplicate of a call another worker is still making: that worker
            # ends the item; ending it here (as failed) would discard its answer.
            return []
        if option.part:
            return ledger.spend_commands(option.id, envelope, reserved)
        return [_end_command(ledger, option, envelope, call=envelope, reserved_micros=reserved)]

    try:
        return execute(
            request,
            deps,
            time_limit_s=time_limit_s,
            owner=owner,
            delivery=delivery,
            guard=guard,
            observer=LedgerObserver(ledger, option),
            looked=looked,
            writes=writes,
            ask_again=option.again,
        )
    except Exception:
        # A crash (the task boundary ends the item): the budget reserved for this
        # call goes back, or the batch's --max-cost would stop it early.
        if reserved:
            release = ledger.spend_commands(option.id, None, reserved)
            retrying(lambda: run_together(release), what="releasing a budget reservation")
        raise


def fail_item(ledger: Ledger, option: BatchOption, envelope: Envelope) -> None:
    """End an item with ``envelope``, its own call's spend not counted (an item already
    ended stays as it was).

    For a message delivered too often, a payload that is not a request, a crash
    (with the answer stored before it, if there was one).
    """
    if not option.part:
        _end(ledger, option, envelope, call=None, reserved_micros=0)


def finish_pattern_item(ledger: Ledger, option: BatchOption, result: PatternResult) -> None:
    """End a multi-call item (a vote) with its combined result and its fan-in call's spend."""
    _end(ledger, option, result, call=result.fan_in_call, reserved_micros=0)


def _end(
    ledger: Ledger,
    option: BatchOption,
    outcome: Envelope | PatternResult,
    *,
    call: Envelope | None,
    reserved_micros: int,
) -> None:
    command = _end_command(ledger, option, outcome, call=call, reserved_micros=reserved_micros)
    retrying(lambda: run_together([command]), what="ending a batch item")


def _end_command(
    ledger: Ledger,
    option: BatchOption,
    outcome: Envelope | PatternResult,
    *,
    call: Envelope | None,
    reserved_micros: int,
) -> Command:
    state, error_type = state_of(outcome)
    return ledger.finish_command(
        option.id,
        option.index,
        result_record(option.item, outcome),
        state=state,
        error_type=error_type,
        call=call,
        reserved_micros=reserved_micros,
        pause_message=pause_message(outcome, option.id),
    )
