"""Sectioning, voting and fan-out/fan-in on real workers, with scripted answers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import get_settings
from localapi import LocalAPIServer
from orchestration.client import request_from_prompt as ask
from orchestration.patterns import Section, Vote, fan_out_fan_in, sectioning, voting
from tests.integration.conftest import Workers, chorus, eventually, start_test_workers
from workers.app import app, reconfigure
from workers.fanin.voting import normalize
from workers.runtime import redis_client

TIMEOUT_S = 60


def test_majority_returns_the_scripted_majority(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script(
        [
            {
                "match": "capital of France?",
                "responses": [
                    {"text": "Paris."},
                    {"text": "Lyon"},
                    {"text": "paris"},
                    {"text": "Marseille"},
                    {"text": "PARIS!"},
                ],
            }
        ]
    )

    result = voting(ask("What is the capital of France?"), n=5).wait(TIMEOUT_S)

    assert result.ok, result.error
    assert result.winner == "paris"
    assert normalize(result.text) == "paris"
    assert {row.answer: row.count for row in (result.votes or [])} == {
        "paris": 3,
        "lyon": 1,
        "marseille": 1,
    }
    assert result.agreement == pytest.approx(0.6)
    assert result.tie_break is None
    assert result.success_rate == 1.0
    assert local_api.stats()["paid"] == 5  # five samples, five calls: none collapsed


def test_a_tie_is_broken_by_the_lowest_sample_index_and_reported(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script(
        [
            {
                "match": "Heads or tails?",
                "responses": [{"text": "Heads"}, {"text": "Tails"}],
                "then": "cycle",
            }
        ]
    )

    result = voting(ask("Heads or tails?"), n=4).wait(TIMEOUT_S)

    assert result.ok
    assert result.tie_break is not None and "tied at 2 votes" in result.tie_break
    # Whichever order the samples reached the API in, the winner is the
    # answer of the lowest-numbered sample.
    assert normalize(result.text) == normalize(result.branches[0].text)


def test_a_failed_branch_still_yields_the_synthesis(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script(
        [
            {"match": "history of", "responses": [{"status": 400, "message": "bad aspect"}]},
            {"match": "Synthesize the research", "responses": [{"text": "The report."}]},
        ]
    )
    subtasks = {
        aspect: ask(f"Research the {aspect} of message queues.")
        for aspect in ("history", "current state", "future")
    }

    result = fan_out_fan_in(subtasks, "Synthesize the research.", min_success=0.5).wait(TIMEOUT_S)

    assert result.ok, result.error
    assert result.text == "The report."
    assert result.success_rate == pytest.approx(2 / 3)
    failed = [b for b in result.branches if not b.ok]
    assert [b.label for b in failed] == ["history"]
    assert failed[0].error is not None and failed[0].error.status == 400
    assert result.fan_in_call is not None and result.fan_in_call.ok
    assert result.usage.output_tokens > 0
    assert result.cost_usd is not None and result.cost_usd > 0


def test_below_min_success_the_failure_names_the_branch(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "accuracy", "responses": [{"status": 400, "message": "nope"}]}])

    result = sectioning(
        {aspect: ask(f"Review this text for {aspect}.") for aspect in ("clarity", "accuracy")},
        min_success=1.0,
    ).wait(TIMEOUT_S)

    assert not result.ok
    assert result.error is not None
    assert result.error.type == "min_success_not_met"
    assert "'accuracy': invalid_request_error 400: nope" in result.error.message
    assert result.success_rate == 0.5


def test_sections_merge_under_headings(workers: Workers, local_api: LocalAPIServer) -> None:
    local_api.script(
        [
            {"match": "for clarity", "responses": [{"text": "Clear enough."}]},
            {"match": "for accuracy", "responses": [{"text": "Two errors."}]},
        ]
    )
    handle = sectioning({a: ask(f"Review this text for {a}.") for a in ("clarity", "accuracy")})

    result = handle.wait(TIMEOUT_S)

    assert result.text == "## clarity\n\nClear enough.\n\n## accuracy\n\nTwo errors."
    progress = handle.progress()
    assert (progress.total, progress.done, progress.ok) == (2, 2, 2)


def test_voting_nested_in_sectioning_works(workers: Workers, local_api: LocalAPIServer) -> None:
    local_api.script(
        [
            {
                "match": "Is it safe?",
                "responses": [{"text": "yes"}, {"text": "no"}, {"text": "Yes."}],
            },
            {"match": "Summarise it", "responses": [{"text": "A summary."}]},
        ]
    )

    result = (
        Section({"verdict": Vote(ask("Is it safe?"), n=3), "summary": ask("Summarise it.")})
        .start()
        .wait(TIMEOUT_S)
    )

    assert result.ok, result.error
    verdict, summary = result.branches
    assert verdict.ok and normalize(verdict.text) == "yes"
    assert verdict.calls == 3
    assert summary.text == "A summary."
    assert result.calls == 4
    assert local_api.stats()["paid"] == 4


def test_many_fan_outs_run_side_by_side(workers: Workers, local_api: LocalAPIServer) -> None:
    handles = [
        fan_out_fan_in([ask(f"Topic {t}, part {p}.") for p in range(3)], f"Synthesize topic {t}.")
        for t in range(4)
    ]

    results = [h.wait(TIMEOUT_S) for h in handles]

    assert all(r.ok for r in results)
    assert local_api.stats()["paid"] == 4 * (3 + 1)


def test_resubmitting_the_same_fan_out_costs_zero_new_calls(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    subtasks = {a: ask(f"Study the {a} of tea.") for a in ("origins", "trade", "rituals")}
    first = fan_out_fan_in(subtasks, "Write one page on tea.").wait(TIMEOUT_S)
    paid = local_api.stats()["paid"]

    again = fan_out_fan_in(subtasks, "Write one page on tea.").wait(TIMEOUT_S)

    assert first.ok and again.ok
    assert paid == 4
    assert local_api.stats()["paid"] == 4  # nothing new
    assert again.text == first.text
    assert again.cost_usd == 0.0
    assert again.calls == 0


def test_a_header_task_delivered_twice_does_not_corrupt_the_chord_and_is_paid_once(
    workers: Workers, local_api: LocalAPIServer, captured_calls: list[dict[str, Any]]
) -> None:
    local_api.script([{"match": "slowly", "responses": [{"text": "done", "latency_ms": 300}]}])
    handle = sectioning({f"part {i}": ask(f"Work slowly on part {i}.") for i in range(3)})
    assert len(captured_calls) == 3

    # A redelivery: the very same message (same task id, group and chord) again.
    message = captured_calls[0]
    with app.producer_or_acquire() as producer:
        producer.publish(
            message["body"],
            exchange=message["exchange"],
            routing_key=message["routing_key"],
            headers=message["headers"],
            serializer="json",
            **{k: v for k, v in message["properties"].items() if k != "body_encoding"},
        )
    result = handle.wait(TIMEOUT_S)
    task_id = message["headers"]["id"]
    eventually(lambda: workers_saw_twice(task_id))
    eventually(lambda: not task_active(task_id))  # the duplicate has finished too

    assert result.ok
    assert [b.text for b in result.branches] == ["done"] * 3
    stats = local_api.stats()
    assert stats["paid"] == 3
    assert stats["duplicates_paid"] == 0


def task_active(task_id: str) -> bool:
    active = app.control.inspect(timeout=0.5).active() or {}
    return any(task["id"] == task_id for tasks in active.values() for task in tasks)


def workers_saw_twice(task_id: str) -> bool:

    raw = redis_client(get_settings().broker_url).get(f"chorus:deliveries:{task_id}")
    return raw is not None and int(raw) >= 2


@pytest.fixture
def one_at_a_time(chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A single worker thread on a queue of its own: samples run one after another."""
    queue = f"solo-{uuid.uuid4().hex[:6]}"
    solo = start_test_workers(
        chorus_env, 1, prefix="solo", concurrency=1, extra_env={"CHORUS_WORKER__QUEUE": queue}
    )
    monkeypatch.setenv("CHORUS_WORKER__QUEUE", queue)
    reconfigure()
    yield
    solo.fleet.stop()


def test_early_stop_revokes_outstanding_samples(
    one_at_a_time: None, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "Agree?", "responses": [{"text": "Agreed."}]}])

    result = voting(ask("Agree?"), n=9, early_stop=True).wait(TIMEOUT_S)

    assert result.ok
    assert normalize(result.text) == "agreed"
    # Five agreeing samples decide a vote of nine; the other four never went out.
    log = [(e["prompt"][:30], e["key"][:12], e["status"]) for e in local_api.requests_log()]
    assert (result.succeeded, result.skipped, result.failed) == (5, 4, 0), log
    assert local_api.stats()["paid"] == 5, log
    revoked = [b for b in result.branches if b.skipped]
    assert all(b.error is not None and b.error.type == "revoked" for b in revoked)


def test_the_vote_command_prints_the_winner_the_table_and_the_bill(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script(
        [
            {
                "match": "Best editor?",
                "responses": [{"text": "vim"}, {"text": "Emacs"}, {"text": "Vim."}],
            }
        ]
    )

    done = chorus("vote", "-n", "3", "Best editor?")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().casefold().strip(".") == "vim"
    assert "votes" in done.stderr and "agreement: 67%" in done.stderr
    assert "success rate 100% (3/3)" in done.stderr
    assert "3 API calls" in done.stderr and "cost $" in done.stderr
    # Nothing on stderr but the report: no traceback from Celery's results at exit.
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "success rate" in done.stderr.splitlines()[-1]


def test_the_section_command_reviews_a_file_per_aspect(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    document = tmp_path / "doc.md"
    document.write_text("Chorus runs many calls.\n")
    local_api.script(
        [
            {"match": "for clarity", "responses": [{"text": "Clear."}]},
            {"match": "for accuracy", "responses": [{"status": 400, "message": "no"}]},
        ]
    )

    done = chorus("section", "--aspect", "clarity", "--aspect", "accuracy", str(document))

    assert done.returncode == 0, done.stderr
    assert "## clarity\n\nClear." in done.stdout
    assert "this section failed: invalid_request_error 400: no" in done.stdout
    assert "success rate 50% (1/2)" in done.stderr
    # Nothing on stderr but the report: no traceback from Celery's results at exit.
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "success rate" in done.stderr.splitlines()[-1]


def test_the_section_command_refuses_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")

    done = chorus("section", "--aspect", "clarity", str(empty))

    assert done.returncode == 2
    assert f"{empty} is empty" in done.stderr
