"""The real `anthropic` SDK against the local API over HTTP: what the workers will see."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message, MessageParam

from localapi import LocalAPIServer

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-6"
KEY = "sk-test-integration"
USER: list[MessageParam] = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def server() -> Iterator[LocalAPIServer]:
    with LocalAPIServer(latency_ms=0) as running:
        yield running


@pytest.fixture
def client(server: LocalAPIServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0) as sdk:
        yield sdk


def create(client: anthropic.Anthropic, **fields: Any) -> Message:
    arguments: dict[str, Any] = {"model": MODEL, "max_tokens": 200, "messages": USER}
    arguments.update(fields)
    message: Message = client.messages.create(**arguments)
    return message


def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_a_success_parses_into_a_message_with_usage(client: anthropic.Anthropic) -> None:
    message = create(client)
    assert isinstance(message, Message)
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.usage.input_tokens == 3 + 6  # Name thre e colo urs .
    assert message.usage.output_tokens >= 20
    assert message.usage.cache_read_input_tokens == 0


def test_a_success_carries_the_request_id_and_rate_limit_headers(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    # A minute's worth at once, so the figures are round.
    server.configure(rpm=50, itpm=10_000, otpm=5_000, limit_interval_s=60)
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=USER)
    message = raw.parse()
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "50"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert raw.headers["anthropic-ratelimit-input-tokens-limit"] == "10000"
    remaining_output = int(raw.headers["anthropic-ratelimit-output-tokens-remaining"])
    assert remaining_output >= 5_000 - message.usage.output_tokens
    assert raw.headers["anthropic-ratelimit-output-tokens-reset"].endswith("Z")


ERROR_CASES = [
    pytest.param({"max_output_tokens": 100}, {}, anthropic.BadRequestError, id="400"),
    pytest.param({"api_key": "sk-other"}, {}, anthropic.AuthenticationError, id="401"),
    pytest.param({}, {"model": "gpt-4"}, anthropic.NotFoundError, id="404"),
    pytest.param(
        {"max_body_bytes": 500},
        {"messages": [{"role": "user", "content": "x" * 1000}]},
        anthropic.ContentTooLargeError,
        id="413",
    ),
    pytest.param({"rate_429": 1.0}, {}, anthropic.RateLimitError, id="429"),
    pytest.param({"rate_500": 1.0}, {}, anthropic.InternalServerError, id="500"),
    pytest.param({"rate_529": 1.0}, {}, anthropic.OverloadedError, id="529"),
]


@pytest.mark.parametrize(("config", "fields", "error_class"), ERROR_CASES)
def test_each_error_status_maps_to_the_sdk_exception(
    server: LocalAPIServer,
    client: anthropic.Anthropic,
    config: dict[str, Any],
    fields: dict[str, Any],
    error_class: type[anthropic.APIStatusError],
) -> None:
    server.configure(**config)
    with pytest.raises(error_class) as caught:
        create(client, **fields)
    error = caught.value
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert isinstance(error.body, dict)
    assert error.body["request_id"] == error.request_id
    assert error.type == error.body["error"]["type"]
    assert error.response.headers["anthropic-ratelimit-requests-limit"]


def test_a_scripted_403_is_a_permission_error(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    server.script([{"match": "colours", "responses": [{"status": 403}]}])
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        create(client)
    assert caught.value.type == "permission_error"


def test_a_429_carries_retry_after(server: LocalAPIServer, client: anthropic.Anthropic) -> None:
    server.configure(rate_429=1.0, retry_after_s=4)
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client)
    assert caught.value.response.headers["retry-after"] == "4"


def test_the_servers_own_request_limit_answers_429_once_exceeded(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    server.configure(rpm=3, limit_interval_s=60)  # three at once, then one every 20 s
    for _ in range(3):
        create(client)
    with pytest.raises(anthropic.RateLimitError) as caught:
        create(client)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.type == "rate_limit_error"
    assert server.stats()["rate_limited"] == 1


def test_malformed_json_makes_the_sdk_raise_a_json_decode_error(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    # Not an anthropic.APIError: the SDK lets json.JSONDecodeError (a ValueError) through.
    server.configure(rate_malformed=1.0)
    with pytest.raises(json.JSONDecodeError):
        create(client)
    assert server.stats()["paid"] == 1


def test_a_hang_times_out_in_the_sdk_and_frees_the_server(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    server.script([{"match": "colours", "responses": [{"fault": "hang"}]}])
    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.3).messages.create(model=MODEL, max_tokens=50, messages=USER)
    assert server.stats()["max_in_flight"] == 1
    wait_for(lambda: server.stats()["in_flight"] == 0)
    [entry] = server.requests_log()
    assert (entry["status"], entry["fault"], entry["scripted"]) == (499, "hang", True)


def test_top_level_cache_control_caches_the_whole_prompt(client: anthropic.Anthropic) -> None:
    # Past claude-sonnet-4-6's minimum cacheable length (2,048 tokens).
    system = "A long shared instruction for every item of the batch. " * 150
    first = create(client, system=system, cache_control={"type": "ephemeral"})
    second = create(client, system=system, cache_control={"type": "ephemeral"}, max_tokens=100)
    assert (first.usage.cache_creation_input_tokens or 0) > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert (first.usage.input_tokens, second.usage.input_tokens) == (0, 0)


def test_count_tokens_works(client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=USER)
    assert counted.input_tokens == 9


def test_stats_and_log_report_what_happened(
    server: LocalAPIServer, client: anthropic.Anthropic
) -> None:
    create(client)
    create(client)
    with pytest.raises(anthropic.NotFoundError):
        create(client, model="gpt-4")
    stats = httpx2.get(f"{server.url}/_mock/stats").json()
    assert stats["requests"] == 3
    assert stats["by_status"] == {"200": 2, "404": 1}
    assert stats["paid"] == 2
    assert stats["duplicates_paid"] == 1  # the SDK sends no idempotency key: same body twice
    log = httpx2.get(f"{server.url}/_mock/log", params={"contains": "colours"}).json()
    assert [entry["status"] for entry in log] == [200, 200, 404]


def test_the_x_api_key_header_is_accepted_too(server: LocalAPIServer) -> None:
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    body = {"model": MODEL, "max_tokens": 20, "messages": USER}
    answer = httpx2.post(f"{server.url}/v1/messages", json=body, headers=headers)
    assert answer.status_code == 200
    assert answer.json()["usage"]["output_tokens"] <= 20


def test_the_workers_provider_serves_many_threads_over_a_bounded_set_of_connections(
    server: LocalAPIServer,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from workers.models import CallRequest
    from workers.provider import Provider

    provider = Provider(api_key=KEY, base_url=server.url, max_connections=4)
    request = CallRequest.model_validate({"model": MODEL, "max_tokens": 50, "messages": USER})

    def call(index: int) -> tuple[str, int]:
        reply = provider.send(request, timeout_s=10, idempotency_key=f"k{index}")
        return reply.message["content"][0]["text"], provider.count_tokens(request)

    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(call, range(48)))
        assert len(answers) == 48
        assert all(text and counted == 9 for text, counted in answers)
        # 16 threads, at most 4 connections: the others waited their turn.
        assert 1 <= provider._clients.open_clients <= 4
    finally:
        provider.close()
    assert httpx2.get(f"{server.url}/_mock/stats").json()["requests"] == 48


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "claude-sonnet-5"])
def test_the_count_tokens_estimator_gives_the_apis_exact_count_for_each_tokenizer(
    server: LocalAPIServer, model: str
) -> None:
    # CHORUS_LIMITER__ESTIMATOR=count_tokens: the limiter reserves what the
    # API itself counts, for either tokenizer, where the local estimate is
    # within its bound only (tests/unit/test_estimate.py).
    from localapi.tokens import count_request_tokens
    from workers.models import CallRequest
    from workers.provider import Provider
    from workers.runtime import counted_or_estimated

    body = {
        "model": model,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Summarise a token bucket. " * 40}],
    }
    provider = Provider(api_key=KEY, base_url=server.url, max_connections=1)
    try:
        counted = counted_or_estimated(provider)(CallRequest.model_validate(body))
    finally:
        provider.close()

    assert counted == count_request_tokens(body)
    assert server.stats()["requests"] == 0  # counting is not a call: nothing billed
