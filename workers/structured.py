"""Structured answers: a JSON Schema sent the way the model takes it, the answer validated.

A request that carries a :class:`~workers.models.Structured` (``--schema``, or
``schema=`` from Python) asks for an answer matching a JSON Schema. How it is
asked depends on the model (docs/ARCHITECTURE.md, "Structured answers"):

- ``native``: ``output_config.format``, where the model takes structured
  outputs (``config.models``, ``structured_outputs``). The schema sent is the
  SDK's ``anthropic.transform_schema`` of the user's (the subset the API's
  constrained decoding enforces: ``minimum``, ``maxLength`` and the like move
  into descriptions), so the answer is still checked against the user's own.
- ``tool``: one tool whose input schema is the schema, forced with
  ``tool_choice``, where the model takes a forced tool choice and the schema's
  root is an object.
- ``prompt``: the schema in the system prompt, with the instruction to answer
  with that JSON alone; every model takes it.

The wire names are in ``config/structured.py``. Whatever the method, the
answer is read (:func:`read`) and validated with the ``jsonschema`` library
against the user's schema; a problem names the failing path (``$.items[2].score``)
and goes back to the model in a re-ask (:func:`reask_turns`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anthropic
import jsonschema
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from pydantic import BaseModel

from config.models import rules_for
from config.structured import ANSWER_TOOL, SCHEMA_CLOSE, SCHEMA_OPEN

# A validator's message quotes the value it read: cut it here in a problem.
PROBLEM_CHARS = 400


def check_schema(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` cannot be used, or None: it must be a valid JSON Schema (by its
    ``$schema`` dialect, Draft 2020-12 when it names none) whose root has a type the
    API's structured outputs take (``anthropic.transform_schema`` accepts it)."""
    if not isinstance(schema, Mapping):
        return "a JSON Schema is a JSON object"
    # Every item of a batch carries the same schema, checked at submit and again on
    # each worker: checked once per distinct schema (about a millisecond each).
    return _schema_problem(_canonical(schema))


@functools.lru_cache(maxsize=256)
def _schema_problem(canonical: str) -> str | None:
    schema = json.loads(canonical)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON Schema at {_path(exc.absolute_path)}: {_cut(exc.message)}"
    try:
        anthropic.transform_schema(schema)
    except (ValueError, TypeError, KeyError) as exc:
        return f"not a schema the API's structured outputs take: {exc}"
    return None


def resolve_method(
    model: str,
    method: str,
    schema: Mapping[str, Any],
    *,
    tool_choice: Mapping[str, Any] | None = None,
    thinking: Mapping[str, Any] | None = None,
) -> str:
    """How ``model`` is asked for the structure: ``method`` itself unless it is ``auto``.

    ``auto``: ``native`` where the model takes structured outputs (or chorus
    does not know the model: the API decides); else ``tool`` where it takes a
    forced tool choice, the request forces none of its own and uses no manual
    thinking budget (which a forced tool choice refuses), and the schema's root
    is an object (a tool's input is one); else ``prompt``.
    """
    if method != "auto":
        return method
    rules = rules_for(model)
    if rules is None or rules.structured_outputs:
        return "native"
    manual_thinking = isinstance(thinking, Mapping) and thinking.get("type") == "enabled"
    if (
        rules.forced_tool_choice
        and tool_choice is None
        and not manual_thinking
        and schema.get("type") == "object"
    ):
        return "tool"
    return "prompt"


def fallback_note(model: str, method: str) -> str | None:
    """The one line a producer prints when ``model`` is not asked natively, else None."""
    if method == "native":
        return None
    rules = rules_for(model)
    if rules is not None and rules.structured_outputs:
        return f"structured answers on {model}: asked by the {method} method, as requested"
    if method == "tool":
        how = "a forced tool call whose input schema is the schema"
    elif rules is not None and not rules.forced_tool_choice:
        how = "the schema in the system prompt (it takes no forced tool choice either)"
    else:
        how = "the schema in the system prompt"
    return (
        f"{model} takes no output_config.format (structured outputs): chorus asks for the "
        f"structure with {how}, and validates every answer"
    )


def apply(params: dict[str, Any], schema: Mapping[str, Any], method: str) -> None:
    """Ask for the structure in ``params`` (a ``messages.create`` body), in place."""
    if method == "native":
        config = dict(params.get("output_config") or {})
        config["format"] = {"type": "json_schema", "schema": native_schema(schema)}
        params["output_config"] = config
    elif method == "tool":
        tool = {
            "name": ANSWER_TOOL,
            "description": "Give your answer: its input is the answer, in the schema asked for.",
            "input_schema": dict(schema),
        }
        params["tools"] = [*params.get("tools", []), tool]
        params["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
    else:
        instruction = prompt_instruction(schema)
        system = params.get("system")
        if system is None:
            params["system"] = instruction
        elif isinstance(system, str):
            params["system"] = f"{system}\n\n{instruction}"
        else:
            params["system"] = [*system, {"type": "text", "text": instruction}]


def prompt_instruction(schema: Mapping[str, Any]) -> str:
    """The system prompt's part that asks for JSON matching ``schema`` (the prompt method)."""
    return (
        "Answer with one JSON value that matches the JSON Schema below, and nothing else: "
        "no prose and no code fence.\n"
        f"{SCHEMA_OPEN}\n{json.dumps(schema, ensure_ascii=False)}\n{SCHEMA_CLOSE}"
    )


def native_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """What ``output_config.format`` carries: ``anthropic.transform_schema`` of ``schema``."""
    return anthropic.transform_schema(dict(schema))


@dataclass(frozen=True, slots=True)
class Reading:
    """A structured answer read: the value when it is valid, else the problem."""

    data: Any = None
    problem: str | None = None

    @property
    def valid(self) -> bool:
        return self.problem is None


def read(message: Mapping[str, Any], schema: Mapping[str, Any], method: str) -> Reading:
    """The value ``message`` answers, validated against ``schema``.

    A text answer (``native``, ``prompt``) is parsed as JSON (the prompt
    method's answer may sit in a code fence); a ``tool`` answer is the forced
    tool call's input. The problem names what failed: not JSON (where), no
    answer tool call, or the first schema violation with its path.
    """
    content = [b for b in message.get("content") or [] if isinstance(b, Mapping)]
    if method == "tool":
        call = _answer_call(content)
        if call is None:
            return Reading(problem=f"the answer did not call the {ANSWER_TOOL} tool")
        value = call.get("input")
    else:
        text = "".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
        try:
            value = parse_json(text, lenient=method == "prompt")
        except ValueError as exc:
            return Reading(problem=str(exc))
    problem = violation(value, schema)
    return Reading(data=value, problem=None) if problem is None else Reading(problem=problem)


def parse_json(text: str, *, lenient: bool = False) -> Any:
    """The JSON value ``text`` holds.

    ``lenient``: a code fence around it, or a line of prose before it, is
    skipped (what a model asked in the prompt sometimes writes).

    Raises:
        ValueError: not JSON, with where it broke.
    """
    stripped = text.strip()
    if lenient and stripped.startswith("```"):
        lines = stripped.splitlines()
        body = lines[1:-1] if len(lines) > 1 and lines[-1].strip() == "```" else lines[1:]
        stripped = "\n".join(body).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        if lenient:
            start = min((i for i in (stripped.find("{"), stripped.find("[")) if i >= 0), default=-1)
            if start > 0:
                try:
                    value, end = json.JSONDecoder().raw_decode(stripped, start)
                except json.JSONDecodeError:
                    pass
                else:
                    if not stripped[end:].strip():
                        return value
        shown = stripped[:60] + ("..." if len(stripped) > 60 else "")
        raise ValueError(
            f"the answer is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {shown!r}"
        ) from None


def violation(value: Any, schema: Mapping[str, Any]) -> str | None:
    """The first way ``value`` breaks ``schema`` (path and reason), or None when it is valid."""
    errors = list(_validator(_canonical(schema)).iter_errors(value))
    if not errors:
        return None
    error: ValidationError = best_match(errors)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = _path(error.absolute_path)
    return f"the answer breaks the schema at {where}: {_cut(error.message)}{more}"


def reask_turns(message: Mapping[str, Any], problem: str, method: str) -> list[dict[str, Any]]:
    """The assistant's answer and the user's re-ask that follow a conversation.

    ``tool``: the answer's blocks as they came (a tool call's thinking goes
    back with it) and a ``tool_result`` marked ``is_error`` that says what to
    correct. ``native`` and ``prompt``: the answer's text, and a user turn
    with the problem and the request for the corrected JSON alone.
    """
    content = [dict(b) for b in message.get("content") or [] if isinstance(b, Mapping)]
    if method == "tool":
        call = _answer_call(content)
        if call is not None:
            result = {
                "type": "tool_result",
                "tool_use_id": call["id"],
                "is_error": True,
                "content": f"{problem}. Call {ANSWER_TOOL} again with a corrected input.",
            }
            return [
                {"role": "assistant", "content": content},
                {"role": "user", "content": [result]},
            ]
    said = [b for b in content if b.get("type") == "text"]  # thinking does not go back
    if not said:
        said = [{"type": "text", "text": "(no answer)"}]
    return [
        {"role": "assistant", "content": said},
        {
            "role": "user",
            "content": (
                f"That answer cannot be used: {problem}. Answer again with only the corrected "
                "JSON, matching the schema."
            ),
        },
    ]


def _answer_call(content: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The forced ``chorus_answer`` tool call among ``content``, if there is one."""
    return next(
        (b for b in content if b.get("type") == "tool_use" and b.get("name") == ANSWER_TOOL),
        None,
    )


@functools.lru_cache(maxsize=256)
def _validator(canonical: str) -> Any:
    schema = json.loads(canonical)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _path(path: Sequence[Any]) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _cut(text: str) -> str:
    return text if len(text) <= PROBLEM_CHARS else text[:PROBLEM_CHARS] + "..."


def spec(
    schema: Mapping[str, Any] | type[BaseModel],
    *,
    reask: int = 1,
    method: str = "auto",
) -> dict[str, Any]:
    """A request's ``structured`` field from a JSON Schema dict or a pydantic model class.

    A pydantic class gives its ``model_json_schema()`` and its name; its
    answers come back as instances with :func:`parse_as` (``Envelope.parsed``).

    Raises:
        TypeError: ``schema`` is neither.
    """
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return {
            "json_schema": schema.model_json_schema(),
            "name": schema.__name__,
            "reask": reask,
            "method": method,
        }
    if isinstance(schema, Mapping):
        return {"json_schema": dict(schema), "reask": reask, "method": method}
    raise TypeError(
        f"schema: a JSON Schema dict or a pydantic model class, not {type(schema).__name__}"
    )


def load_schema_file(path: str) -> dict[str, Any]:
    """The JSON Schema in the file at ``path`` (``--schema``).

    Raises:
        ValueError: it cannot be read, is not JSON (with the line), or not a valid schema.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            schema = json.load(handle)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    problem = check_schema(schema)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    return dict(schema)
