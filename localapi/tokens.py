"""The local tokenizer: deterministic, cheap, and roughly as coarse as a real one.

A text's token count is the number of matches of

    [A-Za-z]{1,4} | [0-9]{1,3} | [^\\sA-Za-z0-9]

so a word is cut into chunks of up to four letters, a number into chunks of up
to three digits, every other visible character is one token and white space
is free. "Hello, world!" is ["Hell", "o", ",", "worl", "d", "!"]: 6 tokens.

A request's input tokens are the sum over its parts, in the order the API
caches them (tools, system, messages):
- `tools`: the tokens of `json.dumps(tools)`;
- `system`: its text (a string, or the `text` of each text block);
- each message: 3 tokens of overhead, then its content: a string, or per
  block the `text` of a text block and the tokens of `json.dumps(block)` for
  any other block (tool_use, tool_result, image, ...).

A part may carry `cache_control` (see `localapi.cache`); a top-level
`cache_control` marks the request's last part, as the API's automatic
caching does.

Models with the newer tokenizer (Opus 4.7 and later, the Sonnet 5 line, Haiku
5.5, Fable, Mythos) count about 30 % more tokens for the same text
(platform.claude.com/docs/en/build-with-claude/token-counting): each part's
count is scaled by the model's `token_ratio` (`config.models`), 1.3 there and
1.0 on the 4.6-and-earlier models.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.models import rules_for

TOKEN_PATTERN = re.compile(r"[A-Za-z]{1,4}|[0-9]{1,3}|[^\sA-Za-z0-9]")
MESSAGE_OVERHEAD_TOKENS = 3


def count_text_tokens(text: str) -> int:
    """The number of tokens in `text` (see the module docstring)."""
    return len(TOKEN_PATTERN.findall(text))


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` that holds at most `max_tokens` tokens."""
    if max_tokens <= 0:
        return ""
    for index, match in enumerate(TOKEN_PATTERN.finditer(text), start=1):
        if index == max_tokens:
            return text[: match.end()]
    return text


def count_block_tokens(block: Mapping[str, Any]) -> int:
    """A content block's tokens: the text of a text block, else the block's JSON."""
    if block.get("type") == "text" and isinstance(block.get("text"), str):
        return count_text_tokens(block["text"])
    return count_text_tokens(json.dumps(block))


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a request as the prompt cache sees it."""

    tokens: int
    payload: Any
    # The block's `cache_control` marks the end of a cacheable prefix.
    cache_control: Any = None


def request_parts(body: Mapping[str, Any], ratio: float | None = None) -> list[Part]:
    """The request's parts in cache order; `body` must already be validated.

    `ratio`: tokens per base token of the model's tokenizer (None: the model's,
    from `config.models`; 1.0 when the model is unknown).
    """
    if ratio is None:
        ratio = token_ratio(body.get("model"))
    parts = _base_parts(body)
    if ratio != 1.0:
        parts = [dataclasses.replace(p, tokens=round(p.tokens * ratio)) for p in parts]
    return parts


def token_ratio(model: object) -> float:
    """How many tokens `model`'s tokenizer makes of one base token."""
    rules = rules_for(model) if isinstance(model, str) else None
    return 1.0 if rules is None else rules.token_ratio


def _base_parts(body: Mapping[str, Any]) -> list[Part]:
    parts: list[Part] = []
    tools = body.get("tools")
    if tools:
        marks = [tool.get("cache_control") for tool in tools if isinstance(tool, dict)]
        marked = next((mark for mark in reversed(marks) if mark), None)
        parts.append(Part(count_text_tokens(json.dumps(tools)), tools, marked))
    system = body.get("system")
    if isinstance(system, str):
        if system:
            parts.append(Part(count_text_tokens(system), system))
    elif isinstance(system, list):
        for block in system:
            parts.append(Part(count_block_tokens(block), block, block.get("cache_control")))
    for message in body["messages"]:
        parts.append(Part(MESSAGE_OVERHEAD_TOKENS, message["role"]))
        content = message["content"]
        if isinstance(content, str):
            parts.append(Part(count_text_tokens(content), content))
        else:
            for block in content:
                parts.append(Part(count_block_tokens(block), block, block.get("cache_control")))
    automatic = body.get("cache_control")
    if automatic and parts:
        # Top-level cache_control marks the last cacheable block: the end of the last message.
        parts[-1] = dataclasses.replace(parts[-1], cache_control=automatic)
    return parts


def count_request_tokens(body: Mapping[str, Any]) -> int:
    """A validated request's input tokens (see the module docstring)."""
    return sum(part.tokens for part in request_parts(body))


def prompt_text(body: Mapping[str, Any]) -> str:
    """The system text (if any), then the text of every message, joined by newlines.

    Only text counts (strings and text blocks): this is what script rules
    match and what the request log shows.
    """
    system = body.get("system")
    if isinstance(system, str):
        head = system
    elif isinstance(system, list):
        head = "\n".join(_block_texts(system))
    else:
        head = ""
    texts: list[str] = []
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(_block_texts(content))
    return "\n".join([head, *texts]) if head else "\n".join(texts)


def _block_texts(blocks: list[Any]) -> list[str]:
    return [
        block["text"]
        for block in blocks
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    ]
