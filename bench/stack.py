"""A whole chorus on this machine for a benchmark: Redis, the local API, worker processes.

Benchmarks get a dedicated Redis database (flushed first), their own queue,
and the local API in its own process, so what they time is what users run.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from config.settings import get_settings
from orchestration.embedded import ensure_redis
from orchestration.fleet import Fleet, start_local_api, start_workers, wait_for_workers
from workers.app import reconfigure

RESULTS = Path(__file__).resolve().parent / "results"
BENCH_DB = 13
API_KEY = "sk-ant-bench-not-a-real-key"


@dataclass
class Stack:
    api_url: str
    redis_url: str
    fleet: Fleet
    workers: list[str] = field(default_factory=list)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.api_url + path, timeout=30) as response:
            return json.loads(response.read())

    def api_post(self, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.api_url + path,
            data=json.dumps(body or {}).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def redis_url_for_bench() -> str:
    base = ensure_redis(get_settings(), announce=print).url
    return base.rsplit("/", 1)[0] + f"/{BENCH_DB}"


@contextmanager
def stack(
    *,
    api_args: Sequence[str] = (),
    processes: int = 2,
    concurrency: int = 50,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Stack]:
    """Start the local API and ``processes`` workers; stop them all afterwards."""
    redis_url = redis_url_for_bench()
    redis.Redis.from_url(redis_url).flushdb()
    fleet = Fleet()
    try:
        api_url, _ = start_local_api(list(api_args), fleet=fleet)
        settings_env = {
            "CHORUS_BROKER_URL": redis_url,
            "ANTHROPIC_BASE_URL": api_url,
            "ANTHROPIC_API_KEY": API_KEY,
            "CHORUS_WORKER__QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
            **(env or {}),
        }
        os.environ.update(settings_env)
        reconfigure()
        start_workers(
            get_settings(),
            processes,
            prefix="bench",
            concurrency=concurrency,
            loglevel="WARNING",
            log_dir=log_dir or RESULTS / "logs",
            fleet=fleet,
        )
        names = wait_for_workers(processes, timeout_s=60, fleet=fleet)
        yield Stack(api_url=api_url, redis_url=redis_url, fleet=fleet, workers=names)
    finally:
        fleet.stop()


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def now_s() -> float:
    return time.time()
