"""Submitting a batch: validate every line, record the items in the ledger, publish them.

Submitting reads the input twice and never holds it: the first pass validates
every line (nothing is enqueued while any line is invalid, unless
``skip_invalid``), the second enqueues in chunks of :data:`CHUNK`, recording
the chunk in the ledger first and then publishing its tasks through one
pipelined producer (:func:`publish`).

Submitting the same input under the same ``name`` again resumes that batch:
only items without a result are enqueued, and those already answered are not
paid for again. Without a name every submit is a new batch, yet identical
calls are still answered from the result store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from config.settings import Settings, get_settings
from orchestration.batchfile import (
    BatchInputError,
    InputSpec,
    Item,
    LineError,
    items_from_objects,
    read_items,
)
from orchestration.client import argsrepr
from orchestration.prefix import Leads, PrefixFinder
from orchestration.records import remember
from orchestration.routing import RoutePlan, plan_route
from workers.app import app
from workers.errors import ChorusError
from workers.ledger import NOT_SENT, ItemState, Ledger
from workers.models import CallRequest
from workers.runtime import redis_client

if TYPE_CHECKING:
    from orchestration.batch import Batch
    from orchestration.estimate import Estimate

CHUNK = 500
ERRORS_KEPT = 1000
Source = str | Path | Sequence[Mapping[str, Any]]


class InvalidBatchFile(BatchInputError):
    """Raised when lines of a batch are invalid and ``skip_invalid`` was not asked for."""

    def __init__(self, errors: list[LineError], total_errors: int, lines: int) -> None:
        shown = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {total_errors - 20} more" if total_errors > 20 else ""
        super().__init__(
            f"{total_errors} of {lines} lines are invalid; nothing was enqueued:\n{shown}{more}"
        )
        self.errors = errors
        self.total_errors = total_errors
        self.lines = lines


class StateUnavailable(ChorusError, RuntimeError):
    """Raised when the batch's Redis cannot be reached; the message says what is left."""


@dataclass
class SubmitReport:
    """What a submit found and did: items valid and enqueued, lines invalid, models named."""

    items: int = 0
    enqueued: int = 0
    already_answered: int = 0
    invalid: list[LineError] = field(default_factory=list)
    invalid_total: int = 0
    resumed: bool = False
    # The models the items name (first line naming each), and those of them
    # with no known price: their calls' cost is reported as unknown.
    models: dict[str, int] = field(default_factory=dict)
    unpriced: list[str] = field(default_factory=list)
    # The prefixes the items share, marked for the prompt cache (None: not looked for).
    prefixes: PrefixFinder | None = None
    # --route auto: how many items go in real time, and why.
    plan: RoutePlan | None = None
    # With a schema: for each model the items name that is not asked for the
    # structure in output_config.format, the one line that says how it is asked.
    schema_notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """A submit's options besides its input (``Batch.submit`` documents them)."""

    name: str | None = None
    vote: int | None = None
    skip_invalid: bool = False
    max_cost_usd: float | None = None
    # realtime: each item a Messages API call; batches: the Message Batches API.
    route: str = "realtime"
    deadline_s: float | None = None
    # Mark the prefixes items share for the prompt cache (and CHORUS_CACHE__ENABLED).
    cache: bool = True
    on_created: Callable[[Batch], None] | None = None
    on_enqueued: Callable[[int, int], None] | None = None


def ledger_for(settings: Settings) -> Ledger:
    return Ledger(redis_client(settings.broker_url), expires_s=settings.results.expires_s)


def submit(cls: type[Batch], source: Source, spec: InputSpec, options: Options) -> Batch:
    """Validate ``source``, then record and publish its items; the batch.

    Raises:
        InvalidBatchFile: lines are invalid (nothing enqueued), unless ``skip_invalid``.
        BatchInputError: the source cannot be read or used at all.
        StateUnavailable: Redis cannot be reached, or was lost part way.
    """
    settings = get_settings()
    caching = options.cache and settings.cache.enabled
    # --route auto splits by what the items need at the account's limits, counted
    # in the same pass that validates them.
    found = None
    if options.route == "auto":
        from orchestration.estimate import Estimate

        found = Estimate()
    report = validate(source, spec, PrefixFinder() if caching else None, found, settings)
    if report.invalid_total and not options.skip_invalid:
        raise InvalidBatchFile(
            report.invalid, report.invalid_total, report.items + report.invalid_total
        )
    if report.items == 0:
        skipped = report.invalid_total
        raise BatchInputError(
            "no items to run: the input is empty"
            + (f" once {skipped} invalid lines are skipped" if skipped else "")
        )
    report.unpriced = sorted(m for m in report.models if settings.price_for(m) is None)
    if spec.structured is not None:
        report.schema_notes = schema_notes(report.models, spec.structured)
    if options.max_cost_usd is not None and report.unpriced:
        model = report.unpriced[0]
        raise BatchInputError(
            f"max cost: no price is known for {model} (line {report.models[model]}), so the "
            f"budget cannot be held; add one with CHORUS_PRICES__{model}__INPUT_PER_MTOK=... "
            f"and CHORUS_PRICES__{model}__OUTPUT_PER_MTOK=... (USD per million tokens)"
        )

    if found is not None:
        assert options.deadline_s is not None  # Batch.submit checks it
        found.time(settings)
        report.plan = plan_route(report.items, found.minutes, found.binding, options.deadline_s)
    ledger = ledger_for(settings)
    try:
        ledger.redis.ping()
        batch = cls(ledger.new_id(options.name), ledger=ledger)
    except redis.RedisError as exc:
        raise StateUnavailable(
            f"Redis at {settings.broker_url} cannot be reached ({exc}); nothing was enqueued"
        ) from exc
    batch.report = report
    try:
        _record_and_publish(batch, source, spec, options)
    except redis.RedisError as exc:
        raise StateUnavailable(
            f"Redis was lost while enqueuing batch {batch.id} ({exc}); the ledger knows how "
            f"far it got: submit the same input again with --name {options.name or batch.id} "
            "to finish it (nothing is sent twice)"
        ) from exc
    return batch


def schema_notes(models: Mapping[str, int], structured: Mapping[str, Any]) -> list[str]:
    """How each of ``models`` is asked for the structure, where it is not the API's own
    structured outputs: said once per batch (``workers.structured.fallback_note``)."""
    from workers.structured import fallback_note, resolve_method

    schema, method = structured["json_schema"], structured.get("method", "auto")
    notes = (fallback_note(model, resolve_method(model, method, schema)) for model in models)
    return [note for note in notes if note is not None]


def _record_and_publish(batch: Batch, source: Source, spec: InputSpec, options: Options) -> None:
    ledger, report = batch.ledger, batch.report
    report.resumed = ledger.exists(batch.id)
    queue = get_settings().worker.queue
    if report.resumed:
        status = batch.progress()
        if status.total != report.items:
            raise BatchInputError(
                f"batch {options.name!r} has {status.total} items but this input has "
                f"{report.items}; submit it under a new --name"
            )
        ledger.resubmit(batch.id, model=spec.model, queue=queue, max_cost_usd=options.max_cost_usd)
    else:
        ledger.create(
            batch.id,
            name=options.name,
            source=str(source) if isinstance(source, str | Path) else "(items in code)",
            total=report.items,
            model=spec.model,
            queue=queue,
            max_cost_usd=options.max_cost_usd,
            route=options.route,
            deadline_s=options.deadline_s,
            plan=report.plan.as_dict() if report.plan else None,
        )
    if isinstance(source, str | Path):
        remember(batch.id, options.name, _how_submitted(source, spec, options))
    if options.on_created is not None:
        options.on_created(batch)
    _enqueue(batch, source_items(source, spec), options)


def _how_submitted(source: str | Path, spec: InputSpec, options: Options) -> dict[str, Any]:
    """What :func:`orchestration.records.rebuild` needs to submit it again."""
    return {
        "source": str(Path(source).resolve()),
        "prompt_field": spec.prompt_field,
        "template": spec.template,
        "model": spec.model,
        "max_tokens": spec.max_tokens,
        "system": spec.system,
        "effort": spec.effort,
        "schema": spec.structured and spec.structured["json_schema"],
        "reask": spec.structured["reask"] if spec.structured else 1,
        "schema_method": spec.structured["method"] if spec.structured else "auto",
        "vote": options.vote,
        "max_cost_usd": options.max_cost_usd,
        "route": options.route,
        "deadline_s": options.deadline_s,
        "cache": options.cache,
    }


def _enqueue(batch: Batch, items: Iterator[Item | LineError], options: Options) -> None:
    already = batch.ledger.enqueued_mark(batch.id)
    name = batch.ledger.name(batch.id)
    # The items before this index go through the Message Batches API: all of them
    # (batches), none (realtime), or all but the real-time share (auto). They are
    # handed to the worker that sends them as soon as they are recorded, before any
    # real-time item is published: behind those, the hand-over would wait its turn
    # in the queue, at the rate limit, while the deadline runs.
    status = batch.progress()
    planned = (status.plan or {}).get("realtime", 0)
    batches_until = {"batches": status.total, "auto": status.total - planned}.get(status.route, 0)
    marks = Marks(batch.report.prefixes, batches_until, batch.id)
    index = 0
    chunk: list[tuple[int, Item]] = []
    for item in items:
        if isinstance(item, LineError):
            continue
        chunk.append((index, item))
        index += 1
        if len(chunk) == CHUNK or index == batches_until:
            _enqueue_chunk(batch, chunk, options.vote, already, name, marks)
            chunk = []
            if index == batches_until:
                _hand_over(batch, batches_until, whole=status.route == "batches")
            if options.on_enqueued is not None:
                options.on_enqueued(index, batch.report.items)
    if chunk:
        _enqueue_chunk(batch, chunk, options.vote, already, name, marks)
        if options.on_enqueued is not None:
            options.on_enqueued(index, batch.report.items)
    batch.ledger.published(batch.id, index, last=True)


def _hand_over(batch: Batch, until: int, *, whole: bool) -> None:
    """Hand the pending items of ``[0, until)`` (``whole``: every pending one) to the
    worker-side task that sends them through the Message Batches API.

    Only pending ones: on a resubmit, an item already in a Message Batch, or taken
    back to real time, is running, and sending it again would pay for it twice.
    """
    if whole:
        batch.ledger.published(batch.id, until, last=True)
        if not batch.progress().finished:
            send_to_batches_api(batch.id)
        return
    indexes = list(range(until))
    states = batch.ledger.item_states(batch.id, indexes)
    pending = [i for i, state in zip(indexes, states, strict=True) if state == ItemState.PENDING]
    if pending:
        send_to_batches_api(batch.id, pending)


def _enqueue_chunk(
    batch: Batch,
    chunk: list[tuple[int, Item]],
    vote: int | None,
    already: int,
    name: str,
    marks: Marks,
) -> None:
    ledger, report = batch.ledger, batch.report
    resumed = report.resumed
    states = ledger.item_states(batch.id, [i for i, _ in chunk]) if resumed else []
    to_send: list[tuple[int, Item]] = []
    for position, (index, item) in enumerate(chunk):
        state = states[position] if resumed else None
        if resumed and not needs_sending(state, index, already):
            report.already_answered += state in (ItemState.COMPLETE, ItemState.FAILED)
            continue
        to_send.append((index, item))
    requests, prefixes = marks.apply(to_send)
    ledger.add_items(
        batch.id,
        [(i, item.id, stored_request(requests[i], vote)) for i, item in to_send],
        new=not resumed,
    )
    if resumed:
        ledger.reopen(batch.id, [i for i, _ in to_send])
    sent = [(i, item.id, requests[i]) for i, item in to_send if marks.realtime(i)]
    publish(batch.id, sent, vote, batch_name=name, prefixes=prefixes)
    # Everything up to this chunk's end is now in the queue (or answered).
    ledger.published(batch.id, chunk[-1][0] + 1, last=False)
    report.enqueued += len(to_send)


def publish(
    batch_id: str,
    items: Sequence[tuple[int, str, CallRequest]],
    vote: int | None,
    *,
    again: bool = False,
    batch_name: str = "",
    prefixes: Mapping[int, dict[str, Any]] | None = None,
) -> None:
    """Enqueue a batch's ``items`` (index, item id, request) as ``chorus.call`` tasks.

    ``vote``: each item is a vote of that many samples. ``again``: sent by
    ``retry``, asking again where an answer was stored but not complete.
    ``batch_name`` shows beside the id in what Flower shows and searches.
    ``prefixes``: the ``prefix`` task option of items that share a cached
    prefix, by index (``orchestration.prefix``).
    """
    if not items:
        return
    extra = {"again": True} if again else {}
    if vote is not None:
        from orchestration.patterns import Vote

        for index, item_id, request in items:
            option = {"id": batch_id, "index": index, "item": item_id, **extra}
            Vote(
                request,
                n=vote,
                call_options={"batch": {**option, "part": True}},
                fan_in_options={"batch": option},
            ).start()
        return
    with app.producer_or_acquire() as producer, producer.batch(CHUNK):
        # Declared once here, not per message: kombu binds a copy of the
        # queue for every publish that declares it (a fifth of its cost).
        queue = app.amqp.queues[app.conf.task_default_queue]
        producer.maybe_declare(queue)
        for index, item_id, request in items:
            options: dict[str, Any] = {
                "batch": {"id": batch_id, "index": index, "item": item_id, **extra}
            }
            if prefixes and index in prefixes:
                options["prefix"] = prefixes[index]
            app.signature(
                "chorus.call",
                args=(request.model_dump(mode="json", exclude_none=True), options),
                argsrepr=argsrepr(
                    request, batch_id=batch_id, item_id=item_id, batch_name=batch_name
                ),
                kwargsrepr="{}",
            ).apply_async(producer=producer, ignore_result=True, declare=[], queue=queue)


def send_to_batches_api(batch_id: str, indexes: Sequence[int] | None = None) -> None:
    """Hand a batch's items (all pending ones, or ``indexes``) to the worker-side task that
    sends them through the Message Batches API (``workers.batches_api``)."""
    app.signature(
        "chorus.batches_send",
        args=(batch_id, None if indexes is None else list(indexes)),
        argsrepr=f"batch={batch_id}",
    ).apply_async(ignore_result=True)


def needs_sending(state: str | None, index: int, enqueued: int) -> bool:
    """On a resubmit: does this item still need a call?"""
    if state is None or state in NOT_SENT:
        return True
    # Pending below the enqueued mark: its message is in the queue already.
    return state == ItemState.PENDING and index >= enqueued


def stored_request(request: CallRequest, vote: int | None) -> str:
    """What the ledger keeps of an item's request, so retry and resume need no input file."""
    body: dict[str, Any] = {"request": request.model_dump(mode="json", exclude_none=True)}
    if vote is not None:
        body["vote"] = vote
    return json.dumps(body, separators=(",", ":"))


class Marks:
    """Marks items' shared prefixes as they are enqueued: the 1-hour TTL for those sent
    through the Message Batches API (below ``batches_until``), where nothing waits; the
    5-minute TTL for those sent in real time, where the first sent of each group leads."""

    def __init__(self, finder: PrefixFinder | None, batches_until: int, scope: str) -> None:
        self._finder, self._batches_until, self._leads = finder, batches_until, Leads(scope)

    def realtime(self, index: int) -> bool:
        return index >= self._batches_until

    def apply(
        self, items: Sequence[tuple[int, Item]]
    ) -> tuple[dict[int, CallRequest], dict[int, dict[str, Any]]]:
        """Each item's request by index, marked; and the ``prefix`` option of those marked."""
        requests: dict[int, CallRequest] = {}
        prefixes: dict[int, dict[str, Any]] = {}
        for index, item in items:
            if self._finder is None:
                requests[index] = item.request
                continue
            realtime = self.realtime(index)
            requests[index], share = self._finder.mark(item.request, None if realtime else "1h")
            option = self._leads.option(share) if realtime else None
            if option is not None:
                prefixes[index] = option
        return requests, prefixes


def source_items(source: Source, spec: InputSpec) -> Iterator[Item | LineError]:
    if isinstance(source, str | Path):
        return read_items(source, spec)
    return items_from_objects(source, spec)


def validate(
    source: Source,
    spec: InputSpec,
    prefixes: PrefixFinder | None = None,
    found: Estimate | None = None,
    settings: Settings | None = None,
) -> SubmitReport:
    """The first pass: every line checked, nothing kept but counts, the first errors,
    (given ``prefixes``) what the items' prompts share and (given ``found``, priced
    with ``settings``) what they need."""
    report = SubmitReport(prefixes=prefixes)
    for entry in source_items(source, spec):
        if isinstance(entry, LineError):
            report.invalid_total += 1
            if len(report.invalid) < ERRORS_KEPT:
                report.invalid.append(entry)
        else:
            report.items += 1
            report.models.setdefault(entry.request.model, entry.line)
            if prefixes is not None:
                prefixes.add(entry.request)
            if found is not None:
                found.add(entry.request, settings or get_settings())
    return report
