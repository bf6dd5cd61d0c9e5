"""Enqueue calls from a producer script and wait for their envelopes.

>>> from orchestration.client import request_from_prompt, submit
>>> result = submit(request_from_prompt("Name three prime numbers."))
>>> envelope = wait(result, timeout_s=60)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery.canvas import Signature
from celery.result import AsyncResult
from pydantic import BaseModel

from config.models import DEFAULT_MAX_TOKENS
from config.settings import get_settings
from workers.app import app
from workers.errors import TaskFailed
from workers.models import CallRequest, Envelope
from workers.structured import spec as structured_spec
from workers.validation import validate_request

CALL_TASK = "chorus.call"


def request_from_prompt(
    prompt: str,
    *,
    model: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    system: str | None = None,
    effort: str | None = None,
    schema: Mapping[str, Any] | type[BaseModel] | None = None,
    reask: int = 1,
    schema_method: str = "auto",
    structured: Mapping[str, Any] | None = None,
    **params: Any,
) -> CallRequest:
    """A validated one-turn request.

    ``effort``: ``output_config.effort`` (low, medium, high, xhigh, max), how
    much the model thinks where it thinks; thinking counts against
    ``max_tokens``. ``schema``: a JSON Schema dict or a pydantic model class the
    answer must match (``workers.structured``; ``reask`` follow-ups when it does
    not, asked by ``schema_method``); the envelope's ``data`` is the value and
    ``Envelope.parsed(Model)`` the instance. Other keyword arguments are
    Messages API parameters.

    Raises:
        InvalidRequest: naming the bad field (or the model's rule it breaks).
    """
    data: dict[str, Any] = {
        "model": model or get_settings().anthropic.default_model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        **params,
    }
    if effort is not None:
        data["output_config"] = {**data.get("output_config", {}), "effort": effort}
    if system is not None:
        data["system"] = system
    if schema is not None:
        data["structured"] = structured_spec(schema, reask=reask, method=schema_method)
    elif structured is not None:  # already in the request's own form (the CLI's --schema)
        data["structured"] = dict(structured)
    return validate_request(data)


def argsrepr(
    request: CallRequest,
    *,
    batch_id: str | None = None,
    item_id: str | None = None,
    batch_name: str | None = None,
) -> str:
    """What Flower shows for a task, and its search reads: ids, the batch's name,
    a truncated prompt; never a secret."""
    parts = []
    if batch_id:
        parts.append(f"batch={batch_id}")
    if batch_name:
        parts.append(f"name={batch_name}")
    if item_id:
        parts.append(f"item={item_id}")
    parts.append(f"prompt={request.preview()!r}")
    return " ".join(parts)


def call_signature(
    request: CallRequest,
    *,
    batch_id: str | None = None,
    item_id: str | None = None,
    options: dict[str, Any] | None = None,
) -> Signature:
    """The ``chorus.call`` task for ``request``, ready for a group or a chord."""
    payload = request.model_dump(mode="json", exclude_none=True)
    args: tuple[Any, ...] = (payload,) if options is None else (payload, options)
    return app.signature(
        CALL_TASK,
        args=args,
        argsrepr=argsrepr(request, batch_id=batch_id, item_id=item_id),
        kwargsrepr="{}",
    )


def submit(
    request: CallRequest, *, batch_id: str | None = None, item_id: str | None = None
) -> AsyncResult:
    result: AsyncResult = call_signature(request, batch_id=batch_id, item_id=item_id).apply_async()
    return result


def wait(result: AsyncResult, *, timeout_s: float | None = None) -> Envelope:
    """The envelope of a submitted call.

    Raises:
        celery.exceptions.TimeoutError: no result within ``timeout_s``.
    """
    return Envelope.model_validate(result_of(result, timeout_s=timeout_s))


def result_of(result: AsyncResult, *, timeout_s: float | None = None) -> Any:
    """A chorus task's result (its JSON value), whether it succeeded or failed.

    A task whose call failed ends in Celery state FAILURE (so Flower shows it)
    and raises :class:`~workers.errors.TaskFailed`, which carries the same
    value a success would have returned: it is returned here.

    Raises:
        celery.exceptions.TimeoutError: no result within ``timeout_s``.
        Exception: whatever a task raised that is not chorus's own failure
            (a task of another version, a revoked task).
    """
    try:
        # Not a chord's header: its failed branches are the fan-in's to count.
        return result.get(timeout=timeout_s, interval=0.05, propagate=True, follow_parents=False)
    except TaskFailed as exc:
        return exc.value


def workers_online(timeout_s: float = 1.0) -> list[str]:
    """Names of the workers that answer a ping."""
    replies = app.control.ping(timeout=timeout_s) or []
    return sorted(name for reply in replies for name in reply)
