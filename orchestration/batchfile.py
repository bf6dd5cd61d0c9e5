"""Reading a batch file: JSONL in, validated requests out, every error with its line number.

Three shapes of line are understood:

- **Message Batches**: ``{"custom_id": "...", "params": {...Messages API
  parameters...}}``, as written for Anthropic's Message Batches API. The
  ``custom_id`` is the item's id.
- **A prompt field**: ``{"id": "...", "prompt": "..."}`` (``--prompt-field``
  names another field). ``id`` is optional: the line number stands in.
- **A template**: any object; ``--template FILE`` holds text with ``{field}``
  placeholders filled from it.

The file is read as bytes, one line at a time and never whole: a line over
the size cap is reported and skipped in fixed-size chunks, so a 2 GB line
costs no more memory than the cap. Blank lines are skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from workers.errors import InvalidRequest
from workers.models import CallRequest
from workers.validation import validate_request

DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_TOKENS = 1024
_SKIP_CHUNK = 64 * 1024
# The Message Batches API's own rule for custom_id.
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_ID_LENGTH = 256


class BatchInputError(ValueError):
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

    def template_fields(self) -> list[str]:
        return template_fields(self.template) if self.template is not None else []


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

    yield from _items(enumerate(objects, start=1), spec)


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
            yield number, json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            message = str(exc)
            if isinstance(exc, json.JSONDecodeError):
                message = f"not valid JSON: {exc.msg} at column {exc.colno}"
            yield number, LineError(number, message)


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
                yield LineError(
                    number, f"id {item.id!r} repeats line {first}'s; ids must be unique"
                )
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
    return _validated(number, item_id, data)


def _batches_line(number: int, obj: dict[str, Any], spec: InputSpec) -> Item | LineError:
    unknown = sorted(set(obj) - {"custom_id", "params"})
    if unknown:
        return LineError(
            number, f"unknown key {unknown[0]!r}: a Message Batches line has custom_id and params"
        )
    custom_id = obj.get("custom_id")
    if custom_id is None:
        return LineError(number, "custom_id: is required")
    if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
        return LineError(number, "custom_id: 1 to 64 letters, digits, '-' or '_'")
    params = obj.get("params")
    if not isinstance(params, dict):
        return LineError(number, "params: is required and must be an object")
    if params.get("stream"):
        return LineError(number, "params.stream: streaming is not supported in a batch")
    data = {k: v for k, v in params.items() if k != "stream"}
    data.setdefault("model", spec.model)
    if spec.max_tokens is not None:
        data.setdefault("max_tokens", spec.max_tokens)
    if spec.system and "system" not in data:
        data["system"] = spec.system
    if spec.effort:
        config = data.get("output_config")
        if config is None:
            data["output_config"] = {"effort": spec.effort}
        elif isinstance(config, dict) and "effort" not in config:
            data["output_config"] = {**config, "effort": spec.effort}
    return _validated(number, custom_id, data, prefix="params.")


def _validated(
    number: int, item_id: str, data: dict[str, Any], prefix: str = ""
) -> Item | LineError:
    try:
        return Item(number, item_id, validate_request(data))
    except InvalidRequest as exc:
        return LineError(number, prefix + str(exc).replace("; ", f"; {prefix}"))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
