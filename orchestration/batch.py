"""A batch in the ledger: submit one, follow it, read its results, stop and start it.

>>> batch = Batch.submit("items.jsonl", name="reviews-2026-11", max_cost_usd=5.0)
>>> batch.wait(on_progress=print)
>>> for record in batch.results():
...     print(record["id"], record["ok"], record["text"][:40])

Submitting is ``orchestration.submission``; the local record that rebuilds a
batch Redis forgot is ``orchestration.records``. Every read and write of the
batch's state goes through its :class:`~workers.ledger.Ledger`.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import redis
from pydantic import BaseModel, ValidationError

from config.settings import get_settings
from orchestration.batchfile import BatchInputError, InputSpec
from orchestration.records import rebuild, recall, remember
from orchestration.submission import (
    CHUNK,
    InvalidBatchFile,
    Options,
    Source,
    StateUnavailable,
    SubmitReport,
    ledger_for,
    publish,
    send_to_batches_api,
    submit,
)
from workers.errors import ChorusError
from workers.ledger import NOT_SENT, STATE_NAMES, BatchStatus, ItemState, Ledger
from workers.models import CallRequest, Structured
from workers.structured import spec as spec_for_schema
from workers.validation import validate_request

ResultFormat = Literal["chorus", "batches"]

__all__ = [
    "Batch",
    "BatchNotFound",
    "InvalidBatchFile",
    "StateUnavailable",
    "SubmitReport",
    "rebuild",
    "recall",
    "remember",
]


_M = TypeVar("_M", bound=BaseModel)


def _first_error(exc: Exception) -> str:
    """A schema's problem in one line: pydantic's first error message, or the exception's."""
    if isinstance(exc, ValidationError) and exc.errors():
        return str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
    return str(exc)


class BatchNotFound(ChorusError, LookupError):
    """Raised when no batch has that id or name (or it has expired)."""


class Batch:
    """A batch in the ledger, by id."""

    def __init__(self, batch_id: str, *, ledger: Ledger | None = None) -> None:
        self.id = batch_id
        self.ledger = ledger or ledger_for(get_settings())
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
        ledger = ledger_for(get_settings())
        batch_id = ledger.find(id_or_name)
        if batch_id is None:
            raise BatchNotFound(f"no batch {id_or_name!r} (its results may have expired)")
        return cls(batch_id, ledger=ledger)

    @classmethod
    def recent(cls, limit: int = 50) -> list[BatchStatus]:
        """The newest batches first."""
        return ledger_for(get_settings()).recent(limit)

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
        route: Literal["realtime", "batches", "auto"] = "realtime",
        deadline_s: float | None = None,
        cache: bool = True,
        schema: Mapping[str, Any] | type[BaseModel] | None = None,
        reask: int = 1,
        schema_method: str = "auto",
    ) -> Batch:
        """Validate ``source`` (a JSONL path, or item dicts), then enqueue its items.

        ``model``, ``max_tokens``, ``system`` and ``effort`` (``output_config.effort``)
        fill in what an item does not set. ``name``: submitting the same input
        under the same name again resumes that batch (only items without a
        result are enqueued). ``vote``: each item is a vote of that many
        samples. ``max_cost_usd``: the batch stops sending before its spent
        plus reserved cost passes this (each call's worst case reserved at the
        price of its route: the Message Batches API's at its discount).
        ``on_created(batch)`` once the batch exists; ``on_enqueued(done,
        total)`` after each chunk. ``route``:
        ``realtime`` sends each item as a Messages API call; ``batches`` sends
        them through the Message Batches API at half price, answered within 24
        hours (``workers.batches_api``), sending again what expired or errored
        while ``deadline_s`` (seconds from now) allows; ``auto`` (with
        ``deadline_s``) sends in real time what the account's limits finish
        well before the deadline and the rest through the Message Batches API,
        taking back what is still unfinished there as the deadline nears
        (``orchestration.routing``). ``cache``: mark the
        prefix items share for the prompt cache, one item writing it before the
        rest read it (``orchestration.prefix``); off with False. ``schema``: a
        JSON Schema dict or a pydantic model class every answer must match
        (``workers.structured``): asked for as each model takes it
        (``schema_method``: auto, native, tool, prompt), validated on the worker,
        asked again up to ``reask`` times when invalid; the value is each result's
        ``data`` (``Batch.parsed`` gives model instances).

        Raises:
            InvalidBatchFile: lines are invalid (nothing enqueued), unless ``skip_invalid``.
            BatchInputError: the source cannot be read or used at all.
            StateUnavailable: Redis cannot be reached, or was lost part way
                (the message says how to finish).
        """
        settings = get_settings()
        if prompt_field is not None and template is not None:
            raise BatchInputError("give --prompt-field or --template, not both")
        if vote is not None and vote < 2:
            raise BatchInputError("vote: at least 2 samples per item")
        if max_cost_usd is not None and max_cost_usd <= 0:
            raise BatchInputError("max cost: must be more than 0 USD")
        if route not in ("realtime", "batches", "auto"):
            raise BatchInputError(f"route: realtime, batches or auto, not {route!r}")
        if route != "realtime" and vote is not None:
            raise BatchInputError(f"--route {route} takes no --vote yet: send votes in real time")
        if route == "auto" and deadline_s is None:
            raise BatchInputError(
                "--route auto needs a --deadline: it sends in real time what the limits "
                "finish before then, and the rest through the Message Batches API"
            )
        if deadline_s is not None and deadline_s <= 0:
            raise BatchInputError("deadline: must be more than 0 seconds")
        structured = None
        if schema is not None:
            try:
                structured = Structured.model_validate(
                    spec_for_schema(schema, reask=reask, method=schema_method)
                ).model_dump(mode="json", exclude_none=True)
            except (TypeError, ValidationError) as exc:
                raise BatchInputError(f"schema: {_first_error(exc)}") from None
        spec = InputSpec.filled(
            settings,
            prompt_field=prompt_field,
            template=template,
            model=model,
            max_tokens=max_tokens,
            system=system,
            effort=effort,
            max_line_bytes=max_line_bytes,
            structured=structured,
        )
        options = Options(
            name=name,
            vote=vote,
            skip_invalid=skip_invalid,
            max_cost_usd=max_cost_usd,
            on_created=on_created,
            on_enqueued=on_enqueued,
            route=route,
            deadline_s=deadline_s,
            cache=cache,
        )
        return submit(cls, source, spec, options)

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

    def message_batches(self, status: BatchStatus) -> dict[str, dict[str, Any]]:
        """The Message Batches the items went in, by id (indexes, status, polls, counts);
        none on the realtime route, which sends none."""
        return self.ledger.upstream(self.id) if status.route != "realtime" else {}

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
        return self.ledger.wait_ended(self.id, min(seconds, 5.0))

    # --- results -----------------------------------------------------------

    def parsed(self, model: type[_M]) -> Iterator[tuple[str, _M | None]]:
        """(item id, its answer as an instance of ``model``) in input order: None for an
        item without a valid value (failed, ``invalid_output``, not ended yet).

        ``model``: the pydantic class the batch's schema came from (``schema=``).

        Raises:
            pydantic.ValidationError: a value does not fit ``model``.
        """
        for record in self.results():
            data = record.get("data")
            yield record["id"], None if data is None else model.model_validate(data)

    def results(
        self, *, failed_only: bool = False, fmt: ResultFormat = "chorus"
    ) -> Iterator[dict[str, Any]]:
        """One record per input item, in input order, read in chunks.

        In chorus's format every item has a record (``state`` says where an
        unfinished one is); in the Message Batches format only ended items do,
        as the Batches API writes results only for ended requests.
        """
        from orchestration.result_formats import as_batches_result

        for start in range(0, self.ledger.size(self.id), 1000):
            for item_id, raw, raw_state in self.ledger.page(self.id, start, 1000):
                state = raw_state or ItemState.PENDING
                if failed_only and state != ItemState.FAILED:
                    continue
                if fmt == "batches":
                    stored = json.loads(raw) if raw is not None else {"id": item_id}
                    converted = as_batches_result(stored, state)
                    if converted is not None:
                        yield converted
                else:
                    yield _record(item_id, raw, state)

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

    def write_table(self, out: TextIO, fields: Sequence[str] | None = None) -> int:
        """Write the structured answers as CSV to ``out``: a header, then one row per
        input item in input order (``orchestration.result_formats.table_rows``);
        returns the items written. ``fields``: the columns of each item's ``data``,
        by default the first value's own fields."""
        from orchestration.result_formats import table_fields, table_rows

        if fields is None:
            fields = table_fields(self.results())
        writer = csv.writer(out)
        written = -1
        for row in table_rows(self.results(), fields):
            writer.writerow(row)
            written += 1
        return written

    # --- control -----------------------------------------------------------

    def cancel(self) -> BatchStatus:
        """Stop sending: pending items are marked cancelled as workers reach them."""
        self.ledger.cancel(self.id)
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
        self.ledger.resume(self.id)
        status = self.progress()
        if self.lost(status):
            return self._resend({ItemState.PENDING, *NOT_SENT})
        return self._resend(NOT_SENT, unpublished_from=status.enqueued)

    def remove(self) -> None:
        """Delete the batch and its results now."""
        self.ledger.remove(self.id)

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
        for index, state in self.ledger.states(self.id):
            if state in states or (
                unpublished_from is not None
                and state == ItemState.PENDING
                and index >= unpublished_from
            ):
                chosen.append(index)
        chosen.sort()
        route = self.progress().route if chosen else "realtime"
        if outcomes is not None:
            chosen = self._with_outcome(chosen, outcomes)
        ids = self.ledger.item_ids(self.id) if chosen else []
        name = self.ledger.name(self.id) if chosen else ""
        for start in range(0, len(chosen), CHUNK):
            part = chosen[start : start + CHUNK]
            raws = self.ledger.requests(self.id, part)
            # Every request checked before any item is touched: a bad max_tokens
            # leaves the items as they were.
            items: list[tuple[tuple[int, str, CallRequest], int | None]] = []
            rewritten: dict[int, str] = {}
            for index, raw in zip(part, raws, strict=True):
                if raw is None:
                    continue  # its request expired with the batch's other keys
                stored = json.loads(raw)
                if max_tokens is not None:
                    stored["request"]["max_tokens"] = max_tokens
                    request = validate_request(stored["request"])
                    rewritten[index] = json.dumps(stored, separators=(",", ":"))
                else:
                    request = CallRequest.model_validate(stored["request"])
                items.append(((index, ids[index], request), stored.get("vote")))
            self.ledger.rewrite_requests(self.id, rewritten)
            self.ledger.reopen(self.id, part)
            if route == "batches":
                send_to_batches_api(self.id, [index for (index, _, _), _ in items])
                continue
            for item, vote in items:
                if vote:
                    publish(self.id, [item], vote, again=again, batch_name=name)
            singles = [item for item, vote in items if not vote]
            publish(self.id, singles, None, again=again, batch_name=name)
        return len(chosen)

    def _with_outcome(self, indexes: list[int], outcomes: set[str]) -> list[int]:
        """The items among ``indexes`` whose result has one of ``outcomes``."""
        kept: list[int] = []
        for start in range(0, len(indexes), CHUNK):
            part = indexes[start : start + CHUNK]
            for index, raw in zip(part, self.ledger.results(self.id, part), strict=True):
                outcome = json.loads(raw).get("outcome") if raw is not None else None
                if (outcome or "failed") in outcomes:
                    kept.append(index)
        return kept


def _record(item_id: str, raw: bytes | None, state: str) -> dict[str, Any]:
    """An item's line in chorus's format; ``raw`` is what the ledger stored, if anything."""
    from orchestration.result_formats import as_chorus_result

    state_name = STATE_NAMES.get(state, state)
    if raw is None:
        return {"id": item_id, "ok": False, "outcome": None, "state": state_name, "text": None,
                "usage": None, "error": None}  # fmt: skip
    return as_chorus_result(json.loads(raw), state_name)
