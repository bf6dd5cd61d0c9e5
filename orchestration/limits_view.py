"""Tables for ``chorus limits``: the configured limits, and the live buckets in Redis."""

from __future__ import annotations

import time

from rich.markup import escape
from rich.table import Table

from config.settings import Settings
from workers import keys
from workers.ratelimit.backends.redis import RedisLimiter
from workers.ratelimit.limitkey import api_fingerprint, family_of_key
from workers.runtime import redis_client


def configured_table(settings: Settings) -> Table:
    table = Table(title="rate limits per model family (per minute; capacity in brackets)")
    for column in ("family", "requests", "input tokens", "output tokens", "max wait", "from"):
        table.add_column(column, justify="left" if column in ("family", "from") else "right")
    for family in sorted(settings.limits, key=lambda f: (f != "default", f)):
        limits = settings.limits_for(family)
        cells = [
            f"{rate:,} ({capacity:,})"
            for rate, capacity in zip(limits.per_minute(), limits.capacities(), strict=True)
        ]
        source = "config" if limits.configured else "built-in guess: learned from the API"
        table.add_row(family, *cells, f"{limits.max_wait_s:g} s", source)
    enabled = "on" if settings.limiter.enabled else "OFF (CHORUS_LIMITER__ENABLED=false)"
    table.caption = (
        f"limiter {enabled}; input estimate: {settings.limiter.estimator}; families not listed "
        "use 'default'. A built-in guess is replaced by the limits the API states in its "
        "first answer (the first call goes alone); limits you set stay a cap. Set "
        "CHORUS_LIMITS__<FAMILY>__REQUESTS_PER_MINUTE=... or "
        + escape("[limits.<family>]")
        + " in chorus.toml; `chorus limits --live` shows what was learned."
    )
    return table


def live_table(settings: Settings) -> Table:
    client = redis_client(settings.broker_url)
    limiter = RedisLimiter(client, settings.limits_for)
    mine = (
        api_fingerprint(settings.anthropic_api_key.get_secret_value())
        if settings.anthropic_api_key
        else None
    )
    table = Table(title="rate limiter, live (levels: available / capacity)")
    for column in ("key", "family", "limits", "requests", "input tok", "output tok",
                   "cooldown", "granted", "refused", "waited", "429s"):  # fmt: skip
        table.add_column(
            column, justify="left" if column in ("key", "family") else "right", no_wrap=True
        )
    for raw in sorted(client.smembers(keys.limit_index())):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        state = limiter.state(key)
        fingerprint = key.split(":", 1)[0]
        label = fingerprint + (" (this key)" if fingerprint == mine else "")
        levels = [
            f"{b.level:,.0f} / {b.capacity:,.0f} ({b.per_minute:,}/min)" for b in state.buckets
        ]
        table.add_row(
            label,
            family_of_key(key),
            _source(state.configured, state.learned_at),
            *levels,
            f"{state.cooldown_s:.1f} s" if state.cooldown_s else "-",
            f"{state.granted:,}",
            f"{state.refused:,}",
            f"{state.waited_s:,.1f} s",
            f"{state.cooldowns:,}",
        )
    if not table.rows:
        table.caption = "no limit key has been used yet"
    return table


def _source(configured: bool, learned_at: float | None) -> str:
    """Where a key's limits come from: the user's settings, or the API's own headers."""
    told = (
        f"the API said at {time.strftime('%H:%M:%S', time.localtime(learned_at))}"
        if learned_at is not None
        else "not yet told"
    )
    return f"configured ({told})" if configured else f"learned: {told}"
