"""Batch input: every bad kind of line is named with its line number; good lines become requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.batchfile import (
    BatchInputError,
    InputSpec,
    Item,
    LineError,
    items_from_objects,
    read_items,
    template_fields,
)

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
        ('{"custom_id": "a b", "params": {}}\n', "line 1: custom_id: 1 to 64 letters"),
        ('{"custom_id": "a"}\n', "line 1: params: is required"),
        ('{"params": {}}\n', "line 1: custom_id: is required"),
        ('{"custom_id": "a", "params": {}, "extra": 1}\n', "line 1: unknown key 'extra'"),
        (
            '{"custom_id": "a", "params": {"messages": [{"role": "user", "content": "x"}]}}\n',
            "line 1: params.max_tokens: is required",
        ),
        (
            '{"custom_id": "a", "params": {"max_tokens": 5, "messages": []}}\n',
            "line 1: params.messages: List should have at least 1 item",
        ),
        (
            '{"custom_id": "a", "params": {"max_tokens": 5, "stream": true, "messages": []}}\n',
            "line 1: params.stream: streaming is not supported",
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
