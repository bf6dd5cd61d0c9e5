"""Batches end to end: real workers, the ledger in Redis, the local API's counts as witness."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from anthropic.types.messages import MessageBatchIndividualResponse

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, FAKE_API_KEY, Workers, chorus, eventually
from workers import keys

TIMEOUT_S = 60


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def prompts(tmp_path: Path, count: int, text: str = "Summarise review {i}.") -> Path:
    return jsonl(
        tmp_path / "items.jsonl",
        [{"id": f"item-{i:03d}", "prompt": text.format(i=i)} for i in range(count)],
    )


def test_results_come_back_in_input_order_with_failures(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.script([{"match": "review 7.", "responses": [{"status": 400, "message": "bad"}]}])

    batch = Batch.submit(prompts(tmp_path, 30), **BRIEF)
    status = batch.wait(TIMEOUT_S)
    results = list(batch.results())

    assert status.finished
    assert [r["id"] for r in results] == [f"item-{i:03d}" for i in range(30)]
    assert [r["ok"] for r in results].count(False) == 1
    failed = results[7]
    assert not failed["ok"] and failed["state"] == "failed"
    assert failed["error"]["type"] == "invalid_request_error"
    assert failed["error"]["request_id"].startswith("req_")
    assert results[0]["text"] and results[0]["usage"]["output_tokens"] > 0
    assert status.count("complete") == 29 and status.count("failed") == 1
    assert status.errors == {"invalid_request_error": 1}
    assert [r["id"] for r in batch.results(failed_only=True)] == ["item-007"]


def test_status_counts_match_reality_during_and_after_a_run(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.configure(latency_ms=150)
    try:
        batch = Batch.submit(prompts(tmp_path, 120), **BRIEF)
        seen_running = False
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            status = batch.progress()
            # Every item is in exactly one state at every moment.
            assert sum(status.counts.values()) == status.total == 120
            seen_running |= status.count("running") > 0
            if status.finished:
                break
            assert status.ended <= 120
            assert time.monotonic() < deadline, f"not finished within {TIMEOUT_S} s: {status}"
            time.sleep(0.01)
    finally:
        local_api.configure(latency_ms=20)

    records = list(batch.results())
    stats = local_api.stats()
    assert seen_running
    assert status.count("complete") == 120
    assert status.calls == stats["paid"] == 120
    assert (
        status.input_tokens
        == sum(r["usage"]["input_tokens"] for r in records)
        == stats["input_tokens"]
    )
    assert (
        status.output_tokens
        == sum(r["usage"]["output_tokens"] for r in records)
        == stats["output_tokens"]
    )
    assert status.cost_usd == pytest.approx(sum(r["cost_usd"] for r in records), abs=1e-5)
    assert status.started_at is not None and status.ended_at is not None


def test_resubmitting_under_the_same_name_pays_nothing_twice(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.script(
        [{"match": "review 3.", "responses": [{"status": 529}], "then": "repeat_last"}]
    )
    path = prompts(tmp_path, 12)
    first = Batch.submit(path, name="nightly", **BRIEF)
    first.wait(TIMEOUT_S)
    paid = local_api.stats()["paid"]

    again = Batch.submit(path, name="nightly", **BRIEF)

    assert again.id == first.id
    assert again.report.resumed
    assert again.report.enqueued == 0  # item 3 failed: it has a result too
    assert again.report.already_answered == 12
    assert local_api.stats()["paid"] == paid == 11


def test_a_new_batch_of_the_same_items_is_answered_from_the_store(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    path = prompts(tmp_path, 10)
    Batch.submit(path, **BRIEF).wait(TIMEOUT_S)

    second = Batch.submit(path, **BRIEF)
    status = second.wait(TIMEOUT_S)

    assert second.id != Batch.recent()[1].id
    assert status.count("complete") == 10
    assert status.from_store == 10 and status.cost_usd == 0
    assert local_api.stats()["paid"] == 10


def test_cancel_stops_pending_items(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.configure(latency_ms=400)
    try:
        batch = Batch.submit(prompts(tmp_path, 200), **BRIEF)
        eventually(lambda: batch.progress().count("complete") >= 1)

        batch.cancel()
        status = batch.wait(TIMEOUT_S)
    finally:
        local_api.configure(latency_ms=20)

    assert status.finished and status.stop == "cancelled"
    assert status.count("cancelled") > 100
    assert status.count("complete") + status.count("cancelled") == 200
    assert local_api.stats()["paid"] == status.count("complete")


def test_the_budget_stops_sending_before_it_is_passed(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    # Each call costs $0.01 of output at Sonnet 5's $10/MTok (plus a little input).
    local_api.script([{"match": "Summarise", "responses": [{"text": "x", "output_tokens": 1000}]}])

    batch = Batch.submit(prompts(tmp_path, 20), max_tokens=1000, max_cost_usd=0.035)
    status = batch.wait(TIMEOUT_S)

    assert status.finished and status.stop == "budget"
    assert status.count("complete") == 3
    assert status.count("skipped_budget") == 17
    assert local_api.stats()["paid"] == 3
    assert 0.030 < status.cost_usd <= 0.035
    assert status.reserved_usd == 0
    skipped = [r for r in batch.results() if r["state"] == "skipped_budget"]
    assert skipped[0]["error"]["type"] == "budget_exceeded"


@pytest.fixture
def refused_key(local_api: LocalAPIServer) -> Iterator[None]:
    local_api.configure(api_key="sk-ant-not-the-workers-key", latency_ms=100)
    yield
    local_api.configure(api_key=None, latency_ms=20)


def test_a_401_pauses_the_batch_with_one_message(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path, refused_key: None
) -> None:
    batch = Batch.submit(prompts(tmp_path, 300), **BRIEF)

    status = batch.wait(TIMEOUT_S)

    assert status.stalled and status.stop == "paused"
    assert status.pause_message is not None
    assert "401 authentication_error" in status.pause_message
    assert f"chorus resume {batch.id}" in status.pause_message
    assert status.count("failed") == 0
    assert status.count("paused") == 300
    assert local_api.stats()["requests"] < 100  # not one 401 per item

    # Once the key works again, resume sends every paused item.
    local_api.configure(api_key=None)
    assert batch.resume() == 300
    status = batch.wait(TIMEOUT_S)
    assert status.finished and status.count("complete") == 300
    assert status.pause_message is None


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (429, "enforced_spend_limit_reached", "You have reached your API usage limits."),
        (400, None, "You have reached your specified workspace API usage limits."),
    ],
    ids=["tier-spend-limit-429", "workspace-spend-limit-400"],
)
def test_a_spend_limit_pauses_the_batch_after_the_first_and_resume_finishes_it(
    workers: Workers,
    local_api: LocalAPIServer,
    tmp_path: Path,
    status: int,
    code: str | None,
    message: str,
) -> None:
    refusal: dict[str, Any] = {"status": status, "message": message, "latency_ms": 100}
    if code is not None:
        refusal["error_code"] = code
    local_api.script([{"match": "Summarise review", "responses": [refusal]}])
    batch = Batch.submit(prompts(tmp_path, 300), name=f"spend-{status}", **BRIEF)

    paused = batch.wait(TIMEOUT_S)

    assert paused.stalled and paused.stop == "paused"
    assert paused.count("failed") == 0 and paused.count("paused") == 300
    assert paused.retries == {}  # none was retried: each would fail the same way
    assert paused.pause_message is not None
    assert (code or "a spend limit you set") in paused.pause_message
    assert f"chorus resume {batch.id}" in paused.pause_message
    refused = local_api.stats()["by_status"].get(str(status), 0)
    assert 1 <= refused < 60  # the calls already in flight, not one per item

    # Once the account can pay again, resume sends every paused item.
    local_api.clear_script()
    resumed = chorus("resume", f"spend-{status}")
    finished = batch.wait(TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr
    assert finished.finished and finished.count("complete") == 300
    assert finished.pause_message is None


def test_x_should_retry_false_stops_the_retries_the_status_would_allow(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    told = {"status": 529, "headers": {"x-should-retry": "false"}}
    local_api.script(
        [
            {"match": "review 1.", "responses": [told]},
            {"match": "review 2.", "responses": [{"status": 529}, {}]},
        ]
    )

    batch = Batch.submit(prompts(tmp_path, 3), **BRIEF)
    status = batch.wait(TIMEOUT_S)
    records = {r["id"]: r for r in batch.results()}

    assert records["item-001"]["error"]["type"] == "overloaded_error"
    assert records["item-001"]["calls"] == 1  # told not to: one attempt
    assert records["item-002"]["ok"] and records["item-002"]["calls"] == 2  # a plain 529: retried
    assert status.count("complete") == 2


def test_retry_after_ms_is_waited_rather_than_the_rounder_retry_after(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    # A 429 asking for 8 s in whole seconds and 150 ms to the millisecond.
    hurry = {"status": 429, "retry_after_s": 8, "headers": {"retry-after-ms": "150"}}
    local_api.script([{"match": "review 0.", "responses": [hurry, {}]}])

    batch = Batch.submit(prompts(tmp_path, 1), **BRIEF)
    status = batch.wait(TIMEOUT_S)
    [record] = batch.results()

    assert status.finished and record["ok"] and record["calls"] == 2
    assert status.retries == {"rate_limit_error": 1}
    assert status.elapsed_s < 8  # 150 ms waited, not the 8 s of retry-after


def test_retry_failed_runs_the_failed_items_again(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.script(
        [
            {
                "match": "review 2.",
                "responses": [{"status": 400, "message": "first time"}, {"text": "fine now"}],
            }
        ]
    )
    batch = Batch.submit(prompts(tmp_path, 5), **BRIEF)
    assert batch.wait(TIMEOUT_S).count("failed") == 1

    assert batch.retry_failed() == 1
    status = batch.wait(TIMEOUT_S)

    assert status.count("complete") == 5 and status.count("failed") == 0
    assert status.errors.get("invalid_request_error", 0) == 0
    assert next(r for r in batch.results() if r["id"] == "item-002")["text"] == "fine now"


def test_the_message_batches_format_both_ways(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.script([{"match": "break", "responses": [{"status": 400, "message": "broken"}]}])
    lines = [
        {
            "custom_id": f"req-{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 32,
                "messages": [{"role": "user", "content": "break" if i == 1 else f"Hello {i}"}],
            },
        }
        for i in range(3)
    ]
    batch = Batch.submit(jsonl(tmp_path / "batches.jsonl", lines))
    batch.wait(TIMEOUT_S)

    out = tmp_path / "results.jsonl"
    done = chorus("results", batch.id, "--format", "batches", "-o", str(out))
    results = [json.loads(line) for line in out.read_text().splitlines()]

    assert done.returncode == 0, done.stderr
    assert [r["custom_id"] for r in results] == ["req-0", "req-1", "req-2"]
    # Each line is what the SDK reads a Batches results file into.
    parsed = [MessageBatchIndividualResponse.model_validate(r) for r in results]
    assert [p.result.type for p in parsed] == ["succeeded", "errored", "succeeded"]
    ok = results[0]["result"]
    # The message whole, every field the API's reply has (the local API's shape:
    # tests/unit/test_localapi_server.py), as chorus's own format keeps it.
    fields = "id type role model content stop_reason stop_sequence stop_details container usage"
    assert list(ok["message"]) == fields.split()
    assert ok["message"]["type"] == "message" and ok["message"]["role"] == "assistant"
    assert ok["message"]["model"] == "claude-haiku-4-5"
    assert ok["message"]["content"][0]["type"] == "text"
    assert set(ok["message"]["usage"]) >= {"input_tokens", "output_tokens", "cache_creation"}
    chorus_format = {r["id"]: r for r in batch.results()}
    for name, field in (("message_id", "id"), ("content", "content"), ("usage", "usage")):
        assert chorus_format["req-0"][name] == ok["message"][field]
    errored = results[1]["result"]
    assert errored["type"] == "errored"
    assert errored["error"]["type"] == "error"
    assert errored["error"]["error"] == {"type": "invalid_request_error", "message": "broken"}
    assert errored["error"]["request_id"].startswith("req_")


def test_bad_input_enqueues_nothing_and_names_every_line(
    workers: Workers, redis_client: redis.Redis, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"prompt": "fine"}\n{"prompt": \n{"prompt": NaN}\n{"nope": 1}\n')

    done = chorus("submit", str(path))

    assert done.returncode == 2
    assert "3 of 4 lines are invalid; nothing was enqueued" in done.stderr
    for line in ("line 2: not valid JSON", "line 3: NaN", "line 4: no 'prompt' field"):
        assert line in done.stderr
    assert redis_client.zcard(keys.batch_index()) == 0


def test_skip_invalid_enqueues_the_rest_and_reports_what_it_skipped(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": 5}\n{"prompt": "three"}\n')

    done = chorus("submit", str(path), "--skip-invalid", "--wait")

    assert done.returncode == 0, done.stderr
    assert "skipped 1 invalid lines" in done.stderr
    assert "line 2: prompt: must be a non-empty string" in done.stderr
    batch_id = done.stdout.strip()
    assert Batch.get(batch_id).progress().count("complete") == 2


def test_a_template_builds_each_prompt(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    template = tmp_path / "prompt.txt"
    template.write_text("Translate to French: {phrase}")
    items = jsonl(tmp_path / "phrases.jsonl", [{"phrase": "good morning"}, {"phrase": "thank you"}])

    done = chorus("submit", str(items), "--template", str(template), "--wait")

    assert done.returncode == 0, done.stderr
    logged = [e["prompt"] for e in local_api.requests_log()]
    assert sorted(logged) == ["Translate to French: good morning", "Translate to French: thank you"]


def test_voting_items_keep_the_majority(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.script(
        [
            {
                "match": "Yes or no",
                "responses": [{"text": "Yes"}, {"text": "no"}, {"text": "yes."}],
                "per_prompt": True,
            }
        ]
    )
    path = prompts(tmp_path, 4, text="Yes or no, item {i}?")

    batch = Batch.submit(path, vote=3, **BRIEF)
    status = batch.wait(TIMEOUT_S)

    assert status.count("complete") == 4
    assert status.calls == 12
    for record in batch.results():
        assert record["text"].strip(".").casefold() == "yes"
        assert record["agreement"] == pytest.approx(2 / 3)


def test_flower_sees_the_batch_item_and_prompt_but_never_the_key(
    workers: Workers, tmp_path: Path, captured_calls: list[dict[str, Any]]
) -> None:
    batch = Batch.submit(prompts(tmp_path, 2), **BRIEF)

    shown = [m["headers"]["argsrepr"] for m in captured_calls]
    assert shown[0] == f"batch={batch.id} item=item-000 prompt='Summarise review 0.'"
    assert all(FAKE_API_KEY not in json.dumps(m["headers"]) for m in captured_calls)
    batch.wait(TIMEOUT_S)


def test_the_cli_shows_status_and_lists_batches(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    submitted = chorus("submit", str(prompts(tmp_path, 6)), "--name", "cli-run", "--wait")
    batch_id = submitted.stdout.strip()

    status = chorus("status", "cli-run")
    listing = chorus("ls")
    as_json = json.loads(chorus("status", batch_id, "--json").stdout)

    assert submitted.returncode == 0, submitted.stderr
    assert "complete 6" in status.stdout
    assert batch_id in listing.stdout and "cli-run" in listing.stdout
    assert as_json["counts"]["complete"] == 6
    assert chorus("status", "no-such-batch").returncode == 2


def test_a_waiting_producer_wakes_when_the_last_item_ends_not_at_its_next_poll(
    workers: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_api: LocalAPIServer
) -> None:
    # Given calls slow enough that the producer is asleep when the last one ends...
    local_api.configure(latency_ms=500)
    # ...and a producer waiting with a long poll interval, each of its sleeps recorded
    woken: list[bool] = []
    sleep = Batch._sleep_until_ended

    def recorded(self: Batch, seconds: float) -> bool:
        woken.append(sleep(self, seconds))
        return woken[-1]

    monkeypatch.setattr(Batch, "_sleep_until_ended", recorded)
    batch = Batch.submit(prompts(tmp_path, 5, text="Wake me {i}."), **BRIEF)
    status = batch.wait(TIMEOUT_S, poll_s=60)

    # Then it returned as the last item ended: its last sleep was ended by the
    # worker's token, not by its timeout
    assert status.finished and status.count("complete") == 5
    assert woken and woken[-1] is True, woken
