"""Outcomes end to end: each stop reason and content block through real workers, the ledger,
``chorus status``, both results formats, the patterns and ``chorus call``.

The local API answers as the real one does: claude-sonnet-5 thinks by default
and its thinking counts against max_tokens; refusals, context overflows and
paused turns come from its named faults, scripted per prompt.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest

from config.settings import get_settings
from localapi import LocalAPIServer
from localapi.blocks import BLOCK_TYPES, BlockContext, build_blocks
from orchestration.batch import Batch
from orchestration.client import request_from_prompt as ask
from orchestration.metrics import ChorusCollector
from orchestration.patterns import fan_out_fan_in
from orchestration.progress import describe
from tests.integration.conftest import Workers, chorus
from workers import keys

TIMEOUT_S = 60
WEB_SEARCH = [{"type": "web_search_20250305", "name": "web_search"}]
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def line(custom_id: str, prompt: str, **params: Any) -> dict[str, Any]:
    """A Message Batches line on the default model, with its own parameters."""
    body: dict[str, Any] = {
        "model": "claude-sonnet-5",
        "max_tokens": 512,
        "output_config": {"effort": "low"},
        "messages": [{"role": "user", "content": prompt}],
    }
    body.update(params)
    return {"custom_id": custom_id, "params": body}


def results(batch: Batch, fmt: str = "chorus") -> dict[str, dict[str, Any]]:
    records = list(batch.results(fmt=fmt))  # type: ignore[arg-type]
    key = "custom_id" if fmt == "batches" else "id"
    return {record[key]: record for record in records}


def test_each_stop_reason_ends_its_item_with_its_outcome(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    local_api.script(
        [
            {"match": "Pause for good", "responses": [{"fault": "pause_turn"}]},
            {"match": "Pause once", "responses": [{"fault": "pause_turn"}, {}]},
            {"match": "Refuse", "responses": [{"fault": "refusal"}]},
            {"match": "Overflow", "responses": [{"fault": "context_exceeded"}]},
            {"match": "Stop early", "responses": [{"text": "First part. STOP second part."}]},
        ]
    )
    lines = [
        line("end-turn", "Answer plainly."),
        line("thinking-ate-it", "Think first.", max_tokens=20),
        line("stop-sequence", "Stop early.", stop_sequences=["STOP"]),
        line("tool-use", "Use the tool.", tools=[WEATHER_TOOL], tool_choice={"type": "any"}),
        line("paused-once", "Pause once.", tools=WEB_SEARCH),
        line("paused-for-good", "Pause for good.", tools=WEB_SEARCH),
        line("refused", "Refuse."),
        line("overflow", "Overflow."),
    ]
    path = tmp_path / "outcomes.jsonl"
    path.write_text("".join(json.dumps(item) + "\n" for item in lines))

    batch = Batch.submit(str(path), name="outcomes")
    status = batch.wait(TIMEOUT_S)
    mine = results(batch)
    theirs = results(batch, "batches")

    assert status.finished
    assert {item: record["outcome"] for item, record in mine.items()} == {
        "end-turn": "complete",
        "thinking-ate-it": "truncated_by_thinking",
        "stop-sequence": "complete",
        "tool-use": "complete",
        "paused-once": "complete",
        "paused-for-good": "paused_turn",
        "refused": "refused",
        "overflow": "context_exceeded",
    }
    # Only a complete answer is ok, in the ledger's counts too.
    assert [item for item, record in mine.items() if record["ok"]] == [
        "end-turn",
        "stop-sequence",
        "tool-use",
        "paused-once",
    ]
    assert status.count("complete") == 4 and status.count("failed") == 4
    assert status.outcomes == {
        "complete": 4,
        "truncated_by_thinking": 1,
        "paused_turn": 1,
        "refused": 1,
        "context_exceeded": 1,
        "failed": 0,
    }
    # The truncated answer keeps its thinking, says why and what fixes it.
    cut = mine["thinking-ate-it"]
    assert cut["stop_reason"] == "max_tokens" and cut["text"] == ""
    assert [block["type"] for block in cut["content"]] == ["thinking"]
    assert cut["usage"]["output_tokens_details"] == {"thinking_tokens": 20}
    assert "Raise max_tokens" in cut["error"]["message"]
    # A paused turn sent back once holds the whole turn, and both calls' usage.
    resumed = mine["paused-once"]
    kinds = [b["type"] for b in resumed["content"]]
    assert kinds.index("server_tool_use") < kinds.index("web_search_tool_result")
    assert kinds[-1] == "text"
    assert resumed["calls"] == 2 and resumed["usage"]["server_tool_use"]["web_search_requests"] == 1
    assert mine["paused-for-good"]["calls"] == 1 + 5  # CHORUS_ANTHROPIC__MAX_CONTINUATIONS
    refusal = mine["refused"]
    assert refusal["content"] == [] and refusal["stop_details"]["type"] == "refusal"
    assert refusal["cost_usd"] == 0  # declined before any output: not billed
    # The Batches format reports every answered item as the Batches API does:
    # succeeded, with the message exactly as chorus has it.
    for item, record in theirs.items():
        assert record["result"]["type"] == "succeeded", item
        message = record["result"]["message"]
        assert message["content"] == mine[item]["content"]
        assert message["usage"] == mine[item]["usage"]
        assert message["stop_reason"] == mine[item]["stop_reason"]

    shown = chorus("status", "outcomes")
    assert shown.returncode == 0, shown.stderr
    assert "by outcome" in shown.stdout
    assert "truncated_by_thinking 1" in shown.stdout and "refused 1" in shown.stdout
    assert "raise max_tokens" in shown.stdout

    # The progress bar's line and the metrics say the same.
    progress = describe(status, 0.0).plain
    assert "complete 4" in progress and "truncated by thinking 1" in progress
    assert "refused 1" in progress and "context exceeded 1" in progress
    registry = CollectorRegistry()
    registry.register(ChorusCollector(get_settings()))
    scraped = generate_latest(registry).decode()
    series = f'chorus_batch_outcomes{{batch="{batch.id}",name="outcomes",outcome='
    assert series + '"complete"} 4.0' in scraped
    assert series + '"truncated_by_thinking"} 1.0' in scraped
    assert series + '"refused"} 1.0' in scraped


def test_every_content_block_comes_back_byte_for_byte_in_both_formats(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    # Every block type the SDK knows, built once by the local API's own builders.
    content = build_blocks(
        sorted(BLOCK_TYPES), BlockContext("claude-sonnet-5", random.Random(7), "summarized")
    )
    local_api.script([{"match": "Every block", "responses": [{"content": content}]}])

    batch = Batch.submit([{"id": "all-blocks", "prompt": "Every block, please."}], max_tokens=512)
    batch.wait(TIMEOUT_S)
    mine = results(batch)["all-blocks"]
    theirs = results(batch, "batches")["all-blocks"]["result"]["message"]

    assert mine["content"] == content
    assert theirs["content"] == content
    assert json.dumps(theirs["content"]) == json.dumps(content)  # key order kept too
    assert mine["usage"] == theirs["usage"]
    assert set(mine["usage"]) == {
        "cache_creation", "cache_creation_input_tokens", "cache_read_input_tokens",
        "inference_geo", "input_tokens", "output_tokens", "output_tokens_details",
        "server_tool_use", "service_tier",
    }  # fmt: skip


def test_a_vote_counts_only_complete_answers_and_reports_the_refusals(
    workers: Workers, local_api: LocalAPIServer, redis_client: redis.Redis
) -> None:
    # 3 of 5 samples refused with no content, 2 answered "Yes".
    local_api.script(
        [
            {
                "match": "Is the claim supported",
                "then": "cycle",
                "responses": [
                    {"fault": "refusal"},
                    {"text": "Yes"},
                    {"fault": "refusal"},
                    {"text": "Yes"},
                    {"fault": "refusal"},
                ],
            }
        ]
    )
    prompt = "Is the claim supported? Answer yes or no."

    done = chorus("vote", "-n", "5", "--min-success", "2", "--early-stop", prompt)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Yes"
    assert "agreement: 100%" in done.stderr
    assert done.stderr.count("refused") >= 3  # each refused sample, a failed branch
    assert "success rate 40% (2/5)" in done.stderr
    # Early stop decided on complete answers alone: no refusal reached the board,
    # and two "yes" of five never made a majority, so nothing was revoked.
    votes = redis_client.scan_iter(match=keys.vote("*"))
    [board] = [k for k in votes if not k.endswith(b":decided")]
    assert {k.decode(): int(v) for k, v in redis_client.hgetall(board).items()} == {"yes": 2}
    assert local_api.stats()["stop_reasons"] == {"refusal": 3, "end_turn": 2}

    # At the default min_success (half the samples) two answers do not stand.
    local_api.reset()
    local_api.script([{"match": "Is the claim supported", "then": "cycle", "responses": [
        {"fault": "refusal"}, {"text": "Yes"}, {"fault": "refusal"}, {"text": "Yes"},
        {"fault": "refusal"}]}])  # fmt: skip
    failed = chorus("vote", "-n", "5", prompt + " (again)")
    assert failed.returncode != 0
    assert "min_success" in failed.stderr and "refused" in failed.stderr


def test_a_fan_out_synthesises_only_from_complete_branches(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "Research refusal", "responses": [{"fault": "refusal"}]}])
    subtasks = {
        "history": ask("Research history.", max_tokens=512, effort="low"),
        "design": ask("Research design.", max_tokens=512, effort="low"),
        "refused": ask("Research refusal.", max_tokens=512, effort="low"),
        "cut": ask("Research the long version.", max_tokens=15),
    }

    result = fan_out_fan_in(subtasks, "Write the report from these findings.", min_success=2).wait(
        TIMEOUT_S
    )

    assert result.ok, result.error
    assert (result.succeeded, result.failed) == (2, 2)
    outcomes = {b.label: b.outcome for b in result.branches}
    assert outcomes == {
        "history": "complete",
        "design": "complete",
        "refused": "refused",
        "cut": "truncated_by_thinking",
    }

    # The log keeps each prompt's first 2,000 characters to search in.
    def logged(text: str) -> int:
        return len(local_api.requests_log(text))

    assert logged("Write the report from these findings.") == 1
    assert logged("## history") == 1 and logged("## design") == 1
    assert logged("## refused") == 0 and logged("## cut") == 0
    assert logged("2 of 4 failed and are missing") == 1


def test_chorus_call_says_when_thinking_ate_the_answer(workers: Workers) -> None:
    done = chorus("call", "Explain it all.", "--max-tokens", "20")

    assert done.returncode == 1
    assert "truncated_by_thinking" in done.stderr
    assert "Raise max_tokens" in done.stderr
    assert "Traceback" not in done.stderr


def test_retry_asks_a_refused_item_again_instead_of_serving_the_stored_refusal(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "Maybe refuse", "responses": [{"fault": "refusal"}, {}]}])
    batch = Batch.submit(
        [{"id": "fine", "prompt": "Fine."}, {"id": "twice", "prompt": "Maybe refuse."}],
        max_tokens=512,
        effort="low",
    )
    first = batch.wait(TIMEOUT_S)
    assert first.outcomes == {"complete": 1, "refused": 1, "failed": 0}

    resent = chorus("retry", batch.id, "--refused")
    status = batch.wait(TIMEOUT_S)

    assert resent.returncode == 0, resent.stderr
    assert "1 items (refused) enqueued again" in resent.stderr
    assert status.outcomes == {"complete": 2, "failed": 0}
    assert local_api.stats()["stop_reasons"] == {"end_turn": 2, "refusal": 1}
