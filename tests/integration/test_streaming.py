"""Long generations, streamed: no time limit but silence, and a broken stream sent once more.

The workers run with a 2 s request timeout, which a non-streamed call that
takes 3 s would hit six times over; a call whose max_tokens makes a long
generation possible (above 21,333, the SDK's own line) is streamed instead.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from localapi import LocalAPIServer
from orchestration.client import request_from_prompt, submit, wait
from tests.integration.conftest import Workers, chorus, start_test_workers
from workers.app import reconfigure


@pytest.fixture
def streaming_workers(
    chorus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workers]:
    queue = f"stream-{uuid.uuid4().hex[:6]}"
    extra = {
        "CHORUS_WORKER__QUEUE": queue,
        "CHORUS_ANTHROPIC__REQUEST_TIMEOUT_S": "2",
        "CHORUS_ANTHROPIC__STREAM_SILENCE_TIMEOUT_S": "10",
        "CHORUS_RETRY__BASE_DELAY_S": "0.05",
    }
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    reconfigure()
    workers = start_test_workers(chorus_env, 1, prefix="stream", concurrency=5, extra_env=extra)
    yield workers
    workers.fleet.stop()


def test_a_long_generation_is_streamed_and_never_sent_again_while_tokens_come(
    streaming_workers: Workers, local_api: LocalAPIServer
) -> None:
    # Three seconds to the first token, a request timeout of two.
    local_api.script(
        [
            {
                "match": "Write the long report",
                "responses": [{"latency_ms": 3000, "text": "The report."}],
            }
        ]
    )

    done = chorus(
        "call", "Write the long report.", "--max-tokens", "64000", "--json", env=dict(os.environ)
    )

    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["ok"] and envelope["attempts"] == 1
    message = envelope["message"]
    assert message["content"][-1] == {"type": "text", "text": "The report."}
    assert message["usage"]["output_tokens"] > 0 and message["usage"]["input_tokens"] > 0
    assert message["stop_reason"] == "end_turn"
    assert local_api.stats()["paid"] == 1  # one call: nothing cut, nothing sent twice


def test_a_stream_cut_part_way_is_sent_once_more_and_counted(
    streaming_workers: Workers, local_api: LocalAPIServer
) -> None:
    local_api.script(
        [
            {"match": "Cut once", "responses": [{"fault": "stream_cut"}, {}]},
            {"match": "Cut always", "responses": [{"fault": "stream_cut"}]},
        ]
    )

    once = wait(
        submit(request_from_prompt("Cut once, then finish.", max_tokens=30_000)), timeout_s=60
    )
    always = wait(submit(request_from_prompt("Cut always.", max_tokens=30_000)), timeout_s=60)

    assert once.ok and once.attempts == 2
    assert once.maybe_billed_usd > 0  # the cut attempt's input (and output so far) may be billed
    assert not always.ok and always.attempts == 2  # at most once more: not a third time
    assert always.error is not None and always.error.type == "connection_error"
    assert "broke off" in always.error.message


def test_a_stream_that_fails_part_way_is_classified_like_its_status(
    streaming_workers: Workers, local_api: LocalAPIServer
) -> None:
    # An `error` event part way: overloaded, as a 529 is, so sent once more.
    local_api.script([{"match": "Overload me", "responses": [{"fault": "stream_error"}, {}]}])

    envelope = wait(submit(request_from_prompt("Overload me.", max_tokens=30_000)), timeout_s=60)

    assert envelope.ok and envelope.attempts == 2
    assert local_api.stats()["paid"] == 1  # the API billed the whole answer only
