"""What a task takes and what it gives back: a validated request and a result envelope.

A :class:`CallRequest` is one Messages API call. It is validated before it is
enqueued (so a typo fails at the producer, with the field named) and again
when a worker decodes it. An :class:`Envelope` is what every call returns,
success or failure (DESIGN.md decision 1): expected failures are values, not
exceptions, so a chord's callback still runs when one branch failed.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from workers.errors import ChorusError

# The API version that still takes sampling parameters; SDK 2.x sends
# 2026-10-21, which answers 400 to temperature, top_p and top_k.
SAMPLING_API_VERSION = "2023-06-01"
KEY_VERSION = "v1"

_MODEL_VERSION = re.compile(r"^claude-(opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?:-\d{8})?$")


def accepts_sampling_params(model: str) -> bool | None:
    """Whether ``model`` takes temperature, top_p and top_k; None when unknown.

    Anthropic removed them from Opus 4.7, Sonnet 5, Haiku 5 and every later
    or newer-named model (Fable, Mythos); the 3.x line and Opus/Sonnet up to
    4.6 and Haiku up to 4.5 still take them on API version 2023-06-01.
    """
    if model.startswith("claude-3"):
        return True
    match = _MODEL_VERSION.match(model)
    if match is None:
        return False if model.startswith(("claude-fable", "claude-mythos")) else None
    family, major, minor = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    last_with_sampling = (4, 5) if family == "haiku" else (4, 6)
    return (major, minor) <= last_with_sampling


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Model):
    """One turn of the conversation."""

    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]

    @field_validator("content")
    @classmethod
    def _non_empty(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("must not be empty")
            return value
        if not value:
            raise ValueError("must hold at least one content block")
        for index, block in enumerate(value):
            if not isinstance(block.get("type"), str):
                raise ValueError(f"block {index} has no 'type'")
            if block["type"] == "text" and not isinstance(block.get("text"), str):
                raise ValueError(f"text block {index} has no 'text' string")
        return value

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(b["text"] for b in self.content if b.get("type") == "text")


class Metadata(_Model):
    user_id: str | None = Field(None, max_length=256)


class CallRequest(_Model):
    """One Messages API call, as a worker will send it.

    ``sample`` is chorus's own: the index of a sample when the same request
    is made several times (voting). It is part of the idempotency key, so n
    samples are n calls, and it is never sent to the API.
    """

    model: str = Field(min_length=1, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=100_000)
    max_tokens: int = Field(ge=0, le=1_000_000)
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    stop_sequences: list[str] | None = Field(None, max_length=8192)
    metadata: Metadata | None = None
    # Passed through as they are: their shapes are the API's business.
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    sample: int = Field(0, ge=0)

    @field_validator("stop_sequences")
    @classmethod
    def _stop_sequences(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not s for s in value):
            raise ValueError("must not contain an empty string")
        return value

    @field_validator("system")
    @classmethod
    def _system(cls, value: str | list[dict[str, Any]] | None) -> Any:
        if isinstance(value, list):
            for index, block in enumerate(value):
                if block.get("type") != "text" or not isinstance(block.get("text"), str):
                    raise ValueError(f"block {index} must be a text block with a 'text' string")
        return value

    @model_validator(mode="after")
    def _sampling_params_for_model(self) -> CallRequest:
        used = [n for n in ("temperature", "top_p", "top_k") if getattr(self, n) is not None]
        if used and accepts_sampling_params(self.model) is False:
            raise ValueError(
                f"{used[0]}: {self.model} does not accept sampling parameters "
                "(Anthropic removed temperature, top_p and top_k from Opus 4.7, Sonnet 5 "
                "and later models); leave them out"
            )
        return self

    @property
    def uses_sampling_params(self) -> bool:
        return any(v is not None for v in (self.temperature, self.top_p, self.top_k))

    def api_params(self) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` (sampling ones excluded)."""
        params = self.model_dump(
            mode="json",
            exclude_none=True,
            exclude={"sample", "temperature", "top_p", "top_k"},
        )
        return params

    def sampling_params(self) -> dict[str, Any]:
        return {
            name: value
            for name in ("temperature", "top_p", "top_k")
            if (value := getattr(self, name)) is not None
        }

    def key(self) -> str:
        """The content address of this call: equal requests share it, samples do not."""
        body = self.model_dump(mode="json", exclude_none=True)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]
        return f"{KEY_VERSION}:{digest}"

    def prompt_text(self) -> str:
        """System and message text joined: for estimates, previews and logs."""
        parts: list[str] = []
        if isinstance(self.system, str):
            parts.append(self.system)
        elif self.system:
            parts.extend(b["text"] for b in self.system)
        parts.extend(m.text() for m in self.messages)
        return "\n".join(parts)

    def preview(self, limit: int = 80) -> str:
        """The last user message, shortened: what Flower shows."""
        last = next((m for m in reversed(self.messages) if m.role == "user"), self.messages[-1])
        text = " ".join(last.text().split())
        return text if len(text) <= limit else text[: limit - 3] + "..."


class Usage(BaseModel):
    """Tokens as the API reports them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=(
                self.cache_creation_input_tokens + other.cache_creation_input_tokens
            ),
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


class ErrorInfo(BaseModel):
    """Why a call failed, in the provider's terms where it gave any."""

    type: str
    message: str
    status: int | None = None
    request_id: str | None = None
    retryable: bool = False

    @classmethod
    def from_exception(cls, exc: ChorusError) -> ErrorInfo:
        return cls(
            type=getattr(exc, "type", exc.error_type),
            message=exc.message,
            status=getattr(exc, "status", None),
            request_id=getattr(exc, "request_id", None),
            retryable=exc.retryable,
        )


class Envelope(BaseModel):
    """The result of one call, success or failure."""

    ok: bool
    key: str
    model: str | None = None
    message_id: str | None = None
    text: str = ""
    content: list[dict[str, Any]] = Field(default_factory=list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage = Field(default_factory=Usage)
    # What this call cost at list price; None when the model's price is unknown.
    cost_usd: float | None = None
    # Time of the successful (or last) HTTP attempt, and of the whole task.
    latency_ms: float = 0.0
    elapsed_ms: float = 0.0
    # Time spent waiting on the rate limiter and between retries.
    waited_ms: float = 0.0
    attempts: int = 0
    delivery: int = 1
    # True when the answer came from the result store, not a new API call.
    cached: bool = False
    error: ErrorInfo | None = None

    @classmethod
    def failure(cls, key: str, error: ErrorInfo, **fields: Any) -> Envelope:
        # The API bills no tokens for a call that failed.
        fields.setdefault("cost_usd", 0.0)
        return cls(ok=False, key=key, error=error, **fields)
