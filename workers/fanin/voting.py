"""Majority voting over samples: normalise, count, break ties deterministically.

Two answers are the same vote when they normalise to the same string. The
normalisers:

- ``text`` (default): case-folded, whitespace collapsed, surrounding quotes
  and trailing punctuation dropped. "Paris." and "paris" agree.
- ``exact``: the text as it came.
- ``first_line``: the first non-empty line, then as ``text``.
- ``number``: the first number in the text ("The answer is 42." -> "42").
- ``choice``: the first standalone option letter A-J ("(B) Helios" -> "b").

Structured answers (``workers.structured``) vote per field (:func:`vote_fields`:
each field's majority, with its agreement) or on the whole value
(:func:`tally_values`); strings in them are compared by the normaliser, every
other value by its canonical JSON.

A tie is broken by the lowest sample index among the tied answers' first
samples: the same samples always give the same winner, whatever order they
finished in, and the result says a tie was broken and how.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from workers import keys
from workers.fanin.results import Branch, FieldVote, VoteRow

_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_CHOICE = re.compile(r"(?<![A-Za-z])\(?([A-Ja-j])\)?(?![A-Za-z])")
_STRIP = " \t\n\"'`*_.,;:!?"


def _text(value: str) -> str:
    return _SPACE.sub(" ", value).strip(_STRIP).casefold()


def _first_line(value: str) -> str:
    line = next((ln for ln in value.splitlines() if ln.strip()), "")
    return _text(line)


def _number(value: str) -> str:
    match = _NUMBER.search(value)
    return match.group(0).replace(",", "") if match else _text(value)


def _choice(value: str) -> str:
    match = _CHOICE.search(value)
    return match.group(1).casefold() if match else _text(value)


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "text": _text,
    "exact": lambda value: value,
    "first_line": _first_line,
    "number": _number,
    "choice": _choice,
}


def normalize(text: str, mode: str = "text") -> str:
    try:
        return NORMALIZERS[mode](text)
    except KeyError:
        raise ValueError(f"unknown normaliser {mode!r}; one of {sorted(NORMALIZERS)}") from None


@dataclass(frozen=True)
class Tally:
    rows: list[VoteRow]
    winner: VoteRow | None
    agreement: float | None
    tie_break: str | None


def tally(samples: Sequence[Branch], mode: str = "text") -> Tally:
    """Count the successful samples' answers; ``samples`` are in sample-index order."""
    return tally_values([(i, s.text) for i, s in enumerate(samples) if s.ok], mode)


def tally_values(
    values: Sequence[tuple[int, Any]], mode: str = "text", what: str = "answers"
) -> Tally:
    """Count structured values (``(sample index, value)``, in sample order) as
    :func:`tally` counts texts: a string by ``mode``'s normal form, anything else by
    its canonical JSON (keys sorted), so ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}``
    agree. Ties: the lowest first sample index wins, as for texts."""
    rows: dict[str, VoteRow] = {}
    for index, value in values:
        answer = normalize(value, mode) if isinstance(value, str) else canonical_json(value)
        row = rows.get(answer)
        if row is None:
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            rows[answer] = VoteRow(answer=answer, text=shown, count=1, samples=[index])
        else:
            row.count += 1
            row.samples.append(index)
    ordered = sorted(rows.values(), key=lambda r: (-r.count, r.samples[0]))
    if not ordered:
        return Tally([], None, None, None)
    winner = ordered[0]
    tied = [r for r in ordered if r.count == winner.count]
    tie_break = None
    if len(tied) > 1:
        names = ", ".join(f"{_clip(r.answer)!r} (sample {r.samples[0]})" for r in tied[:4])
        more = f" and {len(tied) - 4} more" if len(tied) > 4 else ""
        tie_break = (
            f"{len(tied)} {what} tied at {winner.count} votes: {names}{more}; chose "
            f"{_clip(winner.answer)!r}, the one whose first sample has the lowest index"
        )
    return Tally(ordered, winner, winner.count / sum(r.count for r in ordered), tie_break)


def vote_fields(samples: Sequence[Branch], mode: str = "text") -> dict[str, FieldVote]:
    """Each field's majority over the successful samples whose value is an object.

    Fields come in the order samples first give them; a sample without a field
    casts no vote on it, so a field's agreement is its winner's count over the
    samples that gave that field. The winning value is the first sample's own.
    """
    given: dict[str, list[tuple[int, Any]]] = {}
    for index, sample in enumerate(samples):
        if sample.ok and isinstance(sample.data, dict):
            for name, value in sample.data.items():
                given.setdefault(name, []).append((index, value))
    fields: dict[str, FieldVote] = {}
    for name, values in given.items():
        counted = tally_values(values, mode, what=f"values of {name!r}")
        assert counted.winner is not None and counted.agreement is not None
        first = counted.winner.samples[0]
        value = next(v for i, v in values if i == first)
        fields[name] = FieldVote(
            value=value,
            agreement=counted.agreement,
            rows=counted.rows,
            tie_break=counted.tie_break,
        )
    return fields


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no spaces: equal values, equal strings."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _clip(answer: str, width: int = 40) -> str:
    return answer if len(answer) <= width else answer[: width - 3] + "..."


class VoteBoard:
    """The running count of a vote in Redis, so samples can stop once it is decided.

    A sample that finishes records its answer; once one answer holds more
    than half of the ``n`` votes, no other sample can change the winner, and
    samples that have not sent yet are revoked (they check :meth:`decided`
    before reserving and before sending).
    """

    def __init__(self, client: redis.Redis, ttl_s: int = 24 * 3600) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def record(self, vote_id: str, n: int, answer: str) -> bool:
        """Count one answer; True when this made (or found) the vote decided."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hincrby(keys.vote(vote_id), answer, 1)
        pipe.expire(keys.vote(vote_id), self._ttl_s)
        count, _ = pipe.execute()
        if int(count) * 2 > n:
            self._redis.set(keys.vote_decided(vote_id), answer, ex=self._ttl_s)
            return True
        return False

    def decided(self, vote_id: str) -> bool:
        return bool(self._redis.exists(keys.vote_decided(vote_id)))
