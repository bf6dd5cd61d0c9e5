"""Prompt-cache accounting, the way the API reports it.

A block (tool, system block or message content block) carrying
`cache_control` (or the last block, when the request has a top-level
`cache_control`) ends a cacheable prefix: everything from the tools through
that block. For each call the longest prefix already cached is *read*; the
tokens from there up to the last marked block are *created* (written). Both
leave `input_tokens`, which then counts only what follows the last marked
block. Entries live 5 minutes (or 1 hour for `"ttl": "1h"`), renewed by each
read, as the API's ephemeral cache does. Prefixes are keyed by model, since
caches are per model.

As on the API, a prefix shorter than the model's minimum cacheable length
(`min_tokens`: `config.models.min_cache_tokens`, 512 to 4,096 tokens) is
not cached: its breakpoint is neither read nor written, without an error,
and its tokens count as plain input unless a later, long enough breakpoint
covers them. The local API's `cache_min_tokens` can lower the minimum (0:
none), so that small test prompts can exercise the accounting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from localapi.tokens import Part

DEFAULT_TTL_S = 300.0
_TTL_S = {"5m": 300.0, "1h": 3600.0}
# Expired entries are swept once the cache has grown by this many entries.
_SWEEP_EVERY = 10_000


def _ttl_s(cache_control: Any) -> float:
    if isinstance(cache_control, dict):
        return _TTL_S.get(str(cache_control.get("ttl", "5m")), DEFAULT_TTL_S)
    return DEFAULT_TTL_S


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """How a call's prompt meets the cache; `writes` are stored only if the call succeeds.

    `creation_1h_tokens` of the `creation_tokens` were written with the 1-hour
    TTL, the rest with the 5-minute one (`usage.cache_creation`): each
    written segment takes the TTL of the breakpoint that ends it.
    """

    read_tokens: int = 0
    creation_tokens: int = 0
    writes: tuple[tuple[str, float], ...] = field(default=())
    creation_1h_tokens: int = 0

    @property
    def creation_5m_tokens(self) -> int:
        return self.creation_tokens - self.creation_1h_tokens


NO_CACHE = CacheUsage()


class PromptCache:
    """Cached prefixes by digest, each with the unix time it expires."""

    def __init__(self) -> None:
        self._expires_at: dict[str, float] = {}
        self._size_at_sweep = 0

    def __len__(self) -> int:
        return len(self._expires_at)

    def clear(self) -> None:
        self._expires_at.clear()
        self._size_at_sweep = 0

    def lookup(
        self, model: str, parts: Sequence[Part], now: float, min_tokens: int = 0
    ) -> CacheUsage:
        """Read and creation tokens for a call made of `parts`; renews the prefix it reads.

        A breakpoint whose prefix (its tokens from the start through the marked
        block) is shorter than `min_tokens` is ignored: neither read nor written.
        """
        last_mark = max((i for i, part in enumerate(parts) if part.cache_control), default=-1)
        if last_mark < 0:
            return NO_CACHE
        hasher = hashlib.sha256(model.encode())
        breakpoints: list[tuple[int, str, float]] = []
        tokens = 0
        for part in parts[: last_mark + 1]:
            tokens += part.tokens
            hasher.update(json.dumps(part.payload, sort_keys=True).encode())
            if part.cache_control and tokens >= min_tokens:
                breakpoints.append((tokens, hasher.copy().hexdigest(), _ttl_s(part.cache_control)))
        if not breakpoints:
            # Prefixes only grow: when the last marked one is too short, all are.
            return NO_CACHE
        read_tokens = 0
        for prefix_tokens, digest, ttl_s in reversed(breakpoints):
            expires_at = self._expires_at.get(digest)
            if expires_at is not None and expires_at > now:
                read_tokens = prefix_tokens
                self._expires_at[digest] = max(expires_at, now + ttl_s)
                break
        writes = tuple((digest, ttl_s) for t, digest, ttl_s in breakpoints if t > read_tokens)
        one_hour = 0
        segment_start = read_tokens
        for prefix_tokens, _, ttl_s in breakpoints:
            if prefix_tokens > segment_start:
                if ttl_s >= _TTL_S["1h"]:
                    one_hour += prefix_tokens - segment_start
                segment_start = prefix_tokens
        return CacheUsage(read_tokens, tokens - read_tokens, writes, one_hour)

    def store(self, usage: CacheUsage, now: float) -> None:
        """Make the prefixes a successful call created readable by later calls."""
        for digest, ttl_s in usage.writes:
            self._expires_at[digest] = max(self._expires_at.get(digest, 0.0), now + ttl_s)
        if len(self._expires_at) - self._size_at_sweep > _SWEEP_EVERY:
            self._expires_at = {d: t for d, t in self._expires_at.items() if t > now}
            self._size_at_sweep = len(self._expires_at)
