"""The API key is in no Redis key or value, no worker log and no results file after a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import redis

from localapi import LocalAPIServer
from orchestration.batch import Batch
from tests.integration.conftest import BRIEF, FAKE_API_KEY, Workers, chorus
from tests.integration.faults.conftest import TIMEOUT_S, items


def _all_redis_bytes(client: redis.Redis) -> Iterator[bytes]:
    for key in client.scan_iter(count=1000):
        yield key
        kind = client.type(key)
        if kind == b"string":
            yield client.get(key) or b""
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                yield field + b"=" + value
        elif kind == b"list":
            yield from client.lrange(key, 0, -1)
        elif kind == b"set":
            yield from client.smembers(key)
        elif kind == b"zset":
            yield from client.zrange(key, 0, -1)


def test_the_key_is_nowhere_after_a_full_run(
    workers: Workers, local_api: LocalAPIServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    local_api.script([{"match": "item-3 ", "responses": [{"status": 529}, {"text": "ok"}]}])
    batch = Batch.submit(items(20, "Summarise item-{i} now."), **BRIEF)
    batch.wait(TIMEOUT_S)
    out = tmp_path / "results.jsonl"
    batch.write_results(out)
    chorus("status", batch.id)

    needle = FAKE_API_KEY.encode()
    assert not any(needle in chunk for chunk in _all_redis_bytes(redis_client))
    assert needle.decode() not in workers.logs()
    assert needle.decode() not in out.read_text()
