"""A batch item's life on a worker: start it, hold it to its batch, end it in the ledger.

The call itself is :func:`workers.call.execute`; around it:

- **start**: a duplicate of an item that already ended does nothing; an item of
  a cancelled, paused or out-of-budget batch is marked so and never sent.
- **hooks** (:class:`ItemHooks`, ``workers.hooks``): just before sending, the
  batch may have been cancelled or paused meanwhile; with a budget, the
  call's worst case (estimated input, ``max_tokens`` output, at list price)
  is reserved first, so the spent plus the reserved never passes
  ``--max-cost``. Waits on the rate limit and before retries show in the
  ledger's counts (waiting, retrying), with their reasons.
- **finish**: the result and the call's spend are recorded once, in the round
  trip that stores the result; a 401, a spend limit or an organisation on
  hold pauses the whole batch with one message instead of failing every item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pydantic import BaseModel

from workers.call import IN_FLIGHT_ELSEWHERE, CallDeps, execute, release_quietly
from workers.durable import retrying
from workers.errors import blocks_the_account
from workers.fanin.results import PatternResult
from workers.hooks import CallHooks, WaitKind, chain
from workers.ledger import ItemState, Ledger, micro_usd, result_record
from workers.models import CallRequest, Envelope, ErrorInfo
from workers.prefetch import Prefetch
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


@dataclass
class ItemHooks(CallHooks):
    """A batch item's points in its call's life (``workers.hooks``).

    Before sending: stop if the batch was cancelled, paused or ran out of
    budget meanwhile (with a budget, reserve the call's worst case first).
    While waiting: the item's state in the ledger says so. At the end: the
    item ends in the ledger (a vote's sample: its spend only), in the round
    trip that stores the call's result. On a crash: the reservation goes back.
    """

    ledger: Ledger
    option: BatchOption
    request: CallRequest
    deps: CallDeps
    budget: bool  # the batch has a --max-cost
    clock: Callable[[], float] = time.monotonic
    reserved_micros: int = field(default=0, init=False)
    _waiting: bool = field(default=False, init=False)
    _began: float = field(init=False)

    def __post_init__(self) -> None:
        self._began = self.clock()

    def before_send(self) -> ErrorInfo | None:
        option = self.option
        if self.budget and self.reserved_micros == 0:
            worst = worst_case_micros(self.request, self.deps)
            answer = self.ledger.reserve_budget(option.id, worst)
            if answer != "ok":
                return STOPPED.get(answer, STOPPED["cancelled"])
            self.reserved_micros = worst
        elif self.clock() - self._began > RECHECK_AFTER_S:
            reason = self.ledger.stop_reason(option.id)
            if reason is not None:
                return STOPPED.get(reason, STOPPED["cancelled"])
        return None

    def waiting(self, kind: WaitKind, seconds: float, reason: str) -> None:
        state = ItemState.WAITING if kind == "rate_limit" else ItemState.RETRYING
        self.ledger.move(self.option.id, self.option.index, state, reason, seconds)
        self._waiting = True

    def sending(self) -> None:
        if self._waiting:
            self.ledger.move(self.option.id, self.option.index, ItemState.RUNNING)
            self._waiting = False

    def end_commands(self, envelope: Envelope) -> list[Command]:
        if envelope.error is not None and envelope.error.type == IN_FLIGHT_ELSEWHERE:
            # A duplicate of a call another worker is still making: that worker
            # ends the item; ending it here (as failed) would discard its answer.
            return []
        option, reserved = self.option, self.reserved_micros
        if option.part:
            return self.ledger.spend_commands(option.id, envelope, reserved)
        return [end_command(self.ledger, option, envelope, call=envelope, reserved_micros=reserved)]

    def crashed(self) -> None:
        # The task boundary ends the item; the budget reserved for this call goes
        # back, or the batch's --max-cost would stop it early.
        if self.reserved_micros:
            release = self.ledger.spend_commands(self.option.id, None, self.reserved_micros)
            retrying(lambda: run_together(release), what="releasing a budget reservation")


def worst_case_micros(request: CallRequest, deps: CallDeps, *, batch: bool = False) -> int:
    """The most the call can cost, micro-USD, priced as its answer would be: ``batch``,
    through the Message Batches API, at its discount."""
    price = deps.price_for(request.model)
    if price is None:
        return 0  # unknown price: a batch with a budget refuses such items at submit
    worst = request.worst_case_tokens(deps.estimate_input_tokens(request))
    return micro_usd(price.cost_usd(replace(worst, batch=batch)))


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
    prefetch: Prefetch | None = None,
    hooks: CallHooks | None = None,
) -> Envelope | None:
    """Run one call of a batch item; None when the item needs nothing (already ended).

    ``prefetch``: the task's first round trip, which started the item and
    looked for the call's result (``workers.prefetch``); without it the item
    is started here. ``hooks``: the caller's own (a vote's), run before the item's.
    """
    start = (prefetch.start if prefetch else None) or ledger.start(option.id, option.index)
    look = prefetch.look if prefetch else None
    verdict, detail = start
    if verdict in ("done", "gone", "stop") and look is not None and look.claimed:
        # The caller claimed the call with its first look: nothing will be sent.
        release_quietly(deps, request.idempotency_key(), owner)
    if verdict in ("done", "gone"):
        return None
    if verdict == "stop":
        stopped = Envelope.failure(
            request.idempotency_key(), STOPPED.get(detail, STOPPED["cancelled"])
        )
        if not option.part:
            _end(ledger, option, stopped, call=None, reserved_micros=0)
        return stopped

    item_hooks = ItemHooks(ledger, option, request, deps, budget=detail not in ("", "0"))
    return execute(
        request,
        deps,
        time_limit_s=time_limit_s,
        owner=owner,
        delivery=prefetch.delivery if prefetch else 1,
        hooks=chain(hooks, item_hooks),
        look=look,
        ask_again=option.again,
    )


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
    command = end_command(ledger, option, outcome, call=call, reserved_micros=reserved_micros)
    retrying(lambda: run_together([command]), what="ending a batch item")


def end_command(
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
