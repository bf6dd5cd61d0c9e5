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
from workers.models import CallRequest, Envelope, ErrorInfo


def message(
    text: str | None,
    *,
    input_tokens: int = 10,
    output_tokens: int = 10,
    stop_reason: str = "end_turn",
    content: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A message as the API sends it: ``text`` None for a reply with no text block."""
    blocks = content if content is not None else []
    if text is not None:
        blocks = [*blocks, {"type": "text", "text": text}]
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5",
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def ok(
    text: str, *, tokens: int = 10, cost: float | None = 0.01, from_store: bool = False
) -> dict[str, Any]:
    return Envelope.answered(
        "k",
        message(text, input_tokens=tokens, output_tokens=tokens),
        cost_usd=cost,
        attempts=0 if from_store else 1,
        from_store=from_store,
    ).model_dump(mode="json")


def answered(msg: dict[str, Any], *, max_tokens: int = 100) -> dict[str, Any]:
    """A branch the API answered with ``msg``, complete or not."""
    return Envelope.answered("k", msg, max_tokens=max_tokens, cost_usd=0.01, attempts=1).model_dump(
        mode="json"
    )


def failed(kind: str = "invalid_request_error", status: int | None = 400) -> dict[str, Any]:
    info = ErrorInfo(type=kind, message="bad field", status=status, request_id="req_x")
    return Envelope.failure("k", info, attempts=1).model_dump(mode="json")


class Recorder:
    def __init__(self, text: str = "merged") -> None:
        self.requests: list[CallRequest] = []
        self.text = text

    def __call__(self, request: CallRequest) -> Envelope:
        self.requests.append(request)
        return Envelope.answered(
            "fan-in", message(self.text, input_tokens=5, output_tokens=0), attempts=1, cost_usd=0.02
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

    result = fan_in([ok("x", cost=0.5, from_store=True), ok("y", cost=0.25)], spec, Recorder())

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


# --- only complete answers count ----------------------------------------------------

THINKING = {"type": "thinking", "thinking": "", "signature": "c2ln"}


def refused() -> dict[str, Any]:
    details = {"type": "refusal", "category": "general_harms", "explanation": "No."}
    return answered(
        {**message(None, stop_reason="refusal", output_tokens=0), "stop_details": details}
    )


def truncated_by_thinking() -> dict[str, Any]:
    msg = message(None, stop_reason="max_tokens", output_tokens=100, content=[THINKING])
    msg["usage"]["output_tokens_details"] = {"thinking_tokens": 100}
    return answered(msg, max_tokens=100)


def test_refusals_are_not_votes_and_are_reported_as_failed_branches() -> None:
    # 3 of 5 samples refused with no content; 2 answered "Yes".
    samples = [refused(), ok("Yes"), refused(), ok("yes."), refused()]
    labels = [f"sample {i}" for i in range(5)]
    spec = FanInSpec(kind="vote", labels=labels, vote=VoteSpec(n=5))

    # By default (half the samples must answer) 2 of 5 is not enough to stand...
    assert not fan_in(samples, spec, Recorder()).ok
    # ...and with two answers asked for, the two that answered decide.
    spec = spec.model_copy(update={"min_success": MinSuccess.of(2)})
    result = fan_in(samples, spec, Recorder())

    assert result.ok
    assert result.winner == "yes" and result.text == "Yes"
    assert result.agreement == 1.0
    assert [row.count for row in result.votes or []] == [2]
    assert (result.succeeded, result.failed) == (2, 3)
    refusals = [b for b in result.branches if not b.ok]
    assert [b.outcome for b in refusals] == ["refused"] * 3
    assert all(b.error is not None and b.error.type == "refused" for b in refusals)


def test_a_vote_of_refusals_alone_fails_instead_of_electing_an_empty_answer() -> None:
    spec = FanInSpec(kind="vote", labels=["s0", "s1", "s2"], vote=VoteSpec(n=3))

    result = fan_in([refused(), refused(), refused()], spec, Recorder())

    assert not result.ok and result.winner is None
    assert result.error is not None and result.error.type == "min_success_not_met"
    assert "refused" in result.error.message


def test_min_success_counts_complete_branches_and_the_synthesis_has_no_empty_section() -> None:
    call = Recorder("the report")
    spec = FanInSpec(
        kind="fanout", labels=["a", "b", "c", "d"], min_success=MinSuccess.of(2), synthesis=SYNTH
    )
    cut_off = answered(message("half an ans", stop_reason="max_tokens"), max_tokens=10)

    result = fan_in([ok("alpha"), refused(), cut_off, truncated_by_thinking()], spec, call)

    # Only one complete branch: below min_success, and no synthesis is paid for.
    assert not result.ok and call.requests == []
    assert result.error is not None
    assert "'b': refused" in result.error.message
    assert "'c': truncated" in result.error.message
    assert "'d': truncated_by_thinking" in result.error.message

    spec = spec.model_copy(update={"min_success": MinSuccess.of(1)})
    result = fan_in([ok("alpha"), refused(), cut_off, truncated_by_thinking()], spec, call)

    assert result.ok and result.succeeded == 1 and result.failed == 3
    prompt = call.requests[0].messages[0].text()
    assert "## a\n\nalpha" in prompt
    assert "## b" not in prompt and "## c" not in prompt and "## d" not in prompt
    assert "half an ans" not in prompt
    assert "3 of 4 failed" in prompt


def test_a_judge_sees_only_complete_candidates() -> None:
    call = Recorder('{"best": 2, "reason": "complete"}')
    spec = FanInSpec(
        kind="vote",
        labels=["s0", "s1", "s2"],
        vote=VoteSpec(n=3, strategy="judge", judge_model="m"),
    )

    result = fan_in([refused(), ok("first answer"), ok("second answer")], spec, call)

    prompt = call.requests[0].messages[0].text()
    assert '<answer index="0">' not in prompt
    assert '<answer index="1">' in prompt and '<answer index="2">' in prompt
    assert result.text == "second answer"
