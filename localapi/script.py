"""Script rules: tests decide, from the prompt text, what the local API answers.

A rule, as JSON:

    {"match": "substring", "regex": false, "responses": [RESPONSE, ...],
     "per_prompt": false, "then": "repeat_last"}

It matches when `match` occurs in the prompt text (`re.search` when `regex`).
Rules are tried in order and the first that matches decides. Each match takes
the next RESPONSE; once the sequence is used up, `then` says what follows:
"repeat_last", "cycle", or "fallthrough" (the rule stops matching, so later
rules and then the normal path answer). With `per_prompt` the position is
kept per distinct prompt text, so "fail once, then succeed" holds for each
item of a batch.

A RESPONSE: {"status": 200, "text": ..., "content": [...], "blocks": [...],
"stop_reason": ..., "stop_details": {...}, "error_type": ..., "error_code": ...,
"message": ..., "headers": {...}, "latency_ms": ..., "retry_after_s": ...,
"fault": FAULT, "output_tokens": ..., "json": VALUE}; every key is optional.

- `content`: the blocks to answer with, exactly as given;
- `blocks`: block types by name, built by the server (`localapi.blocks`):
  ``["thinking", "web_search_tool_result", "text"]``;
- `error_code`: an error answer's `error.details.error_code`;
- `headers`: added to the answer (``{"x-should-retry": "false"}``);
- `fault`: "hang", "malformed", or a named outcome ("refusal",
  "context_exceeded", "pause_turn") or stream fault ("stream_error",
  "stream_cut") the server would otherwise draw at its configured rate;
- `json`: any JSON value (null too), the answer to a structured request
  (`localapi.structured`) exactly as given, whether it matches the schema or
  not: the text of a native or prompt answer is its JSON, the answer tool's
  input is the value itself (give an object: the API's tool input always is
  one). The stats count it as invalid when it does not validate. A request
  that asks for no structure gets it as its text (a forced tool, as its input).
  Not with `text`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from localapi.blocks import BLOCK_TYPES
from localapi.structured import UNSET

THEN_CHOICES = ("repeat_last", "cycle", "fallthrough")
SCRIPT_FAULTS = (
    "hang", "malformed", "refusal", "context_exceeded", "pause_turn", "stream_error", "stream_cut"
)  # fmt: skip
_RULE_KEYS = frozenset({"match", "regex", "responses", "per_prompt", "then"})


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    """What one matching call gets; None fields fall back to the normal behaviour."""

    status: int = 200
    text: str | None = None
    content: list[dict[str, Any]] | None = None
    blocks: list[str] | None = None
    stop_reason: str | None = None
    stop_details: dict[str, Any] | None = None
    error_type: str | None = None
    error_code: str | None = None
    message: str | None = None
    headers: dict[str, str] | None = None
    latency_ms: float | None = None
    retry_after_s: float | None = None
    fault: str | None = None
    output_tokens: int | None = None
    json: Any = UNSET

    @classmethod
    def from_json(cls, raw: object) -> ScriptedResponse:
        if not isinstance(raw, Mapping):
            raise ValueError(f"a response must be an object, got {raw!r}")
        known = {field.name for field in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown response keys: {sorted(unknown)}")
        response = cls(**raw)
        response._check()
        return response

    def _check(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"status must be an integer, got {self.status!r}")
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be between 200 and 599, got {self.status}")
        if self.text is not None and self.json is not UNSET:
            raise ValueError("give text or json, not both")
        if self.fault is not None and self.fault not in SCRIPT_FAULTS:
            raise ValueError(f"fault must be one of {SCRIPT_FAULTS}, got {self.fault!r}")
        for name in ("text", "stop_reason", "error_type", "error_code", "message"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
        for name in ("latency_ms", "retry_after_s", "output_tokens"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.content is not None and not (
            isinstance(self.content, list)
            and all(isinstance(block, dict) and "type" in block for block in self.content)
        ):
            raise ValueError("content must be a list of blocks that each have a type")
        if self.blocks is not None:
            if not isinstance(self.blocks, list) or not all(
                isinstance(kind, str) for kind in self.blocks
            ):
                raise ValueError("blocks must be a list of block type names")
            unknown = sorted(set(self.blocks) - BLOCK_TYPES)
            if unknown:
                raise ValueError(f"unknown block types {unknown}; one of {sorted(BLOCK_TYPES)}")
        if self.stop_details is not None and not isinstance(self.stop_details, dict):
            raise ValueError(f"stop_details must be an object, got {self.stop_details!r}")
        if self.headers is not None and not (
            isinstance(self.headers, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items())
        ):
            raise ValueError("headers must be an object of string values")


class ScriptRule:
    """One rule and its position(s) in its sequence of responses."""

    def __init__(self, raw: object) -> None:
        if not isinstance(raw, Mapping):
            raise ValueError(f"a rule must be an object, got {raw!r}")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise ValueError(f"unknown rule keys: {sorted(unknown)}")
        match = raw.get("match", "")
        if not isinstance(match, str):
            raise ValueError(f"match must be a string, got {match!r}")
        self.match = match
        self.pattern = re.compile(match) if raw.get("regex", False) else None
        responses = raw.get("responses")
        if not isinstance(responses, list) or not responses:
            raise ValueError("responses must be a non-empty list")
        self.responses = [ScriptedResponse.from_json(item) for item in responses]
        self.per_prompt = bool(raw.get("per_prompt", False))
        self.then = raw.get("then", "repeat_last")
        if self.then not in THEN_CHOICES:
            raise ValueError(f"then must be one of {THEN_CHOICES}, got {self.then!r}")
        self._position = 0
        # Keyed by a digest so that long prompts are not kept alive.
        self._positions: dict[bytes, int] = {}

    def matches(self, prompt: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(prompt) is not None
        return self.match in prompt

    def take(self, prompt: str) -> ScriptedResponse | None:
        """The next response for `prompt`, or None once a "fallthrough" rule is used up."""
        digest = hashlib.sha1(prompt.encode()).digest() if self.per_prompt else b""
        position = self._positions.get(digest, 0) if self.per_prompt else self._position
        count = len(self.responses)
        if position < count:
            chosen: ScriptedResponse | None = self.responses[position]
        elif self.then == "cycle":
            chosen = self.responses[position % count]
        elif self.then == "repeat_last":
            chosen = self.responses[-1]
        else:
            chosen = None
        if chosen is not None:
            if self.per_prompt:
                self._positions[digest] = position + 1
            else:
                self._position = position + 1
        return chosen


class Script:
    """The rules in force, tried in order."""

    def __init__(self) -> None:
        self.rules: list[ScriptRule] = []

    def __len__(self) -> int:
        return len(self.rules)

    def add(self, raw_rules: object) -> int:
        """Append rules given as JSON; all are checked before any is added. Returns the count."""
        if not isinstance(raw_rules, list):
            raise ValueError("a script is a JSON list of rules")
        rules = [ScriptRule(raw) for raw in raw_rules]
        self.rules.extend(rules)
        return len(rules)

    def clear(self) -> None:
        self.rules.clear()

    def decide(self, prompt: str) -> ScriptedResponse | None:
        """The response of the first rule that matches and still applies, else None."""
        for rule in self.rules:
            if rule.matches(prompt):
                response = rule.take(prompt)
                if response is not None:
                    return response
        return None
