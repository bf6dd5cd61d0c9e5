"""Sectioning, voting and fan-out/fan-in, as Celery chords a producer script can start.

>>> from orchestration.client import request_from_prompt as ask
>>> handle = sectioning({"clarity": ask("..."), "accuracy": ask("...")})
>>> handle.progress()            # Progress(total=2, done=1, ok=1)
>>> result = handle.wait(timeout_s=120)
>>> result.text, result.success_rate, result.cost_usd

Each pattern is a chord: its branches run in parallel as ``chorus.call``
tasks and ``chorus.fan_in`` combines them. Every branch returns an envelope,
a failed one included, so the fan-in always runs and the ``min_success``
policy (a count, or a ratio of the branches) decides whether it goes on with
partial results. Patterns compose: a branch may itself be a pattern (a vote
inside a section), and any number of patterns can run side by side.

Where the branches' requests share a long prefix (the samples of a vote, the
sections of one document), it is marked for the prompt cache and one branch
writes it before the others read it (``orchestration.prefix``); the result's
``usage`` counts the cache writes and reads.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from celery import chord
from celery.canvas import Signature
from celery.result import AsyncResult

from config.models import DEFAULT_MAX_TOKENS
from config.settings import get_settings
from orchestration.client import call_signature, result_of
from orchestration.prefix import mark_all
from workers.app import app
from workers.errors import ChorusError
from workers.fanin.combine import FanInSpec, SynthesisSpec, VoteSpec
from workers.fanin.results import MinSuccess, PatternResult
from workers.fanin.voting import NORMALIZERS
from workers.models import CallRequest

FAN_IN_TASK = "chorus.fan_in"
DEFAULT_MIN_SUCCESS = 0.5


class PatternError(ChorusError, ValueError):
    """Raised when a pattern is built with arguments that cannot work."""


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    ok: int

    @property
    def failed(self) -> int:
        return self.done - self.ok


@dataclass
class Handle:
    """A started pattern: wait for it, or ask how far it got."""

    kind: str
    labels: list[str]
    result: AsyncResult

    @property
    def id(self) -> str:
        return str(self.result.id)

    def ready(self) -> bool:
        return bool(self.result.ready())

    def wait(self, timeout_s: float | None = None) -> PatternResult:
        """The combined result.

        Raises:
            celery.exceptions.TimeoutError: not done within ``timeout_s``.
        """
        return PatternResult.model_validate(result_of(self.result, timeout_s=timeout_s))

    def progress(self) -> Progress:
        """How many branches have finished, and how many of those succeeded."""
        header = self.result.parent
        children = list(header.results) if header is not None else []
        done = ok = 0
        for child in children:
            if child.ready():
                done += 1
                value = child.result
                ok += bool(isinstance(value, dict) and value.get("ok"))
        return Progress(total=len(self.labels), done=done, ok=ok)


class Pattern(abc.ABC):
    """A pattern not yet started: start it, or nest it as a branch of another."""

    kind: Literal["section", "vote", "fanout"]

    @abc.abstractmethod
    def labels(self) -> list[str]: ...

    @abc.abstractmethod
    def signature(self) -> Signature:
        """The chord that runs this pattern."""

    def start(self) -> Handle:
        return Handle(kind=self.kind, labels=self.labels(), result=self.signature().apply_async())


def _labelled(
    branches: Mapping[str, CallRequest | Pattern] | Sequence[CallRequest | Pattern], prefix: str
) -> dict[str, CallRequest | Pattern]:
    if isinstance(branches, Mapping):
        labelled = {str(k): v for k, v in branches.items()}
    else:
        labelled = {f"{prefix} {i + 1}": b for i, b in enumerate(branches)}
    if not labelled:
        raise PatternError("a pattern needs at least one branch")
    for label, branch in labelled.items():
        if not isinstance(branch, CallRequest | Pattern):
            raise PatternError(f"branch {label!r} is a {type(branch).__name__}, not a request")
    return labelled


def _branch_signatures(branches: Mapping[str, CallRequest | Pattern], kind: str) -> list[Signature]:
    """Each branch's signature; the requests' shared prefix marked (``orchestration.prefix``)."""
    requests = [b for b in branches.values() if isinstance(b, CallRequest)]
    marked = iter(mark_all(requests))
    header = []
    for label, branch in branches.items():
        if isinstance(branch, Pattern):
            header.append(branch.signature())
            continue
        request, prefix = next(marked)
        options = {"prefix": prefix} if prefix else None
        header.append(call_signature(request, item_id=f"{kind}:{label}", options=options))
    return header


def _min_success(value: int | float) -> MinSuccess:
    try:
        return MinSuccess.of(value)
    except (TypeError, ValueError) as exc:
        raise PatternError(f"min_success: {exc}") from None


def _fan_in(spec: FanInSpec, options: dict[str, Any] | None = None) -> Signature:
    kwargs: dict[str, Any] = {"spec": spec.model_dump(mode="json")}
    if options:
        kwargs["options"] = options
    return app.signature(FAN_IN_TASK, kwargs=kwargs)


@dataclass
class Section(Pattern):
    """Different calls on one job, merged: under headings, or by one more LLM call."""

    branches: Mapping[str, CallRequest | Pattern] | Sequence[CallRequest | Pattern]
    merge: Literal["concat", "synthesize"] = "concat"
    instruction: str = "Merge these sections into one coherent answer."
    min_success: int | float = DEFAULT_MIN_SUCCESS
    model: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    system: str | None = None
    kind: Literal["section"] = field(default="section", init=False)

    def labels(self) -> list[str]:
        return list(_labelled(self.branches, "section"))

    def signature(self) -> Signature:
        branches = _labelled(self.branches, "section")
        synthesis = None
        if self.merge == "synthesize":
            synthesis = SynthesisSpec(
                instruction=self.instruction,
                model=self.model or get_settings().anthropic.default_model,
                max_tokens=self.max_tokens,
                system=self.system,
            )
        spec = FanInSpec(
            kind="section",
            labels=list(branches),
            min_success=_min_success(self.min_success),
            merge=self.merge,
            synthesis=synthesis,
        )
        header = _branch_signatures(branches, "section")
        return chord(header, _fan_in(spec))


@dataclass
class Vote(Pattern):
    """The same request ``n`` times; the majority answer, or the one a judge picks.

    With ``early_stop``, once one answer holds a majority of ``n`` the samples
    not yet sent are revoked: they return without calling the API.
    """

    request: CallRequest
    n: int = 5
    strategy: Literal["majority", "judge"] = "majority"
    early_stop: bool = False
    normalize: str = "text"
    min_success: int | float = DEFAULT_MIN_SUCCESS
    judge_model: str | None = None
    # Structured samples (a request with a schema): a majority per field, or whole.
    vote_on: Literal["field", "whole"] = "field"
    # Extra task options: a batch item's vote tells its samples and its fan-in
    # which item they serve.
    call_options: dict[str, Any] | None = None
    fan_in_options: dict[str, Any] | None = None
    kind: Literal["vote"] = field(default="vote", init=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise PatternError("n: a vote needs at least one sample")
        if self.normalize not in NORMALIZERS:
            raise PatternError(f"normalize: one of {', '.join(sorted(NORMALIZERS))}")
        if self.strategy not in ("majority", "judge"):
            raise PatternError("strategy: 'majority' or 'judge'")
        if self.vote_on not in ("field", "whole"):
            raise PatternError("vote_on: 'field' or 'whole'")

    def labels(self) -> list[str]:
        return [f"sample {i}" for i in range(self.n)]

    def signature(self) -> Signature:
        vote_id = uuid.uuid4().hex
        option = {
            **(self.call_options or {}),
            "vote": {
                "id": vote_id,
                "n": self.n,
                "normalize": self.normalize,
                "early_stop": self.early_stop,
            },
        }
        samples = [
            self.request.model_copy(update={"sample": self.request.sample + i})
            for i in range(self.n)
        ]
        header = [
            call_signature(
                sample,
                item_id=f"vote:{vote_id[:8]}:{i}",
                options={**option, "prefix": prefix} if prefix else option,
            )
            for i, (sample, prefix) in enumerate(mark_all(samples))
        ]
        spec = FanInSpec(
            kind="vote",
            labels=self.labels(),
            min_success=_min_success(self.min_success),
            vote=VoteSpec(
                strategy=self.strategy,
                normalize=self.normalize,
                n=self.n,
                question=self.request.prompt_text(),
                judge_model=self.judge_model or self.request.model,
                vote_on=self.vote_on,
            ),
        )
        return chord(header, _fan_in(spec, self.fan_in_options))


@dataclass
class FanOut(Pattern):
    """Parallel subtasks, then one synthesis call fed all their outputs."""

    subtasks: Mapping[str, CallRequest | Pattern] | Sequence[CallRequest | Pattern]
    synthesize: str
    min_success: int | float = DEFAULT_MIN_SUCCESS
    model: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    system: str | None = None
    kind: Literal["fanout"] = field(default="fanout", init=False)

    def labels(self) -> list[str]:
        return list(_labelled(self.subtasks, "subtask"))

    def signature(self) -> Signature:
        if not self.synthesize.strip():
            raise PatternError("synthesize: the synthesis instruction must not be empty")
        subtasks = _labelled(self.subtasks, "subtask")
        spec = FanInSpec(
            kind="fanout",
            labels=list(subtasks),
            min_success=_min_success(self.min_success),
            synthesis=SynthesisSpec(
                instruction=self.synthesize,
                model=self.model or get_settings().anthropic.default_model,
                max_tokens=self.max_tokens,
                system=self.system,
            ),
        )
        header = _branch_signatures(subtasks, "fanout")
        return chord(header, _fan_in(spec))


def sectioning(
    requests: Mapping[str, CallRequest | Pattern] | Sequence[CallRequest | Pattern],
    *,
    merge: Literal["concat", "synthesize"] = "concat",
    instruction: str = "Merge these sections into one coherent answer.",
    min_success: int | float = DEFAULT_MIN_SUCCESS,
    model: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Handle:
    """Start different calls on one job and merge their answers."""
    return Section(
        requests,
        merge=merge,
        instruction=instruction,
        min_success=min_success,
        model=model,
        max_tokens=max_tokens,
    ).start()


def voting(
    request: CallRequest,
    n: int = 5,
    *,
    strategy: Literal["majority", "judge"] = "majority",
    early_stop: bool = False,
    normalize: str = "text",
    min_success: int | float = DEFAULT_MIN_SUCCESS,
    judge_model: str | None = None,
    vote_on: Literal["field", "whole"] = "field",
) -> Handle:
    """Start ``n`` samples of one request and pick the consensus or the best.

    A request with a schema (``structured``) votes on the parsed values: each
    field's majority (``vote_on="field"``) or the whole value's (``"whole"``).
    """
    return Vote(
        request,
        n=n,
        strategy=strategy,
        early_stop=early_stop,
        normalize=normalize,
        min_success=min_success,
        judge_model=judge_model,
        vote_on=vote_on,
    ).start()


def fan_out_fan_in(
    subtasks: Mapping[str, CallRequest | Pattern] | Sequence[CallRequest | Pattern],
    synthesize: str,
    *,
    min_success: int | float = DEFAULT_MIN_SUCCESS,
    model: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Handle:
    """Start parallel subtasks, then one synthesis call over their outputs."""
    return FanOut(
        subtasks, synthesize, min_success=min_success, model=model, max_tokens=max_tokens
    ).start()
