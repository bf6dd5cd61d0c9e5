"""Text the API can read: every string UTF-8 can encode, so no lone surrogate.

JSON can carry a string that is not Unicode text: the escape ``"\\ud800"`` is
valid JSON (RFC 8259 section 8.2 names such unpaired surrogates and says the
behaviour of software that receives them is unpredictable), Python decodes it
to the code point U+D800, and UTF-8 cannot encode it. A request holding one
could never be sent (the SDK's body encoding raises ``UnicodeEncodeError``),
so chorus refuses it where it is made, as it refuses invalid UTF-8 in a
batch file. A surrogate pair (``"\\ud83d\\ude00"``) decodes to one character
(U+1F600) and is text like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# A JSON escape of a code point in the surrogate range (U+D800 to U+DFFF):
# only such an escape can put a surrogate in what json.loads returns, because
# the UTF-8 decoder refuses the bytes of one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


@dataclass(frozen=True, slots=True)
class LoneSurrogate:
    """Where a string that is not Unicode text was found.

    ``path``: the field, as chorus names fields (``messages[0].content``; ""
    for the value itself); ``in_key``: the name of a field, not its value;
    ``index``: the 0-based position of the code point in the string;
    ``code_point``: U+D800 to U+DFFF.
    """

    path: str
    in_key: bool
    index: int
    code_point: int

    def describe(self) -> str:
        """``messages[0].content: holds a lone surrogate \\ud800 at character 5: ...``."""
        where = f"{self.path}: " if self.path else ""
        what = "a field name holds" if self.in_key else "holds"
        return (
            f"{where}{what} a lone surrogate \\u{self.code_point:04x} at character "
            f"{self.index + 1}: not Unicode text, so the API cannot accept it "
            "(only a pair of JSON escapes, \\uD8xx\\uDCxx, decodes to a character)"
        )


def may_hold_surrogate(json_text: str) -> bool:
    """Whether the JSON text ``json_text`` escapes a surrogate code point (a cheap filter:
    a string without one cannot decode to a lone surrogate)."""
    return "\\u" in json_text and _SURROGATE_ESCAPE.search(json_text) is not None


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` (a str, or dicts, lists, tuples and pydantic
    models holding strings, names of fields included) holds a lone surrogate.

    Iterative, exact types first: request validation runs it at the producer and
    again on the worker (a few microseconds for a one-message request, about
    50 for 41 turns of 2 KB).
    """
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _encodes(item):
                return True
        elif kind is dict:
            extend(item.keys())
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif isinstance(item, str):
            if not _encodes(item):
                return True
        elif isinstance(item, dict):
            extend(item.keys())
            extend(item.values())
        elif isinstance(item, list | tuple):
            extend(item)
        elif isinstance(item, BaseModel):
            extend(item.__dict__.values())
    return False


def find_lone_surrogate(value: Any, path: str = "") -> LoneSurrogate | None:
    """The first lone surrogate in ``value`` (read as :func:`has_lone_surrogate` reads
    it), with its place; None when every string is text."""
    if isinstance(value, str):
        if value.isascii() or _encodes(value):
            return None
        index = next(i for i, c in enumerate(value) if 0xD800 <= ord(c) <= 0xDFFF)
        return LoneSurrogate(path, False, index, ord(value[index]))
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_lone_surrogate(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        fields: Any = value.items()
    elif isinstance(value, BaseModel):
        fields = value.__dict__.items()
    else:
        return None
    for name, item in fields:
        inner = f"{path}.{name}" if path else str(name)
        in_name = find_lone_surrogate(name) if isinstance(name, str) else None
        if in_name is not None:
            return LoneSurrogate(printable(inner), True, in_name.index, in_name.code_point)
        found = find_lone_surrogate(item, inner)
        if found is not None:
            return found
    return None


def printable(text: str) -> str:
    """``text`` with any surrogate written as its escape: safe to print or encode."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
