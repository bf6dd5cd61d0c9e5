"""The fan-in: from the branches' outcomes to one :class:`PatternResult`.

The chord callback always runs, because every branch returns an envelope
(a failed call included). Here the ``min_success`` policy decides whether the
fan-in goes on with what succeeded or returns a failure naming the branches
that failed and why. A synthesis or a judge is one more call, made through
the same path as any other (limiter, retries, the result store), so a
resubmitted pattern pays nothing again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workers.fanin.results import Branch, MinSuccess, PatternKind, PatternResult
from workers.fanin.voting import tally, tally_values, vote_fields
from workers.models import CallRequest, Envelope, ErrorInfo, Usage


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SynthesisSpec(_Spec):
    """The fan-in call that merges branch outputs."""

    instruction: str = Field(min_length=1)
    model: str
    max_tokens: int = Field(2048, ge=1)
    system: str | None = None


class VoteSpec(_Spec):
    strategy: Literal["majority", "judge"] = "majority"
    normalize: str = "text"
    n: int = Field(ge=1)
    # The request every sample answered: the judge is shown it.
    question: str = ""
    # The producer sets it (by default the samples' own model).
    judge_model: str = ""
    judge_max_tokens: int = Field(1024, ge=1)
    # Structured samples: a majority per field, or over the whole value.
    vote_on: Literal["field", "whole"] = "field"


class FanInSpec(_Spec):
    kind: PatternKind
    labels: list[str]
    min_success: MinSuccess = Field(default_factory=lambda: MinSuccess(ratio=0.5))
    merge: Literal["concat", "synthesize"] = "concat"
    synthesis: SynthesisSpec | None = None
    vote: VoteSpec | None = None


Caller = Callable[[CallRequest], Envelope]


def fan_in(results: Sequence[Any], spec: FanInSpec, call: Caller) -> PatternResult:
    """Combine the branches; ``call`` makes the fan-in's own call when one is needed."""
    labels = list(spec.labels)
    if len(labels) != len(results):
        labels = [*labels, *(f"branch {i}" for i in range(len(labels), len(results)))]
    branches = [
        Branch.from_outcome(label, raw) for label, raw in zip(labels, results, strict=False)
    ]
    result = _counted(spec.kind, branches)

    considered = result.total - result.skipped
    required = spec.min_success.required(considered)
    if result.succeeded < required or result.succeeded == 0:
        failed = [b for b in branches if not b.ok and not b.skipped]
        reasons = (
            "; ".join(f"{b.label!r}: {_why(b.error)}" for b in failed) or "no branch succeeded"
        )
        message = (
            f"{result.succeeded} of {considered} branches succeeded, below min_success "
            f"{spec.min_success.describe()} (needed {max(required, 1)}); failed: {reasons}"
        )
        result.ok = False
        result.error = ErrorInfo(type="min_success_not_met", message=message, retryable=True)
        return result

    if spec.kind == "vote":
        assert spec.vote is not None
        return _vote(result, spec.vote, call)
    if spec.kind == "section" and spec.merge == "concat":
        result.ok = True
        result.text = concatenate(branches)
        if any(b.data is not None for b in branches):
            result.data = {b.label: b.data for b in branches if b.ok}
        return result
    assert spec.synthesis is not None, "a synthesis needs its instruction"
    envelope = call(synthesis_request(spec.synthesis, branches))
    return _with_fan_in_call(result, envelope, text=envelope.text)


def _counted(kind: PatternKind, branches: list[Branch]) -> PatternResult:
    skipped = sum(b.skipped for b in branches)
    succeeded = sum(b.ok for b in branches)
    total = len(branches)
    considered = total - skipped
    return PatternResult(
        kind=kind,
        ok=False,
        branches=branches,
        total=total,
        succeeded=succeeded,
        failed=considered - succeeded,
        skipped=skipped,
        success_rate=succeeded / considered if considered else 0.0,
        usage=sum((b.usage for b in branches), Usage()),
        cost_usd=_sum_costs(b.cost_usd for b in branches),
        calls=sum(b.calls for b in branches),
    )


def _why(error: ErrorInfo | None) -> str:
    if error is None:
        return "unknown error"
    status = f" {error.status}" if error.status else ""
    request = f" (request {error.request_id})" if error.request_id else ""
    return f"{error.type}{status}: {error.message}{request}"


def _sum_costs(costs: Any) -> float | None:
    total = 0.0
    for cost in costs:
        if cost is None:
            return None
        total += cost
    return total


def _with_fan_in_call(result: PatternResult, envelope: Envelope, *, text: str) -> PatternResult:
    result.fan_in_call = envelope
    result.usage = result.usage + envelope.usage
    own_cost = 0.0 if envelope.from_store else envelope.cost_usd
    result.cost_usd = _sum_costs([result.cost_usd, own_cost])
    result.calls += envelope.attempts
    result.ok = envelope.ok
    result.text = text if envelope.ok else ""
    if not envelope.ok:
        result.error = envelope.error
    return result


def concatenate(branches: Sequence[Branch]) -> str:
    """Each section under its heading; a failed one says so instead of vanishing."""
    parts = []
    for branch in branches:
        body = (
            branch.text.strip() if branch.ok else f"_(this section failed: {_why(branch.error)})_"
        )
        parts.append(f"## {branch.label}\n\n{body}")
    return "\n\n".join(parts)


def synthesis_request(spec: SynthesisSpec, branches: Sequence[Branch]) -> CallRequest:
    done = [b for b in branches if b.ok]
    missing = len(branches) - len(done)
    note = (
        f" {missing} of {len(branches)} failed and are missing; say where that leaves gaps."
        if missing
        else ""
    )
    sections = "\n\n".join(f"## {b.label}\n\n{_as_shown(b)}" for b in done)
    prompt = (
        f"{spec.instruction}\n\nBelow are the outputs of {len(done)} independent "
        f"analyses run in parallel.{note}\n\n{sections}"
    )
    data: dict[str, Any] = {
        "model": spec.model,
        "max_tokens": spec.max_tokens,
        "messages": [{"role": "user", "content": prompt}],
    }
    if spec.system:
        data["system"] = spec.system
    return CallRequest.model_validate(data)


JUDGE_MARKER = "Pick the best answer."


def judge_request(spec: VoteSpec, samples: Sequence[Branch]) -> CallRequest:
    answers = "\n\n".join(
        f'<answer index="{i}">\n{_as_shown(s)}\n</answer>' for i, s in enumerate(samples) if s.ok
    )
    prompt = (
        f"Several answers were sampled for the same request. {JUDGE_MARKER}\n\n"
        f"<request>\n{spec.question}\n</request>\n\n{answers}\n\n"
        'Reply with only a JSON object: {"best": <index of the best answer>, '
        '"reason": "<one sentence on why>"}'
    )
    return CallRequest.model_validate(
        {
            "model": spec.judge_model,
            "max_tokens": spec.judge_max_tokens,
            "messages": [{"role": "user", "content": prompt}],
        }
    )


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_judgement(text: str, valid: Sequence[int]) -> tuple[int, str] | None:
    """The judge's (best index, reason), or None when its answer cannot be read."""
    match = _JSON_OBJECT.search(text)
    if match is None:
        return None
    try:
        data = json.loads(match.group(0))
        best = int(data["best"])
    except (ValueError, KeyError, TypeError):
        return None
    if best not in valid:
        return None
    return best, str(data.get("reason", "")).strip()


def _as_shown(branch: Branch) -> str:
    """A branch's answer as a synthesis or a judge reads it: a structured one's parsed
    value as indented JSON, in a fence; text as it came."""
    if branch.data is None:
        return branch.text.strip()
    return "```json\n" + json.dumps(branch.data, indent=2, ensure_ascii=False) + "\n```"


def _vote(result: PatternResult, spec: VoteSpec, call: Caller) -> PatternResult:
    structured = [b for b in result.branches if b.ok and b.data is not None]
    if structured and spec.vote_on == "field" and all(isinstance(b.data, dict) for b in structured):
        _vote_per_field(result, spec)
    else:
        if structured:
            values = [(i, b.data) for i, b in enumerate(result.branches) if b.ok]
            counted = tally_values(values, spec.normalize)
        else:
            counted = tally(result.branches, spec.normalize)
        result.votes = counted.rows
        result.agreement = counted.agreement
        result.tie_break = counted.tie_break
        assert counted.winner is not None  # at least one sample succeeded
        result.winner = counted.winner.answer
        winner = result.branches[counted.winner.samples[0]]
        result.text = counted.winner.text if winner.data is None else winner.text
        result.data = winner.data
    result.ok = True
    if spec.strategy == "majority":
        return result

    envelope = call(judge_request(spec, result.branches))
    valid = [i for i, b in enumerate(result.branches) if b.ok]
    judgement = parse_judgement(envelope.text, valid) if envelope.ok else None
    if judgement is None:
        reason = "could not be read" if envelope.ok else f"failed ({_why(envelope.error)})"
        result = _with_fan_in_call(result, envelope, text=result.text)
        result.ok = True  # the majority still stands
        result.error = None
        result.judge_reason = f"the judge's answer {reason}; the majority answer stands"
        return result
    best, why = judgement
    result = _with_fan_in_call(result, envelope, text=result.branches[best].text)
    result.winner = f"sample {best}"
    result.data = result.branches[best].data
    result.judge_reason = why
    return result


def _vote_per_field(result: PatternResult, spec: VoteSpec) -> None:
    """Each field's majority (``workers.fanin.voting.vote_fields``): the merged value is
    the winning fields, its agreement the weakest field's."""
    fields = vote_fields(result.branches, spec.normalize)
    result.fields = fields
    result.data = {name: vote.value for name, vote in fields.items()}
    result.text = json.dumps(result.data, ensure_ascii=False)
    result.agreement = min((v.agreement for v in fields.values()), default=None)
    ties = [v.tie_break for v in fields.values() if v.tie_break]
    result.tie_break = "; ".join(ties) if ties else None
    result.winner = "per field"
