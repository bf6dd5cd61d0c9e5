"""chorus's settings: one `Settings` object, read from the environment once.

Every variable starts with ``CHORUS_``; nested models use ``__`` as the
delimiter (``CHORUS_RETRY__MAX_ATTEMPTS=5``). The Anthropic SDK's own
``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` are honoured as they are.

A bad value stops start-up with :class:`SettingsError`, whose message is one
line naming the variable and what is wrong with it.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as _SourceError

from config.models import base_model
from config.prices import DEFAULT_LIMITS, DEFAULT_PRICES, ModelPrice

ENV_PREFIX = "CHORUS_"
NESTED_DELIMITER = "__"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# The current Sonnet (platform.claude.com/docs/en/models/overview lists
# claude-sonnet-5 as legacy): Anthropic's default for speed and intelligence.
DEFAULT_MODEL = "claude-sonnet-5-5"


class SettingsError(ValueError):
    """Raised when a setting is missing or invalid; the message is one line.

    It lives here rather than in ``workers/errors.py`` because ``config``
    depends on nothing else in chorus.
    """


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveFloat = Annotated[float, Field(gt=0)]


class AnthropicSettings(_Section):
    """How workers reach the Messages API."""

    default_model: str = Field(DEFAULT_MODEL, min_length=1)
    request_timeout_s: PositiveFloat = 600.0
    connect_timeout_s: PositiveFloat = 5.0
    # HTTP connections per worker process, one per thread making a call; a
    # thread past this many waits for one. 1000 is the SDK's own default.
    max_connections: int = Field(1000, ge=1)
    # How many times a turn a server tool paused (stop_reason pause_turn) is
    # sent back to let the model go on; each is a call of its own.
    max_continuations: int = Field(5, ge=0, le=100)
    # Calls with a max_tokens above this are streamed (0: every call): the SDK
    # refuses a non-streamed one expected to take over ten minutes, which is
    # max_tokens above 21,333 (3600 s x max_tokens / 128,000 > 600 s).
    stream_above_max_tokens: int = Field(21_333, ge=0)
    # A streamed call fails when no event (a token, a ping) comes for this long;
    # its length is not limited.
    stream_silence_timeout_s: PositiveFloat = 180.0


class RetrySettings(_Section):
    """Our retry policy (the SDK runs with ``max_retries=0``)."""

    max_attempts: int = Field(6, ge=1, le=100)
    base_delay_s: PositiveFloat = 1.0
    max_delay_s: PositiveFloat = 60.0
    # The longest single wait we accept, ``retry-after`` included. A server
    # asking for more fails the item as retryable instead of holding a slot.
    max_wait_s: PositiveFloat = 600.0

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetrySettings:
        if self.base_delay_s > self.max_delay_s:
            raise ValueError("base_delay_s must not exceed max_delay_s")
        if self.max_delay_s > self.max_wait_s:
            raise ValueError("max_delay_s must not exceed max_wait_s")
        return self


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity: a container's cpuset counts)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class WorkerSettings(_Section):
    """How a worker process runs tasks."""

    # Calls wait on the network, not the CPU: threads, many of them
    # (docs/ARCHITECTURE.md, "Threads, because calls wait").
    pool: str = "threads"
    concurrency: int = Field(100, ge=1, le=10_000)
    # Processes `chorus worker` starts; 0: two per CPU this process may use.
    # Each process has one GIL and one Celery consumer loop: two per core
    # beat one with twice the threads (bench/throughput.py, docs/PERFORMANCE.md).
    processes: int = Field(0, ge=0, le=256)
    queue: str = Field("chorus", min_length=1)
    # chorus's own deadline for one task, waits included; Celery's time
    # limits do not apply to the threads pool, so the task enforces it.
    task_time_limit_s: PositiveFloat = 1800.0
    # Redis redelivers an unacknowledged message after this long; it must
    # outlast the longest task or a running task is delivered twice.
    visibility_timeout_s: PositiveFloat = 3600.0
    # Past this many deliveries of one task, the item is dead-lettered.
    max_deliveries: int = Field(3, ge=1, le=100)
    # How often a worker looks for messages whose worker died (unacknowledged
    # past the visibility timeout) and puts them back in the queue.
    restore_interval_s: int = Field(10, ge=1)
    # Task events, which Flower lists tasks from. Flower turns them on in
    # every worker it sees (its --enable_events, on by default), so they cost
    # nothing while nobody watches; true sends them from the start.
    send_events: bool = False
    # A "task-sent" event per published task lets Flower list tasks still in
    # the queue, at half the producer's publish rate; off, Flower lists a
    # task once a worker receives it.
    send_sent_events: bool = False
    # Celery's INFO line for every task received and succeeded.
    log_tasks: bool = False
    # Where `chorus worker` writes each process's output (Celery's log, its
    # banner, a crash's traceback): one file per process, DIR/<node name>.log
    # (chorus1.log, ...), rotated. Unset: the terminal, each line prefixed with
    # its node name when there are several processes. A relative path is taken
    # from the directory `chorus worker` starts in.
    log_dir: Path | None = None
    # A log file past this many bytes is renamed .1 (the older ones .2, ...)
    # and a new one begun; this many renamed files are kept, the oldest dropped.
    log_max_bytes: int = Field(10 * 1024 * 1024, ge=64 * 1024)
    log_backups: int = Field(5, ge=0, le=1000)

    @property
    def process_count(self) -> int:
        """How many processes `chorus worker` starts: ``processes``, or two per usable CPU."""
        return self.processes or 2 * usable_cpus()

    @field_validator("pool")
    @classmethod
    def _known_pool(cls, value: str) -> str:
        allowed = {"threads", "prefork", "solo", "gevent", "eventlet"}
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(sorted(allowed))}")
        return value

    @field_validator("log_dir", mode="before")
    @classmethod
    def _a_directory_named(cls, value: Any) -> Any:
        # Path("") is the working directory: an empty value would write logs
        # wherever the command happened to start. Empty is invalid, as for
        # every other setting; leave the variable out for "the terminal".
        if isinstance(value, str) and not value.strip():
            raise ValueError("must name a directory (leave it unset for the terminal)")
        return value


class FamilyLimits(_Section):
    """One model family's rate limits, as Anthropic enforces them per organisation.

    Each limit refills continuously at its rate per minute, and its bucket holds
    ``burst_s`` seconds of that refill. Anthropic says a per-minute limit
    "might be enforced as" its per-second share (60 requests a minute as 1 a
    second) and that short bursts above it are refused
    (platform.claude.com/docs/en/api/rate-limits). chorus holds half of that
    second by default: the other half absorbs the delay between reserving a
    call and the API counting it (a call that arrives sooner after its
    reservation than the one before it did would otherwise find the API's
    bucket short, and earn a 429). The burst only shapes a start from idle;
    the steady rate is the full limit either way. A call costing more than the
    burst (a large ``max_tokens`` against a small output limit) waits for a
    full bucket and leaves it in debt.
    """

    requests_per_minute: int = Field(4_000, ge=0)
    input_tokens_per_minute: int = Field(2_000_000, ge=0)
    output_tokens_per_minute: int = Field(400_000, ge=0)
    burst_s: float = Field(0.5, gt=0, le=60)
    # A bucket's capacity set outright, overriding burst_s for that bucket.
    requests_capacity: int | None = Field(None, ge=0)
    input_tokens_capacity: int | None = Field(None, ge=0)
    output_tokens_capacity: int | None = Field(None, ge=0)
    # A call costing more than the burst waits this much past a full bucket: the
    # API admits it only on a full bucket of its own, with no slack for a call
    # arriving sooner after the last than it was reserved.
    jitter_s: float = Field(0.1, ge=0, le=10)
    # The debt bound: the longest wait a reservation may be granted. Beyond
    # it the caller is refused and told when to ask again.
    max_wait_s: float = Field(60.0, gt=0)
    # True once the user sets any of this family's limits: the server's figures
    # may then only lower them. False (the built-in guess, or the user's own
    # word): the first response's rate-limit headers replace them, up or down.
    configured: bool = False

    def per_minute(self) -> list[int]:
        """Refill per minute of the requests, input-token and output-token buckets."""
        return [
            self.requests_per_minute,
            self.input_tokens_per_minute,
            self.output_tokens_per_minute,
        ]

    def capacities(self) -> list[float]:
        """Capacity of the requests, input-token and output-token buckets (may be fractional)."""
        explicit = [self.requests_capacity, self.input_tokens_capacity, self.output_tokens_capacity]
        return [
            float(given) if given is not None else round(rate * self.burst_s / 60.0, 3)
            for given, rate in zip(explicit, self.per_minute(), strict=True)
        ]


class LimiterSettings(_Section):
    """How the cluster-wide rate limiter works (the limits themselves are ``limits``)."""

    enabled: bool = True
    # "local": characters / 3.5, free; "count_tokens": exact, one API request more.
    estimator: Literal["local", "count_tokens"] = "local"


class BatchSettings(_Section):
    """Batch input."""

    # A longer line is reported and skipped, never read whole. Big enough
    # for a request carrying a few images.
    max_line_bytes: int = Field(10 * 1024 * 1024, ge=1024)


class BatchesAPISettings(_Section):
    """How the Message Batches route polls the API (workers.batches_api)."""

    # Seconds before the first look at a Message Batch; each later look waits
    # twice as long, up to poll_max_s. Most batches end within an hour.
    poll_min_s: float = Field(10.0, gt=0)
    poll_max_s: float = Field(300.0, gt=0)


class CacheSettings(_Section):
    """Prompt caching of shared prefixes (orchestration.prefix, workers.prefix_gate)."""

    # Mark the prefixes a batch's items or a pattern's branches share with cache_control.
    enabled: bool = True
    # The longest a call waits, on its worker, for the call that writes its
    # group's prefix to return; then it goes anyway (and writes it too).
    lead_wait_s: float = Field(60.0, ge=0)


class ResultSettings(_Section):
    """How long finished results are kept in Redis."""

    # Seven days: long enough to come back after a weekend.
    expires_s: int = Field(7 * 24 * 3600, ge=60)


class Settings(BaseSettings):
    """Everything chorus reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        validate_default=True,
    )

    broker_url: str = DEFAULT_REDIS_URL
    # Defaults to the broker's Redis.
    result_url: str | None = None
    # Where finished calls are stored (idempotency). Defaults to the broker's
    # Redis; a separate, persistent one keeps what was paid for even when the
    # broker's Redis restarts empty.
    store_url: str | None = None

    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "CHORUS_ANTHROPIC_API_KEY"),
    )
    anthropic_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "CHORUS_ANTHROPIC_BASE_URL"),
    )

    anthropic: AnthropicSettings = AnthropicSettings()
    retry: RetrySettings = RetrySettings()
    worker: WorkerSettings = WorkerSettings()
    results: ResultSettings = ResultSettings()
    limiter: LimiterSettings = LimiterSettings()
    batch: BatchSettings = BatchSettings()
    batches: BatchesAPISettings = BatchesAPISettings()
    cache: CacheSettings = CacheSettings()
    limits: dict[str, FamilyLimits] = Field(default_factory=dict)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file, the file over the defaults.
        path = os.environ.get("CHORUS_CONFIG_FILE", "chorus.toml")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, path))

    @field_validator("limits", mode="before")
    @classmethod
    def _limits_over_defaults(cls, value: Any) -> Any:
        """Each family's settings over its defaults: naming one number changes one number."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {name: dict(v) for name, v in DEFAULT_LIMITS.items()}
        for name, given in value.items():
            base = dict(DEFAULT_LIMITS.get(str(name).lower(), DEFAULT_LIMITS["default"]))
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            merged[str(name).lower()] = (
                {**base, "configured": True, **given} if isinstance(given, dict) else given
            )
        return merged

    @field_validator("prices", mode="before")
    @classmethod
    def _prices_over_defaults(cls, value: Any) -> Any:
        """Each model's prices over its built-in row: naming one price changes one price."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {name: dict(row) for name, row in DEFAULT_PRICES.items()}
        for name, given in value.items():
            if isinstance(given, BaseModel):
                given = given.model_dump(exclude_unset=True)
            base = DEFAULT_PRICES.get(base_model(str(name)), {})
            merged[str(name)] = (
                {**base, **given, "source": "your settings"} if isinstance(given, dict) else given
            )
        return merged

    def price_for(self, model: str) -> ModelPrice | None:
        """The price of ``model`` (a dated snapshot priced as its base name), if known."""
        return self.prices.get(model) or self.prices.get(base_model(model))

    def limits_for(self, family: str) -> FamilyLimits:
        """The limits of a model family ("sonnet"), else the "default" ones."""
        found = self.limits.get(family) or self.limits.get("default")
        return found or FamilyLimits()

    @field_validator("broker_url", "result_url", "store_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("anthropic_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None  # set but empty, as compose does with ${VAR:-}
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("anthropic_api_key")
    @classmethod
    def _non_empty_key(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty variable means "not set", not "a key that is empty".
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @model_validator(mode="after")
    def _visibility_outlasts_tasks(self) -> Settings:
        longest_s = self.worker.task_time_limit_s + self.retry.max_wait_s
        if self.worker.visibility_timeout_s <= longest_s:
            raise ValueError(
                f"worker.visibility_timeout_s ({self.worker.visibility_timeout_s:g} s) must "
                f"exceed worker.task_time_limit_s plus retry.max_wait_s ({longest_s:g} s), "
                "or Redis delivers a running task twice"
            )
        return self

    @property
    def result_backend_url(self) -> str:
        return self.result_url or self.broker_url

    @property
    def store_redis_url(self) -> str:
        return self.store_url or self.broker_url

    @property
    def uses_real_api(self) -> bool:
        """True when calls go to Anthropic rather than a local stand-in."""
        return self.anthropic_api_key is not None and self.anthropic_base_url is None

    def explicitly_set(self, field: str) -> bool:
        return field in self.model_fields_set


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable behind a validation error's location."""
    parts = [str(part) for part in loc if not isinstance(part, int)]
    if not parts:
        return "settings"
    if parts[0].isupper():  # already an alias such as ANTHROPIC_BASE_URL
        return parts[0]
    field = Settings.model_fields.get(parts[0])
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        first = field.validation_alias.choices[0]
        return str(first)
    return ENV_PREFIX + NESTED_DELIMITER.join(parts).upper()


def _describe(error: dict[str, Any]) -> str:
    loc: tuple[int | str, ...] = tuple(error.get("loc", ()))
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    # A model-level check has no field location: name what it names instead.
    if not loc and "worker.visibility_timeout_s" in message:
        loc = ("worker", "visibility_timeout_s")
    name = env_name(loc)
    value = os.environ.get(name)
    shown = f"={value}" if value is not None and "KEY" not in name else ""
    return f"{name}{shown}: {message}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (and keyword overrides).

    Raises:
        SettingsError: one line naming each bad variable and what is wrong.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise SettingsError("; ".join(_describe(dict(e)) for e in errors)) from None
    except _SourceError as exc:  # a nested section given as bad JSON
        match = re.search(r'field "(\w+)"', str(exc))
        name = env_name((match.group(1),)) if match else "a CHORUS_ variable"
        raise SettingsError(f"{name}: is not valid JSON") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return load_settings()
