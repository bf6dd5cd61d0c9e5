"""Structured requests: which of chorus's three ways a request asks in, and what a model answers.

chorus asks for an answer matching a JSON Schema in one of three ways
(``config/structured.py`` names them); the local API answers each as the real
API and a model following the request do:

- ``native``: ``output_config.format = {"type": "json_schema", "schema": S}``.
  The API decodes under the schema: one text block whose text is JSON matching
  S (compact, as constrained decoding writes it). A model that takes no
  ``output_config.format`` never gets here: ``config.models.request_problem``
  answers it 400 first.
- ``tool``: a tool named :data:`~config.structured.ANSWER_TOOL`, forced by
  ``tool_choice``: a ``tool_use`` block whose input matches its
  ``input_schema``.
- ``prompt``: S between :data:`~config.structured.SCHEMA_OPEN` and
  :data:`~config.structured.SCHEMA_CLOSE` in the system prompt (or, failing
  that, in the first user message): one text block holding the JSON, indented,
  and one time in :data:`FENCE_P` inside a ```json fence, as models write it.

With the server's ``rate_invalid_output`` that share of structured answers
come back invalid, drawn with the request's own generator: half of them (never
for ``tool``, whose input is always a JSON object) not JSON at all (cut half
way, or for ``prompt`` between lines of prose: a reader that skips a line of
prose before the JSON, as chorus's does, still finds none that ends it), the
rest JSON that breaks the schema (``localapi.schema_values.broken_value``). A
script's ``"json"`` value is answered exactly as given, valid or not.

A request whose conversation holds more than one user turn already has an
answer in it: a *follow-up*, the way chorus asks again after an invalid one.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jiter

from config.structured import ANSWER_TOOL, SCHEMA_CLOSE, SCHEMA_OPEN
from localapi.schema_values import broken_value, is_valid, value_for_schema

# How often a model answering the prompt method puts its JSON in a ```json fence.
FENCE_P = 0.1
# Of the invalid answers that may be text, the share that is not JSON at all.
NOT_JSON_P = 0.5
PROSE = ("Here is the answer:\n\n", "\n\nLet me know if you would like any changes.")
_SCHEMA_IN_TEXT = re.compile(re.escape(SCHEMA_OPEN) + r"(.*?)" + re.escape(SCHEMA_CLOSE), re.S)


class _Unset:
    """No ``json`` in a script response (``null`` is a value a script may give)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True, slots=True)
class StructuredRequest:
    """How a request asks for a structured answer, and the schema it gives."""

    method: str
    schema: Mapping[str, Any]
    followup: bool = False


@dataclass(frozen=True, slots=True)
class StructuredAnswer:
    """What the stats learn of one answer to a structured request."""

    method: str
    invalid: bool
    followup: bool


def structured_request(
    body: Mapping[str, Any], forced_tool: tuple[str, Mapping[str, Any]] | None
) -> StructuredRequest | None:
    """The way ``body`` asks for a structured answer (``forced_tool``: the client tool
    its ``tool_choice`` forces, as (name, input schema)); None when it asks in none."""
    followup = user_turns(body.get("messages")) > 1
    config = body.get("output_config")
    form = config.get("format") if isinstance(config, Mapping) else None
    if isinstance(form, Mapping) and form.get("type") == "json_schema":
        schema = form.get("schema")
        if isinstance(schema, Mapping):
            return StructuredRequest("native", schema, followup)
    if forced_tool is not None and forced_tool[0] == ANSWER_TOOL:
        return StructuredRequest("tool", forced_tool[1], followup)
    schema = prompt_schema(body)
    if schema is not None:
        return StructuredRequest("prompt", schema, followup)
    return None


def user_turns(messages: object) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(1 for m in messages if isinstance(m, Mapping) and m.get("role") == "user")


def prompt_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema between the markers in the system prompt, else in the first user
    message; None when neither holds one that parses as a JSON object."""
    for text in (_system_text(body.get("system")), _first_user_text(body.get("messages"))):
        match = _SCHEMA_IN_TEXT.search(text)
        if match is None:
            continue
        try:
            schema = json.loads(match.group(1))
        except ValueError:
            continue
        if isinstance(schema, dict):
            return schema
    return None


def _texts(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n".join(
        block["text"]
        for block in content
        if isinstance(block, Mapping)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def _system_text(system: object) -> str:
    return _texts(system)


def _first_user_text(messages: object) -> str:
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _texts(message.get("content"))
    return ""


def tool_input(
    asked: StructuredRequest, rng: random.Random, rate_invalid: float, scripted: Any = UNSET
) -> tuple[Any, bool]:
    """The answer tool's input and whether it breaks the schema (a script's ``json``
    counts as breaking it only when ``jsonschema`` says so)."""
    invalid = rng.random() < rate_invalid
    if scripted is not UNSET:
        return scripted, is_valid(scripted, asked.schema) is False
    value = value_for_schema(asked.schema, rng)
    if not isinstance(value, dict):
        value = {}
    if invalid:
        return broken_value(value, asked.schema, rng, keep_object=True)
    return value, False


def answer_text(
    asked: StructuredRequest, rng: random.Random, rate_invalid: float, scripted: Any = UNSET
) -> tuple[str, bool]:
    """The text of a native or prompt answer, and whether it is invalid (not JSON, or
    JSON that breaks the schema)."""
    invalid = rng.random() < rate_invalid
    if scripted is not UNSET:
        return json.dumps(scripted), is_valid(scripted, asked.schema) is False
    value = value_for_schema(asked.schema, rng)
    if not invalid:
        return _written(value, asked.method, rng), False
    if rng.random() < NOT_JSON_P:
        return _not_json(value, asked.method, rng), True
    broken, surely = broken_value(value, asked.schema, rng)
    return _written(broken, asked.method, rng), surely


def _written(value: Any, method: str, rng: random.Random) -> str:
    if method == "native":
        return json.dumps(value, separators=(",", ":"))
    text = json.dumps(value, indent=2)
    return f"```json\n{text}\n```" if rng.random() < FENCE_P else text


def _not_json(value: Any, method: str, rng: random.Random) -> str:
    """Text that is not JSON, even with a fence or a line of prose before it skipped:
    prose around the JSON (the prompt method), or the JSON cut half way."""
    text = json.dumps(value, indent=None if method == "native" else 2)
    if method == "prompt" and rng.random() < 0.5:
        return PROSE[0] + text + PROSE[1]
    cut = text[: max(1, len(text) // 2)]
    try:
        json.loads(cut)
    except ValueError:
        return cut
    return cut + ","  # a number or word cut short can still be JSON; this is not


def partial_object(text: str) -> dict[str, Any]:
    """What a tool input cut part way holds, parsed as the SDK's streaming parser would
    (a string cut short is kept; an unfinished number or word is dropped)."""
    try:
        value = jiter.from_json(text.encode(), partial_mode="trailing-strings")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
