"""The batch ledger's contract, run against fakeredis (unit) and a real Redis (integration).

fakeredis runs the scripts on Lua 5.4 through lupa; only a real Redis (Lua
5.1) proves them. Both must pass the same class: transitions, counters,
duplicates, budgets, completion, and the producer's controls.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from workers import keys
from workers.ledger import BatchState, ItemState, Ledger, Start, result_record
from workers.models import Envelope, ErrorInfo
from workers.redisio import run_together

BATCH = "b-contract"
KEEP_S = 3600


def answer(text: str = "ok", *, cost_usd: float | None = 0.001, tokens: int = 10) -> Envelope:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": tokens, "output_tokens": tokens // 2},
    }
    envelope = Envelope.answered("k", message, max_tokens=100)
    return envelope.model_copy(update={"cost_usd": cost_usd, "attempts": 1})


def failed(error_type: str = "api_error") -> Envelope:
    return Envelope.failure("k", ErrorInfo(type=error_type, message="no"))


class LedgerContract:
    """Subclasses provide ``client``: a Redis or a FakeRedis, empty."""

    client: redis.Redis

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.client, expires_s=KEEP_S)

    def created(self, total: int = 3, *, max_cost_usd: float | None = None) -> Ledger:
        ledger = self.ledger
        ledger.create(
            BATCH,
            name="contract",
            source="items.jsonl",
            total=total,
            model="claude-sonnet-5",
            queue="chorus",
            max_cost_usd=max_cost_usd,
        )
        ledger.add_items(
            BATCH, [(i, f"item-{i}", '{"request":{}}') for i in range(total)], new=True
        )
        ledger.published(BATCH, total, last=True)
        return ledger

    def end(self, ledger: Ledger, index: int, outcome: Envelope, **kw: Any) -> bool:
        state = ItemState.COMPLETE if outcome.ok else ItemState.FAILED
        error_type = "" if outcome.ok or outcome.error is None else outcome.error.type
        command = ledger.finish_command(
            BATCH,
            index,
            result_record(f"item-{index}", outcome),
            state=kw.pop("state", state),
            error_type=kw.pop("error_type", error_type),
            call=kw.pop("call", outcome),
            **kw,
        )
        (reply,) = run_together([command])
        return bool(reply)

    def status(self) -> Any:
        status = self.ledger.status(BATCH)
        assert status is not None
        return status

    # --- transitions --------------------------------------------------------

    def test_a_new_batch_is_pending_then_running_once_published(self) -> None:
        ledger = self.ledger
        ledger.create(BATCH, name="contract", source="f", total=2, model="m", queue="q",
                      max_cost_usd=None)  # fmt: skip
        assert self.status().state == BatchState.ENQUEUING
        ledger.add_items(BATCH, [(0, "a", "{}"), (1, "b", "{}")], new=True)
        ledger.published(BATCH, 1, last=False)
        assert (self.status().enqueued, self.status().state) == (1, BatchState.ENQUEUING)
        ledger.published(BATCH, 2, last=True)

        status = self.status()
        assert (status.state, status.total, status.enqueued) == (BatchState.RUNNING, 2, 2)
        assert status.pending == 2 and ledger.item_states(BATCH, [0, 1]) == ["p", "p"]
        assert ledger.item_ids(BATCH) == ["a", "b"] and ledger.find("contract") == BATCH

    def test_an_item_moves_running_waiting_retrying_and_ends_complete(self) -> None:
        ledger = self.created()
        assert ledger.start(BATCH, 0) == Start("go", "0")
        assert self.status().count("running") == 1 and self.status().started_at is not None
        ledger.move(BATCH, 0, ItemState.WAITING, "output_tokens", 1.5)
        ledger.move(BATCH, 0, ItemState.RETRYING, "overloaded_error", 0.5)
        ledger.move(BATCH, 0, ItemState.RUNNING)
        assert self.end(ledger, 0, answer("done"))

        status = self.status()
        assert status.counts["complete"] == 1 and status.counts["running"] == 0
        assert status.counts["pending"] == 2 and status.active == 0
        assert status.rate_limit_wait_s == 1.5 and status.retries == {"overloaded_error": 1}
        [(item_id, raw, state)] = ledger.page(BATCH, 0, 1)
        assert (item_id, state) == ("item-0", "c")
        assert raw is not None and json.loads(raw)["id"] == "item-0"

    def test_a_move_of_an_item_not_in_work_does_nothing(self) -> None:
        ledger = self.created()
        ledger.move(BATCH, 1, ItemState.WAITING, "requests", 2.0)  # still pending
        assert self.status().count("waiting") == 0 and self.status().rate_limit_wait_s == 0

    # --- duplicates ---------------------------------------------------------

    def test_an_item_ends_once_whatever_the_duplicates(self) -> None:
        ledger = self.created()
        ledger.start(BATCH, 0)
        assert self.end(ledger, 0, answer(tokens=10))
        assert not self.end(ledger, 0, answer(tokens=10))
        assert not self.end(ledger, 0, failed())

        status = self.status()
        assert status.count("complete") == 1 and status.count("failed") == 0
        assert (status.input_tokens, status.calls) == (10, 1) and status.errors == {}
        assert ledger.start(BATCH, 0) == Start("done", "c")

    def test_a_batch_that_is_gone_is_never_written(self) -> None:
        ledger = self.ledger
        assert ledger.start("b-gone", 0) == Start("gone", "")
        assert not self.client.exists(keys.batch("b-gone"))
        command = ledger.finish_command("b-gone", 0, {"id": "x"}, state=ItemState.FAILED)
        assert run_together([command]) == [False]
        assert self.client.keys("*b-gone*") == []

    # --- counters -----------------------------------------------------------

    def test_spend_counts_tokens_cost_calls_and_answers_from_the_store(self) -> None:
        ledger = self.created()
        ledger.start(BATCH, 0)
        ledger.start(BATCH, 1)
        ledger.start(BATCH, 2)
        self.end(ledger, 0, answer(cost_usd=0.25, tokens=100))
        from_store = answer(tokens=100).model_copy(update={"from_store": True, "attempts": 0})
        self.end(ledger, 1, from_store)
        self.end(ledger, 2, answer(cost_usd=None, tokens=40))  # a model with no price

        status = self.status()
        assert (status.input_tokens, status.output_tokens) == (240, 120)
        assert status.cost_usd == 0.25  # the stored answer cost nothing now
        assert (status.calls, status.from_store, status.cost_unknown_items) == (2, 1, 1)

    def test_a_vote_s_samples_count_their_spend_before_the_item_ends(self) -> None:
        ledger = self.created()
        for _ in range(3):
            run_together(ledger.spend_commands(BATCH, answer(cost_usd=None, tokens=10)))
        status = self.status()
        assert (status.calls, status.input_tokens, status.cost_unknown_items) == (3, 30, 3)
        assert status.count("complete") == 0

    def test_failures_count_by_error_type_and_reopen_takes_them_back(self) -> None:
        ledger = self.created()
        for index in (0, 1):
            ledger.start(BATCH, index)
            self.end(ledger, index, failed("overloaded_error"))
        ledger.start(BATCH, 2)
        self.end(ledger, 2, answer())
        assert self.status().errors == {"overloaded_error": 2}

        assert ledger.reopen(BATCH, [0, 1, 2]) == 2  # a complete item is never reopened
        status = self.status()
        assert status.errors == {"overloaded_error": 0} and status.pending == 2
        assert status.state == BatchState.RUNNING and ledger.results(BATCH, [0]) == [None]

    # --- budgets ------------------------------------------------------------

    def test_a_budget_reserves_worst_cases_and_stops_the_batch_before_passing_it(self) -> None:
        ledger = self.created(max_cost_usd=1.0)
        assert ledger.start(BATCH, 0) == Start("go", "1000000")
        assert ledger.reserve_budget(BATCH, 600_000) == "ok"
        assert self.status().reserved_usd == 0.6
        assert ledger.reserve_budget(BATCH, 600_000) == "budget"
        assert ledger.stop_reason(BATCH) == "budget"
        assert ledger.start(BATCH, 1) == Start("stop", "budget")

        # The call ends cheaper than its worst case: the reservation is released.
        self.end(ledger, 0, answer(cost_usd=0.1), reserved_micros=600_000)
        assert self.status().reserved_usd == 0 and self.status().cost_usd == 0.1

    # --- completion ---------------------------------------------------------

    def test_the_last_item_to_end_makes_the_batch_done_wakes_waiters_and_sets_expiry(
        self,
    ) -> None:
        ledger = self.created(total=2)
        for index in (0, 1):
            ledger.start(BATCH, index)
        self.end(ledger, 0, answer())
        assert self.status().state == BatchState.RUNNING
        assert not ledger.wait_ended(BATCH, 0.01)
        self.end(ledger, 1, failed())

        status = self.status()
        assert status.finished and status.ended_at is not None and status.ended == 2
        assert ledger.wait_ended(BATCH, 0.01)
        assert 0 < self.client.ttl(keys.batch(BATCH)) <= KEEP_S

    def test_a_batch_whose_items_all_ended_before_the_last_publish_is_done_then(
        self,
    ) -> None:
        ledger = self.created(total=1)
        ledger.start(BATCH, 0)
        self.end(ledger, 0, answer())
        assert self.status().finished
        ledger.resubmit(BATCH, model="m", queue="q", max_cost_usd=None)  # the same input again
        assert (
            self.status().state == BatchState.ENQUEUING and self.client.ttl(keys.batch(BATCH)) == -1
        )
        ledger.published(BATCH, 1, last=True)
        assert self.status().finished and ledger.wait_ended(BATCH, 0.01)

    # --- producer controls --------------------------------------------------

    def test_cancel_stops_what_was_not_sent_and_leaves_a_done_batch_done(self) -> None:
        ledger = self.created(total=1)
        ledger.cancel(BATCH)
        assert (self.status().state, self.status().stop) == (BatchState.CANCELLED, "cancelled")
        assert ledger.start(BATCH, 0) == Start("stop", "cancelled")
        self.end(ledger, 0, failed("cancelled"), state=ItemState.CANCELLED, error_type="")
        assert self.status().finished
        ledger.cancel(BATCH)
        assert self.status().state == BatchState.DONE

    def test_a_pause_holds_the_batch_until_resumed(self) -> None:
        ledger = self.created()
        ledger.start(BATCH, 0)
        self.end(ledger, 0, failed("authentication_error"), state=ItemState.PAUSED,
                 error_type="", pause_message="the API refused the key")  # fmt: skip
        status = self.status()
        assert (status.state, status.stop) == (BatchState.PAUSED, "paused")
        assert status.pause_message == "the API refused the key"
        assert ledger.start(BATCH, 1) == Start("stop", "paused")

        ledger.resume(BATCH)
        status = self.status()
        assert (status.state, status.stop, status.pause_message) == ("running", None, None)
        assert ledger.start(BATCH, 1) == Start("go", "0")

    def test_pending_items_end_lost_only_if_the_batch_did_not_move(self) -> None:
        ledger = self.created()
        ledger.start(BATCH, 0)
        mark = self.client.hget(keys.batch(BATCH), "updated_at")
        assert mark is not None
        lost = Envelope.failure("lost", ErrorInfo(type="lost", message="gone"))
        assert ledger.end_pending(BATCH, lost, unless_moved_since="0") == 0
        assert ledger.end_pending(BATCH, lost, unless_moved_since=mark.decode()) == 2
        status = self.status()
        assert status.errors == {"lost": 2} and status.count("running") == 1

    def test_the_sweeper_s_restores_count_and_remove_forgets_the_batch(self) -> None:
        ledger = self.created()
        ledger.count_restored(BATCH)
        assert self.status().restored == 1
        assert [s.id for s in ledger.recent()] == [BATCH]

        ledger.remove(BATCH)
        assert ledger.status(BATCH) is None and ledger.find("contract") is None
        assert self.client.keys("*b-contract*") == []
        ledger.count_restored(BATCH)  # a batch gone is not written
        assert not self.client.exists(keys.batch(BATCH))

    def test_a_batch_counted_by_an_older_version_reads_its_from_store_count_whole(
        self,
    ) -> None:
        self.created()
        # Before the field was named from_store, the same count was "cached".
        self.client.hset(keys.batch(BATCH), mapping={"cached": 5, "from_store": 2})
        assert self.status().from_store == 7
