"""chorus's Prometheus figures (orchestration/metrics.py), read straight from the collector.

test_flower_api.py checks that they reach Flower's /metrics; here, what they
say and how the collector behaves when Redis is gone.
"""

from __future__ import annotations

import time

import redis
from prometheus_client import CollectorRegistry, generate_latest

from config.settings import get_settings, load_settings
from orchestration.batch import Batch
from orchestration.embedded import free_port
from orchestration.metrics import ChorusCollector, register
from tests.integration.conftest import BRIEF, Workers
from tests.integration.fleet_helpers import samples
from workers import keys


def _scrape(collector: ChorusCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_a_batch_and_its_limiter_bucket_appear_with_their_figures(
    workers: Workers, redis_client: redis.Redis
) -> None:
    # Given a named batch of 5 that ran
    items = [{"id": f"m-{i}", "prompt": f"Metrics item {i}."} for i in range(5)]
    batch = Batch.submit(items, name="metrics-run", **BRIEF)
    status = batch.wait(timeout_s=60)
    # And a Redis that has lost the index of limit keys (flushed under running workers)
    redis_client.delete(keys.limit_index())

    text = _scrape(ChorusCollector(get_settings()))

    batch_of = {"batch": batch.id, "name": "metrics-run"}
    assert samples(text, "chorus_batch_info", **batch_of, state="done", route="realtime") == [1.0]
    assert samples(text, "chorus_batch_items", **batch_of, state="complete") == [5.0]
    assert samples(text, "chorus_batch_items", **batch_of, state="failed") == [0.0]
    assert samples(text, "chorus_batch_size", **batch_of) == [5.0]
    assert samples(text, "chorus_batch_tokens", **batch_of, kind="output") == [
        float(status.output_tokens)
    ]
    assert samples(text, "chorus_batch_calls", **batch_of) == [5.0]
    # And the bucket is still found, by name, showing the 5 grants
    assert samples(text, "chorus_limiter_granted_total", family="sonnet") == [5.0]
    assert samples(text, "chorus_limiter_capacity", family="sonnet", bucket="requests")
    assert samples(text, "chorus_queue_messages", queue=get_settings().worker.queue) == [0.0]
    assert samples(text, "chorus_up") == [1.0]


def test_with_redis_gone_a_scrape_says_so_quickly_and_registering_needs_no_redis() -> None:
    settings = load_settings(broker_url=f"redis://127.0.0.1:{free_port()}/0")
    registry = CollectorRegistry()
    started = time.monotonic()
    register(registry, settings=settings, timeout_s=0.5)
    text = generate_latest(registry).decode()
    assert time.monotonic() - started < 5
    assert samples(text, "chorus_up") == [0.0]
    assert samples(text, "chorus_batch_items") == samples(text, "chorus_limiter_level") == []
