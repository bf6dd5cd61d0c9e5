"""Submitting a batch (orchestration.submission) on fakeredis, publishing recorded:
what is validated, recorded in the ledger, and published, first time and again."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest

from orchestration import submission
from orchestration.batch import Batch
from orchestration.batchfile import BatchInputError
from orchestration.submission import InvalidBatchFile, needs_sending, validate
from workers.ledger import ItemState, Ledger
from workers.redisio import run_together

MODEL = "claude-sonnet-4-6"


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[int], Any]]:
    """Every publish, as (batch id, indexes, vote); the ledger on one fakeredis."""
    client = fakeredis.FakeRedis()
    sent: list[tuple[str, list[int], Any]] = []

    def publish(batch_id: str, items: Any, vote: Any, **kw: Any) -> None:
        if items:
            sent.append((batch_id, [index for index, _, _ in items], vote))

    monkeypatch.setattr(submission, "ledger_for", lambda settings: Ledger(client, expires_s=60))
    monkeypatch.setattr(submission, "remember", lambda *args: None)
    monkeypatch.setattr(submission, "publish", publish)
    return sent


def lines(n: int, *, bad: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"id": f"i{i}", "prompt": f"Summarise {i}."} if i not in bad else {"id": f"i{i}"}
        for i in range(n)
    ]


def test_an_invalid_line_stops_the_submit_before_anything_is_recorded(
    published: list[Any],
) -> None:
    with pytest.raises(InvalidBatchFile, match=r"1 of 4 lines are invalid; nothing was enqueued"):
        Batch.submit(lines(4, bad=(2,)), model=MODEL)
    assert published == []


def test_skip_invalid_enqueues_the_rest_and_an_empty_input_is_refused(
    published: list[Any],
) -> None:
    batch = Batch.submit(lines(4, bad=(2,)), model=MODEL, skip_invalid=True)

    assert (batch.report.items, batch.report.invalid_total) == (3, 1)
    assert batch.progress().total == 3 and published == [(batch.id, [0, 1, 2], None)]
    with pytest.raises(BatchInputError, match="once 1 invalid lines are skipped"):
        Batch.submit(lines(1, bad=(0,)), model=MODEL, skip_invalid=True)


def test_a_batch_is_recorded_in_chunks_then_published_and_running(
    published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission, "CHUNK", 2)
    progress: list[tuple[int, int]] = []

    batch = Batch.submit(lines(5), model=MODEL, on_enqueued=lambda n, t: progress.append((n, t)))

    assert [indexes for _, indexes, _ in published] == [[0, 1], [2, 3], [4]]
    assert progress == [(2, 5), (4, 5), (5, 5)]
    status = batch.progress()
    assert (status.state, status.total, status.enqueued, status.pending) == ("running", 5, 5, 5)
    assert batch.ledger.item_ids(batch.id) == [f"i{i}" for i in range(5)]


def test_the_same_input_again_under_its_name_sends_only_what_has_no_answer(
    published: list[Any],
) -> None:
    first = Batch.submit(lines(4), model=MODEL, name="again")
    ledger = first.ledger
    for index, state in ((0, ItemState.COMPLETE), (1, ItemState.FAILED)):
        ledger.start(first.id, index)
        run_together([ledger.finish_command(first.id, index, {"id": f"i{index}"}, state=state)])
    published.clear()

    again = Batch.submit(lines(4), model=MODEL, name="again")

    assert again.id == first.id and again.report.resumed
    # Items 2 and 3 are pending below the enqueued mark: their messages are queued.
    assert published == [] and again.report.already_answered == 2
    with pytest.raises(BatchInputError, match="has 4 items but this input has 3"):
        Batch.submit(lines(3), model=MODEL, name="again")


def test_only_unsent_or_unpublished_items_need_sending_on_a_resubmit() -> None:
    assert needs_sending(None, 0, 0)  # never recorded
    for state in (ItemState.PAUSED, ItemState.CANCELLED, ItemState.SKIPPED_BUDGET):
        assert needs_sending(state, 0, 10)
    assert needs_sending(ItemState.PENDING, 7, 5)  # past the mark: never published
    assert not needs_sending(ItemState.PENDING, 3, 5)  # its message is queued
    for state in (ItemState.COMPLETE, ItemState.FAILED, ItemState.RUNNING):
        assert not needs_sending(state, 0, 0)


def test_the_first_pass_keeps_counts_the_first_errors_and_each_model_s_first_line() -> None:
    from orchestration.batchfile import InputSpec

    def line(custom_id: str, model: str) -> dict[str, Any]:
        user = [{"role": "user", "content": "hi"}]
        return {"custom_id": custom_id, "params": {"model": model, "max_tokens": 10,
                                                   "messages": user}}  # fmt: skip

    models = [MODEL, MODEL, "claude-haiku-4-5", MODEL]
    items = [line(f"c{i}", model) for i, model in enumerate(models)]
    report = validate([*items, {"custom_id": "bad"}], InputSpec(model=MODEL))

    assert (report.items, report.invalid_total) == (4, 1)
    assert [e.line for e in report.invalid] == [5]
    assert report.models == {MODEL: 1, "claude-haiku-4-5": 3}


def test_a_resubmit_records_the_ids_a_cut_off_submit_never_recorded(
    published: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission, "CHUNK", 2)
    real_add = Ledger.add_items
    calls = {"n": 0}

    def add_then_fail(self: Ledger, batch_id: str, items: Any, *, new: bool) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise BatchInputError("cut off")  # the second chunk never recorded
        real_add(self, batch_id, items, new=new)

    monkeypatch.setattr(Ledger, "add_items", add_then_fail)
    with pytest.raises(BatchInputError, match="cut off"):
        Batch.submit(lines(5), model=MODEL, name="cut")
    monkeypatch.setattr(Ledger, "add_items", real_add)

    again = Batch.submit(lines(5), model=MODEL, name="cut")

    assert again.ledger.item_ids(again.id) == [f"i{i}" for i in range(5)]
    assert [r["id"] for r in again.results()] == [f"i{i}" for i in range(5)]
