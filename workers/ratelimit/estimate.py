"""A fast local estimate of a request's input tokens, made before the call.

The estimate is characters / 3.5 for text (Anthropic's tokenizer averages
about 3.5 characters per token on English prose: about-claude/glossary), 3
tokens of framing per message, the JSON of tools and non-text blocks at the
same rate, and a flat 1,600 tokens per image (a ~1.15 megapixel image is
about that much); all of it times the model's tokenizer ratio
(``config.models``): the newer tokenizer of Opus 4.7 and later, the Sonnet 5
line, Haiku 5.5, Fable and Mythos makes "approximately 30% more" tokens of the
same text (build-with-claude/token-counting), so 1.3 there.

It only has to be close: the limiter reserves the estimate, then settles to
the ``usage`` the API reports, so an error moves capacity between calls in
the same minute but never leaks it. Measured against the local API's
tokenizer, whose newer family counts 1.3 times the classic one
(``tests/unit/test_estimate.py``): on English prose within 15 % on the classic
tokenizer (0 to -13 % on the sample prompts) and within 17 % on the newer one
(0 to -16 %: a short prompt's few tokens round further), and about 37 % low
on Python code for both, which runs denser than 3.5 characters per token;
Claude's own tokenizers behave alike on code and non-English text. Set
``CHORUS_LIMITER__ESTIMATOR=count_tokens`` for exact counts at the price of
one more request per call.
"""

from __future__ import annotations

import json
import math
from typing import Any

from config.models import rules_for
from workers.models import CallRequest

CHARS_PER_TOKEN = 3.5
TOKENS_PER_MESSAGE = 3
TOKENS_PER_IMAGE = 1600


def _block_chars(block: dict[str, Any]) -> tuple[int, int]:
    """(characters, images) of one content block."""
    kind = block.get("type")
    if kind == "text":
        return len(block.get("text", "")), 0
    if kind == "image":
        return 0, 1
    return len(json.dumps(block, separators=(",", ":"))), 0


def estimate_input_tokens(request: CallRequest) -> int:
    """The input tokens ``request`` will likely count, on its model's tokenizer."""
    rules = rules_for(request.model)
    ratio = 1.0 if rules is None else rules.token_ratio
    chars = 0
    images = 0
    if isinstance(request.system, str):
        chars += len(request.system)
    elif request.system:
        chars += sum(len(b.get("text", "")) for b in request.system)
    for message in request.messages:
        if isinstance(message.content, str):
            chars += len(message.content)
        else:
            for block in message.content:
                c, i = _block_chars(block)
                chars += c
                images += i
    if request.tools:
        chars += len(json.dumps(request.tools, separators=(",", ":")))
    base = (
        chars / CHARS_PER_TOKEN
        + TOKENS_PER_MESSAGE * len(request.messages)
        + TOKENS_PER_IMAGE * images
    )
    return math.ceil(base * ratio)
