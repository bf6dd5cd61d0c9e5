"""Whatever a call raises ends as an envelope: no item left pending, no chord without its fan-in.

The witnesses are the ledger (each item ends once, ``failed`` with its error),
Celery's own state (FAILURE, carrying the envelope) and the result store (no
claim left behind).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import pydantic
import pytest
import redis
from celery import states
from celery.exceptions import SoftTimeLimitExceeded

import workers.call
from config.settings import get_settings
from orchestration.batch import Batch, InvalidBatchFile
from orchestration.client import request_from_prompt
from orchestration.patterns import Handle, Section
from tests.integration.conftest import BRIEF, Workers, own_queue, start_test_workers
from workers import errors, keys
from workers.errors import TaskFailed
from workers.provider import Provider
from workers.tasks import call as call_task

SURROGATE_TEXT = "Summarise: caf\ud800 menu"
PLACEHOLDER = "Summarise: cafe menu"


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def three_items(tmp_path: Path) -> Path:
    return jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "s0", "prompt": "Summarise: the harbour at dawn"},
            {"id": "s1", "prompt": PLACEHOLDER},
            {"id": "s2", "prompt": "Summarise: the market at noon"},
        ],
    )


def queued_messages(client: redis.Redis) -> list[dict[str, Any]]:
    """Every message in this process's queue, taken out of it (kombu's Redis list)."""
    queue = get_settings().worker.queue
    taken = []
    while (raw := client.rpop(queue)) is not None:
        taken.append(json.loads(raw))
    return taken


def body_of(message: dict[str, Any]) -> list[Any]:
    body: list[Any] = json.loads(base64.b64decode(message["body"]))
    return body


def with_body(message: dict[str, Any], body: list[Any]) -> dict[str, Any]:
    # json.dumps escapes the lone surrogate ("\ud800"): valid JSON, as a producer could send.
    encoded = base64.b64encode(json.dumps(body).encode()).decode()
    return {**message, "body": encoded}


def test_a_lone_surrogate_injected_past_validation_fails_its_item_and_the_batch_finishes(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, chorus_env: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    env = own_queue(monkeypatch, "boundary")
    batch = Batch.submit(three_items(tmp_path), name="surrogates", **BRIEF)
    # No worker reads this queue yet: rewrite s1's payload as a producer of its own might.
    queue = get_settings().worker.queue
    for message in reversed(queued_messages(redis_client)):
        body = body_of(message)
        if body[0][0]["messages"][0]["content"] == PLACEHOLDER:
            body[0][0]["messages"][0]["content"] = SURROGATE_TEXT
            message = with_body(message, body)
        redis_client.lpush(queue, json.dumps(message))
    assert redis_client.llen(queue) == 3

    started = start_test_workers(chorus_env, 1, prefix="boundary", extra_env=env)
    try:
        status = batch.wait(60)
    finally:
        started.fleet.stop()

    assert status.finished
    assert (status.count("complete"), status.count("failed"), status.active) == (2, 1, 0)
    records = {r["id"]: r for r in batch.results()}
    failed = records["s1"]
    assert not failed["ok"]
    assert failed["error"]["type"] in ("invalid_request_error", "internal_error")
    assert failed["error"]["message"]
    assert records["s0"]["ok"] and records["s2"]["ok"]


def test_a_chord_with_a_lone_surrogate_branch_still_fans_in(workers: Workers) -> None:
    pattern = Section(
        {
            "good": request_from_prompt("Summarise: the harbour at dawn", **BRIEF),
            "bad": request_from_prompt(PLACEHOLDER, **BRIEF),
        },
        min_success=1,
    )
    signature = pattern.signature()
    bad = signature.tasks[1]
    bad.args[0]["messages"][0]["content"] = SURROGATE_TEXT
    handle = Handle(kind="section", labels=pattern.labels(), result=signature.apply_async())

    result = handle.wait(60)

    assert result.ok, result.error
    assert (result.succeeded, result.failed) == (1, 1)
    branches = {b.label: b for b in result.branches}
    assert branches["good"].ok and branches["good"].text
    assert branches["bad"].error is not None
    # Celery's own state of the failed branch: FAILURE, the envelope carried inside.
    failed_branch = handle.result.parent.results[1]
    assert failed_branch.state == states.FAILURE
    assert isinstance(failed_branch.result, TaskFailed)
    assert failed_branch.result.value["ok"] is False


def _every_chorus_error() -> list[type[BaseException]]:
    found, todo = [], [errors.ChorusError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _instance(cls: type[BaseException]) -> BaseException:
    """One instance of ``cls``, built as its library builds it."""
    request = httpx.Request("POST", "https://api.anthropic.com/v1/messages")
    response = httpx.Response(500, request=request)
    special: dict[type[BaseException], Any] = {
        UnicodeEncodeError: lambda: UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"),
        UnicodeDecodeError: lambda: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid"),
        json.JSONDecodeError: lambda: json.JSONDecodeError("Expecting value", "x", 0),
        pydantic.ValidationError: lambda: _validation_error(),
        anthropic.APIConnectionError: lambda: anthropic.APIConnectionError(request=request),
        anthropic.InternalServerError: lambda: anthropic.InternalServerError(
            "boom", response=response, body=None
        ),
        httpx.ReadTimeout: lambda: httpx.ReadTimeout("slow", request=request),
        redis.ResponseError: lambda: redis.ResponseError("ERR Error running script"),
        TaskFailed: lambda: TaskFailed("x", {}),
        InvalidBatchFile: lambda: InvalidBatchFile([], 0, 0),
    }
    if cls in special:
        built: BaseException = special[cls]()
        return built
    if issubclass(cls, errors.ChorusError):
        return cls("raised by the test")
    return cls("raised by the test")


def _validation_error() -> pydantic.ValidationError:
    try:
        pydantic.TypeAdapter(int).validate_python("x")
    except pydantic.ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


RAISED: list[type[BaseException]] = [
    *_every_chorus_error(),
    ValueError, KeyError, TypeError, AttributeError, IndexError, AssertionError,
    RuntimeError, NotImplementedError, ZeroDivisionError, RecursionError, OSError,
    TimeoutError, UnicodeEncodeError, UnicodeDecodeError, json.JSONDecodeError,
    pydantic.ValidationError, anthropic.APIConnectionError, anthropic.InternalServerError,
    httpx.ReadTimeout, redis.ResponseError, SoftTimeLimitExceeded,
]  # fmt: skip


@pytest.fixture
def one_queued_item(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[Batch, list[Any]]]:
    """A batch of one item whose task message is taken from the queue, to run here."""
    own_queue(monkeypatch, "raise")
    batch = Batch.submit(
        jsonl(tmp_path / "one.jsonl", [{"id": "only", "prompt": "Say hi."}]), **BRIEF
    )
    (message,) = queued_messages(redis_client)
    yield batch, body_of(message)


@pytest.mark.parametrize("raised", RAISED, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("where", ["before the claim", "during the call"])
def test_whatever_the_call_logic_raises_ends_as_an_envelope_and_a_failed_item(
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
    one_queued_item: tuple[Batch, list[Any]],
    raised: type[BaseException],
    where: str,
) -> None:
    batch, (args, kwargs, _) = one_queued_item
    exc = _instance(raised)

    def raise_it(*_: Any, **__: Any) -> Any:
        raise exc

    if where == "during the call":
        monkeypatch.setattr(workers.call, "_attempt_until_done", raise_it)
    else:
        monkeypatch.setattr("workers.models.CallRequest.idempotency_key", raise_it)

    outcome = call_task.apply(args=args, kwargs=kwargs)

    # The task failed as Celery sees it, and carries its result all the same.
    assert outcome.state == states.FAILURE
    assert isinstance(outcome.result, TaskFailed), outcome.traceback
    receipt = outcome.result.value
    assert receipt["ok"] is False and receipt["error"] == "internal_error"
    assert raised.__name__ in outcome.result.message
    # The ledger ended the item failed, named the error, and nothing is pending.
    status = batch.progress()
    assert (status.count("failed"), status.active, status.finished) == (1, 0, True)
    (record,) = batch.results()
    assert record["error"]["type"] == "internal_error"
    # No claim was left to hold back a retry.
    assert not list(redis_client.scan_iter(match=keys.claim("*", "*")))


def test_a_crash_after_the_answer_was_stored_returns_that_answer(
    monkeypatch: pytest.MonkeyPatch, one_queued_item: tuple[Batch, list[Any]]
) -> None:
    batch, (args, kwargs, _) = one_queued_item
    original_end = workers.call._end

    def end_then_raise(*a: Any, **k: Any) -> None:
        original_end(*a, **k)  # the answer stored, the item ended complete
        raise RuntimeError("a bug after the call")

    monkeypatch.setattr(workers.call, "_end", end_then_raise)
    outcome = call_task.apply(args=args, kwargs=kwargs)

    assert outcome.state == states.SUCCESS, outcome.traceback
    assert outcome.result["ok"] is True and outcome.result["outcome"] == "complete"
    assert batch.progress().count("complete") == 1


def test_a_crash_gives_back_the_budget_it_reserved(
    monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, tmp_path: Path
) -> None:
    own_queue(monkeypatch, "budget")
    rows = [{"id": "only", "prompt": "Say hi."}]
    batch = Batch.submit(jsonl(tmp_path / "b.jsonl", rows), max_cost_usd=1.0, **BRIEF)
    (message,) = queued_messages(redis_client)
    args, kwargs, _ = body_of(message)

    def send_raises(*_: Any, **__: Any) -> Any:
        raise ValueError("the provider broke after the budget was reserved")

    monkeypatch.setattr(Provider, "send", send_raises)
    outcome = call_task.apply(args=args, kwargs=kwargs)

    assert isinstance(outcome.result, TaskFailed)
    status = batch.progress()
    assert status.count("failed") == 1 and status.reserved_usd == 0
