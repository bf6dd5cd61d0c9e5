"""Batches from producer scripts: submit a JSONL file, follow it, collect the results.

>>> batch = Batch.submit("items.jsonl", name="reviews-2026-11", max_cost_usd=5.0)
>>> batch.wait(on_progress=print)
>>> for record in batch.results():
...     print(record["id"], record["ok"], record["text"][:40])

Submitting reads the file twice and never holds it: the first pass validates
every line (nothing is enqueued while any line is invalid, unless
``skip_invalid``), the second enqueues in chunks, writing the ledger first and
then publishing the chunk's tasks through one pipelined producer.

Submitting the same file under the same ``name`` again resumes that batch:
only items without a result are enqueued, and those already answered are not
paid for again. Without a name every submit is a new batch, yet identical
calls are still answered from the result store.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from workers import keys
from workers.app import app
from workers.errors import ChorusError
from workers.ledger import BatchStatus, ItemState, Ledger, as_text
from workers.models import CallRequest
from workers.runtime import redis_client
from workers.validation import validate_request

CHUNK = 500
ERRORS_KEPT = 1000
Source = str | Path | Sequence[Mapping[str, Any]]
ResultFormat = Literal["chorus", "batches"]


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


# Items never sent: paused, cancelled, skipped for the budget (resume sends them).
NOT_SENT = frozenset({ItemState.PAUSED, ItemState.CANCELLED, ItemState.SKIPPED_BUDGET})


class StateUnavailable(ChorusError, RuntimeError):
    """Raised when the batch's Redis cannot be reached; the message says what is left."""


class BatchNotFound(ChorusError, LookupError):
    """Raised when no batch has that id or name (or it has expired)."""


@dataclass
class SubmitReport:
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


def _ledger(settings: Settings) -> Ledger:
    return Ledger(redis_client(settings.broker_url), expires_s=settings.results.expires_s)


def _source_items(source: Source, spec: InputSpec) -> Iterator[Item | LineError]:
    if isinstance(source, str | Path):
        return read_items(source, spec)
    return items_from_objects(source, spec)


class Batch:
    """A batch in the ledger."""

    def __init__(self, batch_id: str, *, ledger: Ledger | None = None) -> None:
        self.id = batch_id
        self.ledger = ledger or _ledger(get_settings())
        self.report = SubmitReport()

    @property
    def redis(self) -> redis.Redis:
        return self.ledger.redis

    # --- finding batches ----------------------------------------------------

    @classmethod
    def get(cls, id_or_name: str) -> Batch:
        """The batch with this id or name.

        Raises:
            BatchNotFound: none, or it expired.
        """
        ledger = _ledger(get_settings())
        client = ledger.redis
        batch_id = id_or_name
        if not client.exists(keys.batch(batch_id)):
            named = client.hget(keys.batch_names(), id_or_name)
            if named is None or not client.exists(keys.batch(as_text(named))):
                raise BatchNotFound(f"no batch {id_or_name!r} (its results may have expired)")
            batch_id = as_text(named)
        return cls(batch_id, ledger=ledger)

    @classmethod
    def recent(cls, limit: int = 50) -> list[BatchStatus]:
        """The newest batches first."""
        ledger = _ledger(get_settings())
        client = ledger.redis
        found: list[BatchStatus] = []
        gone: list[Any] = []
        for raw in client.zrevrange(keys.batch_index(), 0, limit * 2):
            status = ledger.status(as_text(raw))
            if status is None:
                gone.append(raw)
            elif len(found) < limit:
                found.append(status)
        if gone:
            client.zrem(keys.batch_index(), *gone)
        return found

    # --- submitting --------------------------------------------------------

    @classmethod
    def submit(
        cls,
        source: Source,
        *,
        name: str | None = None,
        prompt_field: str | None = None,
        template: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        system: str | None = None,
        effort: str | None = None,
        vote: int | None = None,
        skip_invalid: bool = False,
        max_cost_usd: float | None = None,
        max_line_bytes: int | None = None,
        on_created: Callable[[Batch], None] | None = None,
        on_enqueued: Callable[[int, int], None] | None = None,
    ) -> Batch:
        """Validate ``source`` (a JSONL path, or item dicts), then enqueue its items.

        ``model``, ``max_tokens``, ``system`` and ``effort`` (``output_config.effort``)
        fill in what an item does not set.

        Raises:
            InvalidBatchFile: lines are invalid (nothing enqueued), unless ``skip_invalid``.
            BatchInputError: the source cannot be read or used at all.
        """
        settings = get_settings()
        if prompt_field is not None and template is not None:
            raise BatchInputError("give --prompt-field or --template, not both")
        if vote is not None and vote < 2:
            raise BatchInputError("vote: at least 2 samples per item")
        if max_cost_usd is not None and max_cost_usd <= 0:
            raise BatchInputError("max cost: must be more than 0 USD")
        spec = InputSpec(
            prompt_field=prompt_field,
            template=template,
            model=model or settings.anthropic.default_model,
            max_tokens=max_tokens,
            system=system,
            effort=effort,
            max_line_bytes=max_line_bytes or settings.batch.max_line_bytes,
        )
        report = _validate(source, spec)
        if report.invalid_total and not skip_invalid:
            raise InvalidBatchFile(
                report.invalid, report.invalid_total, report.items + report.invalid_total
            )
        if report.items == 0:
            raise BatchInputError(
                "no items to run: the input is empty"
                + (
                    f" once {report.invalid_total} invalid lines are skipped"
                    if report.invalid_total
                    else ""
                )
            )
        report.unpriced = sorted(m for m in report.models if settings.price_for(m) is None)
        if max_cost_usd is not None and report.unpriced:
            model = report.unpriced[0]
            raise BatchInputError(
                f"max cost: no price is known for {model} (line {report.models[model]}), so the "
                f"budget cannot be held; add one with CHORUS_PRICES__{model}__INPUT_PER_MTOK=... "
                f"and CHORUS_PRICES__{model}__OUTPUT_PER_MTOK=... (USD per million tokens)"
            )

        ledger = _ledger(settings)
        try:
            ledger.redis.ping()
            batch = cls(_resolve_id(ledger.redis, name), ledger=ledger)
        except redis.RedisError as exc:
            raise StateUnavailable(
                f"Redis at {settings.broker_url} cannot be reached ({exc}); nothing was enqueued"
            ) from exc
        batch.report = report
        try:
            return batch._submit(source, spec, name, max_cost_usd, vote, on_created, on_enqueued)
        except redis.RedisError as exc:
            raise StateUnavailable(
                f"Redis was lost while enqueuing batch {batch.id} ({exc}); the ledger knows how "
                f"far it got: submit the same input again with --name {name or batch.id} "
                "to finish it (nothing is sent twice)"
            ) from exc

    def _submit(
        self,
        source: Source,
        spec: InputSpec,
        name: str | None,
        max_cost_usd: float | None,
        vote: int | None,
        on_created: Callable[[Batch], None] | None,
        on_enqueued: Callable[[int, int], None] | None,
    ) -> Batch:
        batch, report = self, self.report
        report.resumed = batch._exists()
        if report.resumed:
            status = batch.progress()
            if status.total != report.items:
                raise BatchInputError(
                    f"batch {name!r} has {status.total} items but this input has {report.items}; "
                    "submit it under a new --name"
                )
        batch._create_or_reopen(name, source, report.items, max_cost_usd, spec.model)
        if isinstance(source, str | Path):
            remember(
                batch.id,
                name,
                {
                    "source": str(Path(source).resolve()),
                    "prompt_field": spec.prompt_field,
                    "template": spec.template,
                    "model": spec.model,
                    "max_tokens": spec.max_tokens,
                    "system": spec.system,
                    "effort": spec.effort,
                    "vote": vote,
                    "max_cost_usd": max_cost_usd,
                },
            )
        if on_created is not None:
            on_created(batch)
        batch._enqueue(_source_items(source, spec), vote=vote, on_enqueued=on_enqueued)
        return batch

    def _exists(self) -> bool:
        return bool(self.redis.exists(keys.batch(self.id)))

    def _create_or_reopen(
        self, name: str | None, source: Source, total: int, max_cost: float | None, model: str
    ) -> None:
        now_ms = int(time.time() * 1000)
        # Any keys: redis-py types a mapping's keys as every encodable type at once.
        meta: dict[Any, str | int] = {
            "state": "enqueuing",
            "model": model,
            "queue": get_settings().worker.queue,
            "updated_at": now_ms,
        }
        if max_cost is not None:
            meta["max_cost_micros"] = round(max_cost * 1_000_000)
        if self.report.resumed:
            # A fresh submit means "go": whatever stopped the batch is lifted.
            self.redis.hdel(keys.batch(self.id), "stop", "pause_message", "ended_at")
            for key in keys.batch_keys(self.id):
                self.redis.persist(key)
            self.redis.hset(keys.batch(self.id), mapping=meta)
            return
        meta.update(
            {
                "name": name or "",
                "source": str(source) if isinstance(source, str | Path) else "(items in code)",
                "total": total,
                "enqueued": 0,
                "created_at": now_ms,
            }
        )
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.batch(self.id), mapping=meta)
        pipe.zadd(keys.batch_index(), {self.id: now_ms})
        if name:
            pipe.hset(keys.batch_names(), name, self.id)
        pipe.execute()

    def _enqueue(
        self,
        items: Iterator[Item | LineError],
        *,
        vote: int | None,
        on_enqueued: Callable[[int, int], None] | None,
    ) -> None:
        resumed = self.report.resumed
        already = int(self.redis.hget(keys.batch(self.id), "enqueued") or 0)
        index = 0
        chunk: list[tuple[int, Item]] = []
        for item in items:
            if isinstance(item, LineError):
                continue
            chunk.append((index, item))
            index += 1
            if len(chunk) == CHUNK:
                self._enqueue_chunk(chunk, vote, resumed, already)
                chunk = []
                if on_enqueued is not None:
                    on_enqueued(index, self.report.items)
        if chunk:
            self._enqueue_chunk(chunk, vote, resumed, already)
            if on_enqueued is not None:
                on_enqueued(index, self.report.items)
        self.ledger.enqueued(self.id)
        self._done_if_nothing_left()

    def _enqueue_chunk(
        self, chunk: list[tuple[int, Item]], vote: int | None, resumed: bool, already: int
    ) -> None:
        batch_key, items_key = keys.batch(self.id), keys.batch_items(self.id)
        indexes = [i for i, _ in chunk]
        states = self.redis.hmget(items_key, indexes) if resumed else [None] * len(chunk)
        to_send: list[tuple[int, Item]] = []
        pipe = self.redis.pipeline(transaction=False)
        for (index, item), raw_state in zip(chunk, states, strict=True):
            state = as_text(raw_state) if raw_state else None
            if resumed and not _needs_sending(state, index, already):
                self.report.already_answered += state in (ItemState.COMPLETE, ItemState.FAILED)
                continue
            if not resumed:
                pipe.rpush(keys.batch_ids(self.id), item.id)
            pipe.hset(keys.batch_requests(self.id), index, _stored_request(item, vote))
            to_send.append((index, item))
        if not resumed and to_send:
            pipe.hset(items_key, mapping={i: ItemState.PENDING.value for i, _ in to_send})
            pipe.hincrby(batch_key, "n:p", len(to_send))
        pipe.execute()
        if resumed:
            self.ledger.reopen(self.id, [i for i, _ in to_send])
        self._publish([(i, item.id, item.request) for i, item in to_send], vote)
        # Everything up to this chunk's end is now in the queue (or answered).
        chunk_end = chunk[-1][0] + 1
        if not resumed:
            self.redis.hincrby(batch_key, "enqueued", len(chunk))
        elif chunk_end > already:
            self.redis.hset(batch_key, "enqueued", chunk_end)
        self.report.enqueued += len(to_send)

    def _publish(
        self,
        items: Sequence[tuple[int, str, CallRequest]],
        vote: int | None,
        *,
        again: bool = False,
    ) -> None:
        """Enqueue ``items``; ``again``: sent by ``retry``, asking again where an answer
        was stored but not complete."""
        if not items:
            return
        extra = {"again": True} if again else {}
        if vote is not None:
            from orchestration.patterns import Vote

            for index, item_id, request in items:
                option = {"id": self.id, "index": index, "item": item_id, **extra}
                Vote(
                    request,
                    n=vote,
                    call_options={"batch": {**option, "part": True}},
                    fan_in_options={"batch": option},
                ).start()
            return
        # The name, beside the id, in what Flower shows and searches.
        name = as_text(self.redis.hget(keys.batch(self.id), "name") or b"")
        with app.producer_or_acquire() as producer, producer.batch(CHUNK):
            # Declared once here, not per message: kombu binds a copy of the
            # queue for every publish that declares it (a fifth of its cost).
            queue = app.amqp.queues[app.conf.task_default_queue]
            producer.maybe_declare(queue)
            for index, item_id, request in items:
                app.signature(
                    "chorus.call",
                    args=(
                        request.model_dump(mode="json", exclude_none=True),
                        {"batch": {"id": self.id, "index": index, "item": item_id, **extra}},
                    ),
                    argsrepr=argsrepr(request, batch_id=self.id, item_id=item_id, batch_name=name),
                    kwargsrepr="{}",
                ).apply_async(producer=producer, ignore_result=True, declare=[], queue=queue)

    def _done_if_nothing_left(self) -> None:
        status = self.progress()
        if status.ended == status.total and status.state != "done":
            self.redis.hset(
                keys.batch(self.id), mapping={"state": "done", "ended_at": int(time.time() * 1000)}
            )

    # --- following ---------------------------------------------------------

    def progress(self) -> BatchStatus:
        """The batch's counts now: one read, whatever its size.

        Raises:
            BatchNotFound: the batch expired or was removed.
        """
        status = self.ledger.status(self.id)
        if status is None:
            raise BatchNotFound(f"no batch {self.id!r} (its results may have expired)")
        return status

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        poll_s: float = 0.5,
        on_progress: Callable[[BatchStatus], None] | None = None,
    ) -> BatchStatus:
        """Block until every item ended, or the batch is paused with nothing in work.

        Raises:
            TimeoutError: neither within ``timeout_s``.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            status = self.progress()
            if on_progress is not None:
                on_progress(status)
            if status.finished or status.stalled:
                return status
            if self.lost(status):
                self.heal()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {self.id} not done within {timeout_s:g} s")
            # Between reads, block on the token the last item's worker pushes:
            # the end is seen at once, not up to ``poll_s`` late.
            self._sleep_until_ended(poll_s)

    def _sleep_until_ended(self, seconds: float) -> bool:
        """Sleep until the worker that ends the batch's last item wakes us, or ``seconds``
        pass (at most 5); True when woken."""
        if seconds < 0.01:  # BLPOP's timeout has millisecond resolution at best
            time.sleep(seconds)
            return False
        # Below the client's socket timeout; a longer poll just reads more often.
        return self.redis.blpop([keys.batch_ended(self.id)], timeout=min(seconds, 5.0)) is not None

    # --- results -----------------------------------------------------------

    def results(
        self, *, failed_only: bool = False, fmt: ResultFormat = "chorus"
    ) -> Iterator[dict[str, Any]]:
        """One record per input item, in input order, read in chunks.

        In chorus's format every item has a record (``state`` says where an
        unfinished one is); in the Message Batches format only ended items do,
        as the Batches API writes results only for ended requests.
        """
        from orchestration.result_formats import as_batches_result

        total = int(self.redis.llen(keys.batch_ids(self.id)))
        for start in range(0, total, 1000):
            ids = self.redis.lrange(keys.batch_ids(self.id), start, start + 999)
            indexes = list(range(start, start + len(ids)))
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(keys.batch_results(self.id), indexes)
            pipe.hmget(keys.batch_items(self.id), indexes)
            results, states = pipe.execute()
            for raw_id, raw, raw_state in zip(ids, results, states, strict=True):
                state = as_text(raw_state) if raw_state else ItemState.PENDING
                if failed_only and state != ItemState.FAILED:
                    continue
                if fmt == "batches":
                    stored = json.loads(raw) if raw is not None else {"id": as_text(raw_id)}
                    converted = as_batches_result(stored, state)
                    if converted is not None:
                        yield converted
                else:
                    yield _record(as_text(raw_id), raw, state)

    def write_results(
        self, path: str | Path, *, failed_only: bool = False, fmt: ResultFormat = "chorus"
    ) -> int:
        """Write :meth:`results` as JSONL to ``path``; returns the lines written."""
        written = 0
        with open(path, "w", encoding="utf-8") as out:
            for record in self.results(failed_only=failed_only, fmt=fmt):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                written += 1
        return written

    # --- control -----------------------------------------------------------

    def cancel(self) -> BatchStatus:
        """Stop sending: pending items are marked cancelled as workers reach them."""
        status = self.progress()
        if not status.finished:
            self.redis.hset(
                keys.batch(self.id), mapping={"stop": "cancelled", "state": "cancelled"}
            )
        return self.progress()

    def lost(self, status: BatchStatus | None = None) -> bool:
        """Whether the batch's pending items have lost their messages.

        True when items are pending, none is in work, the batch's queue is
        empty, and the ledger has not moved for longer than a dead worker's
        messages take to come back (the visibility timeout and two restore
        sweeps). That happens when Redis goes away just after a worker popped
        a message and before kombu recorded it as unacknowledged: the message
        then exists nowhere.
        """
        status = status or self.progress()
        if status.finished or status.stop or status.active or not status.count("pending"):
            return False
        if status.updated_at is None or status.enqueued < status.total:
            return False
        worker = get_settings().worker
        quiet_s = worker.visibility_timeout_s + 2 * worker.restore_interval_s
        if time.time() - status.updated_at < quiet_s:
            return False
        queue = status.queue or worker.queue
        return int(self.redis.llen(queue)) == 0

    def heal(self) -> int:
        """Send again the pending items whose messages were lost; returns how many.

        Safe however it is called: an item that ended ignores a second
        message, and a paid call is answered from the result store.
        """
        return self._resend({ItemState.PENDING})

    def retry_failed(self) -> int:
        """Enqueue the failed items again, whatever their outcome; returns how many."""
        return self.retry()

    def retry(
        self, outcomes: Collection[str] | None = None, *, max_tokens: int | None = None
    ) -> int:
        """Enqueue again the items that ended without a complete answer; returns how many.

        ``outcomes`` (``truncated``, ``refused``, ``failed``, ... see
        ``workers.outcomes``) narrows them; None takes every one. An answer the
        API gave but that was not complete is asked again, not served from the
        result store; a complete answer is never asked again. ``max_tokens``:
        send them with this output cap instead (a truncated answer needs more).

        Raises:
            InvalidRequest: ``max_tokens`` is not valid for an item's model.
        """
        return self._resend(
            {ItemState.FAILED},
            outcomes=None if outcomes is None else set(outcomes),
            again=True,
            max_tokens=max_tokens,
        )

    def resume(self) -> int:
        """Lift a pause and send what never went out: paused items, unpublished ones,
        and pending ones whose messages were lost (see :meth:`lost`)."""
        self.redis.hdel(keys.batch(self.id), "stop", "pause_message")
        status = self.progress()
        if status.state in ("paused", "cancelled"):
            self.redis.hset(keys.batch(self.id), "state", "running")
        if self.lost(status):
            return self._resend({ItemState.PENDING, *NOT_SENT})
        return self._resend(NOT_SENT, unpublished_from=status.enqueued)

    def remove(self) -> None:
        """Delete the batch and its results now."""
        status = self.ledger.status(self.id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(*keys.batch_keys(self.id))
        pipe.zrem(keys.batch_index(), self.id)
        if status is not None and status.name:
            pipe.hdel(keys.batch_names(), status.name)
        pipe.execute()

    def _resend(
        self,
        states: Collection[str],
        unpublished_from: int | None = None,
        *,
        outcomes: set[str] | None = None,
        again: bool = False,
        max_tokens: int | None = None,
    ) -> int:
        chosen: list[int] = []
        for raw_index, raw_state in self.redis.hscan_iter(keys.batch_items(self.id), count=1000):
            index = int(raw_index)
            state = as_text(raw_state)
            if state in states or (
                unpublished_from is not None
                and state == ItemState.PENDING
                and index >= unpublished_from
            ):
                chosen.append(index)
        chosen.sort()
        if outcomes is not None:
            chosen = self._with_outcome(chosen, outcomes)
        ids = self.redis.lrange(keys.batch_ids(self.id), 0, -1) if chosen else []
        for start in range(0, len(chosen), CHUNK):
            part = chosen[start : start + CHUNK]
            raws = self.redis.hmget(keys.batch_requests(self.id), part)
            # Every request checked before any item is touched: a bad max_tokens
            # leaves the items as they were.
            items: list[tuple[tuple[int, str, CallRequest], int | None]] = []
            rewritten: dict[str, str] = {}
            for index, raw in zip(part, raws, strict=True):
                if raw is None:
                    continue  # its request expired with the batch's other keys
                stored = json.loads(raw)
                if max_tokens is not None:
                    stored["request"]["max_tokens"] = max_tokens
                    request = validate_request(stored["request"])
                    rewritten[str(index)] = json.dumps(stored, separators=(",", ":"))
                else:
                    request = CallRequest.model_validate(stored["request"])
                items.append(((index, as_text(ids[index]), request), stored.get("vote")))
            if rewritten:
                pipe = self.redis.pipeline(transaction=False)
                for field_name, value in rewritten.items():
                    pipe.hset(keys.batch_requests(self.id), field_name, value)
                pipe.execute()
            self.ledger.reopen(self.id, part)
            for item, vote in items:
                if vote:
                    self._publish([item], vote, again=again)
            self._publish([item for item, vote in items if not vote], None, again=again)
        return len(chosen)

    def _with_outcome(self, indexes: list[int], outcomes: set[str]) -> list[int]:
        """The items among ``indexes`` whose result has one of ``outcomes``."""
        kept: list[int] = []
        for start in range(0, len(indexes), CHUNK):
            part = indexes[start : start + CHUNK]
            for index, raw in zip(
                part, self.redis.hmget(keys.batch_results(self.id), part), strict=True
            ):
                outcome = json.loads(raw).get("outcome") if raw is not None else None
                if (outcome or "failed") in outcomes:
                    kept.append(index)
        return kept


# --- the local record: what this machine submitted, to rebuild a forgotten batch


def _records_dir() -> Path:
    from orchestration.embedded import state_dir

    return state_dir() / "batches"


def remember(batch_id: str, name: str | None, options: dict[str, Any]) -> None:
    """Note how a batch was submitted from a file, so Redis losing it is not the end."""
    folder = _records_dir()
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id": batch_id, "name": name, "options": options, "at": time.time()}
    (folder / f"{batch_id}.json").write_text(json.dumps(record))


def recall(id_or_name: str) -> dict[str, Any] | None:
    """The newest local record of a batch by id or name."""
    folder = _records_dir()
    if not folder.is_dir():
        return None
    found: list[dict[str, Any]] = []
    for path in folder.glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if id_or_name in (record.get("id"), record.get("name")):
            found.append(record)
    return max(found, key=lambda r: r.get("at", 0), default=None)


def rebuild(id_or_name: str) -> Batch:
    """Submit again, from its input file, a batch this machine submitted and Redis forgot.

    Items whose calls were answered before are answered from the result
    store (keep it on a persistent Redis: ``CHORUS_STORE_URL``), so nothing
    is paid for twice.

    Raises:
        BatchNotFound: no local record of it.
        BatchInputError: its input file is gone or no longer valid.
    """
    record = recall(id_or_name)
    if record is None:
        raise BatchNotFound(
            f"no batch {id_or_name!r} in Redis and no local record of submitting it"
        )
    options = dict(record["options"])
    source = options.pop("source")
    name = record.get("name") or id_or_name
    return Batch.submit(source, name=name, **options)


def _needs_sending(state: str | None, index: int, enqueued: int) -> bool:
    """On a resubmit: does this item still need a call?"""
    if state is None or state in NOT_SENT:
        return True
    # Pending below the enqueued mark: its message is in the queue already.
    return state == ItemState.PENDING and index >= enqueued


def _stored_request(item: Item, vote: int | None) -> str:
    body: dict[str, Any] = {"request": item.request.model_dump(mode="json", exclude_none=True)}
    if vote is not None:
        body["vote"] = vote
    return json.dumps(body, separators=(",", ":"))


def _record(item_id: str, raw: bytes | None, state: str) -> dict[str, Any]:
    """An item's line in chorus's format; ``raw`` is what the ledger stored, if anything."""
    from orchestration.result_formats import as_chorus_result
    from workers.ledger import STATE_NAMES

    state_name = STATE_NAMES.get(state, state)
    if raw is None:
        return {"id": item_id, "ok": False, "outcome": None, "state": state_name, "text": None,
                "usage": None, "error": None}  # fmt: skip
    return as_chorus_result(json.loads(raw), state_name)


def _resolve_id(client: redis.Redis, name: str | None) -> str:
    if name:
        if client.exists(keys.batch(name)):  # a batch's own id serves as its name
            return name
        existing = client.hget(keys.batch_names(), name)
        if existing is not None and client.exists(keys.batch(as_text(existing))):
            return str(as_text(existing))
    return "b-" + uuid.uuid4().hex[:12]


def _validate(source: Source, spec: InputSpec) -> SubmitReport:
    report = SubmitReport()
    for entry in _source_items(source, spec):
        if isinstance(entry, LineError):
            report.invalid_total += 1
            if len(report.invalid) < ERRORS_KEPT:
                report.invalid.append(entry)
        else:
            report.items += 1
            report.models.setdefault(entry.request.model, entry.line)
    return report
