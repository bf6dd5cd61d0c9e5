"""Values for a JSON Schema, as a model answering it writes them, and values that break one.

:func:`value_for_schema` draws a value that validates against a schema of the
subset the Messages API's structured outputs take (build-with-claude/
structured-outputs, "JSON Schema limitations"), and the constraints
``anthropic.transform_schema`` moves to descriptions when a schema still has
them:

- ``type`` (object, array, string, number, integer, boolean, null, or a list
  of them), ``enum``, ``const``, ``anyOf``, ``oneOf``, ``allOf`` (its object
  schemas merged), ``$ref`` to ``#/$defs/...``, ``#/definitions/...`` or any
  other pointer into the root schema;
- objects: ``properties``, ``required`` (always present; each optional
  property present with :data:`OPTIONAL_P`), ``additionalProperties`` (never an
  extra property);
- arrays: ``items``, ``prefixItems``, ``minItems``, ``maxItems``, ``uniqueItems``;
- strings: ``format`` (date-time, date, time, duration, email, hostname, uri,
  ipv4, ipv6, uuid), ``minLength``, ``maxLength``, ``pattern`` (best effort:
  a string drawn from the regular expression, kept only when it matches);
- numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``,
  ``exclusiveMaximum``, ``multipleOf``.

The constraints ``transform_schema`` moves into a ``description`` (its closing
``{minimum: 1, maximum: 10}``) are read back and kept, as a model reading the
description does. Strings are a few words of the reply vocabulary. Every draw comes from the
request's own generator, so the same call gets the same value.

:func:`broken_value` makes a value that does not validate (a required
property dropped, a property of the wrong type, a value outside its enum, an
extra property, or a root of the wrong type); :func:`is_valid` checks one with
the ``jsonschema`` library (Draft 2020-12), as chorus checks an answer.
"""

from __future__ import annotations

import importlib
import json
import math
import random
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jsonschema

from localapi.replies import VOCABULARY

# Below this depth optional properties, longer arrays and nested branches are drawn;
# past it a value takes the shortest way out (required properties, minItems, null).
MAX_DEPTH = 6
# How often an optional property is present, and a nullable value null.
OPTIONAL_P = 0.5
NULL_P = 0.2
ONE_OF_TRIES = 8
# A schema that requires itself without end has no value; the draw stops here.
GIVE_UP_DEPTH = 64
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
_WRONG_TYPE_VALUES: dict[str, Any] = {
    "string": "not applicable",
    "integer": 7,
    "number": 2.5,
    "boolean": True,
    "null": None,
    "array": [],
    "object": {},
}


def _word(rng: random.Random) -> str:
    return rng.choice(VOCABULARY)


def _words(rng: random.Random, low: int = 1, high: int = 4) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(low, high)))


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2019, 2026):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _clock(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


FORMATS: dict[str, Callable[[random.Random], str]] = {
    "date-time": lambda rng: f"{_date(rng)}T{_clock(rng)}Z",
    "date": _date,
    "time": lambda rng: f"{_clock(rng)}Z",
    "duration": lambda rng: f"P{rng.randint(1, 30)}DT{rng.randint(1, 23)}H",
    "email": lambda rng: f"{_word(rng)}.{_word(rng)}@example.com",
    "hostname": lambda rng: f"{_word(rng)}.example.com",
    "uri": lambda rng: f"https://example.com/{_word(rng)}/{_word(rng)}",
    "ipv4": lambda rng: ".".join(str(rng.randint(1, 254)) for _ in range(4)),
    "ipv6": lambda rng: f"2001:db8::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
}


def value_for_schema(schema: object, rng: random.Random) -> Any:
    """A value that validates against ``schema`` (see the module docstring), drawn with ``rng``."""
    return _Values(schema, rng).value(schema, 0)


def resolve(schema: object, root: object) -> object:
    """``schema`` with its ``$ref`` (a JSON pointer into ``root``) followed; {} when it
    points nowhere."""
    for _ in range(32):  # a chain of references, not a loop of them
        if not isinstance(schema, Mapping) or not isinstance(schema.get("$ref"), str):
            return schema
        schema = _pointer(root, schema["$ref"])
    return {}


def _pointer(root: object, ref: str) -> object:
    if not ref.startswith("#"):
        return {}
    node = root
    for raw in ref[1:].split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return {}
    return node


def merged(schemas: Sequence[object], root: object) -> dict[str, Any]:
    """One schema holding what the ``allOf`` ``schemas`` ask: their properties and
    required names joined (a property two of them define must meet both)."""
    out: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for raw in schemas:
        schema = resolve(raw, root)
        if not isinstance(schema, Mapping):
            continue
        if isinstance(schema.get("allOf"), list):
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            schema = merged([rest, *schema["allOf"]], root)
        for key, value in schema.items():
            if key == "properties" and isinstance(value, Mapping):
                for name, sub in value.items():
                    properties[name] = {"allOf": [properties[name], sub]} if name in properties \
                        else sub  # fmt: skip
            elif key == "required" and isinstance(value, list):
                required += [name for name in value if name not in required]
            elif key not in out:
                out[key] = value
    if properties:
        out["properties"] = properties
    if required:
        out["required"] = required
    return out


_DESCRIBED = re.compile(r"\{([^{}]*)\}\s*$")
_DESCRIBED_NUMBERS = frozenset({
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems",
})  # fmt: skip


def described(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The constraints ``anthropic.transform_schema`` moved into ``schema``'s description
    (``"...\n\n{minimum: 1, maximum: 10}"``): the numeric ones, and a string format."""
    description = schema.get("description")
    match = _DESCRIBED.search(description) if isinstance(description, str) else None
    if match is None:
        return {}
    found: dict[str, Any] = {}
    for pair in match.group(1).split(", "):
        key, _, raw = pair.partition(": ")
        if key in _DESCRIBED_NUMBERS:
            try:
                number = float(raw)
            except ValueError:
                continue
            found[key] = int(number) if number.is_integer() and "." not in raw else number
        elif key == "format" and raw in FORMATS:
            found[key] = raw
    return found


class _Values:
    """The draws of one value: the root schema (for ``$ref``) and the generator."""

    def __init__(self, root: object, rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def value(self, schema: object, depth: int) -> Any:
        schema = resolve(schema, self.root)
        if schema is False or depth > GIVE_UP_DEPTH:
            # Nothing validates (false, or a value that must hold itself forever).
            return None
        if not isinstance(schema, Mapping):
            return _words(self.rng)
        schema = {**described(schema), **schema}
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return self.rng.choice(enum)
        if isinstance(schema.get("allOf"), list):
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.value(merged([rest, *schema["allOf"]], self.root), depth)
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches:
                return self._branch(schema, keyword, branches, depth)
        return self._typed(schema, self._type(schema, depth), depth)

    def _branch(
        self, schema: Mapping[str, Any], keyword: str, branches: list[Any], depth: int
    ) -> Any:
        rest = {k: v for k, v in schema.items() if k != keyword}
        nulls = [b for b in branches if _type_of(resolve(b, self.root)) == "null"]
        others = [b for b in branches if b not in nulls] or nulls
        if nulls and (self.rng.random() < NULL_P or depth >= MAX_DEPTH):
            return None
        if depth >= MAX_DEPTH:
            scalars = [b for b in others if _type_of(resolve(b, self.root)) not in _NESTED]
            others = scalars or others
        value: Any = None
        # A oneOf value must match one branch only: drawn again until it does.
        order = self.rng.sample(others, len(others))
        for attempt in range(1 if keyword == "anyOf" else ONE_OF_TRIES):
            branch = order[attempt % len(order)]
            value = self.value(merged([rest, branch], self.root) if rest else branch, depth)
            if keyword == "anyOf" or _one_match(value, branches, self.root):
                break
        return value

    def _type(self, schema: Mapping[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, str):
            return kind
        if isinstance(kind, list) and kind:
            named = [k for k in kind if k in _TYPES]
            real = [k for k in named if k != "null"]
            if "null" in named and (not real or self.rng.random() < NULL_P or depth >= MAX_DEPTH):
                return "null"
            return self.rng.choice(real) if real else "string"
        if "properties" in schema or "required" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    def _typed(self, schema: Mapping[str, Any], kind: str, depth: int) -> Any:
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return _number(schema, self.rng, integer=kind == "integer")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return _string(schema, self.rng)

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in required or (depth < MAX_DEPTH and self.rng.random() < OPTIONAL_P):
                out[name] = self.value(sub, depth + 1)
        extra = schema.get("additionalProperties")
        for name in required:
            if name not in out:
                out[name] = self.value(extra if isinstance(extra, Mapping) else {}, depth + 1)
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items", {})
        low = _int(schema.get("minItems"), 0)
        high = _int(schema.get("maxItems"), max(low, 1) + 2)
        if items is False:
            high = min(high, len(prefix))
        count = low if depth >= MAX_DEPTH else self.rng.randint(min(max(low, 1), high), high)
        unique = schema.get("uniqueItems") is True
        out: list[Any] = []
        seen: set[str] = set()
        for index in range(max(count, 0)):
            sub = prefix[index] if index < len(prefix) else items
            for _ in range(10 if unique else 1):
                value = self.value(sub, depth + 1)
                key = json.dumps(value, sort_keys=True)
                if key not in seen:
                    break
            seen.add(key)
            out.append(value)
        return out


_NESTED = ("object", "array")


def _type_of(schema: object) -> str | None:
    if not isinstance(schema, Mapping):
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def _one_match(value: Any, branches: list[Any], root: object) -> bool:
    """Whether ``value`` matches exactly one ``oneOf`` branch (True when that cannot be told)."""
    matches = 0
    for branch in branches:
        valid = is_valid(value, _with_root(branch, root))
        if valid is None:
            return True
        matches += valid
    return matches == 1


def _with_root(branch: object, root: object) -> dict[str, Any]:
    """``branch`` as a schema of its own that still reaches the root's definitions."""
    resolved = resolve(branch, root)
    schema = dict(resolved) if isinstance(resolved, Mapping) else {}
    if isinstance(root, Mapping):
        for key in ("$defs", "definitions"):
            if key in root:
                schema[key] = root[key]
    return schema


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _real(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _is_multiple(value: float, of: float) -> bool:
    """``value`` is a multiple of ``of`` as jsonschema checks it (a float divisor: an
    integral quotient)."""
    if isinstance(of, float):
        quotient = value / of
        return math.isfinite(quotient) and int(quotient) == quotient
    return not value % of


def _bounds(schema: Mapping[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low excluded, high, high excluded); a draft-4 boolean exclusive bound too."""
    low, high = _real(schema.get("minimum")), _real(schema.get("maximum"))
    low_open = schema.get("exclusiveMinimum") is True
    high_open = schema.get("exclusiveMaximum") is True
    exclusive_low, exclusive_high = (_real(schema.get(k)) for k in
                                     ("exclusiveMinimum", "exclusiveMaximum"))  # fmt: skip
    if exclusive_low is not None and (low is None or exclusive_low >= low):
        low, low_open = exclusive_low, True
    if exclusive_high is not None and (high is None or exclusive_high <= high):
        high, high_open = exclusive_high, True
    return low, low_open, high, high_open


def _number(schema: Mapping[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    low, low_open, high, high_open = _bounds(schema)
    if low is None and high is None:
        low, high = 0.0, 100.0
    elif low is None:
        assert high is not None
        low = high - 100.0
    elif high is None:
        high = low + 100.0
    assert low is not None and high is not None

    def fits(value: float) -> bool:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return above and below

    of = schema.get("multipleOf")
    if isinstance(of, int | float) and not isinstance(of, bool) and of > 0:
        first, last = math.ceil(low / of), math.floor(high / of)
        digits = max(0, -math.floor(math.log10(of))) + 2 if isinstance(of, float) else 0
        for _ in range(50):
            k = rng.randint(first, last) if first <= last else first
            for candidate in (round(k * of, digits), k * of):
                if integer and candidate != int(candidate):
                    continue
                value = int(candidate) if integer else candidate
                if fits(value) and _is_multiple(value, of):
                    return value
        return 0 if fits(0) else (int(low) if integer else low)
    if integer:
        first = math.floor(low) + 1 if low_open and low == math.floor(low) else math.ceil(low)
        last = math.ceil(high) - 1 if high_open and high == math.ceil(high) else math.floor(high)
        return rng.randint(first, last) if first <= last else first
    value = round(rng.uniform(low, high), 2)
    if fits(value):
        return value
    middle = (low + high) / 2
    return middle if fits(middle) else low


def _string(schema: Mapping[str, Any], rng: random.Random) -> str:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        drawn = string_for_pattern(pattern, rng)
        if drawn is not None:
            return drawn
    form = schema.get("format")
    if isinstance(form, str) and form in FORMATS:
        return FORMATS[form](rng)
    low = _int(schema.get("minLength"), 0)
    high = _int(schema.get("maxLength"), -1)
    text = _words(rng)
    while len(text) < low:
        text += " " + _word(rng)
    if 0 <= high < len(text):
        text = text[:high].rstrip() if len(text[:high].rstrip()) >= low else text[:high]
    return text


def string_for_pattern(pattern: str, rng: random.Random) -> str | None:
    """A string ``re.search(pattern, ...)`` finds, drawn from the expression; None when
    the expression has what this cannot draw (lookarounds) or the draw misses."""
    try:
        parser: Any = importlib.import_module("re._parser")
        parsed = parser.parse(pattern)
        drawn = _Pattern(rng).draw(list(parsed))
    except (ImportError, re.error, _CannotDraw, RecursionError, ValueError, TypeError):
        return None
    return drawn if re.search(pattern, drawn) else None


class _CannotDraw(Exception):
    pass


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_CATEGORIES = {
    "CATEGORY_DIGIT": "0123456789",
    "CATEGORY_NOT_DIGIT": _ALPHABET,
    "CATEGORY_WORD": _ALPHABET + "0123456789",
    "CATEGORY_NOT_WORD": "-.",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": _ALPHABET,
}
_PRINTABLE = _ALPHABET + _ALPHABET.upper() + "0123456789-_. "


class _Pattern:
    """Draws a string from a parsed regular expression (``re._parser``'s opcodes, by name)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.groups: dict[int, str] = {}

    def draw(self, items: list[Any]) -> str:
        return "".join(self._item(op, arg) for op, arg in items)

    def _item(self, op: Any, arg: Any) -> str:
        name = str(op)
        if name == "LITERAL":
            return chr(arg)
        if name == "NOT_LITERAL":
            return next(c for c in _PRINTABLE if ord(c) != arg)
        if name == "ANY":
            return self.rng.choice(_ALPHABET)
        if name == "IN":
            return self._in(arg)
        if name == "AT":
            return ""
        if name == "BRANCH":
            return self.draw(list(self.rng.choice(arg[1])))
        if name == "SUBPATTERN":
            group, _, _, sub = arg
            text = self.draw(list(sub))
            if group is not None:
                self.groups[group] = text
            return text
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            count = self.rng.randint(low, max(low, min(high, low + 3)))
            return "".join(self.draw(list(sub)) for _ in range(count))
        if name == "ATOMIC_GROUP":
            return self.draw(list(arg))
        if name == "GROUPREF":
            return self.groups.get(arg, "")
        raise _CannotDraw(name)

    def _in(self, items: list[Any]) -> str:
        choices: list[str] = []
        negate = False
        for op, arg in items:
            name = str(op)
            if name == "NEGATE":
                negate = True
            elif name == "LITERAL":
                choices.append(chr(arg))
            elif name == "RANGE":
                choices += [chr(c) for c in range(arg[0], min(arg[1], arg[0] + 255) + 1)]
            elif name == "CATEGORY":
                choices += list(_CATEGORIES.get(str(arg), ""))
            else:
                raise _CannotDraw(name)
        if negate:
            choices = [c for c in _PRINTABLE if c not in choices]
        if not choices:
            raise _CannotDraw("IN")
        return self.rng.choice(choices)


# --- validity --------------------------------------------------------------------------


def is_valid(value: Any, schema: object) -> bool | None:
    """Whether ``value`` validates against ``schema`` (Draft 2020-12, formats not
    asserted); None when the schema is not one ``jsonschema`` can read."""
    try:
        return bool(jsonschema.Draft202012Validator(schema).is_valid(value))
    except Exception:  # a schema it cannot read (a bad type, a reference to nowhere)
        return None


def strip_fence(text: str) -> str:
    """``text`` without a Markdown code fence around it (```json ... ```)."""
    stripped = text.strip()
    match = re.fullmatch(r"```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```", stripped, re.DOTALL)
    return match.group(1) if match else stripped


def text_is_valid(text: str, schema: object, *, lenient: bool = False) -> bool | None:
    """Whether ``text`` is JSON that validates against ``schema``.

    ``lenient`` (an answer asked for in the prompt): a code fence around the
    JSON, or prose before it, is skipped, as chorus's reader skips them.
    """
    if lenient:
        text = strip_fence(text)
    try:
        value = json.loads(text)
    except ValueError:
        starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
        if not lenient or not starts:
            return False
        try:
            value, end = json.JSONDecoder().raw_decode(text, min(starts))
        except ValueError:
            return False
        if text[end:].strip():
            return False
    return is_valid(value, schema)


# --- breaking a value ------------------------------------------------------------------


def broken_value(
    value: Any, schema: object, rng: random.Random, *, keep_object: bool = False
) -> tuple[Any, bool]:
    """``value`` changed so that it breaks ``schema``, and whether it surely does.

    One of, drawn with ``rng``: a required property dropped, a property given a
    value of the wrong type, an enum property given a value outside its enum, an
    extra property where ``additionalProperties`` is false; or, for a root that is
    not an object, a value of the wrong type. ``keep_object``: the result stays an
    object (a tool's input always is one). A change ``jsonschema`` still finds
    valid gives way to the next; when none breaks it (a schema that takes
    anything), the value comes back with False.
    """
    root = schema
    resolved = resolve(schema, root)
    if isinstance(resolved, Mapping) and isinstance(resolved.get("allOf"), list):
        resolved = merged([resolved], root)
    candidates: list[Any] = []
    if isinstance(value, dict) and isinstance(resolved, Mapping):
        candidates = _object_changes(value, resolved, root)
        rng.shuffle(candidates)
    if not keep_object or not isinstance(value, dict):
        candidates.append(_wrong_type(resolved, root))
    for candidate in candidates:
        if is_valid(candidate, schema) is not True:
            return candidate, True
    return value, False


def _object_changes(value: dict[str, Any], schema: Mapping[str, Any], root: object) -> list[Any]:
    """The object ``value`` with one thing wrong, each way ``schema`` offers."""
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    required = required if isinstance(required, list) else []
    changes: list[Any] = []
    for name in value:
        if name in required:
            changes.append({k: v for k, v in value.items() if k != name})
        sub = resolve(properties.get(name), root)
        if not isinstance(sub, Mapping):
            continue
        if isinstance(sub.get("enum"), list) and sub["enum"]:
            changes.append({**value, name: _outside(sub["enum"])})
        changes.append({**value, name: _wrong_type(sub, root)})
    if schema.get("additionalProperties") is False:
        extra = next(f"unexpected_{n}" for n in range(len(value) + 1)
                     if f"unexpected_{n}" not in properties)  # fmt: skip
        changes.append({**value, extra: "not in the schema"})
    return changes


def _outside(enum: list[Any]) -> Any:
    """A value of the enum's own kind that is not in it."""
    first = enum[0]
    if isinstance(first, str):
        return next(f"{first}_other{n or ''}" for n in range(len(enum) + 1)
                    if f"{first}_other{n or ''}" not in enum)  # fmt: skip
    numbers = [v for v in enum if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return max(numbers) + 1
    return "other"


def _allowed_types(schema: object, root: object, seen: int = 0) -> set[str]:
    """The JSON types some value of ``schema`` can have (every type when it cannot be told)."""
    schema = resolve(schema, root)
    if not isinstance(schema, Mapping) or seen > 8:
        return set(_TYPES)
    values = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(values, list) and values:
        return {_json_type(v) for v in values} | ({"number"} if any(
            _json_type(v) == "integer" for v in values) else set())  # fmt: skip
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list) and branches:
            return set().union(*(_allowed_types(b, root, seen + 1) for b in branches))
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    if not kinds:
        inferred = _type_of(schema)
        if inferred is None:
            return set(_TYPES)
        kinds = {inferred}
    if "number" in kinds:
        kinds.add("integer")
    return kinds


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _wrong_type(schema: object, root: object) -> Any:
    """A value of a JSON type ``schema`` does not take (a string when it takes them all)."""
    allowed = _allowed_types(schema, root)
    for kind in ("string", "integer", "boolean", "object", "array", "null", "number"):
        if kind not in allowed:
            return _WRONG_TYPE_VALUES[kind]
    return "not applicable"
