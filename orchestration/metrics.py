"""chorus's own figures for Prometheus: batches, the queue and the rate limiter.

Flower serves prometheus_client's default registry on ``/metrics``. Run it as
``celery -A orchestration.flowerapp flower`` and :class:`ChorusCollector` is in
that registry too; it reads Redis on each scrape, so the figures are the
cluster's, whichever machine Flower runs on (docs/FLEET.md lists them):

- ``chorus_up``: 1 when Redis answered this scrape; else it is the only figure.
- ``chorus_queue_messages{queue}``, ``chorus_queue_unacked_messages``: the backlog,
  and the messages workers hold unacknowledged.
- ``chorus_batch_info{batch,name,state,route}``, ``chorus_batch_items{batch,name,state}``
  (pending, running, waiting, complete, failed...),
  ``chorus_batch_outcomes{batch,name,outcome}`` (complete, truncated,
  truncated_by_thinking, refused, ..., failed), ``chorus_batch_size``,
  ``chorus_batch_tokens{...,kind}``, ``chorus_batch_cost_usd``,
  ``chorus_batch_calls``, ``chorus_batch_rate_limit_wait_seconds``; on the
  ``batches`` and ``auto`` routes ``chorus_batch_message_batch_items{...,status}``
  (items by their Message Batch's status) and ``chorus_batch_pulled_back_items``.
- ``chorus_limiter_level{key,family,bucket}``, ``_capacity``,
  ``_refill_per_minute``, ``_cooldown_seconds{key,family}``, and the counters
  ``_granted_total``, ``_refused_total``, ``_waited_seconds_total``,
  ``_cooldowns_total`` (429s).

``key`` is a limit key: a short hash of the API key and the model family,
never the key itself.

Warning:
    Flower answers ``/metrics`` on its event loop, so a scrape blocks Flower
    while Redis is read: a handful of round trips, and at most
    ``timeout_s`` (default 2 s) each when Redis does not answer. Only the
    ``batches`` newest batches are reported, which bounds both that time and
    the number of series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry

from config.settings import Settings, get_settings
from workers import keys
from workers.errors import LimiterUnavailable
from workers.ledger import STATE_NAMES, BatchStatus, Ledger, as_text
from workers.outcomes import Outcome
from workers.ratelimit.backends.redis import RedisLimiter
from workers.ratelimit.limitkey import api_fingerprint, family_of_key, model_family

DEFAULT_BATCHES = 20
# kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED_KEY = "unacked"
TOKEN_KINDS = ("input", "output", "cache_write", "cache_read")
OUTCOMES = tuple(outcome.value for outcome in Outcome)
MESSAGE_BATCH_STATUSES = ("in_progress", "canceling", "ended", "read")


class ChorusCollector:
    """A prometheus_client collector reading chorus's state from Redis on each scrape."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        batches: int = DEFAULT_BATCHES,
        timeout_s: float = 2.0,
    ) -> None:
        self._settings = settings or get_settings()
        self._batches = batches
        self._redis = redis.Redis.from_url(
            self._settings.broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._limiter = RedisLimiter(self._redis, self._settings.limits_for)
        self._ledger = Ledger(self._redis, expires_s=self._settings.results.expires_s)

    def describe(self) -> Iterable[Metric]:
        # Names only: registering must not need Redis.
        return list(_Families().all())

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        try:
            self._read(families)
        except (redis.RedisError, LimiterUnavailable):
            # A partial read is not reported: no family but chorus_up.
            families = _Families()
            families.up.add_metric([], 0)
            return [families.up]
        families.up.add_metric([], 1)
        return list(families.all())

    def _read(self, f: _Families) -> None:
        queue = self._settings.worker.queue
        pipe = self._redis.pipeline(transaction=False)
        pipe.llen(queue)
        pipe.hlen(UNACKED_KEY)
        pipe.smembers(keys.limit_index())
        queued, unacked, limit_keys = pipe.execute()
        f.queue.add_metric([queue], queued)
        f.unacked.add_metric([], unacked)

        for status in self._ledger.statuses(self._ledger.recent_ids(self._batches)):
            if status is not None:  # expired or removed since it was indexed
                _add_batch(f, status)
                if status.route != "realtime":
                    _add_routed(f, status, self._ledger.upstream(status.id))

        for key in self._limit_keys({as_text(raw) for raw in limit_keys}):
            _add_limit(f, self._limiter, key)

    def _limit_keys(self, indexed: set[str]) -> list[str]:
        """The limit keys in use: those indexed, and this API key's for each known family.

        The index is written once per worker process, so a Redis that lost it
        (flushed, or restarted without its file) under running workers would
        hide their buckets; the buckets themselves are found by name.
        """
        settings = self._settings
        api_key = settings.anthropic_api_key
        fingerprint = api_fingerprint(api_key.get_secret_value() if api_key else None)
        families = {*settings.limits, model_family(settings.anthropic.default_model)}
        families |= {model_family(model) for model in settings.prices}
        guessed = sorted({f"{fingerprint}:{family}" for family in families} - indexed)
        pipe = self._redis.pipeline(transaction=False)
        for key in guessed:
            pipe.exists(keys.limit(key))
        found = [key for key, exists in zip(guessed, pipe.execute(), strict=True) if exists]
        return sorted(indexed | set(found))


def _add_batch(f: _Families, status: BatchStatus) -> None:
    labels = [status.id, status.name or ""]
    f.batch_info.add_metric([*labels, status.state, status.route], 1)
    for state in STATE_NAMES.values():
        f.batch_items.add_metric([*labels, state], status.count(state))
    outcomes = status.outcomes
    for outcome in OUTCOMES:
        f.batch_outcomes.add_metric([*labels, outcome], outcomes.get(outcome, 0))
    f.batch_total.add_metric(labels, status.total)
    tokens = (
        status.input_tokens,
        status.output_tokens,
        status.cache_write_tokens,
        status.cache_read_tokens,
    )
    for kind, count in zip(TOKEN_KINDS, tokens, strict=True):
        f.batch_tokens.add_metric([*labels, kind], count)
    f.batch_cost.add_metric(labels, status.cost_usd)
    f.batch_calls.add_metric(labels, status.calls)
    f.batch_wait.add_metric(labels, status.rate_limit_wait_s)


def _add_routed(f: _Families, status: BatchStatus, upstream: dict[str, dict[str, Any]]) -> None:
    """The Message Batches route's figures: items by Message Batch status, items taken back."""
    labels = [status.id, status.name or ""]
    by_status: dict[str, int] = dict.fromkeys(MESSAGE_BATCH_STATUSES, 0)
    for record in upstream.values():
        name = str(record.get("status", "in_progress"))
        by_status[name] = by_status.get(name, 0) + len(record.get("indexes", []))
    for name, count in by_status.items():
        f.batch_upstream.add_metric([*labels, name], count)
    f.batch_pulled_back.add_metric(labels, status.pulled_back)


def _add_limit(f: _Families, limiter: RedisLimiter, key: str) -> None:
    state = limiter.state(key)
    labels = [key, family_of_key(key)]
    for bucket in state.buckets:
        f.level.add_metric([*labels, bucket.bucket], bucket.level)
        f.capacity.add_metric([*labels, bucket.bucket], bucket.capacity)
        f.refill.add_metric([*labels, bucket.bucket], bucket.per_minute)
    f.cooldown.add_metric(labels, state.cooldown_s)
    f.granted.add_metric(labels, state.granted)
    f.refused.add_metric(labels, state.refused)
    f.waited.add_metric(labels, state.waited_s)
    f.cooldowns.add_metric(labels, state.cooldowns)


class _Families:
    """One scrape's metric families, empty until filled."""

    def __init__(self) -> None:
        batch = ["batch", "name"]
        limit = ["key", "family"]
        self.up = GaugeMetricFamily("chorus_up", "1 when chorus's Redis answered this scrape")
        self.queue = GaugeMetricFamily(
            "chorus_queue_messages", "Messages waiting in the queue", labels=["queue"]
        )
        self.unacked = GaugeMetricFamily(
            "chorus_queue_unacked_messages",
            "Messages delivered to a worker and not yet acknowledged",
            labels=[],
        )
        self.batch_info = GaugeMetricFamily(
            "chorus_batch_info",
            "A batch, its state and its route (realtime, batches, auto)",
            labels=[*batch, "state", "route"],
        )
        self.batch_upstream = GaugeMetricFamily(
            "chorus_batch_message_batch_items",
            "A batch's items in Message Batches, by the Message Batch's status "
            "(in_progress, canceling, ended, read: its results ended the items)",
            labels=[*batch, "status"],
        )
        self.batch_pulled_back = GaugeMetricFamily(
            "chorus_batch_pulled_back_items",
            "Items the auto route took back from the Message Batches API to real time",
            labels=batch,
        )
        self.batch_items = GaugeMetricFamily(
            "chorus_batch_items", "Items of a batch in each state", labels=[*batch, "state"]
        )
        self.batch_outcomes = GaugeMetricFamily(
            "chorus_batch_outcomes",
            "Items of a batch by how their call ended (only complete is a success)",
            labels=[*batch, "outcome"],
        )
        self.batch_total = GaugeMetricFamily("chorus_batch_size", "Items in a batch", labels=batch)
        self.batch_tokens = GaugeMetricFamily(
            "chorus_batch_tokens", "Tokens a batch used, by kind", labels=[*batch, "kind"]
        )
        self.batch_cost = GaugeMetricFamily(
            "chorus_batch_cost_usd", "What a batch spent, at list price", labels=batch
        )
        self.batch_calls = GaugeMetricFamily(
            "chorus_batch_calls", "API calls a batch made, retries included", labels=batch
        )
        self.batch_wait = GaugeMetricFamily(
            "chorus_batch_rate_limit_wait_seconds",
            "Time a batch's calls waited for the rate limit",
            labels=batch,
        )
        self.level = GaugeMetricFamily(
            "chorus_limiter_level", "What a bucket holds now", labels=[*limit, "bucket"]
        )
        self.capacity = GaugeMetricFamily(
            "chorus_limiter_capacity", "What a bucket holds when full", labels=[*limit, "bucket"]
        )
        self.refill = GaugeMetricFamily(
            "chorus_limiter_refill_per_minute", "A bucket's refill rate", labels=[*limit, "bucket"]
        )
        self.cooldown = GaugeMetricFamily(
            "chorus_limiter_cooldown_seconds",
            "Time left of the cooldown after a 429",
            labels=limit,
        )
        self.granted = CounterMetricFamily(
            "chorus_limiter_granted", "Reservations granted", labels=limit
        )
        self.refused = CounterMetricFamily(
            "chorus_limiter_refused", "Reservations refused (past the longest wait)", labels=limit
        )
        self.waited = CounterMetricFamily(
            "chorus_limiter_waited_seconds", "Time callers were told to wait", labels=limit
        )
        self.cooldowns = CounterMetricFamily(
            "chorus_limiter_cooldowns", "Cooldowns started by a 429 from the API", labels=limit
        )

    def all(self) -> Iterator[Metric]:
        for value in vars(self).values():
            if isinstance(value, Metric):
                yield value


_registered: ChorusCollector | None = None
_lock = threading.Lock()


def register(registry: CollectorRegistry = REGISTRY, **options: Any) -> ChorusCollector:
    """Add a :class:`ChorusCollector` to ``registry`` (once per process for the default)."""
    global _registered
    with _lock:
        if registry is REGISTRY and _registered is not None:
            return _registered
        collector = ChorusCollector(**options)
        registry.register(collector)
        if registry is REGISTRY:
            _registered = collector
        return collector
