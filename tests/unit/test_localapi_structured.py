"""Structured answers: schema-valid values, the three ways of asking, invalid answers on purpose.

The first part holds the value generator (``localapi.schema_values``) to the
``jsonschema`` library (Draft 2020-12, formats asserted) over many seeds; the
rest asks the local API over HTTP with the real SDK, as chorus does, in each of
``config/structured.py``'s three ways.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import jsonschema
import pydantic
import pytest
from anthropic import transform_schema

from config.structured import ANSWER_TOOL, SCHEMA_CLOSE, SCHEMA_OPEN
from localapi import LocalAPIServer
from localapi.cli import parse_args
from localapi.config import LocalAPIConfig
from localapi.schema_values import (
    broken_value,
    is_valid,
    string_for_pattern,
    strip_fence,
    value_for_schema,
)
from localapi.tokens import count_block_tokens, count_text_tokens

KEY = "sk-test-structured"
MODEL = "claude-sonnet-5"  # takes output_config.format, thinks adaptively by default
PLAIN_MODEL = "claude-sonnet-4-6"  # thinks only when asked: every output token is the answer's
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


# --- the server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[LocalAPIServer]:
    with LocalAPIServer(latency_ms=0, batch_processing_s=0.05) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server: LocalAPIServer) -> None:
    server.restore()


@pytest.fixture(scope="module")
def client(server: LocalAPIServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0) as sdk:
        yield sdk


SCHEMA = transform_schema(Order)


def native(**params: Any) -> dict[str, Any]:
    return {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}, **params}


def tool(schema: dict[str, Any] = SCHEMA, **params: Any) -> dict[str, Any]:
    return {
        "tools": [{"name": ANSWER_TOOL, "description": "Give the answer.", "input_schema": schema}],
        "tool_choice": {"type": "tool", "name": ANSWER_TOOL},
        **params,
    }


def prompted(**params: Any) -> dict[str, Any]:
    instruction = f"Answer with JSON matching {SCHEMA_OPEN}{json.dumps(SCHEMA)}{SCHEMA_CLOSE}"
    return {"system": instruction, **params}


METHODS = {"native": native, "tool": tool, "prompt": prompted}


def ask(
    client: anthropic.Anthropic, text: str = "Order three things.", **params: Any
) -> anthropic.types.Message:
    arguments: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": text}],
    }
    message: anthropic.types.Message = client.messages.create(**{**arguments, **params})
    return message


def answer_of(message: anthropic.types.Message) -> Any:
    """The JSON of an answer (a fence stripped, as chorus does), or the text when not JSON."""
    block = message.content[-1]
    if block.type == "tool_use":
        return block.input
    assert block.type == "text"
    try:
        return json.loads(strip_fence(block.text))
    except ValueError:
        return block.text


def test_native_is_one_text_block_of_json_that_the_sdk_parses_into_the_model(
    client: anthropic.Anthropic,
) -> None:
    for n in range(10):
        parsed = client.messages.parse(
            model=MODEL,
            max_tokens=4096,
            messages=[{"role": "user", "content": f"Order {n} things."}],
            output_format=Order,
        )
        assert parsed.stop_reason == "end_turn"
        assert [block.type for block in parsed.content] == ["thinking", "text"]
        assert isinstance(parsed.parsed_output, Order)


def test_native_on_a_model_without_structured_outputs_is_the_apis_400(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(client, **native(model="claude-opus-5"))
    assert refused.value.api_message == (
        "output_config.format: structured outputs are not supported for this model."
    )
    with pytest.raises(anthropic.BadRequestError, match=r"output_config\.format\.schema"):
        ask(client, output_config={"format": {"type": "json_schema"}})
    assert server.stats()["paid"] == 0


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_answers_json_that_validates(
    client: anthropic.Anthropic, server: LocalAPIServer, method: str
) -> None:
    for n in range(12):
        message = ask(client, f"Order {n} things.", **METHODS[method]())
        assert message.stop_reason == ("tool_use" if method == "tool" else "end_turn")
        assert message.content[0].type == "thinking"
        assert not errors(answer_of(message), SCHEMA)
    stats = server.stats()
    assert stats["structured_answers"] == 12
    assert stats["structured_answers_by_method"] == {**dict.fromkeys(METHODS, 0), method: 12}
    assert (stats["structured_invalid"], stats["structured_followups"]) == (0, 0)


def test_the_native_text_is_compact_json_and_its_tokens_are_the_output_tokens(
    client: anthropic.Anthropic,
) -> None:
    message = ask(client, model=PLAIN_MODEL, **native())
    [block] = message.content
    assert block.type == "text" and block.text == json.dumps(
        json.loads(block.text), separators=(",", ":")
    )
    assert message.usage.output_tokens == count_text_tokens(block.text)


def test_the_prompt_method_finds_the_schema_in_system_blocks_or_the_first_user_message(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    instruction = prompted()["system"]
    blocks = ask(
        client,
        system=[
            {"type": "text", "text": "You sort orders."},
            {"type": "text", "text": instruction},
        ],
    )
    in_message = ask(client, f"{instruction}\n\nOrder two things.")
    for message in (blocks, in_message):
        assert not errors(answer_of(message), SCHEMA)
    assert server.stats()["structured_answers_by_method"]["prompt"] == 2


def test_the_prompt_method_sometimes_fences_its_json(client: anthropic.Anthropic) -> None:
    texts = [
        ask(client, f"Order {n} things.", model=PLAIN_MODEL, **prompted()).content[0]
        for n in range(60)
    ]
    fenced = [block for block in texts if block.type == "text" and block.text.startswith("```")]
    assert 1 <= len(fenced) <= 15
    assert all(block.text.startswith("```json\n") for block in fenced)


def test_a_plain_forced_tool_still_gets_a_valid_input_and_is_not_counted(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    other = [{"name": "lookup", "description": "Look up.", "input_schema": SCHEMA}]
    message = ask(client, tools=other, tool_choice={"type": "any"})
    assert message.stop_reason == "tool_use" and not errors(answer_of(message), SCHEMA)
    assert server.stats()["structured_answers"] == 0


# --- invalid answers ------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(METHODS))
def test_at_rate_one_every_structured_answer_is_invalid_in_the_ways_the_method_allows(
    client: anthropic.Anthropic, server: LocalAPIServer, method: str
) -> None:
    server.configure(rate_invalid_output=1.0)
    answers = [answer_of(ask(client, f"Order {n} things.", **METHODS[method]())) for n in range(30)]

    not_json = [a for a in answers if isinstance(a, str)]
    breaking = [a for a in answers if not isinstance(a, str)]
    assert all(errors(a, SCHEMA) for a in breaking)
    if method == "tool":
        assert not not_json and all(isinstance(a, dict) for a in breaking)
    else:
        assert 5 <= len(not_json) <= 25 and 5 <= len(breaking) <= 25
    if method == "prompt":
        assert any(a.startswith("Here is the answer:") and a.endswith("changes.") for a in not_json)
    stats = server.stats()
    assert stats["structured_answers_by_method"][method] == stats["structured_invalid"] == 30
    assert stats["stop_reasons"] == {"tool_use" if method == "tool" else "end_turn": 30}


def test_a_share_of_answers_is_invalid_and_the_stats_count_exactly_those(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    server.configure(rate_invalid_output=0.3, rate_refusal=0.1)
    invalid = 0
    for n in range(90):
        method = sorted(METHODS)[n % 3]
        message = ask(client, f"Order {n} things.", **METHODS[method]())
        if message.stop_reason != "refusal":
            answer = answer_of(message)
            invalid += isinstance(answer, str) or bool(errors(answer, SCHEMA))
    stats = server.stats()
    assert stats["structured_invalid"] == invalid
    assert 0.15 < invalid / stats["structured_answers"] < 0.45
    # Not a fault of the call: it adds to the others, outside their sum.
    assert LocalAPIConfig(rate_500=1.0, rate_invalid_output=1.0).rate_invalid_output == 1.0


def test_chorus_reads_as_invalid_exactly_the_answers_the_stats_count_invalid(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    from workers.structured import read

    server.configure(rate_invalid_output=0.5)
    unread = 0
    for n in range(60):
        method = sorted(METHODS)[n % 3]
        message = ask(client, f"Order {n} things.", **METHODS[method]())
        unread += not read(message.to_dict(), SCHEMA, method).valid
    assert server.stats()["structured_invalid"] == unread > 10


def test_the_same_call_gets_the_same_answer_valid_or_not(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    server.configure(rate_invalid_output=0.5)
    first = [ask(client, f"Order {n} things.", **prompted()).content for n in range(8)]
    again = [ask(client, f"Order {n} things.", **prompted()).content for n in range(8)]
    assert first == again


def test_a_scripted_json_value_is_answered_exactly_and_counted_invalid_only_if_it_is(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    refusing = {"id": "x", "items": [], "status": "refused"}  # minItems 1, not in the enum
    valid = {"id": "y", "items": [{"name": "pen", "quantity": 1, "price": 2.5}], "status": "open"}
    server.script(
        [
            {"match": "refuse", "responses": [{"json": refusing}]},
            {"match": "comply", "responses": [{"json": valid}]},
        ]
    )
    for method, build in METHODS.items():
        for _ in range(2):  # the rule repeats its last response: a model that keeps refusing
            assert answer_of(ask(client, "Please refuse.", **build())) == refusing, method
        assert answer_of(ask(client, "Please comply.", **build())) == valid, method
    stats = server.stats()
    assert stats["structured_answers_by_method"] == dict.fromkeys(METHODS, 3)
    assert stats["structured_invalid"] == 6
    # Prose before the JSON of a prompt answer is skipped by chorus's reader: not counted.
    server.script([{"match": "chatty", "responses": [{"text": f"Sure:\n{json.dumps(valid)}"}]}])
    ask(client, "Be chatty.", **prompted())
    assert server.stats()["structured_invalid"] == 6
    with pytest.raises(ValueError, match="text or json"):
        server.script([{"responses": [{"text": "{}", "json": {}}]}])


def test_a_follow_up_is_counted_and_answered_again(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    first = ask(client, **prompted())
    again = ask(
        client,
        messages=[
            {"role": "user", "content": "Order three things."},
            {"role": "assistant", "content": json.dumps(answer_of(first))},
            {"role": "user", "content": "That did not match the schema; answer again."},
        ],
        **prompted(),
    )
    assert not errors(answer_of(again), SCHEMA)
    stats = server.stats()
    assert stats["structured_answers"] == 2 and stats["structured_followups"] == 1
    server.reset()
    assert server.stats()["structured_followups"] == 0
    assert server.stats()["structured_answers"] == 0
    assert server.stats()["structured_answers_by_method"] == dict.fromkeys(METHODS, 0)


# --- max_tokens, streaming, batches, config ---------------------------------------------


def test_json_that_does_not_fit_in_max_tokens_is_cut_there(client: anthropic.Anthropic) -> None:
    message = ask(client, model=PLAIN_MODEL, max_tokens=12, **native())
    [block] = message.content
    assert message.stop_reason == "max_tokens" and block.type == "text"
    assert message.usage.output_tokens == count_text_tokens(block.text) == 12
    with pytest.raises(ValueError):
        json.loads(block.text)


def test_a_tool_input_that_does_not_fit_is_cut_part_way(client: anthropic.Anthropic) -> None:
    message = ask(client, model=PLAIN_MODEL, max_tokens=40, **tool())
    [block] = message.content
    assert message.stop_reason == "max_tokens" and block.type == "tool_use"
    assert message.usage.output_tokens == 40
    assert errors(block.input, SCHEMA)  # what was written of it: not the whole answer
    whole = ask(client, model=PLAIN_MODEL, **tool()).content[0]
    assert count_block_tokens(whole.to_dict()) > 40


def test_thinking_comes_first_and_is_counted_apart(client: anthropic.Anthropic) -> None:
    message = ask(client, **native())
    thinking, text = message.content
    assert thinking.type == "thinking" and text.type == "text"
    details = message.usage.output_tokens_details
    assert details is not None and details.thinking_tokens > 0
    assert message.usage.output_tokens == details.thinking_tokens + count_text_tokens(text.text)


def _plain(block: Any) -> dict[str, Any]:
    return {k: v for k, v in block.to_dict().items() if k != "parsed_output"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_streamed_structured_answer_is_the_same_answer(
    client: anthropic.Anthropic, server: LocalAPIServer, method: str
) -> None:
    arguments: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Order three things."}],
        **METHODS[method](),
    }
    with client.messages.stream(**arguments) as stream:
        streamed = stream.get_final_message()
    whole = client.messages.create(**arguments)
    # The stream's text blocks are the SDK's ParsedTextBlock (parsed_output None): as dicts.
    assert [_plain(block) for block in streamed.content] == [_plain(b) for b in whole.content]
    assert not errors(answer_of(streamed), SCHEMA)
    assert server.stats()["structured_answers_by_method"][method] == 2


def test_a_message_batch_answers_structured_requests_too(
    client: anthropic.Anthropic, server: LocalAPIServer
) -> None:
    params = {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Order three things."}],
    }
    requests = [
        {"custom_id": method, "params": {**params, **build()}} for method, build in METHODS.items()
    ]
    refused = {**params, **native(model="claude-opus-5")}
    every: Any = [*requests, {"custom_id": "refused", "params": refused}]
    batch = client.messages.batches.create(requests=every)
    deadline = time.monotonic() + 10
    while client.messages.batches.retrieve(batch.id).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    for method in METHODS:
        result = results[method]
        assert result.type == "succeeded"
        assert not errors(answer_of(result.message), SCHEMA)
    assert results["refused"].type == "errored"
    assert server.stats()["structured_answers_by_method"] == dict.fromkeys(METHODS, 1)


def test_the_rate_is_an_option_checked_like_the_others() -> None:
    assert parse_args(["--rate-invalid-output", "0.25"]).rate_invalid_output == 0.25
    with pytest.raises(ValueError, match="rate_invalid_output"):
        LocalAPIConfig(rate_invalid_output=1.5)
    with pytest.raises(ValueError, match="rate_invalid_output"):
        LocalAPIConfig().with_changes({"rate_invalid_output": "often"})
    assert "invalid output 10.0%" in LocalAPIConfig(rate_invalid_output=0.1).describe()
    assert is_valid({"a": 1}, {"type": "object"}) is True
