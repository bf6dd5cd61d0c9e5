"""One Claude call through Celery, Redis, a real worker process and the real SDK over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import redis

from localapi import LocalAPIServer
from orchestration.client import request_from_prompt, submit, wait
from tests.integration.conftest import BRIEF, FAKE_API_KEY, Workers


def test_a_call_returns_the_envelope(workers: Workers, local_api: LocalAPIServer) -> None:
    local_api.script([{"match": "capital of France", "responses": [{"text": "Paris."}]}])

    envelope = wait(submit(request_from_prompt("What is the capital of France?")), timeout_s=30)

    assert envelope.ok, envelope.error
    assert envelope.outcome == "complete"
    assert envelope.text == "Paris."
    # The default model thinks first (adaptive thinking, on by default), then answers.
    assert [block["type"] for block in envelope.content] == ["thinking", "text"]
    assert envelope.content[-1] == {"type": "text", "text": "Paris."}
    assert envelope.usage.input_tokens > 0
    assert envelope.usage.output_tokens > envelope.usage.thinking_tokens > 0
    assert envelope.stop_reason == "end_turn"
    assert envelope.message_id is not None and envelope.message_id.startswith("msg_")
    assert envelope.attempts == 1
    assert not envelope.from_store
    assert local_api.stats()["paid"] == 1


def test_a_400_fails_the_call_after_one_attempt(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "please-fail", "responses": [{"status": 400, "message": "bad"}]}])

    envelope = wait(submit(request_from_prompt("please-fail")), timeout_s=30)

    assert not envelope.ok
    assert envelope.attempts == 1
    assert envelope.error is not None
    assert envelope.error.type == "invalid_request_error"
    assert envelope.error.status == 400
    assert envelope.error.request_id is not None and envelope.error.request_id.startswith("req_")
    assert local_api.stats()["requests"] == 1


def test_two_529s_then_success_is_ok_after_three_attempts(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script(
        [
            {
                "match": "flaky today",
                "responses": [{"status": 529}, {"status": 529}, {"text": "finally"}],
            }
        ]
    )

    envelope = wait(submit(request_from_prompt("flaky today")), timeout_s=30)

    assert envelope.ok, envelope.error
    assert envelope.text == "finally"
    assert envelope.attempts == 3
    assert local_api.stats()["by_status"] == {"529": 2, "200": 1}


def test_the_same_call_again_is_served_from_the_store_and_paid_once(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    request = request_from_prompt("Pay for me once.")
    first = wait(submit(request), timeout_s=30)

    again = wait(submit(request), timeout_s=30)

    assert first.ok and again.ok
    assert again.from_store
    assert again.text == first.text
    assert local_api.stats()["paid"] == 1


def test_the_api_key_is_nowhere_in_redis_after_a_run(
    workers: Workers, local_api: LocalAPIServer, redis_client: redis.Redis
) -> None:
    local_api.script([{"match": "fails", "responses": [{"status": 429, "retry_after_s": 0}]}])
    wait(submit(request_from_prompt("Leave no trace.")), timeout_s=30)
    wait(submit(request_from_prompt("this one fails", **BRIEF)), timeout_s=60)

    needle = FAKE_API_KEY.encode()
    keys = list(redis_client.scan_iter(count=1000))
    assert keys, "the run should have written something"
    for key in keys:
        assert needle not in key
        assert needle not in _value_bytes(redis_client, key), key
    assert needle.decode() not in workers.logs()


def test_the_cli_call_prints_the_answer_usage_and_attempts(
    workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script([{"match": "Say hi", "responses": [{"text": "Hi there!"}]}])

    command = ["call", "Say hi", "--max-tokens", "256", "--effort", "low"]
    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", *command],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hi there!"
    assert "1 attempt" in done.stderr
    assert "in /" in done.stderr and "out tokens" in done.stderr


def test_the_cli_reports_an_invalid_request_before_enqueueing(workers: Workers) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "call", "hi", "--max-tokens", "-5"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert "invalid request: max_tokens:" in done.stderr


def _value_bytes(client: redis.Redis, key: bytes) -> bytes:
    kind = client.type(key)
    if kind == b"string":
        return client.get(key) or b""
    if kind == b"hash":
        return b" ".join(k + b"=" + v for k, v in client.hgetall(key).items())
    if kind == b"list":
        return b" ".join(client.lrange(key, 0, -1))
    if kind == b"set":
        return b" ".join(client.smembers(key))
    if kind == b"zset":
        return b" ".join(client.zrange(key, 0, -1))
    if kind == b"stream":
        return repr(client.xrange(key)).encode()
    return b""
