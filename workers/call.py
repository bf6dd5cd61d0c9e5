"""One Messages API call, start to finish: the logic behind the ``chorus.call`` task.

The steps, each a place where money or work could be lost:

1. A stored result for the same content address ends the call at once: a
   redelivered message or a resubmitted item is not paid for twice.
2. A claim on the address makes a concurrent duplicate wait for the first
   one's answer instead of making its own call.
3. Each attempt reserves its cost with the cluster-wide rate limiter and
   sleeps exactly the wait it is given.
4. The SDK makes one attempt (``max_retries=0``); a transient failure is
   retried here with full-jitter backoff or the server's ``retry-after``, a
   429 also holds back every other worker through the limiter's cooldown. A
   turn a server tool paused (``pause_turn``) is sent back as it is, up to
   ``max_continuations`` times, each an attempt through the limiter.
5. The reservation is settled to the reported usage, the answer stored
   (complete or not: it was paid for) and the claim released, with the
   end commands of the caller's hooks (``workers.hooks``), in one round trip.

Nothing here raises for an expected failure: the result is always an
:class:`~workers.models.Envelope`. A message that came back gets its outcome
(``workers.outcomes``): ``ok`` only for a complete answer; a call that could
not be made has ``ok: false`` and the error's type, status and request id.
Either way the worker's log says so in one line (:func:`log_unless_complete`):
a WARNING for a failed call, an INFO line for an answer that is not complete.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from config.prices import ModelPrice
from workers import structured
from workers.durable import TRANSIENT, retrying
from workers.errors import (
    ChorusError,
    DeadlineExceeded,
    LimiterUnavailable,
    ProviderError,
    RateLimited,
)
from workers.hooks import NO_HOOKS, CallHooks
from workers.models import CallRequest, Envelope, ErrorInfo, Usage, sum_api_usage
from workers.outcomes import Outcome, classify
from workers.provider import ProviderReply
from workers.ratelimit.backend import Cost, RateLimiter, Reservation
from workers.redisio import Command, run_together
from workers.retry import RetryPolicy
from workers.store import Look, ResultStore

log = logging.getLogger(__name__)

# How often a duplicate looks for the first caller's result.
CLAIM_POLL_S = 0.2
# A streamed generation that breaks off part way is sent again this many times:
# each broken one may have been billed for what it had generated.
MAX_BROKEN_STREAMS = 1
# How long a call waits for the limiter's Redis to answer again before it fails
# (retryable): a restart or a failover, not an outage.
LIMITER_PATIENCE_S = 120.0
# The error of a duplicate that gave up waiting on a live holder: not an
# outcome of the call, which the holder will still deliver.
IN_FLIGHT_ELSEWHERE = "in_flight_elsewhere"


class Sender(Protocol):
    def send(
        self, request: CallRequest, *, timeout_s: float, idempotency_key: str
    ) -> ProviderReply: ...


@dataclass
class CallDeps:
    """Everything a call needs, injected so the logic runs without a broker."""

    provider: Sender
    limiter: RateLimiter
    store: ResultStore | None
    policy: RetryPolicy
    bucket_id: Callable[[str], str]
    estimate_input_tokens: Callable[[CallRequest], int]
    request_timeout_s: float = 600.0
    # How many times a turn a server tool paused (pause_turn) is sent back.
    max_continuations: int = 5
    price_for: Callable[[str], ModelPrice | None] = lambda model: None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class _Progress:
    started: float
    deadline: float
    attempts: int = 0
    waited_s: float = 0.0
    latency_ms: float = 0.0
    # The successful attempt's settlement, sent with the writes that end the call.
    settle: tuple[Reservation, Cost, Mapping[str, str]] | None = None
    # Streams that broke off part way, and what they may have cost.
    broken_streams: int = 0
    maybe_billed_usd: float = 0.0
    # The caller's hooks stopped the call (a decided vote, a cancelled or
    # paused batch, a spent budget): a decision, not a failure of the call.
    stopped: bool = False


def execute(
    request: CallRequest,
    deps: CallDeps,
    *,
    time_limit_s: float,
    owner: str | None = None,
    delivery: int = 1,
    hooks: CallHooks = NO_HOOKS,
    look: Look | None = None,
    ask_again: bool = False,
) -> Envelope:
    """Make the call ``request`` describes; never raises for a failed call.

    ``owner``: the task id (the claim's holder, named in the log line).
    ``delivery``: which delivery of the task's message this is (1 the first).
    ``hooks``: the caller's points in the call's life (``workers.hooks``); their
    end commands go with the call's own at the end, retried until Redis
    answers, as the result's own write is.
    ``look``: the caller already looked for the stored result and took the
    claim in its own first round trip (``workers.prefetch``).
    ``ask_again``: a stored answer that is not complete is not the result; the
    call is made again (``chorus retry`` of a truncated or refused item).

    Raises:
        Only what a bug or the caller's hooks raise; the hooks' ``crashed``
        point runs first, and the claim is given up.
    """
    key = request.idempotency_key()
    started = deps.clock()
    progress = _Progress(started=started, deadline=started + time_limit_s)
    task_id = owner
    owner = owner or f"{threading.get_ident()}:{started}"
    store = deps.store

    if store is not None:
        stored, claimed = _stored_or_claimed(key, deps, progress, owner, look, ask_again)
        answer: Envelope | None = None
        if stored is not None:
            answer = stored.model_copy(
                update={
                    "from_store": True,
                    "attempts": 0,
                    "delivery": delivery,
                    "elapsed_ms": (deps.clock() - started) * 1000.0,
                    "waited_ms": progress.waited_s * 1000.0,
                }
            )
        elif not claimed:
            # Another worker is still making this very call (its claim is a
            # lease: it is alive). Paying for it again would be the one thing
            # worse than giving up; the holder will deliver the answer.
            busy = ErrorInfo(
                type=IN_FLIGHT_ELSEWHERE,
                message=(
                    "another worker is making this same call and did not finish within "
                    "this task's time limit; its answer will be the result"
                ),
                retryable=True,
            )
            answer = Envelope.failure(
                key, busy, delivery=delivery, waited_ms=progress.waited_s * 1000.0
            )
        if answer is not None:
            own = hooks.end_commands(answer)
            if own:
                retrying(lambda: run_together(own), what="recording a stored result")
            return answer
    try:
        envelope = _attempt_until_done(request, key, deps, progress, hooks)
    except Exception:
        release_quietly(deps, key, owner)  # we hold the claim: give it up at once
        hooks.crashed()  # and the hooks what they hold (a batch item's budget)
        raise
    except BaseException:  # shutting down: only the claim, at once
        release_quietly(deps, key, owner)
        raise
    envelope = envelope.model_copy(
        update={
            "attempts": progress.attempts,
            "delivery": delivery,
            "elapsed_ms": (deps.clock() - started) * 1000.0,
            "waited_ms": progress.waited_s * 1000.0,
            "latency_ms": progress.latency_ms,
            "maybe_billed_usd": progress.maybe_billed_usd,
        }
    )
    if not progress.stopped:
        # Logged before the answer is stored: whoever sees the item end finds
        # its line in the log already.
        log_unless_complete(envelope, request.model, task_id)
    _end(key, owner, envelope, deps, progress, hooks)
    return envelope


# A failure's message is cut here in the log line (the envelope keeps it whole).
LOGGED_MESSAGE_CHARS = 500


def log_unless_complete(envelope: Envelope, model: str, task_id: str | None = None) -> None:
    """Log one line for a call that did not end with a complete answer; nothing otherwise.

    A failed call (outcome ``failed``: an API error such as a 400, a timeout,
    a request the rate limit can never admit) is a WARNING naming the error's
    type, HTTP status, ``error_code`` and request id; an answer that is not
    complete (``truncated``, ``refused``, ...) is an INFO line naming its
    outcome. Both end with the task id, when given, and the model. The
    message is on one line, cut at ``LOGGED_MESSAGE_CHARS``; the API key is
    never in it (docs/ARCHITECTURE.md, "The key stays with the worker": the
    SDK's errors do not carry it).
    """
    error = envelope.error
    if envelope.ok or error is None:
        return
    message = " ".join(error.message.split())
    if len(message) > LOGGED_MESSAGE_CHARS:
        message = message[:LOGGED_MESSAGE_CHARS] + "..."
    attempts = f"{envelope.attempts} attempt{'' if envelope.attempts == 1 else 's'}"
    where = f"[task {task_id}, {model}]" if task_id else f"[{model}]"
    if envelope.outcome is Outcome.FAILED:
        details = [
            f"HTTP {error.status}" if error.status else "",
            error.code or "",
            f"request id {error.request_id}" if error.request_id else "",
        ]
        said = ", ".join(d for d in details if d)
        log.warning(
            "call failed after %s: %s%s: %s %s",
            attempts,
            error.type,
            f" ({said})" if said else "",
            message,
            where,
        )
    else:
        log.info("call ended %s after %s: %s %s", envelope.outcome.value, attempts, message, where)


def release_quietly(deps: CallDeps, key: str, owner: str) -> None:
    """Give up a claim held on ``key``; a Redis blip is ignored."""
    if deps.store is not None:
        # An unreleased claim only expires: never worth failing (or hiding an error) over.
        with contextlib.suppress(*TRANSIENT):
            deps.store.release(key, owner)


def _end(
    key: str,
    owner: str,
    envelope: Envelope,
    deps: CallDeps,
    progress: _Progress,
    hooks: CallHooks,
) -> None:
    """Settle, store the result, release the claim, and the hooks' end commands: one round trip.

    The result is stored before the claim is released, so a duplicate that
    takes the claim next finds the answer. If Redis is away, the settlement is
    dropped (the buckets stay conservative: it only gives back) and the rest,
    all safe to repeat, is retried until Redis answers: this call was paid for.
    """
    settle: list[Command] = []
    if progress.settle is not None:
        command = deps.limiter.settle_command(*progress.settle)
        if command is None:
            _ignore_limiter_outage(deps.limiter.settle, *progress.settle)
        else:
            settle.append(command)
    durable: list[Command] = []
    if deps.store is not None:
        if envelope.outcome.answered:
            # Every answer paid for is kept, complete or not: a redelivery or an
            # identical request is answered from here, never paid again.
            durable.append(deps.store.put_command(envelope))
        durable.append(deps.store.release_command(key, owner))
    durable += hooks.end_commands(envelope)
    try:
        run_together(settle + durable)
    except TRANSIENT:
        retrying(lambda: run_together(durable), what="storing a result")


def _stored_or_claimed(
    key: str,
    deps: CallDeps,
    progress: _Progress,
    owner: str,
    look: Look | None,
    ask_again: bool,
) -> Look:
    """(the stored result, False) or (None, True) once this caller holds the claim.

    (None, False): another caller held the claim past this task's deadline.
    """
    assert deps.store is not None
    while True:
        stored, claimed = look or deps.store.look(key, owner, ask_again=ask_again)
        look = None
        if stored is not None or claimed:
            return Look(stored, claimed)
        # Another worker is making this exact call now: wait for its answer.
        # If it dies, its claim lapses (a lease) and this loop takes over.
        if deps.clock() + CLAIM_POLL_S > progress.deadline:
            return Look(None, False)
        _wait(deps, progress, CLAIM_POLL_S)


def _attempt_until_done(
    request: CallRequest,
    key: str,
    deps: CallDeps,
    progress: _Progress,
    hooks: CallHooks,
) -> Envelope:
    bucket_id = deps.bucket_id(request.model)
    sending = request
    cost = Cost(1, deps.estimate_input_tokens(request), request.max_tokens)
    limiter_failures = 0
    limiter_down_since: float | None = None
    continuations = 0
    # The reply so far of a turn a server tool paused (pause_turn).
    turn: dict[str, Any] | None = None
    # A structured answer that was invalid is asked again (workers.structured):
    # the conversation so far, and the usage of the answers before this one.
    conversation = request
    reasks = 0
    asked_before: dict[str, Any] = {}
    first_usage: dict[str, Any] | None = None
    while True:
        if (stop := hooks.before_reserve()) is not None:
            progress.stopped = True
            return Envelope.failure(key, stop)
        try:
            reservation = _reserve(deps, progress, bucket_id, cost, hooks)
        except LimiterUnavailable as exc:
            # Fail closed: never send unthrottled. Back off and ask again, for as
            # long as a Redis restart or failover takes (not a number of
            # attempts: those pass in a second at a short backoff).
            limiter_failures += 1
            now = deps.clock()
            limiter_down_since = now if limiter_down_since is None else limiter_down_since
            wait = deps.policy.backoff_s(limiter_failures, deps.rng)
            patience_left = LIMITER_PATIENCE_S - (now - limiter_down_since)
            if wait > patience_left or not _fits(deps, progress, wait):
                return _failed(key, exc)
            _wait(deps, progress, wait)
            continue
        except ChorusError as exc:  # CostExceedsCapacity, DeadlineExceeded
            return _failed(key, exc)
        limiter_failures, limiter_down_since = 0, None

        if (stop := hooks.before_send()) is not None:
            # Stopped while waiting for its slot: the slot goes back unused.
            _settle_failed(deps, reservation, refund_all=True)
            progress.stopped = True
            return Envelope.failure(key, stop)
        hooks.sending()
        progress.attempts += 1
        timeout_s = min(deps.request_timeout_s, max(0.001, progress.deadline - deps.clock()))
        try:
            reply = deps.provider.send(sending, timeout_s=timeout_s, idempotency_key=key)
        except ProviderError as exc:
            _settle_failed(deps, reservation)
            if isinstance(exc, RateLimited) and exc.retry_after_s:
                _ignore_limiter_outage(deps.limiter.cooldown, bucket_id, exc.retry_after_s)
            if exc.partial_usage is not None:
                # A long generation broke off part way: what it generated may
                # be billed, so it is counted, and it is tried once more at most.
                progress.broken_streams += 1
                progress.maybe_billed_usd += _price(deps, request.model, exc.partial_usage)
                if progress.broken_streams > MAX_BROKEN_STREAMS:
                    return _failed(key, exc)
            retry_in = deps.policy.wait_s(exc, progress.attempts, deps.rng)
            if retry_in is None:
                return _failed(key, exc)
            if not _fits(deps, progress, retry_in):
                return _failed(key, DeadlineExceeded(f"{exc.message}; no time left to retry"), exc)
            hooks.waiting("retry", retry_in, exc.type)
            _wait(deps, progress, retry_in)
            continue

        progress.latency_ms = reply.latency_ms
        raw_usage = reply.message.get("usage") or {}
        used = Cost(
            1,
            int(raw_usage.get("input_tokens") or 0)
            + int(raw_usage.get("cache_creation_input_tokens") or 0),
            int(raw_usage.get("output_tokens") or 0),
        )
        turn = reply.message if turn is None else _continued_turn(turn, reply.message)
        if turn.get("stop_reason") == "pause_turn" and continuations < deps.max_continuations:
            # A server tool paused the turn: send it back as it is, and the
            # model goes on (platform.claude.com/docs, "pause_turn"). Each
            # continuation is an attempt of its own, through the limiter.
            _ignore_limiter_outage(deps.limiter.settle, reservation, used, reply.limit_headers)
            continuations += 1
            sending = conversation.continued(turn["content"])
            cost = Cost(1, deps.estimate_input_tokens(sending), sending.max_tokens)
            continue
        if request.structured is not None:
            reading, turn = read_structured(request, turn, asked_before)
            first_usage = first_usage or dict(turn.get("usage") or {})
            if (
                reading is not None
                and not reading.valid
                and reasks < request.structured.reask
                and hooks.before_reserve() is None
            ):
                # Invalid: the answer and the validator's message go back, and the
                # model answers again. Each re-ask is an attempt through the limiter.
                _ignore_limiter_outage(deps.limiter.settle, reservation, used, reply.limit_headers)
                assert reading.problem is not None and request.schema_method is not None
                reasks += 1
                asked_before = dict(turn.get("usage") or {})
                conversation = conversation.reasked(
                    structured.reask_turns(turn, reading.problem, request.schema_method)
                )
                sending, turn, continuations = conversation, None, 0
                cost = Cost(1, deps.estimate_input_tokens(sending), sending.max_tokens)
                continue
            envelope = structured_envelope(
                key, turn, request, reading, reasks, first_usage, deps.price_for
            )
        else:
            envelope = answered(key, turn, request.max_tokens, deps.price_for)
        # Settled by _end, in the round trip that stores the result.
        progress.settle = (reservation, used, reply.limit_headers)
        return envelope


def read_structured(
    request: CallRequest, turn: dict[str, Any], asked_before: dict[str, Any]
) -> tuple[structured.Reading | None, dict[str, Any]]:
    """The answer read against the schema (None when the call did not end complete,
    which is not re-asked: a cut-off answer needs a larger max_tokens, not a second
    try), and the turn with the usage of every call so far."""
    assert request.structured is not None and request.schema_method is not None
    if asked_before:
        turn = {**turn, "usage": sum_api_usage(asked_before, turn.get("usage") or {})}
    outcome, _ = classify(turn, request.max_tokens)
    if outcome is not Outcome.COMPLETE:
        return None, turn
    return structured.read(turn, request.structured.json_schema, request.schema_method), turn


def structured_envelope(
    key: str,
    turn: dict[str, Any],
    request: CallRequest,
    reading: structured.Reading | None,
    reasks: int,
    first_usage: dict[str, Any] | None,
    price_for: Callable[[str], ModelPrice | None],
    *,
    advice: str = "raise --reask, or loosen the schema",
) -> Envelope:
    """The envelope of a structured call: ``data`` when valid, ``invalid_output`` when the
    answer stayed invalid (its error ending with ``advice``), the re-asks counted and
    their cost apart."""
    envelope = answered(key, turn, request.max_tokens, price_for)
    extra: dict[str, Any] = {"reasks": reasks}
    model = turn.get("model")
    price = price_for(model) if isinstance(model, str) else None
    if reasks and price is not None and envelope.cost_usd is not None and first_usage:
        first = price.cost_usd(Usage.from_api(first_usage).tokens())
        extra["reask_cost_usd"] = max(0.0, envelope.cost_usd - first)
    if reading is None:
        if envelope.error is not None and envelope.outcome is Outcome.TRUNCATED:
            # A structured answer cut short is not JSON: asking again would cut it again.
            why = envelope.error.message + "; a structured answer cut short is not valid JSON"
            extra["error"] = envelope.error.model_copy(update={"message": why})
    elif reading.valid:
        extra["data"] = reading.data
    else:
        after = f" after {reasks} re-ask{'' if reasks == 1 else 's'}" if reasks else ""
        extra.update(
            ok=False,
            outcome=Outcome.INVALID_OUTPUT,
            error=ErrorInfo(
                type=Outcome.INVALID_OUTPUT.value,
                message=f"{reading.problem}{after}; {advice}",
            ),
        )
    return envelope.model_copy(update=extra)


def _continued_turn(turn: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
    """The last reply, holding the whole turn's content and every call's usage summed."""
    return {
        **reply,
        "content": [*turn.get("content", []), *reply.get("content", [])],
        "usage": sum_api_usage(turn.get("usage") or {}, reply.get("usage") or {}),
    }


def _reserve(
    deps: CallDeps,
    progress: _Progress,
    bucket_id: str,
    cost: Cost,
    hooks: CallHooks,
) -> Reservation:
    """A granted reservation, its wait already slept."""
    while True:
        reservation = deps.limiter.reserve(bucket_id, cost)
        if not _fits(deps, progress, reservation.wait_s):
            if reservation.granted:
                _settle_failed(deps, reservation, refund_all=True)
            raise DeadlineExceeded(
                f"the rate limit asks for a {reservation.wait_s:.1f} s wait "
                "and the task's time limit would pass first"
            )
        if reservation.wait_s > 0:
            hooks.waiting("rate_limit", reservation.wait_s, reservation.binding)
        _wait(deps, progress, reservation.wait_s)
        if reservation.granted:
            return reservation


def _settle_failed(deps: CallDeps, reservation: Reservation, *, refund_all: bool = False) -> None:
    # A failed attempt generated nothing: give the output tokens back. The
    # request and its input stay spent unless it was never sent.
    kept = Cost(0, 0, 0) if refund_all else Cost(1, reservation.cost.input_tokens, 0)
    _ignore_limiter_outage(deps.limiter.settle, reservation, kept)


def _ignore_limiter_outage(fn: Callable[..., None], *args: object) -> None:
    # Settling and observing only correct the buckets; losing one to a Redis
    # blip leaves them conservative, which is no reason to fail a paid call.
    with contextlib.suppress(LimiterUnavailable):
        fn(*args)


def _fits(deps: CallDeps, progress: _Progress, wait_s: float) -> bool:
    return deps.clock() + wait_s < progress.deadline


def _wait(deps: CallDeps, progress: _Progress, seconds: float) -> None:
    if seconds > 0:
        deps.sleep(seconds)
        progress.waited_s += seconds


def _failed(key: str, exc: ChorusError, cause: ChorusError | None = None) -> Envelope:
    info = ErrorInfo.from_exception(exc)
    if cause is not None and isinstance(cause, ProviderError):
        info = info.model_copy(update={"status": cause.status, "request_id": cause.request_id})
    return Envelope.failure(key, info)


def _price(deps: CallDeps, model: str, usage: Mapping[str, Any]) -> float:
    """What ``usage`` costs on ``model``; 0 when the price is unknown."""
    price = deps.price_for(model)
    return 0.0 if price is None else price.cost_usd(Usage.from_api(usage).tokens())


def answered(
    key: str,
    message: dict[str, Any],
    max_tokens: int,
    price_for: Callable[[str], ModelPrice | None],
) -> Envelope:
    """The envelope of an answered call, priced from its usage (a Message Batches
    answer, ``service_tier: "batch"``, at the Batches discount); the cost is None
    when the model's price is unknown."""
    model = message.get("model")
    price = price_for(model) if isinstance(model, str) else None
    envelope = Envelope.answered(key, message, max_tokens=max_tokens)
    if price is None:
        return envelope
    usage = envelope.usage
    if envelope.outcome is Outcome.REFUSED and usage.output_tokens == 0:
        # "Requests declined before any output is generated are not billed."
        cost = 0.0
    else:
        cost = price.cost_usd(usage.tokens())
    return envelope.model_copy(update={"cost_usd": cost})
