"""Deterministic replies, and the limits every reply obeys (max_tokens, stop sequences).

A reply depends only on (server seed, the request body, the `x-chorus-key`
header): the same call gets the same words, while two samples of one prompt
(whose keys differ by their sample index) get different ones. Its length is
drawn uniformly from the configured range, counted with the local tokenizer,
so `output_tokens` always equals `count_text_tokens(text)`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from localapi.tokens import count_text_tokens, truncate_to_tokens

# Words of 1 to 3 tokens; the one-token words let any length be hit exactly.
_WORDS = """
    the a of to and in is it for on we as that with this data model result answer first
    second because therefore however each item shows clear evidence value local test reply
    chorus worker signal pattern summary point likely simple careful
"""
VOCABULARY = tuple(_WORDS.split())
ONE_TOKEN_WORDS = tuple(word for word in VOCABULARY if count_text_tokens(word) == 1)
_WORD_TOKENS = {word: count_text_tokens(word) for word in VOCABULARY}
# After a word: nothing, the end of a sentence, or a comma ("." and "," cost a token each).
_MARKS = ("", ".", ",")
_MARK_CUM_WEIGHTS = (0.82, 0.94, 1.0)


def reply_rng(seed: int, body_sha256: str, chorus_key: str | None) -> random.Random:
    """The generator whose draws make one call's reply."""
    return random.Random(f"{seed}:{body_sha256}:{chorus_key or ''}")


def generate_text(rng: random.Random, n_tokens: int) -> str:
    """Sentences of vocabulary words holding exactly `n_tokens` tokens."""
    # Drawn in bulk: a word costs at least one token, so n_tokens words always suffice.
    words = rng.choices(VOCABULARY, k=n_tokens)
    marks = rng.choices(_MARKS, cum_weights=_MARK_CUM_WEIGHTS, k=n_tokens)
    pieces: list[str] = []
    remaining = n_tokens
    capital = True
    for word, mark in zip(words, marks, strict=True):
        if remaining <= 0:
            break
        cost = _WORD_TOKENS[word]
        if cost > remaining:
            word, cost = ONE_TOKEN_WORDS[len(pieces) % len(ONE_TOKEN_WORDS)], 1
        remaining -= cost
        if capital:
            word = word.capitalize()
            capital = False
        if mark and remaining > 0:
            word += mark
            remaining -= 1
            capital = mark == "."
        pieces.append(word)
    return " ".join(pieces)


def generate_reply(rng: random.Random, min_tokens: int, max_tokens: int) -> str:
    """A reply whose length is uniform in [min_tokens, max_tokens] tokens."""
    return generate_text(rng, rng.randint(min_tokens, max_tokens))


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    stop_reason: str
    stop_sequence: str | None


def apply_limits(text: str, max_tokens: int, stop_sequences: Sequence[str] = ()) -> Reply:
    """Cut `text` as the API would: at `max_tokens`, then before the first stop sequence."""
    stop_reason = "end_turn"
    if count_text_tokens(text) > max_tokens:
        text = truncate_to_tokens(text, max_tokens)
        stop_reason = "max_tokens"
    first_at, first_seq = len(text) + 1, None
    for sequence in stop_sequences:
        at = text.find(sequence) if sequence else -1
        if 0 <= at < first_at:
            first_at, first_seq = at, sequence
    if first_seq is not None:
        return Reply(text[:first_at], "stop_sequence", first_seq)
    return Reply(text, stop_reason, None)
