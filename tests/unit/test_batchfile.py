"""Batch input: every bad kind of line is named with its line number; good lines become requests."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming

from orchestration.batchfile import (
    CUSTOM_ID_PATTERN,
    BatchInputError,
    InputSpec,
    Item,
    LineError,
    custom_id_problem,
    items_from_objects,
    params_problems,
    read_items,
    template_fields,
)
from workers.models import CHORUS_FIELDS, CallRequest

SPEC = InputSpec(model="claude-sonnet-5", max_tokens=100)


def write(tmp_path: Path, content: bytes | str) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def outcomes(path: Path, spec: InputSpec = SPEC) -> list[Item | LineError]:
    return list(read_items(path, spec))


def errors(path: Path, spec: InputSpec = SPEC) -> list[str]:
    return [str(e) for e in outcomes(path, spec) if isinstance(e, LineError)]


def test_prompt_lines_become_requests_with_their_ids(tmp_path: Path) -> None:
    path = write(tmp_path, '{"id": "a", "prompt": "Hi"}\n\n{"prompt": "Bye"}\n')

    items = outcomes(path)

    assert [(i.line, i.id) for i in items if isinstance(i, Item)] == [(1, "a"), (3, "line-3")]
    first = items[0]
    assert isinstance(first, Item)
    assert first.request.messages[0].content == "Hi"
    assert first.request.max_tokens == 100


def test_a_message_batches_line_runs_unchanged(tmp_path: Path) -> None:
    line = {
        "custom_id": "req-1",
        "params": {
            "model": "claude-haiku-4-5",
            "max_tokens": 64,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Hello"}],
        },
    }
    (item,) = outcomes(write(tmp_path, json.dumps(line) + "\n"))

    assert isinstance(item, Item)
    assert item.id == "req-1"
    assert item.request.model == "claude-haiku-4-5"
    assert item.request.max_tokens == 64
    assert item.request.system == "Be brief."


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"prompt": "ok"}\n{"prompt": \n', "line 2: not valid JSON: Expecting value at column 12"),
        ('{"prompt": NaN}\n', "line 1: NaN is not valid JSON"),
        ('{"prompt": Infinity}\n', "line 1: Infinity is not valid JSON"),
        ("[1, 2]\n", "line 1: expected a JSON object, found list"),
        ('{"text": "x"}\n', "line 1: no 'prompt' field (nor a Message Batches line"),
        ('{"prompt": ""}\n', "line 1: prompt: must be a non-empty string"),
        (
            '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n',
            "line 2: id 'a' repeats line 1's",
        ),
        ('{"custom_id": "a b", "params": {}}\n', "line 1: custom_id: must match"),
        ('{"custom_id": "a"}\n', "line 1: params: is required"),
        ('{"params": {}}\n', "line 1: custom_id: is required"),
        ('{"custom_id": "a", "params": {}, "extra": 1}\n', "line 1: unknown key 'extra'"),
        (
            '{"custom_id": "a", "params": {"model": "claude-sonnet-5", '
            '"messages": [{"role": "user", "content": "x"}]}}\n',
            "line 1: params.max_tokens: is required",
        ),
        (
            '{"custom_id": "a", "params": {"model": "claude-sonnet-5", "max_tokens": 5, '
            '"messages": []}}\n',
            "line 1: params.messages: List should have at least 1 item",
        ),
    ],
)
def test_each_bad_line_is_named_with_its_number(
    tmp_path: Path, content: str, expected: str
) -> None:
    found = errors(write(tmp_path, content), InputSpec(model="claude-sonnet-5"))

    assert any(e.startswith(expected) for e in found), found


def test_invalid_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path, b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n')

    assert errors(path) == ["line 2: invalid UTF-8 at byte 16 of the line"]


def test_a_binary_file_is_refused_line_by_line_and_yields_no_item(tmp_path: Path) -> None:
    path = write(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    found = outcomes(path)

    assert [str(f) for f in found] == [
        "line 1: invalid UTF-8 at byte 1 of the line",
        "line 2: not valid JSON: Expecting value at column 1",
        "line 3: binary data (a NUL byte): a batch file is UTF-8 JSON lines",
    ]


def test_a_line_over_the_cap_is_reported_and_never_read_whole(tmp_path: Path) -> None:
    huge = '{"prompt": "' + "x" * 5_000_000 + '"}\n'
    path = write(tmp_path, '{"prompt": "small"}\n' + huge + '{"prompt": "after"}\n')
    spec = InputSpec(model="claude-sonnet-5", max_line_bytes=64 * 1024)

    found = outcomes(path, spec)

    assert [type(f).__name__ for f in found] == ["Item", "LineError", "Item"]
    assert str(found[1]).startswith("line 2: 5,000,015 bytes, over the 65,536-byte line cap")


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    (item,) = outcomes(write(tmp_path, '\ufeff{"prompt": "x"}\n'))

    assert isinstance(item, Item)


def test_a_missing_template_variable_is_named(tmp_path: Path) -> None:
    spec = InputSpec(model="claude-sonnet-5", template="Summarise {title}: {body}")
    path = write(tmp_path, '{"title": "A", "body": "B"}\n{"title": "only"}\n')

    found = outcomes(path, spec)

    assert isinstance(found[0], Item)
    assert found[0].request.messages[0].content == "Summarise A: B"
    assert str(found[1]) == "line 2: template variable 'body' missing from the item"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("no placeholders", "has no {field} placeholder"),
        ("{a.__class__}", "must be a plain field name"),
        ("{a!r}", "must be a plain field name"),
        ("{unclosed", "write {{ and }} for literal braces"),
    ],
)
def test_a_bad_template_is_refused_before_any_line(template: str, message: str) -> None:
    with pytest.raises(BatchInputError, match=message.replace("{", r"\{").replace("}", r"\}")):
        template_fields(template)


def test_an_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match="cannot read"):
        outcomes(tmp_path / "missing.jsonl")


def test_items_given_in_code_are_validated_the_same_way() -> None:
    found = list(items_from_objects([{"prompt": "a"}, {"prompt": 3}], SPEC))

    assert isinstance(found[0], Item)
    assert str(found[1]) == "line 2: prompt: must be a non-empty string"


def test_reading_is_streamed_not_loaded(tmp_path: Path) -> None:
    path = write(tmp_path, "".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(3)))
    stream = read_items(path, SPEC)

    first = next(stream)  # the generator yields before reading the rest

    assert isinstance(first, Item)


# --- Message Batches lines: the API's own rules ---------------------------------

BATCH_PARAMS: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello"}],
}


def batches_line(custom_id: Any = "req-1", **changes: Any) -> dict[str, Any]:
    """A Message Batches line; a parameter changed to ``DROP`` is left out."""
    params = {**BATCH_PARAMS, **changes}
    return {"custom_id": custom_id, "params": {k: v for k, v in params.items() if v is not DROP}}


DROP = object()


def batch_outcomes(tmp_path: Path, *lines: dict[str, Any], spec: InputSpec = SPEC) -> list[Any]:
    return outcomes(write(tmp_path, "".join(json.dumps(line) + "\n" for line in lines)), spec)


def only_error(tmp_path: Path, line: dict[str, Any]) -> str:
    (found,) = batch_outcomes(tmp_path, line)
    assert isinstance(found, LineError), found
    return str(found)


@pytest.mark.parametrize("custom_id", ["a", "Z", "0", "-", "_", "req-1_A", "x" * 64])
def test_a_custom_id_the_api_accepts_is_accepted(tmp_path: Path, custom_id: str) -> None:
    (item,) = batch_outcomes(tmp_path, batches_line(custom_id))

    assert isinstance(item, Item) and item.id == custom_id


@pytest.mark.parametrize(
    ("custom_id", "why"),
    [
        ("x" * 65, "it is 65 characters long"),
        ("", "it is empty"),
        ("req 1", "character 4 is ' '"),
        ("req.1", "character 4 is '.'"),
        ("req-1\n", "character 6 is '\\n'"),
        ("\nreq-1", "character 1 is '\\n'"),
        ("caf\u00e9", "character 4 is 'é'"),  # a letter, but not an ASCII one
        ("\u0661\u0662", "character 1 is '\u0661'"),  # Arabic-Indic digits
        ("req\u200b1", "character 4 is '\\u200b'"),
        (7, "it is the number 7"),
        (None, "it is null"),
        (True, "it is true"),
        (["a"], "it is an array"),
    ],
)
def test_a_custom_id_the_api_refuses_is_refused_with_its_rule(
    tmp_path: Path, custom_id: Any, why: str
) -> None:
    rule = "must match ^[a-zA-Z0-9_-]{1,64}$ (1 to 64 ASCII letters, digits, '-' or '_')"

    assert only_error(tmp_path, batches_line(custom_id)) == f"line 1: custom_id: {rule}; {why}"


def test_custom_id_is_anchored_as_the_api_anchors_it_not_as_python_does() -> None:
    # Python's "$" matches before a final newline; the API's pattern (ECMA-262) does not.
    assert re.match(CUSTOM_ID_PATTERN, "req-1\n") is not None
    assert custom_id_problem("req-1\n") is not None
    assert custom_id_problem("req-1") is None


def test_a_repeated_custom_id_is_refused_naming_the_first_line(tmp_path: Path) -> None:
    found = batch_outcomes(
        tmp_path, batches_line("req-1"), batches_line("req-2"), batches_line("req-1")
    )

    assert [type(f).__name__ for f in found] == ["Item", "Item", "LineError"]
    assert str(found[2]) == (
        "line 3: custom_id 'req-1' repeats line 1's; "
        "the API requires each custom_id to be unique within a batch"
    )


def test_custom_ids_differing_only_in_case_are_distinct(tmp_path: Path) -> None:
    found = batch_outcomes(tmp_path, batches_line("req-A"), batches_line("req-a"))

    assert all(isinstance(f, Item) for f in found)


@pytest.mark.parametrize("name", ["model", "max_tokens", "messages"])
def test_each_parameter_the_api_requires_must_be_in_the_line(tmp_path: Path, name: str) -> None:
    # --model and --max-tokens do not make up for it: the API would refuse the line.
    spec = InputSpec(model="claude-sonnet-5", max_tokens=100)
    (found,) = batch_outcomes(tmp_path, batches_line(**{name: DROP}), spec=spec)

    assert str(found) == f"line 1: params.{name}: is required"


def test_params_must_be_an_object(tmp_path: Path) -> None:
    assert only_error(tmp_path, {"custom_id": "a", "params": []}) == (
        "line 1: params: must be an object, not an array"
    )


def test_a_key_that_is_no_messages_api_parameter_is_refused(tmp_path: Path) -> None:
    error = only_error(tmp_path, batches_line(temprature=0.5, n=2))

    assert error == (
        "line 1: params.n: is not a Messages API parameter (a batch request's params are a "
        "Messages API request body); params.temprature: is not a Messages API parameter "
        "(a batch request's params are a Messages API request body)"
    )


def test_stream_true_is_refused_in_a_batch_request(tmp_path: Path) -> None:
    assert only_error(tmp_path, batches_line(stream=True)) == (
        "line 1: params.stream: true is not allowed in a batch request: its params are "
        "MessageCreateParamsNonStreaming (stream may only be false)"
    )


@pytest.mark.parametrize(
    ("value", "shown"), [(None, "null"), (0, "the number 0"), ("false", "a string")]
)
def test_stream_may_only_be_false(tmp_path: Path, value: Any, shown: str) -> None:
    assert only_error(tmp_path, batches_line(stream=value)) == (
        f"line 1: params.stream: may only be false, not {shown}"
    )


def test_stream_false_is_accepted_and_not_sent(tmp_path: Path) -> None:
    (item,) = batch_outcomes(tmp_path, batches_line(stream=False))

    assert isinstance(item, Item)
    assert "stream" not in item.request.api_params()


@pytest.mark.parametrize("value", [0, -1])
def test_max_tokens_below_one_is_refused_in_a_batch(tmp_path: Path, value: int) -> None:
    assert only_error(tmp_path, batches_line(max_tokens=value)) == (
        f"line 1: params.max_tokens: must be at least 1 in a batch, not {value} "
        "(the Message Batches API does not support max_tokens 0, cache pre-warming)"
    )


def test_max_tokens_of_one_is_accepted(tmp_path: Path) -> None:
    (item,) = batch_outcomes(tmp_path, batches_line(max_tokens=1))

    assert isinstance(item, Item) and item.request.max_tokens == 1


@pytest.mark.parametrize("name", ["system", "metadata", "tools", "stop_sequences", "temperature"])
def test_null_is_refused_where_the_api_types_no_null(tmp_path: Path, name: str) -> None:
    assert only_error(tmp_path, batches_line(**{name: None})) == (
        f"line 1: params.{name}: must not be null (leave it out instead)"
    )


def test_null_where_the_api_allows_it_means_absent(tmp_path: Path) -> None:
    (item,) = batch_outcomes(tmp_path, batches_line(inference_geo=None, cache_control=None))

    assert isinstance(item, Item)
    assert item.request == batch_outcomes(tmp_path, batches_line())[0].request


@pytest.mark.parametrize(
    ("name", "value"),
    [("cache_control", {"type": "ephemeral"}), ("speed", "fast"), ("inference_geo", "us")],
)
def test_a_parameter_chorus_cannot_send_is_refused_saying_so(
    tmp_path: Path, name: str, value: Any
) -> None:
    assert only_error(tmp_path, batches_line(**{name: value})) == (
        f"line 1: params.{name}: a Messages API parameter chorus does not send yet; leave it "
        "out, or send this file to the Message Batches API itself"
    )


def test_every_problem_of_a_line_is_named_at_once(tmp_path: Path) -> None:
    line = {"custom_id": "bad id", "params": {"max_tokens": 0, "stream": True, "x": 1}}

    assert only_error(tmp_path, line) == (
        "line 1: custom_id: must match ^[a-zA-Z0-9_-]{1,64}$ (1 to 64 ASCII letters, digits, "
        "'-' or '_'); character 4 is ' '; params.messages: is required; params.model: is "
        "required; params.x: is not a Messages API parameter (a batch request's params are a "
        "Messages API request body); params.max_tokens: must be at least 1 in a batch, not 0 "
        "(the Message Batches API does not support max_tokens 0, cache pre-warming); "
        "params.stream: true is not allowed in a batch request: its params are "
        "MessageCreateParamsNonStreaming (stream may only be false)"
    )


def test_every_request_field_chorus_sends_is_a_messages_api_parameter() -> None:
    sent = set(CallRequest.model_fields) - CHORUS_FIELDS
    sdk = set(typing.get_type_hints(MessageCreateParamsNonStreaming)) | {
        "temperature",
        "top_p",
        "top_k",
    }

    assert sent <= sdk
    assert params_problems({**BATCH_PARAMS, "system": "x", "temperature": 0.5}) == []


def test_system_and_effort_options_add_to_a_batches_line_only_what_it_lacks(
    tmp_path: Path,
) -> None:
    spec = InputSpec(model="claude-opus-4-7", system="Be brief.", effort="low")
    (item,) = batch_outcomes(tmp_path, batches_line(model="claude-sonnet-5"), spec=spec)

    assert isinstance(item, Item)
    assert item.request.model == "claude-sonnet-5"
    assert item.request.system == "Be brief."
    assert item.request.output_config == {"effort": "low"}


# --- Lone surrogates: not text, refused with the line number in every format -------

SURROGATE_WHY = (
    "not Unicode text, so the API cannot accept it "
    "(only a pair of JSON escapes, \\uD8xx\\uDCxx, decodes to a character)"
)


@pytest.mark.parametrize(
    ("line", "spec", "expected"),
    [
        (
            '{"id": "s1", "prompt": "Summarise: caf\\ud800 menu"}',
            SPEC,
            "prompt: holds a lone surrogate \\ud800 at character 15",
        ),
        (
            '{"id": "s\\udfff1", "prompt": "Summarise"}',
            SPEC,
            "id: holds a lone surrogate \\udfff at character 2",
        ),
        (
            '{"id": "s1", "text": "caf\\uD800"}',
            InputSpec(model="claude-sonnet-5", prompt_field="text"),
            "text: holds a lone surrogate \\ud800 at character 4",
        ),
        (
            '{"title": "A", "body": "caf\\udc00 menu"}',
            InputSpec(model="claude-sonnet-5", template="Summarise {title}: {body}"),
            "body: holds a lone surrogate \\udc00 at character 4",
        ),
        (
            '{"title": "A", "body": "B", "note": "unused \\ud800"}',
            InputSpec(model="claude-sonnet-5", template="Summarise {title}: {body}"),
            "note: holds a lone surrogate \\ud800 at character 8",
        ),
        (
            '{"custom_id": "req-2", "params": {"model": "claude-haiku-4-5", "max_tokens": 9, '
            '"messages": [{"role": "user", "content": [{"type": "text", "text": "\\ud83d"}]}]}}',
            SPEC,
            "params.messages[0].content[0].text: holds a lone surrogate \\ud83d at character 1",
        ),
        (
            '{"custom_id": "req-\\ud800", "params": {}}',
            SPEC,
            "custom_id: holds a lone surrogate \\ud800 at character 5",
        ),
        (
            '{"prompt": "ok", "\\ud800key": 1}',
            SPEC,
            "\\ud800key: a field name holds a lone surrogate \\ud800 at character 1",
        ),
    ],
)
def test_a_lone_surrogate_is_refused_with_its_line_and_field_in_every_format(
    tmp_path: Path, line: str, spec: InputSpec, expected: str
) -> None:
    path = write(
        tmp_path,
        '{"id": "ok", "prompt": "fine", "text": "fine", "title": "t", "body": "b"}\n' + line,
    )

    found = outcomes(path, spec)

    assert isinstance(found[0], Item)
    assert [str(f) for f in found[1:]] == [f"line 2: {expected}: {SURROGATE_WHY}"]


@pytest.mark.parametrize(
    "text",
    [
        '{"prompt": "caf\\u00e9 \\ud83d\\ude00"}',  # a surrogate pair is one character
        '{"prompt": "a literal backslash: \\\\ud800"}',  # the text \ud800, not an escape
        '{"prompt": "caf\u00e9 \U0001f600"}',  # the same characters unescaped
    ],
)
def test_text_that_only_looks_like_a_surrogate_is_accepted(tmp_path: Path, text: str) -> None:
    (item,) = outcomes(write(tmp_path, text + "\n"))

    assert isinstance(item, Item), item


def test_items_given_in_code_are_refused_for_a_lone_surrogate_too() -> None:
    found = list(items_from_objects([{"prompt": "a"}, {"id": "b", "prompt": "caf\ud800"}], SPEC))

    assert isinstance(found[0], Item)
    assert str(found[1]) == (
        f"line 2: prompt: holds a lone surrogate \\ud800 at character 4: {SURROGATE_WHY}"
    )
