"""Reading a batch file: JSONL in, validated requests out, every error with its line number.

Three shapes of line are understood:

- **Message Batches**: ``{"custom_id": "...", "params": {...Messages API
  parameters...}}``, as written for Anthropic's Message Batches API, and held
  to its rules: what the API would refuse in a batch is refused here
  (:func:`custom_id_problem`, :func:`params_problems`, a ``custom_id`` used
  twice). The ``custom_id`` is the item's id.
- **A prompt field**: ``{"id": "...", "prompt": "..."}`` (``--prompt-field``
  names another field). ``id`` is optional: the line number stands in.
- **A template**: any object; ``--template FILE`` holds text with ``{field}``
  placeholders filled from it.

The file is read as bytes, one line at a time and never whole: a line over
the size cap is reported and skipped in fixed-size chunks, so a 2 GB line
costs no more memory than the cap. Blank lines are skipped. A line must be
text: invalid UTF-8, a NUL byte, or a JSON escape that decodes to a lone
surrogate (``"\\ud800"``, in any field or field name: ``workers.text``) is
refused with the line number, whatever the line's shape.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import string
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import NoneType
from typing import IO, TYPE_CHECKING, Any

from config.models import DEFAULT_MAX_TOKENS, SAMPLING_PARAMS
from workers.errors import ChorusError, InvalidRequest
from workers.models import CHORUS_FIELDS, CallRequest
from workers.text import find_lone_surrogate, has_lone_surrogate, may_hold_surrogate, printable
from workers.validation import validate_request

if TYPE_CHECKING:
    from config.settings import Settings

DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024
_SKIP_CHUNK = 64 * 1024
# The Message Batches API's rule for custom_id, as its reference states it
# ("Create a Message Batch": minLength 1, maxLength 64, pattern below; the
# batch-processing guide: "must be 1 to 64 characters and contain only
# alphanumeric characters, hyphens, and underscores").
CUSTOM_ID_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"
# The same pattern as the API reads it. An OpenAPI/JSON Schema pattern is an
# ECMA-262 regex, whose "$" (without the m flag) matches only at the very end;
# Python's "$" also matches before a final "\n", so "req-1\n" would pass
# re.match(CUSTOM_ID_PATTERN). "\Z" is the end, and nothing else.
_CUSTOM_ID = re.compile(r"\A[a-zA-Z0-9_-]{1,64}\Z")
_CUSTOM_ID_CHAR = re.compile(r"[^a-zA-Z0-9_-]")
_CUSTOM_ID_MAX = 64
_MAX_ID_LENGTH = 256


class BatchInputError(ChorusError, ValueError):
    """Raised when a batch's input cannot be used: its message says why."""


@dataclass(frozen=True)
class InputSpec:
    """How lines become requests."""

    prompt_field: str | None = None
    template: str | None = None
    model: str = ""
    max_tokens: int | None = None
    system: str | None = None
    # output_config.effort for items that set none.
    effort: str | None = None
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    # The JSON Schema every answer must match, as a request's ``structured`` field
    # (workers.structured.spec), for items that set none.
    structured: dict[str, Any] | None = None

    def template_fields(self) -> list[str]:
        return template_fields(self.template) if self.template is not None else []

    @classmethod
    def filled(
        cls,
        settings: Settings,
        *,
        prompt_field: str | None = None,
        template: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        system: str | None = None,
        effort: str | None = None,
        max_line_bytes: int | None = None,
        structured: dict[str, Any] | None = None,
    ) -> InputSpec:
        """A spec from a submit's options, the model and line limit not given taken from
        ``settings`` (``CHORUS_ANTHROPIC__DEFAULT_MODEL``, ``CHORUS_BATCH__MAX_LINE_BYTES``)."""
        return cls(
            prompt_field=prompt_field,
            template=template,
            model=model or settings.anthropic.default_model,
            max_tokens=max_tokens,
            system=system,
            effort=effort,
            max_line_bytes=max_line_bytes or settings.batch.max_line_bytes,
            structured=structured,
        )


@dataclass(frozen=True)
class Item:
    line: int
    id: str
    request: CallRequest


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names a template uses.

    Raises:
        BatchInputError: a placeholder is not a plain name, or the braces do not pair.
    """
    fields: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise BatchInputError(f"template: {exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise BatchInputError(
                f"template: placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} must be a plain field name such as {{text}}"
            )
        if name not in fields:
            fields.append(name)
    if not fields:
        raise BatchInputError(
            "template: it has no {field} placeholder, so every item would be the same"
        )
    return fields


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _lines(stream: IO[bytes], cap: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, bytes or None when over the cap, length seen)."""
    number = 0
    while True:
        raw = stream.readline(cap + 1)
        if not raw:
            return
        number += 1
        if len(raw) > cap and not raw.endswith(b"\n"):
            seen = len(raw)
            while True:  # skip the rest of the line without holding it
                chunk = stream.readline(_SKIP_CHUNK)
                seen += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield number, None, seen
            continue
        yield number, raw, len(raw)


def _decode(number: int, raw: bytes) -> str | LineError:
    if b"\x00" in raw:
        return LineError(number, "binary data (a NUL byte): a batch file is UTF-8 JSON lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(number, f"invalid UTF-8 at byte {exc.start + 1} of the line")
    if number == 1:
        text = text.removeprefix("\ufeff")
    return text


def read_items(path: str | Path, spec: InputSpec) -> Iterator[Item | LineError]:
    """Every line of ``path``, as an item or as the error that stops it being one.

    Raises:
        BatchInputError: the file cannot be opened.
    """
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below, generator-scoped
    except OSError as exc:
        raise BatchInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with stream:
        yield from _items(_raw_lines(stream, spec), spec)


def items_from_objects(
    objects: Iterable[Mapping[str, Any]], spec: InputSpec
) -> Iterator[Item | LineError]:
    """The same validation for items given in code: "line" is the 1-based position."""

    yield from _items(_text_only(enumerate(objects, start=1)), spec)


def _text_only(objects: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """Each object, or the error of one holding a lone surrogate anywhere (``workers.text``)."""
    for number, obj in objects:
        yield number, (_surrogate_error(number, obj) if has_lone_surrogate(obj) else obj)


def _surrogate_error(number: int, obj: Any) -> LineError | Any:
    found = find_lone_surrogate(obj)
    return obj if found is None else LineError(number, found.describe())


def _raw_lines(stream: IO[bytes], spec: InputSpec) -> Iterator[tuple[int, Any]]:
    for number, raw, seen in _lines(stream, spec.max_line_bytes):
        if raw is None:
            yield (
                number,
                LineError(
                    number, f"{seen:,} bytes, over the {spec.max_line_bytes:,}-byte line cap"
                ),
            )
            continue
        text = _decode(number, raw)
        if isinstance(text, LineError):
            yield number, text
            continue
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            message = str(exc)
            if isinstance(exc, json.JSONDecodeError):
                message = f"not valid JSON: {exc.msg} at column {exc.colno}"
            yield number, LineError(number, message)
            continue
        # A "\ud800" escape is valid JSON but not text, like invalid UTF-8: refused
        # wherever it is in the line (only a line that escapes one is searched).
        yield number, (_surrogate_error(number, obj) if may_hold_surrogate(text) else obj)


def _items(lines: Iterable[tuple[int, Any]], spec: InputSpec) -> Iterator[Item | LineError]:
    fields = spec.template_fields()
    seen_ids: dict[bytes, int] = {}
    for number, obj in lines:
        if isinstance(obj, LineError):
            yield obj
            continue
        item = _item(number, obj, spec, fields)
        if isinstance(item, Item):
            # 8-byte digests: the duplicate check costs ~100 bytes an item, not the ids.
            digest = hashlib.blake2b(item.id.encode(), digest_size=8).digest()
            first = seen_ids.setdefault(digest, number)
            if first != number:
                yield LineError(number, _repeated(item.id, first, "custom_id" in obj))
                continue
        yield item


def _item(number: int, obj: Any, spec: InputSpec, fields: list[str]) -> Item | LineError:
    if not isinstance(obj, dict):
        return LineError(number, f"expected a JSON object, found {type(obj).__name__}")
    if "custom_id" in obj or "params" in obj:
        return _batches_line(number, obj, spec)
    item_id = obj.get("id", obj.get("custom_id", f"line-{number}"))
    if not isinstance(item_id, str | int) or isinstance(item_id, bool):
        return LineError(number, "id: must be a string or a number")
    item_id = str(item_id)
    if not item_id or len(item_id) > _MAX_ID_LENGTH:
        return LineError(number, f"id: must be 1 to {_MAX_ID_LENGTH} characters")
    if spec.template is not None:
        missing = [f for f in fields if f not in obj]
        if missing:
            names = ", ".join(repr(f) for f in missing)
            return LineError(number, f"template variable {names} missing from the item")
        prompt = spec.template.format(**{f: _as_text(obj[f]) for f in fields})
    else:
        field = spec.prompt_field or "prompt"
        if field not in obj:
            hint = (
                ""
                if spec.prompt_field
                else " (nor a Message Batches line with custom_id and params); "
                "name the field with --prompt-field or use --template"
            )
            return LineError(number, f"no {field!r} field{hint}")
        prompt = obj[field]
        if not isinstance(prompt, str) or not prompt.strip():
            return LineError(number, f"{field}: must be a non-empty string")
    data: dict[str, Any] = {
        "model": spec.model,
        "max_tokens": spec.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": prompt}],
    }
    if spec.system:
        data["system"] = spec.system
    if spec.effort:
        data["output_config"] = {"effort": spec.effort}
    if spec.structured:
        data["structured"] = spec.structured
    return _validated(number, item_id, data)


def _batches_line(number: int, obj: dict[str, Any], spec: InputSpec) -> Item | LineError:
    """A Message Batches line, held to the API's rules for one request of a batch.

    The rules and their sources: ``custom_id`` (:func:`custom_id_problem`) and
    ``params`` (:func:`params_problems`). Only ``--system`` and ``--effort``
    add to a line what it does not set; the API's required parameters must be
    in the line itself.
    """
    unknown = sorted(set(obj) - {"custom_id", "params"})
    if unknown:
        names = ", ".join(repr(printable(name)) for name in unknown)
        return LineError(
            number,
            f"unknown key {names}: a Message Batches request has only custom_id and params",
        )
    problems: list[str] = []
    if "custom_id" not in obj:
        problems.append("custom_id: is required")
    else:
        problem = custom_id_problem(obj["custom_id"])
        if problem is not None:
            problems.append(f"custom_id: {problem}")
    params = obj.get("params")
    if "params" not in obj:
        problems.append("params: is required")
    elif not isinstance(params, dict):
        problems.append(f"params: must be an object, not {_json_type(params)}")
    else:
        problems += [f"params.{problem}" for problem in params_problems(params)]
    if problems:
        return LineError(number, "; ".join(problems))
    assert isinstance(params, dict)
    data = {k: v for k, v in params.items() if not _absent(k, v)}
    if spec.system and "system" not in data:
        data["system"] = spec.system
    if spec.effort:
        config = data.get("output_config")
        if config is None:
            data["output_config"] = {"effort": spec.effort}
        elif isinstance(config, dict) and "effort" not in config:
            data["output_config"] = {**config, "effort": spec.effort}
    if spec.structured:
        data["structured"] = spec.structured
    return _validated(number, obj["custom_id"], data, prefix="params.")


def custom_id_problem(value: Any) -> str | None:
    """Why ``value`` is not a ``custom_id`` the Message Batches API accepts; None if it is.

    The rule: a string matching ``^[a-zA-Z0-9_-]{1,64}$`` as the API anchors it
    (so no final newline), per the API reference's "Create a Message Batch"
    (platform.claude.com/docs/en/api/messages/batches/create: "minLength: 1,
    maxLength: 64, pattern: ^[a-zA-Z0-9_-]{1,64}$") and the batch-processing
    guide. Uniqueness within the batch is checked across lines by the reader.
    """
    rule = f"must match {CUSTOM_ID_PATTERN} (1 to 64 ASCII letters, digits, '-' or '_')"
    if not isinstance(value, str):
        return f"{rule}; it is {_json_type(value)}"
    if _CUSTOM_ID.match(value):
        return None
    if not value:
        return f"{rule}; it is empty"
    if len(value) > _CUSTOM_ID_MAX:
        return f"{rule}; it is {len(value)} characters long"
    bad = _CUSTOM_ID_CHAR.search(value)
    assert bad is not None
    return f"{rule}; character {bad.start() + 1} is {printable(repr(bad.group()))}"


def params_problems(params: Mapping[str, Any]) -> list[str]:
    """What the Message Batches API would refuse in a request's ``params``, field by field
    (``stream: must be false ...``); empty when the line may go on to the request's
    own validation (types, values, the model's rules: ``workers.validation``).

    The rules, and where they come from:

    - the keys are those of a Messages API request body that does not stream:
      ``MessageCreateParamsNonStreaming`` in the SDK
      (``anthropic/types/message_create_params.py``, the type of
      ``params`` in ``types/messages/batch_create_params.py``), read from the
      installed SDK; plus ``temperature``, ``top_p`` and ``top_k``, which the
      API still takes on version 2023-06-01 for the models that allow them
      (``config.models``);
    - ``model``, ``max_tokens`` and ``messages`` are required (``Required[...]``
      there);
    - ``stream`` may only be ``false`` (``stream: Literal[False]``): a batch
      request is never streamed;
    - ``null`` only where the SDK types a key ``Optional`` (it then means the
      key is absent);
    - ``max_tokens`` at least 1: "max_tokens: 0 (cache pre-warming) is not
      supported inside a batch" (platform.claude.com/docs/en/build-with-claude/batch-processing,
      "Batch limitations").

    A key the API takes but chorus cannot send yet (``cache_control``,
    ``container``, ...) is refused too, saying so.
    """
    keys = _params_keys()
    problems: list[str] = []
    missing = [name for name in sorted(keys.required) if name not in params]
    problems += [f"{name}: is required" for name in missing]
    for name in sorted(set(params) - keys.allowed):
        problems.append(
            f"{printable(name)}: is not a Messages API parameter (a batch request's params "
            "are a Messages API request body)"
        )
    for name, value in params.items():
        if name not in keys.allowed or _absent(name, value):
            continue
        if name == "stream":
            if value is True:
                problems.append(
                    "stream: true is not allowed in a batch request: its params are "
                    "MessageCreateParamsNonStreaming (stream may only be false)"
                )
            else:
                problems.append(f"stream: may only be false, not {_json_type(value)}")
        elif value is None:
            problems.append(f"{name}: must not be null (leave it out instead)")
        elif name not in keys.sent:
            problems.append(
                f"{name}: a Messages API parameter chorus does not send yet; leave it out, "
                "or send this file to the Message Batches API itself"
            )
        elif name == "max_tokens" and _is_int(value) and value < 1:
            problems.append(
                f"max_tokens: must be at least 1 in a batch, not {value} (the Message Batches "
                "API does not support max_tokens 0, cache pre-warming)"
            )
    return problems


@dataclass(frozen=True)
class _ParamsKeys:
    allowed: frozenset[str]
    required: frozenset[str]
    nullable: frozenset[str]
    # What CallRequest holds and the worker sends.
    sent: frozenset[str]


@functools.cache
def _params_keys() -> _ParamsKeys:
    from anthropic.types.message_create_params import MessageCreateParamsNonStreaming

    # The SDK's module defers its annotations, so TypedDict's __required_keys__
    # is empty: Required[...] is read off the resolved hints.
    hints = typing.get_type_hints(MessageCreateParamsNonStreaming, include_extras=True)
    required = {name for name, hint in hints.items() if typing.get_origin(hint) is typing.Required}
    nullable = {
        name
        for name, hint in typing.get_type_hints(MessageCreateParamsNonStreaming).items()
        if NoneType in typing.get_args(hint)
    }
    sent = set(CallRequest.model_fields) - CHORUS_FIELDS
    return _ParamsKeys(
        allowed=frozenset(hints) | frozenset(SAMPLING_PARAMS),
        required=frozenset(required),
        nullable=frozenset(nullable),
        sent=frozenset(sent),
    )


def _absent(name: str, value: Any) -> bool:
    """Whether ``name: value`` in params means the same as leaving it out."""
    return (name == "stream" and value is False) or (
        value is None and name in _params_keys().nullable
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _repeated(item_id: str, first: int, custom_id: bool) -> str:
    if custom_id:
        return (
            f"custom_id {item_id!r} repeats line {first}'s; the API requires each custom_id "
            "to be unique within a batch"
        )
    return f"id {item_id!r} repeats line {first}'s; ids must be unique"


def _validated(
    number: int, item_id: str, data: dict[str, Any], prefix: str = ""
) -> Item | LineError:
    try:
        return Item(number, item_id, validate_request(data))
    except InvalidRequest as exc:
        return LineError(number, prefix + str(exc).replace("; ", f"; {prefix}"))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
