"""Script rules: matching, and what each match answers as a sequence is used up."""

from __future__ import annotations

from typing import Any

import pytest

from localapi.script import Script


def statuses(script: Script, prompts: list[str]) -> list[int | None]:
    answers = [script.decide(prompt) for prompt in prompts]
    return [None if answer is None else answer.status for answer in answers]


def rule(**fields: Any) -> dict[str, Any]:
    return {"match": "ITEM", "responses": [{"status": 529}, {"status": 200}], **fields}


def test_a_rule_repeats_its_last_response_by_default() -> None:
    script = Script()
    script.add([rule()])
    assert statuses(script, ["ITEM"] * 4) == [529, 200, 200, 200]


def test_a_cycling_rule_starts_over() -> None:
    script = Script()
    script.add([rule(then="cycle")])
    assert statuses(script, ["ITEM"] * 5) == [529, 200, 529, 200, 529]


def test_a_fallthrough_rule_stops_matching_once_used_up() -> None:
    script = Script()
    script.add([rule(then="fallthrough"), {"match": "", "responses": [{"status": 403}]}])
    assert statuses(script, ["ITEM"] * 4) == [529, 200, 403, 403]


def test_a_used_up_fallthrough_rule_leaves_the_call_to_the_normal_path() -> None:
    script = Script()
    script.add([rule(then="fallthrough")])
    assert statuses(script, ["ITEM"] * 3) == [529, 200, None]


def test_per_prompt_sequences_advance_separately_for_each_prompt() -> None:
    script = Script()
    script.add([rule(per_prompt=True)])
    prompts = ["ITEM 1", "ITEM 2", "ITEM 1", "ITEM 3", "ITEM 2"]
    assert statuses(script, prompts) == [529, 529, 200, 529, 200]


def test_a_shared_sequence_advances_across_prompts() -> None:
    script = Script()
    script.add([rule()])
    assert statuses(script, ["ITEM 1", "ITEM 2"]) == [529, 200]


def test_the_first_matching_rule_decides_and_others_do_not_advance() -> None:
    script = Script()
    script.add(
        [
            {"match": "alpha", "responses": [{"status": 500}]},
            {"match": "a", "responses": [{"status": 404}, {"status": 200}]},
        ]
    )
    assert statuses(script, ["alpha", "beta", "gamma"]) == [500, 404, 200]
    assert statuses(script, ["zzz"]) == [None]


def test_a_regex_rule_matches_by_search() -> None:
    script = Script()
    script.add([{"match": r"item-\d+$", "regex": True, "responses": [{"status": 529}]}])
    assert statuses(script, ["the item-12", "item-x", "item-3 trailing"]) == [529, None, None]


def test_responses_keep_their_fields() -> None:
    script = Script()
    script.add([{"match": "x", "responses": [{"text": "hi", "latency_ms": 5, "fault": "hang"}]}])
    answer = script.decide("x")
    assert answer is not None
    assert (answer.status, answer.text, answer.latency_ms, answer.fault) == (200, "hi", 5, "hang")


@pytest.mark.parametrize(
    "bad",
    [
        {"match": "x"},
        {"match": "x", "responses": []},
        {"match": "x", "responses": [{"status": "500"}]},
        {"match": "x", "responses": [{"status": 200, "colour": "red"}]},
        {"match": "x", "responses": [{"fault": "explode"}]},
        {"match": "x", "responses": [{}], "then": "sometimes"},
        {"match": 3, "responses": [{}]},
        {"match": "x", "responses": [{}], "per_promt": True},
    ],
)
def test_a_malformed_rule_is_refused_and_nothing_is_added(bad: dict[str, Any]) -> None:
    script = Script()
    with pytest.raises(ValueError):
        script.add([{"match": "ok", "responses": [{}]}, bad])
    assert len(script) == 0


def test_a_script_must_be_a_list() -> None:
    with pytest.raises(ValueError, match="list"):
        Script().add({"match": "x", "responses": [{}]})
