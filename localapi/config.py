"""The knobs of the local Anthropic API, as one value object (its options: `localapi.cli`).

`LocalAPIConfig` is frozen: a change at run time (`POST /_mock/config`,
`LocalAPIServer.configure`) builds a new one with `with_changes`, which checks
names, types and ranges the same way the constructor does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UNLIMITED = None
MIB = 1024 * 1024

# The kind of every field, for checking values that arrive as JSON at run time.
_FLOAT, _INT, _OPT_INT, _STR, _OPT_STR = "float", "int", "int or null", "str", "str or null"
_BOOL = "bool"
_FIELD_KINDS: dict[str, str] = {
    "host": _STR,
    "port": _INT,
    "latency_ms": _FLOAT,
    "jitter_ms": _FLOAT,
    "ms_per_output_token": _FLOAT,
    "rpm": _OPT_INT,
    "itpm": _OPT_INT,
    "otpm": _OPT_INT,
    "limit_interval_s": _FLOAT,
    "rate_429": _FLOAT,
    "rate_529": _FLOAT,
    "rate_500": _FLOAT,
    "rate_hang": _FLOAT,
    "rate_malformed": _FLOAT,
    "rate_refusal": _FLOAT,
    "rate_context_exceeded": _FLOAT,
    "rate_pause_turn": _FLOAT,
    "rate_stream_error": _FLOAT,
    "rate_stream_cut": _FLOAT,
    "rate_invalid_output": _FLOAT,
    "thinking_scale": _FLOAT,
    "hang_s": _FLOAT,
    "retry_after_s": _FLOAT,
    "seed": _INT,
    "api_key": _OPT_STR,
    "context_window": _OPT_INT,
    "max_output_tokens": _OPT_INT,
    "cache_min_tokens": _OPT_INT,
    "max_body_bytes": _INT,
    "reply_min_tokens": _INT,
    "reply_max_tokens": _INT,
    "script_path": _OPT_STR,
    "log_size": _INT,
    "honest_billing": _BOOL,
    "batch_processing_s": _FLOAT,
    "batch_expires_s": _FLOAT,
    "batch_rate_errored": _FLOAT,
    "batch_rate_expired": _FLOAT,
    "batch_max_requests": _INT,
    "batch_max_bytes": _INT,
}
# The listening socket and the start-up script are fixed once the server runs.
FIXED_AT_RUN_TIME = frozenset({"host", "port", "script_path"})
# Faults drawn per call, in this order on [0, 1). The first five answer an
# error (or never, or garbage); the next three answer 200 with an outcome other
# than a complete answer; the last two break a streamed answer part way (a
# call that does not stream draws them as no fault).
FAULT_KINDS = (
    "429", "529", "500", "hang", "malformed",
    "refusal", "context_exceeded", "pause_turn",
    "stream_error", "stream_cut",
)  # fmt: skip
OUTCOME_FAULTS = frozenset({"refusal", "context_exceeded", "pause_turn"})
STREAM_FAULTS = frozenset({"stream_error", "stream_cut"})


def _kind_ok(value: object, kind: str) -> bool:
    if value is None:
        return kind in (_OPT_INT, _OPT_STR)
    if isinstance(value, bool):
        return kind == _BOOL
    if kind == _BOOL:
        return False
    if kind == _FLOAT:
        return isinstance(value, int | float)
    if kind in (_INT, _OPT_INT):
        return isinstance(value, int)
    return isinstance(value, str)


@dataclass(frozen=True, slots=True)
class LocalAPIConfig:
    """Everything the local API can be told; a limit of None or 0 means unlimited."""

    host: str = "127.0.0.1"
    port: int = 8765
    latency_ms: float = 100.0
    jitter_ms: float = 0.0
    ms_per_output_token: float = 0.0
    rpm: int | None = UNLIMITED
    itpm: int | None = UNLIMITED
    otpm: int | None = UNLIMITED
    # Each per-minute limit is enforced over this many seconds of its refill
    # (localapi.buckets): 1 s, the strictest the documentation names; 60 lets
    # a whole minute's worth through at once.
    limit_interval_s: float = 1.0
    rate_429: float = 0.0
    rate_529: float = 0.0
    rate_500: float = 0.0
    rate_hang: float = 0.0
    rate_malformed: float = 0.0
    rate_refusal: float = 0.0
    rate_context_exceeded: float = 0.0
    rate_pause_turn: float = 0.0
    rate_stream_error: float = 0.0
    rate_stream_cut: float = 0.0
    # The share of answers to structured requests (localapi.structured) that come
    # back invalid: not JSON, or JSON that breaks the schema. Not a fault of the
    # call (not in FAULT_KINDS, not in their sum): it applies to an answer the
    # call gets, on top of them.
    rate_invalid_output: float = 0.0
    # Scales how much adaptive thinking spends (localapi.thinking.EFFORT_RANGES).
    thinking_scale: float = 1.0
    hang_s: float = 3600.0
    retry_after_s: float = 1.0
    seed: int = 0
    api_key: str | None = None
    # None: each model's own, from config.models.
    context_window: int | None = None
    max_output_tokens: int | None = None
    # The shortest prefix cached (localapi.cache). None: each model's own, from
    # config.models; a number overrides it for every model (0: no minimum).
    cache_min_tokens: int | None = None
    max_body_bytes: int = 32 * MIB
    reply_min_tokens: int = 20
    reply_max_tokens: int = 120
    script_path: str | None = None
    log_size: int = 200_000
    # A call whose client went away is finished and billed all the same, as the
    # real API may do (it does not promise to stop work nobody waits for): then
    # the stats' duplicates_paid counts every call paid twice, the forgiving
    # default's aborted calls included. Off: such a call stops, unbilled.
    honest_billing: bool = False
    # Message Batches (localapi.batches): how long a batch's processing takes,
    # after how long a batch expires (its unprocessed requests end "expired"),
    # the shares of requests that end errored (a retryable api_error) or
    # expired, and the documented size limits.
    batch_processing_s: float = 1.0
    batch_expires_s: float = 24 * 3600.0
    batch_rate_errored: float = 0.0
    batch_rate_expired: float = 0.0
    batch_max_requests: int = 100_000
    batch_max_bytes: int = 256 * MIB

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value is unusable."""
        for name, kind in _FIELD_KINDS.items():
            value = getattr(self, name)
            if not _kind_ok(value, kind):
                raise ValueError(f"{name}: expected {kind}, got {value!r}")
        for name in (
            "latency_ms", "jitter_ms", "ms_per_output_token", "hang_s", "retry_after_s",
            "thinking_scale", "batch_processing_s",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if not 0 < self.limit_interval_s <= 60:
            raise ValueError("limit_interval_s: must be more than 0 and at most 60")
        for name in ("rpm", "itpm", "otpm"):
            limit = getattr(self, name)
            if limit is not None and limit < 0:
                raise ValueError(f"{name}: must be >= 0 (0 or null means unlimited)")
        rates = self.fault_rates()
        for kind, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate_{kind}: must be between 0 and 1")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates: their sum must not exceed 1")
        if not 0.0 <= self.rate_invalid_output <= 1.0:
            raise ValueError("rate_invalid_output: must be between 0 and 1")
        if not 0 <= self.port <= 65535:
            raise ValueError("port: must be between 0 and 65535")
        if self.batch_expires_s <= 0:
            raise ValueError("batch_expires_s: must be more than 0")
        batch_rates = self.batch_rate_errored + self.batch_rate_expired
        if min(self.batch_rate_errored, self.batch_rate_expired) < 0 or batch_rates > 1 + 1e-9:
            raise ValueError("batch_rate_errored, batch_rate_expired: each >= 0, their sum <= 1")
        for name in (
            "context_window", "max_output_tokens", "max_body_bytes", "log_size",
            "batch_max_requests", "batch_max_bytes",
        ):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be >= 1")
        if self.cache_min_tokens is not None and self.cache_min_tokens < 0:
            raise ValueError("cache_min_tokens: must be >= 0 (null: each model's own)")
        if self.reply_min_tokens < 1 or self.reply_max_tokens < self.reply_min_tokens:
            raise ValueError("reply_min_tokens/reply_max_tokens: need 1 <= min <= max")

    def fault_rates(self) -> dict[str, float]:
        """The injected-fault rates keyed by fault kind ("429", ..., "malformed")."""
        return {kind: float(getattr(self, f"rate_{kind}")) for kind in FAULT_KINDS}

    def with_changes(self, changes: Mapping[str, Any]) -> LocalAPIConfig:
        """A copy with `changes` applied; ValueError on an unknown or fixed field or a bad value."""
        for name in changes:
            if name not in _FIELD_KINDS:
                raise ValueError(f"{name}: no such setting")
            if name in FIXED_AT_RUN_TIME:
                raise ValueError(f"{name}: cannot be changed while the server runs")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """A one-line summary: latency, limits and faults."""
        latency = f"latency {self.latency_ms:g} ms"
        if self.jitter_ms:
            latency += f" ± {self.jitter_ms:g}"
        limits = [
            f"{name} {getattr(self, name)}"
            for name in ("rpm", "itpm", "otpm")
            if getattr(self, name)
        ]
        faults = [f"{kind} {rate:.1%}" for kind, rate in self.fault_rates().items() if rate > 0]
        if self.rate_invalid_output > 0:
            faults.append(f"invalid output {self.rate_invalid_output:.1%}")
        return (
            f"{latency}, limits: {', '.join(limits) or 'unlimited'}, "
            f"faults: {', '.join(faults) or 'none'}"
        )
