"""What a worker process builds once and shares between its threads.

One SDK client (its connection pool reused by every call), one Redis client,
the limiter and the result store. Built on first use, rebuilt in a child
process after a fork (prefork pool), never shared across processes.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis

from config.settings import Settings, get_settings
from workers.call import CallDeps
from workers.errors import ChorusError
from workers.ledger import Ledger
from workers.models import CallRequest
from workers.provider import Provider
from workers.ratelimit import build_limiter
from workers.ratelimit.backend import RateLimiter
from workers.ratelimit.estimate import estimate_input_tokens
from workers.ratelimit.limitkey import api_fingerprint, bucket_id
from workers.retry import RetryPolicy
from workers.store import ResultStore


@dataclass
class Runtime:
    settings: Settings
    redis: redis.Redis
    provider: Provider
    limiter: RateLimiter
    store: ResultStore
    ledger: Ledger
    deps: CallDeps
    pid: int


_lock = threading.Lock()
_runtime: Runtime | None = None


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry_on_timeout=True,
    )


def endpoint_fingerprint(base_url: str | None, api_key: str | None) -> str:
    """Which API answers, as a short hash: results are only shared within one."""
    return hashlib.sha256(
        f"{base_url or 'anthropic'}|{api_fingerprint(api_key)}".encode()
    ).hexdigest()[:12]


def counted_or_estimated(provider: Provider) -> Callable[[CallRequest], int]:
    """Exact counts from the API, the local estimate when counting fails."""

    def count(request: CallRequest) -> int:
        try:
            return provider.count_tokens(request)
        except ChorusError:
            return estimate_input_tokens(request)

    return count


def build_runtime(settings: Settings) -> Runtime:
    client = redis_client(settings.broker_url)
    api_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None
    provider = Provider(
        api_key=api_key,
        base_url=settings.anthropic_base_url,
        timeout_s=settings.anthropic.request_timeout_s,
        connect_timeout_s=settings.anthropic.connect_timeout_s,
        max_connections=settings.anthropic.max_connections,
        stream_above_max_tokens=settings.anthropic.stream_above_max_tokens,
        stream_silence_s=settings.anthropic.stream_silence_timeout_s,
    )
    limiter = build_limiter(settings, client)
    store_client = (
        client
        if settings.store_redis_url == settings.broker_url
        else redis_client(settings.store_redis_url)
    )
    store = ResultStore(
        store_client,
        endpoint=endpoint_fingerprint(settings.anthropic_base_url, api_key),
        ttl_s=settings.results.expires_s,
        # A lease, renewed while its holder lives: a dead worker's claim
        # lapses within this, and a redelivery takes over.
        claim_ttl_s=min(30.0, max(2.0, settings.worker.task_time_limit_s / 4)),
    )
    deps = CallDeps(
        provider=provider,
        limiter=limiter,
        store=store,
        policy=RetryPolicy.from_settings(settings.retry),
        bucket_id=lambda model: bucket_id(api_key, model),
        estimate_input_tokens=(
            counted_or_estimated(provider)
            if settings.limiter.estimator == "count_tokens"
            else estimate_input_tokens
        ),
        request_timeout_s=settings.anthropic.request_timeout_s,
        max_continuations=settings.anthropic.max_continuations,
        price_for=settings.price_for,
    )
    ledger = Ledger(client, expires_s=settings.results.expires_s)
    return Runtime(settings, client, provider, limiter, store, ledger, deps, os.getpid())


def get_runtime() -> Runtime:
    global _runtime
    current = _runtime
    if current is not None and current.pid == os.getpid():
        return current
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            _runtime = build_runtime(get_settings())
        return _runtime


def reset_runtime() -> None:
    global _runtime
    with _lock:
        if _runtime is not None and _runtime.pid == os.getpid():
            _runtime.provider.close()
        _runtime = None
