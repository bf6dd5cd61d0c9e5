from __future__ import annotations

from typing import Any

import pytest

from workers.fanin.combine import (
    FanInSpec,
    SynthesisSpec,
    VoteSpec,
    concatenate,
    fan_in,
    parse_judgement,
)
from workers.fanin.results import Branch, MinSuccess
from workers.fanin.voting import normalize, tally
from workers.models import CallRequest, Envelope, ErrorInfo, Usage


def ok(
    text: str, *, tokens: int = 10, cost: float | None = 0.01, cached: bool = False
) -> dict[str, Any]:
    return Envelope(
        ok=True,
        key="k",
        text=text,
        usage=Usage(input_tokens=tokens, output_tokens=tokens),
        cost_usd=cost,
        attempts=0 if cached else 1,
        cached=cached,
    ).model_dump(mode="json")


def failed(kind: str = "invalid_request_error", status: int | None = 400) -> dict[str, Any]:
    info = ErrorInfo(type=kind, message="bad field", status=status, request_id="req_x")
    return Envelope.failure("k", info, attempts=1).model_dump(mode="json")


class Recorder:
    def __init__(self, text: str = "merged") -> None:
        self.requests: list[CallRequest] = []
        self.text = text

    def __call__(self, request: CallRequest) -> Envelope:
        self.requests.append(request)
        return Envelope(
            ok=True,
            key="fan-in",
            text=self.text,
            usage=Usage(input_tokens=5),
            attempts=1,
            cost_usd=0.02,
        )


@pytest.mark.parametrize(
    ("mode", "raw", "expected"),
    [
        ("text", '  "Paris."  ', "paris"),
        ("text", "The   ANSWER\nis here!", "the answer is here"),
        ("exact", "Paris.", "Paris."),
        ("first_line", "\nYes.\nBecause...", "yes"),
        ("number", "The answer is 1,024 bytes.", "1024"),
        ("number", "no digits", "no digits"),
        ("choice", "(B) Helios", "b"),
        ("choice", "Answer: c", "c"),
    ],
)
def test_normalisers(mode: str, raw: str, expected: str) -> None:
    assert normalize(raw, mode) == expected


def test_an_unknown_normaliser_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown normaliser"):
        normalize("x", "fuzzy")


def _samples(*texts: str | None) -> list[Branch]:
    return [
        Branch(label=f"sample {i}", ok=t is not None, text=t or "") for i, t in enumerate(texts)
    ]


def test_the_majority_wins_with_its_vote_table_and_agreement() -> None:
    counted = tally(_samples("Paris", "Lyon", "paris.", None, "PARIS"))

    assert counted.winner is not None
    assert counted.winner.answer == "paris"
    assert counted.winner.text == "Paris"  # the first sample's own wording
    assert [(r.answer, r.count, r.samples) for r in counted.rows] == [
        ("paris", 3, [0, 2, 4]),
        ("lyon", 1, [1]),
    ]
    assert counted.agreement == pytest.approx(0.75)
    assert counted.tie_break is None


def test_a_tie_goes_to_the_answer_first_seen_in_sample_order_and_is_reported() -> None:
    counted = tally(_samples("B", "A", "A", "B"))

    assert counted.winner is not None
    assert counted.winner.answer == "b"  # sample 0 said B
    assert counted.tie_break is not None
    assert "'b' (sample 0), 'a' (sample 1)" in counted.tie_break
    assert "lowest index" in counted.tie_break


def test_min_success_as_a_count_or_a_ratio() -> None:
    assert MinSuccess.of(2).required(3) == 2
    assert MinSuccess.of(5).required(3) == 3
    assert MinSuccess.of(0.5).required(3) == 2
    assert MinSuccess.of(1.0).required(3) == 3
    assert MinSuccess.of(2 / 3).required(3) == 2
    with pytest.raises(TypeError):
        MinSuccess.of(True)


SYNTH = SynthesisSpec(instruction="Write the report.", model="claude-sonnet-5")


def test_a_failed_branch_does_not_stop_the_synthesis() -> None:
    call = Recorder("the report")
    spec = FanInSpec(
        kind="fanout", labels=["a", "b", "c"], min_success=MinSuccess.of(0.5), synthesis=SYNTH
    )

    result = fan_in([ok("alpha"), failed(), ok("gamma")], spec, call)

    assert result.ok
    assert result.text == "the report"
    assert result.success_rate == pytest.approx(2 / 3)
    assert (result.succeeded, result.failed, result.total) == (2, 1, 3)
    prompt = call.requests[0].messages[0].text()
    assert "## a\n\nalpha" in prompt and "## c\n\ngamma" in prompt
    assert "1 of 3 failed" in prompt
    assert result.usage.input_tokens == 10 + 10 + 5
    assert result.cost_usd == pytest.approx(0.04)
    assert result.calls == 4


def test_below_min_success_the_result_names_the_failed_branch_and_why() -> None:
    call = Recorder()
    spec = FanInSpec(
        kind="fanout", labels=["a", "b", "c"], min_success=MinSuccess.of(3), synthesis=SYNTH
    )

    result = fan_in([ok("alpha"), failed(), ok("gamma")], spec, call)

    assert not result.ok
    assert call.requests == []  # no synthesis paid for
    assert result.error is not None
    assert result.error.type == "min_success_not_met"
    assert "2 of 3 branches succeeded" in result.error.message
    assert "'b': invalid_request_error 400: bad field (request req_x)" in result.error.message


def test_concatenation_keeps_failed_sections_visible() -> None:
    text = concatenate(
        [
            Branch(label="clarity", ok=True, text=" good "),
            Branch(label="accuracy", ok=False, error=ErrorInfo(type="api_error", message="boom")),
        ]
    )

    assert text.startswith(
        "## clarity\n\ngood\n\n## accuracy\n\n_(this section failed: api_error: boom)_"
    )


def test_a_stored_answer_costs_nothing_new() -> None:
    spec = FanInSpec(kind="section", labels=["a", "b"])

    result = fan_in([ok("x", cost=0.5, cached=True), ok("y", cost=0.25)], spec, Recorder())

    assert result.cost_usd == pytest.approx(0.25)
    assert result.calls == 1


def test_an_unknown_price_makes_the_cost_unknown_not_zero() -> None:
    spec = FanInSpec(kind="section", labels=["a", "b"])

    result = fan_in([ok("x", cost=None), ok("y")], spec, Recorder())

    assert result.cost_usd is None


def test_revoked_samples_are_skipped_not_failed() -> None:
    revoked = Envelope.failure("k", ErrorInfo(type="revoked", message="decided")).model_dump(
        mode="json"
    )
    spec = FanInSpec(kind="vote", labels=[f"s{i}" for i in range(5)], vote=VoteSpec(n=5))

    result = fan_in([ok("yes"), ok("yes"), ok("yes"), revoked, revoked], spec, Recorder())

    assert result.ok
    assert (result.succeeded, result.failed, result.skipped) == (3, 0, 2)
    assert result.success_rate == 1.0
    assert result.agreement == 1.0


def test_a_judge_picks_the_best_sample_and_says_why() -> None:
    call = Recorder('Sure. {"best": 1, "reason": "it names the source"}')
    spec = FanInSpec(
        kind="vote",
        labels=["s0", "s1", "s2"],
        vote=VoteSpec(n=3, strategy="judge", question="Which is it?", judge_model="claude-opus-5"),
    )

    result = fan_in([ok("A"), ok("B, per the 1998 survey"), ok("A")], spec, call)

    assert result.text == "B, per the 1998 survey"
    assert result.winner == "sample 1"
    assert result.judge_reason == "it names the source"
    assert call.requests[0].model == "claude-opus-5"
    assert "Which is it?" in call.requests[0].messages[0].text()


def test_an_unreadable_judge_leaves_the_majority_standing() -> None:
    spec = FanInSpec(
        kind="vote",
        labels=["s0", "s1", "s2"],
        vote=VoteSpec(n=3, strategy="judge", judge_model="m"),
    )

    result = fan_in([ok("A"), ok("B"), ok("A")], spec, Recorder("I like them all"))

    assert result.ok
    assert result.text == "A"
    assert result.judge_reason is not None and "could not be read" in result.judge_reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"best": 2, "reason": "clear"}', (2, "clear")),
        ('```json\n{"best": 0}\n```', (0, "")),
        ('{"best": 7}', None),
        ("no json here", None),
        ('{"best": "two"}', None),
    ],
)
def test_parse_judgement(text: str, expected: tuple[int, str] | None) -> None:
    assert parse_judgement(text, [0, 1, 2]) == expected
