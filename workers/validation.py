"""Request validation with errors a person can act on: the field named, then what is wrong."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from workers.errors import InvalidRequest
from workers.models import CallRequest


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def describe_validation_error(exc: ValidationError) -> str:
    """One line: ``messages[0].content: must not be empty; max_tokens: is required``."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
        message = str(error["msg"]).removeprefix("Value error, ")
        kind = error["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not a parameter chorus knows (check the spelling)"
        where = _location(loc)
        # A model-level check names its own field at the start of the message.
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(parts))


def _is_union_tag(part: int | str) -> bool:
    # pydantic names the branch of a union in the location ("list[...]",
    # "str"); people do not, and no field name has brackets.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float"})


def validate_request(data: dict[str, Any]) -> CallRequest:
    """A :class:`CallRequest` from plain data.

    Raises:
        InvalidRequest: naming every bad field.
    """
    try:
        return CallRequest.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation_error(exc)) from None
