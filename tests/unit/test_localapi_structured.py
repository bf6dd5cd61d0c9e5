"""Structured answers: schema-valid values, and values that break a schema on purpose.

The value generator (``localapi.schema_values``) is held to the ``jsonschema``
library (Draft 2020-12, formats asserted) over many seeds.
"""

from __future__ import annotations

import json
import random
from typing import Any, Literal

import jsonschema
import pydantic
import pytest
from anthropic import transform_schema

from localapi.schema_values import (
    broken_value,
    string_for_pattern,
    value_for_schema,
)

SEEDS = range(150)


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


PERSON = _object(
    {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "format": "email"},
    },
    ["name"],
)
SCHEMAS: dict[str, dict[str, Any]] = {
    "flat object, optional properties": PERSON,
    "nested objects": _object(
        {
            "person": PERSON,
            "address": _object(
                {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}
            ),
        }
    ),
    "array of objects": _object(
        {"items": {"type": "array", "items": PERSON, "minItems": 1, "maxItems": 4}}
    ),
    "enums and const": _object(
        {
            "mood": {"enum": ["happy", "sad", "tired"]},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "kind": {"const": "report"},
        }
    ),
    "anyOf with null, type lists": _object(
        {
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "count": {"type": ["integer", "null"]},
            "either": {"anyOf": [{"type": "boolean"}, PERSON]},
        }
    ),
    "$defs and $ref, recursive": {
        "$defs": {
            "Node": _object(
                {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                }
            )
        },
        **_object({"root": {"$ref": "#/$defs/Node"}}),
    },
    "definitions and $ref": {
        "definitions": {"Tag": _object({"label": {"type": "string", "maxLength": 6}})},
        **_object({"tags": {"type": "array", "items": {"$ref": "#/definitions/Tag"}}}),
    },
    "allOf merged": {
        "$defs": {"Base": {"type": "object", "properties": {"id": {"type": "string"}}}},
        "allOf": [{"$ref": "#/$defs/Base"}, {"required": ["id"]}],
    },
    "oneOf": _object(
        {
            "n": {"oneOf": [{"type": "integer"}, {"type": "number"}]},
            "shape": {
                "oneOf": [
                    _object({"radius": {"type": "number"}}),
                    _object({"side": {"type": "number"}}),
                ]
            },
        }
    ),
    "string formats": _object(
        {
            name: {"type": "string", "format": name}
            for name in ("date-time", "date", "time", "email", "uri", "uuid", "ipv4", "hostname")
        }
    ),
    "number bounds": _object(
        {
            "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "step": {"type": "number", "multipleOf": 0.25, "minimum": -2, "maximum": 2},
            "odd": {"type": "integer", "minimum": 10, "maximum": 20, "multipleOf": 3},
            "big": {"type": "integer", "minimum": 1_000_000},
        }
    ),
    "string lengths and patterns": _object(
        {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2,4}$"},
            "short": {"type": "string", "minLength": 2, "maxLength": 5},
            "long": {"type": "string", "minLength": 40},
        }
    ),
    "array root of enums, unique": {
        "type": "array",
        "items": {"enum": ["a", "b", "c", "d"]},
        "minItems": 2,
        "maxItems": 3,
        "uniqueItems": True,
    },
    "scalar root": {"type": "integer", "minimum": 5, "maximum": 9},
}


def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def errors(value: Any, schema: dict[str, Any]) -> list[str]:
    return [error.message for error in validator(schema).iter_errors(value)]


# --- the value generator --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_generated_values_validate_for_every_seed(name: str) -> None:
    schema = SCHEMAS[name]
    validator(schema).check_schema(schema)
    for seed in SEEDS:
        value = value_for_schema(schema, random.Random(seed))
        assert not errors(value, schema), (seed, value)


def test_the_same_seed_draws_the_same_value_and_another_seed_another() -> None:
    schema = SCHEMAS["nested objects"]
    drawn = [json.dumps(value_for_schema(schema, random.Random(seed))) for seed in SEEDS]
    assert drawn == [json.dumps(value_for_schema(schema, random.Random(s))) for s in SEEDS]
    assert len(set(drawn)) > len(drawn) * 0.9


def test_optional_properties_come_and_go_and_nullable_ones_are_sometimes_null() -> None:
    schema = SCHEMAS["flat object, optional properties"]
    present = [set(value_for_schema(schema, random.Random(seed))) for seed in SEEDS]
    assert all("name" in keys for keys in present)
    for optional in ("age", "email"):
        share = sum(optional in keys for keys in present) / len(present)
        assert 0.3 < share < 0.7
    nullable = SCHEMAS["anyOf with null, type lists"]
    notes = [value_for_schema(nullable, random.Random(seed))["note"] for seed in SEEDS]
    assert None in notes and any(isinstance(note, str) for note in notes)


class Item(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=8)
    quantity: int = pydantic.Field(ge=1, le=10)
    price: float = pydantic.Field(gt=0, multiple_of=0.5)


class Order(pydantic.BaseModel):
    id: str
    items: list[Item] = pydantic.Field(min_length=1, max_length=4)
    status: Literal["open", "closed"]
    note: str | None = None


def test_the_constraints_the_sdk_moves_into_descriptions_are_kept() -> None:
    schema = transform_schema(Order)
    assert "{maximum: 10, minimum: 1}" in json.dumps(schema)  # moved, not enforced by the API
    for seed in SEEDS:
        Order.model_validate(value_for_schema(schema, random.Random(seed)))


def test_a_pattern_is_drawn_from_when_it_can_be_and_skipped_when_not() -> None:
    for pattern in (r"^[a-f0-9]{8}$", r"^(cat|dog)s?-\d+$", r"^\w+@\w+\.com$", r"[^a-z]{3}"):
        for seed in range(20):
            drawn = string_for_pattern(pattern, random.Random(seed))
            assert drawn is not None and jsonschema.validate(drawn, {"pattern": pattern}) is None
    assert string_for_pattern(r"^(?=a)abc$", random.Random(0)) is None  # a lookahead


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_broken_value_breaks_the_schema(name: str) -> None:
    schema = SCHEMAS[name]
    for seed in range(40):
        rng = random.Random(seed)
        value = value_for_schema(schema, rng)
        broken, surely = broken_value(value, schema, rng)
        assert surely and errors(broken, schema), (seed, broken)


def test_a_broken_tool_input_stays_an_object_and_breaks_in_each_way() -> None:
    schema = _object(
        {"mood": {"enum": ["happy", "sad"]}, "age": {"type": "integer"}}, required=["mood"]
    )
    kinds: set[str] = set()
    for seed in range(60):
        rng = random.Random(seed)
        value = value_for_schema(schema, rng)
        broken, surely = broken_value(value, schema, rng, keep_object=True)
        assert surely and isinstance(broken, dict) and errors(broken, schema)
        if "mood" not in broken:
            kinds.add("required dropped")
        elif broken["mood"] not in ("happy", "sad"):
            kinds.add("outside the enum" if isinstance(broken["mood"], str) else "wrong type")
        elif "age" in broken and not isinstance(broken["age"], int):
            kinds.add("wrong type")
        else:
            kinds.add("extra property")
    assert kinds == {"required dropped", "outside the enum", "wrong type", "extra property"}
