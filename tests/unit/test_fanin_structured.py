"""Patterns on structured answers: votes per field and whole, what a judge and a synthesis see,
and the CSV table of a batch's answers."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from orchestration.result_formats import table_fields, table_rows
from workers.fanin.combine import FanInSpec, SynthesisSpec, VoteSpec, fan_in, judge_request
from workers.fanin.results import Branch
from workers.models import CallRequest, Envelope

SAMPLES = [
    {"label": "positive", "score": 7, "lang": "en"},
    {"label": "positive", "score": 8, "lang": "fr"},
    {"label": "negative", "score": 8, "lang": "fr"},
    {"label": "Positive", "score": 7, "lang": "de"},
    {"label": "negative", "score": 9, "lang": "fr"},
]


def envelope(data: Any, *, tool: bool = False) -> dict[str, Any]:
    block = (
        {"type": "tool_use", "id": "toolu_1", "name": "chorus_answer", "input": data}
        if tool
        else {"type": "text", "text": json.dumps(data)}
    )
    return Envelope(
        ok=True,
        outcome="complete",
        idempotency_key="k",
        message={
            "id": "msg",
            "model": "claude-sonnet-5",
            "content": [block],
            "stop_reason": "tool_use" if tool else "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
        cost_usd=0.001,
        attempts=1,
        data=data,
    ).model_dump(mode="json")


def never_called(request: CallRequest) -> Envelope:
    raise AssertionError("a majority vote makes no call of its own")


def vote(samples: list[dict[str, Any]], vote_on: str = "field", tool: bool = False) -> Any:
    spec = FanInSpec(
        kind="vote",
        labels=[f"sample {i}" for i in range(len(samples))],
        vote=VoteSpec(n=len(samples), vote_on=vote_on),  # type: ignore[arg-type]
    )
    return fan_in([envelope(s, tool=tool) for s in samples], spec, never_called)


def test_each_field_gets_its_own_majority_and_agreement() -> None:
    result = vote(SAMPLES)

    assert result.ok
    assert result.data == {"label": "positive", "score": 7, "lang": "fr"}
    assert result.fields is not None
    # "Positive" and "positive" agree under the default text normaliser: 3 of 5.
    assert result.fields["label"].agreement == 0.6
    assert result.fields["lang"].agreement == 0.6
    assert result.fields["lang"].rows[0].samples == [1, 2, 4]
    # score: 7 (samples 0, 3) and 8 (samples 1, 2) tie at 2; the existing tie rule
    # (lowest first sample index) picks 7.
    assert result.fields["score"].agreement == 0.4
    assert result.fields["score"].tie_break is not None
    assert "chose '7'" in result.fields["score"].tie_break
    # The vote's agreement is its weakest field's.
    assert result.agreement == 0.4
    assert json.loads(result.text) == result.data


def test_a_whole_vote_compares_whole_values_keys_in_any_order() -> None:
    a = {"label": "negative", "score": 2}
    reordered = {"score": 2, "label": "negative"}
    result = vote([{"label": "positive", "score": 9}, a, reordered], vote_on="whole")

    assert result.data == a
    assert result.agreement == 2 / 3
    assert result.fields is None
    assert result.votes[0].samples == [1, 2]


def test_a_whole_vote_tie_goes_to_the_lowest_sample() -> None:
    result = vote(SAMPLES, vote_on="whole")
    # "Positive" vs "positive" are different whole values: five answers, one vote each.
    assert result.data == SAMPLES[0]
    assert result.tie_break is not None and "5 answers tied" in result.tie_break


def test_tool_answers_with_no_text_still_vote_on_their_values() -> None:
    result = vote(SAMPLES[:3], tool=True)
    assert result.ok and result.data["label"] == "positive"


def test_a_judge_sees_the_parsed_candidates_as_json() -> None:
    spec = VoteSpec(n=2, question="Rate it", judge_model="claude-sonnet-5", strategy="judge")
    branches = [Branch.from_outcome(f"s{i}", envelope(s)) for i, s in enumerate(SAMPLES[:2])]
    prompt = judge_request(spec, branches).messages[0].text()
    assert '```json\n{\n  "label": "positive",\n  "score": 7' in prompt


def test_a_synthesis_is_given_each_sections_data_as_json_and_concat_keeps_the_values() -> None:
    calls: list[CallRequest] = []

    def call(request: CallRequest) -> Envelope:
        calls.append(request)
        return Envelope.model_validate(envelope({"summary": "ok"}))

    spec = FanInSpec(
        kind="fanout",
        labels=["tone", "facts"],
        synthesis=SynthesisSpec(instruction="Merge.", model="claude-sonnet-5"),
    )
    fan_in([envelope(SAMPLES[0]), envelope(SAMPLES[2])], spec, call)
    prompt = calls[0].messages[0].text()
    assert "## tone\n\n```json" in prompt and '"label": "negative"' in prompt

    concat = FanInSpec(kind="section", labels=["tone", "facts"])
    result = fan_in([envelope(SAMPLES[0]), envelope(SAMPLES[2])], concat, call)
    assert result.data == {"tone": SAMPLES[0], "facts": SAMPLES[2]}


def test_the_csv_table_has_the_fields_in_input_order_and_marks_a_failed_row() -> None:
    records = [
        {"id": "a", "outcome": "complete", "data": {"label": "x", "score": 1, "tags": ["p", "q"]}},
        {
            "id": "b",
            "outcome": "invalid_output",
            "data": None,
            "error": {
                "type": "invalid_output",
                "message": "the answer breaks the schema at $.score",
            },
        },
        {"id": "c", "outcome": "complete", "data": {"label": "y,z", "score": 2, "ok": True}},
        {"id": "d", "state": "pending"},
    ]
    assert table_fields(records) == ["label", "score", "tags"]
    out = io.StringIO()
    csv.writer(out).writerows(table_rows(records, ["label", "score", "tags", "ok"]))
    rows = list(csv.reader(io.StringIO(out.getvalue())))

    assert rows[0] == ["id", "outcome", "label", "score", "tags", "ok", "error"]
    assert [r[0] for r in rows[1:]] == ["a", "b", "c", "d"]
    assert rows[1] == ["a", "complete", "x", "1", '["p", "q"]', "", ""]
    assert rows[2][1] == "invalid_output" and rows[2][2:6] == ["", "", "", ""]
    assert "breaks the schema" in rows[2][6]
    assert rows[3][2] == "y,z" and rows[3][5] == "true"  # quoted by csv, read back whole
    assert rows[4][1] == "pending"
