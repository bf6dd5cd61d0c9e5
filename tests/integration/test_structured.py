"""Structured answers end to end: real workers, the real SDK over HTTP to the local API."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel

from localapi import LocalAPIServer
from orchestration.batch import Batch
from orchestration.client import request_from_prompt as ask
from orchestration.client import submit, wait
from orchestration.patterns import voting
from tests.integration.conftest import Workers, chorus

TIMEOUT_S = 120
REVIEW = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["positive", "negative", "mixed"]},
        "score": {"type": "integer"},
        "summary": {"type": "string"},
    },
    "required": ["label", "score", "summary"],
    "additionalProperties": False,
}


def items(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"r{i}", "prompt": f"Review {i}. The parcel came late but intact."} for i in range(n)
    ]


@pytest.mark.slow
def test_a_200_item_batch_with_a_fifth_of_answers_invalid_ends_valid_or_invalid_output(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    # A fifth of every structured answer the local API gives is invalid (not JSON, or
    # JSON that breaks the schema); item 7 is answered invalidly every time.
    local_api.configure(rate_invalid_output=0.2)
    local_api.script(
        [
            {
                "match": "Review 7.",
                "responses": [{"json": {"label": "great", "score": 3, "summary": "ok"}}],
            }
        ]
    )

    batch = Batch.submit(
        items(200),
        name="structured-200",
        model="claude-sonnet-5",
        max_tokens=1024,
        effort="low",
        schema=REVIEW,
    )
    status = batch.wait(TIMEOUT_S)
    records = list(batch.results())
    billed = local_api.stats()

    valid = [r for r in records if r["outcome"] == "complete"]
    invalid = [r for r in records if r["outcome"] == "invalid_output"]
    reasks = sum(r.get("reasks") or 0 for r in records)
    reask_cost = sum(r.get("reask_cost_usd") or 0.0 for r in records)
    print(
        f"\n200 items: {len(valid)} valid ({sum(1 for r in valid if r.get('reasks'))} after a "
        f"re-ask), {len(invalid)} invalid_output, {reasks} re-asks; cost ${status.cost_usd:.4f}, "
        f"of which re-asks ${reask_cost:.4f}; local API: {billed['structured_answers']} "
        f"structured answers, {billed['structured_invalid']} invalid, "
        f"{billed['structured_followups']} follow-ups, billed ${billed['cost_usd']:.4f}"
    )

    assert len(valid) + len(invalid) == 200 == status.total
    for record in valid:
        jsonschema.validate(record["data"], REVIEW)
    # The item the local API kept answering invalidly: asked again once, then invalid_output.
    seven = next(r for r in records if r["id"] == "r7")
    assert seven["outcome"] == "invalid_output" and seven["reasks"] == 1
    assert "is not one of" in seven["error"]["message"] and "$.label" in seven["error"]["message"]
    assert seven["data"] is None
    # Every re-ask chorus made is a follow-up the local API answered, and every invalid
    # answer the local API gave was re-asked, unless it was the item's last chance.
    assert reasks == billed["structured_followups"]
    assert billed["structured_answers"] == 200 + reasks
    assert billed["structured_invalid"] == reasks + len(invalid)
    assert 20 <= reasks <= 70  # about a fifth of 200, and item 7
    assert 1 <= len(invalid) <= 25
    # Costs include the re-asks, to the cent of what the local API billed.
    assert abs(status.cost_usd - billed["cost_usd"]) < 0.0001
    assert reask_cost > 0


def test_a_model_without_structured_outputs_is_asked_another_way_and_says_so(
    workers: Workers, local_api: LocalAPIServer, tmp_path: Path
) -> None:
    schema_file = tmp_path / "review.json"
    schema_file.write_text(json.dumps(REVIEW))

    # Sonnet 5.5 takes neither output_config.format nor a forced tool call: the prompt.
    prompt = chorus("call", "Rate this review.", "--schema", str(schema_file), "--json")
    # Haiku 5.5 takes a forced tool call.
    tool = chorus(
        "call", "Rate that review.", "--model", "claude-haiku-5-5", "--schema", str(schema_file),
        "--json",
    )  # fmt: skip
    native = chorus(
        "call", "Rate it.", "--model", "claude-sonnet-5", "--schema", str(schema_file), "--json"
    )

    for run in (prompt, tool, native):
        assert run.returncode == 0, run.stderr
        envelope = json.loads(run.stdout)
        jsonschema.validate(envelope["data"], REVIEW)
    assert "claude-sonnet-5-5 takes no output_config.format" in prompt.stderr
    assert "system prompt" in prompt.stderr
    assert "forced tool call" in tool.stderr
    assert "takes no output_config.format" not in native.stderr
    tool_blocks = json.loads(tool.stdout)["message"]["content"]
    assert any(b["type"] == "tool_use" and b["name"] == "chorus_answer" for b in tool_blocks)
    methods = local_api.stats()["structured_answers_by_method"]
    assert methods == {"native": 1, "tool": 1, "prompt": 1}


def test_votes_per_field_end_to_end(workers: Workers, local_api: LocalAPIServer) -> None:
    # The samples are one request sent five times: the local API gives these five answers
    # in the order the calls reach it, so the fields' counts are fixed, not which sample
    # gave which (the tie rule is held by tests/unit/test_fanin_structured.py).
    samples = [
        {"label": "positive", "score": 7, "summary": "late"},
        {"label": "positive", "score": 7, "summary": "late"},
        {"label": "negative", "score": 7, "summary": "late"},
        {"label": "positive", "score": 9, "summary": "late"},
        {"label": "negative", "score": 7, "summary": "late"},
    ]
    local_api.script([{"match": "Rate the parcel.", "responses": [{"json": s} for s in samples]}])

    result = voting(ask("Rate the parcel.", model="claude-sonnet-5", schema=REVIEW), n=5).wait(
        TIMEOUT_S
    )

    assert result.ok, result.error
    assert result.data == {"label": "positive", "score": 7, "summary": "late"}
    assert result.fields is not None
    assert result.fields["label"].agreement == pytest.approx(0.6)
    assert result.fields["score"].agreement == pytest.approx(0.8)
    assert result.fields["summary"].agreement == pytest.approx(1.0)
    assert result.agreement == pytest.approx(0.6)
    assert result.winner == "per field"


class Verdict(BaseModel):
    label: Literal["positive", "negative", "mixed"]
    score: int
    summary: str


def test_a_pydantic_model_from_python_comes_back_as_instances(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    envelope = wait(submit(ask("Rate this one.", schema=Verdict)), timeout_s=TIMEOUT_S)
    verdict = envelope.parsed(Verdict)
    assert isinstance(verdict, Verdict)
    assert verdict.label in ("positive", "negative", "mixed")

    batch = Batch.submit(items(5), name="pydantic-batch", schema=Verdict, max_tokens=1024)
    batch.wait(TIMEOUT_S)
    parsed = list(batch.parsed(Verdict))
    assert [item_id for item_id, _ in parsed] == [f"r{i}" for i in range(5)]
    assert all(isinstance(v, Verdict) for _, v in parsed)


def test_csv_results_in_input_order_with_the_failed_row_marked(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "Review 2.", "responses": [{"status": 400, "message": "bad"}]}])
    batch = Batch.submit(
        items(6), name="structured-csv", model="claude-sonnet-5", max_tokens=1024, schema=REVIEW
    )
    batch.wait(TIMEOUT_S)

    run = chorus("results", "structured-csv", "--format", "csv", "--fields", "label,score")
    assert run.returncode == 0, run.stderr
    rows = list(csv.reader(io.StringIO(run.stdout)))

    assert rows[0] == ["id", "outcome", "label", "score", "error"]
    assert [r[0] for r in rows[1:]] == [f"r{i}" for i in range(6)]
    failed = rows[3]
    assert failed[1] == "failed" and failed[2:4] == ["", ""] and "bad" in failed[4]
    for row in rows[1:3] + rows[4:]:
        assert row[1] == "complete" and row[2] in ("positive", "negative", "mixed")
        assert row[3].lstrip("-").isdigit()
