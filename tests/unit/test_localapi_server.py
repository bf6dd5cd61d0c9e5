"""The local API over loopback HTTP: answers, headers, limits, faults, scripts and admin."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from localapi import LocalAPIServer
from localapi.tokens import count_text_tokens

MODEL = "claude-sonnet-4-6"
KEY = "sk-test-local"
REQUEST_ID = re.compile(r"^req_[A-Za-z0-9]{24}$")
RATE_LIMIT_HEADERS = [
    f"anthropic-ratelimit-{bucket}-{what}"
    for bucket in ("requests", "tokens", "input-tokens", "output-tokens")
    for what in ("limit", "remaining", "reset")
]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


def send(
    server: LocalAPIServer,
    path: str,
    data: bytes | Iterator[bytes] | None,
    headers: dict[str, str],
    method: str = "POST",
) -> Answer:
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, _lower(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, _lower(error.headers), error.read())


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def api_headers(**extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {KEY}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **extra,
    }


def message(content: Any = "Hello, world!", **fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


def call(
    server: LocalAPIServer, body: Any = None, path: str = "/v1/messages", **headers: str
) -> Answer:
    payload = json.dumps(message() if body is None else body).encode()
    return send(server, path, payload, api_headers(**headers))


def admin(server: LocalAPIServer, path: str, body: Any = None, method: str = "GET") -> Any:
    data = None if body is None else json.dumps(body).encode()
    return send(server, path, data, {"content-type": "application/json"}, method).body


@pytest.fixture
def server() -> Iterator[LocalAPIServer]:
    with LocalAPIServer(latency_ms=0) as running:
        yield running


def test_a_success_has_exactly_the_api_shape_and_headers(server: LocalAPIServer) -> None:
    answer = call(server)
    assert answer.status == 200
    body = answer.body
    fields = "id type role model content stop_reason stop_sequence stop_details container usage"
    assert set(body) == set(fields.split())
    assert body["stop_details"] is None and body["container"] is None
    assert re.match(r"^msg_[A-Za-z0-9]{24}$", body["id"])
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", MODEL)
    assert body["stop_reason"] == "end_turn"
    assert body["stop_sequence"] is None
    [block] = body["content"]
    assert block["type"] == "text"
    # Sonnet 4.6 thinks only when asked: every output token is the text's.
    assert body["usage"] == {
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "inference_geo": "global",
        "input_tokens": 6 + 3,
        "output_tokens": count_text_tokens(block["text"]),
        "output_tokens_details": {"thinking_tokens": 0},
        "server_tool_use": {"web_fetch_requests": 0, "web_search_requests": 0},
        "service_tier": "standard",
    }
    assert REQUEST_ID.match(answer.headers["request-id"])
    assert all(name in answer.headers for name in RATE_LIMIT_HEADERS)


def test_an_error_has_exactly_the_api_shape(server: LocalAPIServer) -> None:
    answer = call(server, message(model="gpt-4"))
    assert answer.status == 404
    assert answer.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model: gpt-4"},
        "request_id": answer.headers["request-id"],
    }
    assert all(name in answer.headers for name in RATE_LIMIT_HEADERS)


def test_the_key_is_taken_from_bearer_or_x_api_key(server: LocalAPIServer) -> None:
    payload = json.dumps(message()).encode()
    plain = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    assert send(server, "/v1/messages", payload, {**plain, "x-api-key": KEY}).status == 200
    missing = send(server, "/v1/messages", payload, plain)
    assert missing.status == 401
    assert missing.body["error"] == {
        "type": "authentication_error",
        "message": "invalid x-api-key",
    }


def test_only_the_configured_key_is_accepted_when_one_is_set(server: LocalAPIServer) -> None:
    server.configure(api_key="sk-right")
    assert call(server).status == 401
    assert call(server, Authorization="Bearer sk-right").status == 200


def test_the_anthropic_version_header_is_required(server: LocalAPIServer) -> None:
    payload = json.dumps(message()).encode()
    answer = send(server, "/v1/messages", payload, {"x-api-key": KEY})
    assert answer.status == 400
    assert "anthropic-version" in answer.body["error"]["message"]


def test_a_body_over_the_size_limit_is_refused_by_length_or_by_content(
    server: LocalAPIServer,
) -> None:
    server.configure(max_body_bytes=1000)
    big = json.dumps(message("x" * 2000)).encode()
    answer = send(server, "/v1/messages", big, api_headers())
    assert (answer.status, answer.body["error"]["type"]) == (413, "request_too_large")
    chunked = send(server, "/v1/messages", iter([big[:600], big[600:]]), api_headers())
    assert chunked.status == 413
    assert call(server).status == 200


def test_invalid_json_and_invalid_fields_are_400s(server: LocalAPIServer) -> None:
    broken = send(server, "/v1/messages", b"{not json", api_headers())
    assert (broken.status, broken.body["error"]["type"]) == (400, "invalid_request_error")
    answer = call(server, message(max_tokens=0))
    assert answer.body["error"]["message"].startswith("max_tokens")


def test_a_prompt_over_the_context_window_is_too_long(server: LocalAPIServer) -> None:
    server.configure(context_window=5)
    answer = call(server)
    assert answer.status == 400
    assert answer.body["error"]["message"] == "prompt is too long: 9 tokens > 5 maximum"


def test_replies_are_deterministic_per_body_and_chorus_key(server: LocalAPIServer) -> None:
    def text(**headers: str) -> str:
        return str(call(server, **headers).body["content"][0]["text"])

    assert text() == text()
    assert text(**{"x-chorus-key": "k:0"}) == text(**{"x-chorus-key": "k:0"})
    assert text(**{"x-chorus-key": "k:0"}) != text(**{"x-chorus-key": "k:1"})


def test_a_reply_is_cut_at_max_tokens(server: LocalAPIServer) -> None:
    server.configure(reply_min_tokens=50, reply_max_tokens=50)
    body = call(server, message(max_tokens=10)).body
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 10 == count_text_tokens(body["content"][0]["text"])


def test_a_reply_stops_before_a_stop_sequence(server: LocalAPIServer) -> None:
    server.script([{"match": "", "responses": [{"text": "alpha beta STOP gamma"}]}])
    body = call(server, message(stop_sequences=["STOP"])).body
    assert body["content"][0]["text"] == "alpha beta "
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "STOP")
    assert body["usage"]["output_tokens"] == count_text_tokens("alpha beta ")


def test_prompt_caching_creates_then_reads_and_bills_only_the_rest(
    server: LocalAPIServer,
) -> None:
    server.configure(cache_min_tokens=0)  # a short prefix, to check the accounting
    context = "Shared context for every item. " * 10
    system = [{"type": "text", "text": context, "cache_control": {"type": "ephemeral"}}]
    prefix_tokens = count_text_tokens(context)
    first = call(server, message("question one", system=system)).body["usage"]
    second = call(server, message("question two", system=system)).body["usage"]
    assert first["cache_creation_input_tokens"] == prefix_tokens
    assert first["cache_read_input_tokens"] == 0
    assert second["cache_creation_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == prefix_tokens
    assert second["input_tokens"] == 3 + count_text_tokens("question two")
    stats = server.stats()
    assert stats["cache_creation_input_tokens"] == prefix_tokens
    assert stats["cache_read_input_tokens"] == prefix_tokens


def test_cache_reads_do_not_count_against_input_tokens_per_minute(
    server: LocalAPIServer,
) -> None:
    context = "Shared context for every item. " * 10  # 90 tokens
    system = [{"type": "text", "text": context, "cache_control": {"type": "ephemeral"}}]
    # A whole minute's worth at once; a short prefix cached all the same.
    server.configure(itpm=120, limit_interval_s=60, cache_min_tokens=0)
    for question in ("q one", "q two", "q three"):
        assert call(server, message(question, system=system)).status == 200
    uncached = call(server, message("q four", system=context))
    assert uncached.status == 429
    assert "input tokens per minute" in uncached.body["error"]["message"]


def test_the_request_limit_answers_429_with_retry_after(server: LocalAPIServer) -> None:
    server.configure(rpm=2, limit_interval_s=60)
    assert [call(server).status for _ in range(2)] == [200, 200]
    limited = call(server)
    assert (limited.status, limited.body["error"]["type"]) == (429, "rate_limit_error")
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert server.stats()["rate_limited"] == 1


def test_output_tokens_are_charged_at_max_tokens_and_refunded(server: LocalAPIServer) -> None:
    server.configure(otpm=1000, reply_min_tokens=20, reply_max_tokens=20, limit_interval_s=60)
    answer = call(server, message(max_tokens=600))
    remaining = server.state.limits.output_tokens.remaining(time.time())
    assert 980 <= remaining <= 1000  # charged 600, refunded 580, plus refill
    # The header rounds token figures to the nearest thousand, as the API does.
    assert answer.headers["anthropic-ratelimit-output-tokens-remaining"] == "1000"
    assert call(server, message(max_tokens=1001)).status == 429


def test_a_limit_is_enforced_over_one_second_by_default(server: LocalAPIServer) -> None:
    # 600 a minute, held as 10 a second: an eleventh request at once is refused,
    # as the documentation says short bursts may be.
    server.configure(rpm=600)
    statuses = [call(server).status for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    assert server.stats()["rate_limited"] == 1


def test_a_request_bigger_than_a_seconds_refill_waits_for_a_full_bucket(
    server: LocalAPIServer,
) -> None:
    # 6,000 output tokens a minute is 100 a second: max_tokens=1,000 is ten
    # seconds of refill, admitted on a full bucket and leaving it in debt.
    server.configure(otpm=6_000, reply_min_tokens=990, reply_max_tokens=990)
    assert call(server, message(max_tokens=1_000)).status == 200
    refused = call(server, message(max_tokens=100))
    assert refused.status == 429
    assert int(refused.headers["retry-after"]) == 10  # 990 used of 100 held, then 100 more
    assert call(server, message(max_tokens=6_001)).status == 429  # above the whole minute


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("429", 429, "rate_limit_error"),
        ("529", 529, "overloaded_error"),
        ("500", 500, "api_error"),
    ],
)
def test_injected_errors_have_the_api_shape(
    server: LocalAPIServer, fault: str, status: int, error_type: str
) -> None:
    server.configure(**{f"rate_{fault}": 1.0, "retry_after_s": 7})
    answer = call(server)
    assert (answer.status, answer.body["error"]["type"]) == (status, error_type)
    if status == 429:
        assert answer.headers["retry-after"] == "7"
    stats = server.stats()
    assert stats["injected"][fault] == 1
    assert stats["rate_limited"] == 0
    assert stats["paid"] == 0


def test_faults_are_reproducible_for_a_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with LocalAPIServer(latency_ms=0, rate_500=0.5, seed=seed) as server:
            return [call(server).status for _ in range(20)]

    assert statuses(3) == statuses(3)
    assert set(statuses(3)) == {200, 500}


def test_a_hung_call_gives_up_with_a_500_after_hang_s(server: LocalAPIServer) -> None:
    server.configure(rate_hang=1.0, hang_s=0.05)
    started = time.monotonic()
    answer = call(server)
    assert answer.status == 500
    assert time.monotonic() - started >= 0.05
    assert server.stats()["injected"]["hang"] == 1


def test_a_malformed_answer_is_a_paid_200_with_broken_json(server: LocalAPIServer) -> None:
    server.configure(rate_malformed=1.0)
    answer = call(server)
    assert answer.status == 200
    with pytest.raises(ValueError):
        json.loads(answer.raw)
    stats = server.stats()
    assert (stats["paid"], stats["injected"]["malformed"]) == (1, 1)


def test_latency_is_waited_before_answering(server: LocalAPIServer) -> None:
    server.configure(latency_ms=80)
    started = time.monotonic()
    assert call(server).status == 200
    assert time.monotonic() - started >= 0.08


def test_a_scripted_error_skips_the_rate_limits_and_a_scripted_200_does_not(
    server: LocalAPIServer,
) -> None:
    server.configure(rpm=1)
    server.script(
        [
            {"match": "overload", "responses": [{"status": 529, "message": "busy"}]},
            {"match": "fixed", "responses": [{"text": "fixed reply", "output_tokens": 99}]},
        ]
    )
    for _ in range(3):
        answer = call(server, message("overload me"))
        assert answer.body["error"] == {"type": "overloaded_error", "message": "busy"}
    fixed = call(server, message("fixed please")).body
    assert fixed["content"][0]["text"] == "fixed reply"
    assert fixed["usage"]["output_tokens"] == 99
    assert call(server, message("fixed again")).status == 429
    assert server.stats()["scripted"] == 5


def test_a_script_can_fail_each_item_once_then_succeed(server: LocalAPIServer) -> None:
    server.script(
        [
            {
                "match": "item",
                "per_prompt": True,
                "responses": [{"status": 429, "retry_after_s": 3}, {"status": 200}],
            }
        ]
    )
    first = [call(server, message(f"item {i}")) for i in range(3)]
    assert [answer.status for answer in first] == [429] * 3
    assert first[0].headers["retry-after"] == "3"
    assert [call(server, message(f"item {i}")).status for i in range(3)] == [200] * 3


def test_stats_count_statuses_payments_and_duplicates(server: LocalAPIServer) -> None:
    call(server, **{"x-chorus-key": "same"})
    call(server, message("another body"), **{"x-chorus-key": "same"})
    call(server, message(model="nope"))
    stats = admin(server, "/_mock/stats")
    assert stats["requests"] == 3
    assert stats["by_status"] == {"200": 2, "404": 1}
    assert (stats["paid"], stats["duplicates_paid"]) == (2, 1)
    assert (stats["in_flight"], stats["max_in_flight"]) == (0, 1)
    assert stats["output_tokens"] > 0


def test_the_log_records_each_call_and_filters_on_the_prompt(server: LocalAPIServer) -> None:
    call(server, message("needle " + "x" * 300), **{"x-chorus-key": "k1"})
    call(server, message("haystack"))
    entries = admin(server, "/_mock/log")
    assert [entry["status"] for entry in entries] == [200, 200]
    found = admin(server, "/_mock/log?contains=needle")
    assert len(found) == 1
    entry = found[0]
    assert entry["key"] == "k1"
    assert entry["prompt"].startswith("needle") and len(entry["prompt"]) == 200
    assert entry["t"] <= entry["t_end"]
    assert (entry["fault"], entry["scripted"]) == (None, False)
    assert entry["input_tokens"] > 0 and entry["output_tokens"] > 0


def test_admin_scripts_config_and_reset(server: LocalAPIServer) -> None:
    added = admin(server, "/_mock/script", [{"match": "", "responses": [{"status": 500}]}], "POST")
    assert added == {"added": 1, "rules": 1}
    assert call(server).status == 500
    admin(server, "/_mock/script", method="DELETE")
    assert call(server).status == 200
    config = admin(server, "/_mock/config", {"rpm": 1}, "POST")
    assert config["rpm"] == 1
    assert [call(server).status for _ in range(2)] == [200, 429]
    refused = send(server, "/_mock/config", b'{"rpm": "x"}', {}, "POST")
    assert refused.status == 400
    admin(server, "/_mock/reset", {}, "POST")
    stats = admin(server, "/_mock/stats")
    assert (stats["requests"], stats["rate_limited"]) == (0, 0)
    assert admin(server, "/_mock/log") == []
    assert call(server).status == 200  # buckets are full again; rpm 1 is kept
    assert call(server).status == 429


def test_count_tokens_answers_without_charging_or_counting(server: LocalAPIServer) -> None:
    server.configure(rpm=1)
    for _ in range(3):
        answer = call(server, message(max_tokens=None), path="/v1/messages/count_tokens")
        assert answer.body == {"input_tokens": 9}
    stats = server.stats()
    assert (stats["requests"], stats["paid"], stats["count_tokens_requests"]) == (0, 0, 3)
    assert call(server).status == 200


def test_a_script_file_is_loaded_at_start_and_survives_a_reset(tmp_path: Any) -> None:
    rules = [{"match": "", "responses": [{"status": 529}, {"status": 200}], "then": "cycle"}]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    with LocalAPIServer(latency_ms=0, script_path=str(path)) as server:
        assert [call(server).status for _ in range(3)] == [529, 200, 529]
        server.reset()
        assert call(server).status == 529  # reloaded, from the start of its sequence
        server.clear_script()
        assert [call(server).status for _ in range(2)] == [200, 200]


def test_stopping_cuts_off_hung_calls_and_frees_the_port() -> None:
    server = LocalAPIServer(latency_ms=0, rate_hang=1.0).start()
    payload = json.dumps(message()).encode()
    request = urllib.request.Request(server.url + "/v1/messages", payload, api_headers())

    outcome: list[BaseException] = []

    def hang() -> None:
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=hang)
    caller.start()
    deadline = time.monotonic() + 5
    while server.stats()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    caller.join(10)
    assert not caller.is_alive()
    assert isinstance(outcome[0], ConnectionError)  # cut off, not answered after hang_s
    with LocalAPIServer(port=server.port, latency_ms=0) as again:
        assert call(again).status == 200
