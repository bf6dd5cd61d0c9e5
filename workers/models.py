"""What a task takes and what it gives back: a validated request and a result envelope.

A :class:`CallRequest` is one Messages API call. It is validated before it is
enqueued (so a typo fails at the producer, with the field named) and again when a
worker decodes it. An :class:`Envelope` is what every call returns, success or
failure (docs/ARCHITECTURE.md, "One task, one API call; failures are values"):
expected failures are values, not exceptions, so a chord's callback still runs when
one branch failed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.models import RULED_FIELDS, request_problem, rules_for
from config.prices import Tokens
from workers.errors import ChorusError
from workers.outcomes import Outcome, answer_text, classify
from workers.text import find_lone_surrogate, has_lone_surrogate

KEY_VERSION = "v1"
_T = TypeVar("_T", bound=BaseModel)


def accepts_sampling_params(model: str) -> bool | None:
    """Whether ``model`` takes temperature, top_p and top_k; None when chorus does not know it.

    From the model table (``config.models``): Anthropic removed them from
    Opus 4.7, Sonnet 5, Haiku 5.5 and every later model; Opus/Sonnet 4.6 and
    the 4.5 line still take them, on API version 2023-06-01.
    """
    rules = rules_for(model)
    return None if rules is None else rules.sampling


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MessageParam(_Model):
    """One input turn of the conversation: the SDK's ``MessageParam``
    (``anthropic/types/message_param.py``), not a ``Message`` the API answers."""

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


# CallRequest's fields that are chorus's own, never sent to the API as they are.
CHORUS_FIELDS = frozenset({"sample", "cache_split", "structured"})
# How many follow-up calls a structured answer gets at most when it is invalid.
MAX_REASKS = 10


class Structured(_Model):
    """A JSON Schema the answer must match, and how it is asked for (``workers.structured``).

    ``json_schema``: the schema (a JSON object; Draft 2020-12 unless its
    ``$schema`` names another dialect). ``method``: ``auto`` (by the model:
    ``output_config.format`` where it takes structured outputs, else a forced
    tool call, else the schema in the system prompt), or ``native``, ``tool``,
    ``prompt``. ``reask``: follow-up calls when an answer is invalid, each
    sending the answer and the validator's message back (0 to 10).
    ``name``: what the schema is called (a pydantic model's class name), for
    people; not sent.
    """

    json_schema: dict[str, Any]
    method: Literal["auto", "native", "tool", "prompt"] = "auto"
    reask: int = Field(1, ge=0, le=MAX_REASKS)
    name: str | None = Field(None, max_length=200)

    @field_validator("json_schema")
    @classmethod
    def _a_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        from workers.structured import check_schema

        problem = check_schema(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class CacheSplit(_Model):
    """Where a request's prefix shared with others is marked for the prompt cache.

    ``system``: ``cache_control`` on the system prompt's last block (a string
    system becomes one text block). ``chars``: the first message's first text
    is split after this many characters into a marked block and the rest (0:
    not split). ``ttl``: ``1h``, or None for the default 5 minutes. A split that
    no longer fits the request (a text shorter than ``chars``) is left out.
    Source: build-with-claude/prompt-caching (breakpoints on system and
    content blocks; the ``ttl`` values).
    """

    system: bool = False
    chars: int = Field(0, ge=0)
    ttl: Literal["5m", "1h"] | None = None

    def mark(self) -> dict[str, str]:
        return {"type": "ephemeral", "ttl": self.ttl} if self.ttl else {"type": "ephemeral"}

    def apply(self, params: dict[str, Any]) -> None:
        """Put the marks into ``params`` (a request body), in place."""
        system = params.get("system")
        if self.system and system:
            blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system
            params["system"] = [*blocks[:-1], {**blocks[-1], "cache_control": self.mark()}]
        messages = params.get("messages") or []
        if not self.chars or not messages:
            return
        content = messages[0].get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        first = blocks[0] if blocks else {}
        text = first.get("text")
        if first.get("type") != "text" or not isinstance(text, str) or len(text) < self.chars:
            return
        head, rest = text[: self.chars], text[self.chars :]
        if rest.strip():
            split = [
                {**first, "text": head, "cache_control": self.mark()},
                {"type": "text", "text": rest},
            ]
        else:  # nothing after the shared part: the whole text is the marked block
            split = [{**first, "cache_control": self.mark()}]
        messages[0] = {**messages[0], "content": split + list(blocks[1:])}


class Metadata(_Model):
    user_id: str | None = Field(None, max_length=256)


class CallRequest(_Model):
    """One Messages API call, as a worker will send it.

    ``sample`` is chorus's own: the index of a sample when the same request
    is made several times (voting). It is part of the idempotency key, so n
    samples are n calls, and it is never sent to the API.
    """

    model: str = Field(min_length=1, max_length=200)
    messages: list[MessageParam] = Field(min_length=1, max_length=100_000)
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
    # chorus's own: where to mark a prefix shared with other requests for the prompt
    # cache (orchestration.prefix). Applied by api_params; not part of the content address.
    cache_split: CacheSplit | None = None
    # chorus's own: the JSON Schema the answer must match (workers.structured). Applied
    # by api_params in the way the model takes; part of the content address.
    structured: Structured | None = None

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

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        # A lone surrogate ("\\ud800" in JSON) is not text: UTF-8 cannot encode it,
        # so the call could never be sent. Refused here, naming the field (workers/text.py).
        if has_lone_surrogate(data):
            found = find_lone_surrogate(data)
            raise ValueError(found.describe() if found else "holds a lone surrogate")
        return data

    @model_validator(mode="after")
    def _one_schema(self) -> CallRequest:
        if self.structured is None:
            return self
        if (self.output_config or {}).get("format") is not None:
            raise ValueError(
                "structured: give the schema once, as chorus's schema or as "
                "output_config.format, not both"
            )
        method = self.structured.method
        if method == "tool" and self.tool_choice is not None:
            raise ValueError(
                "structured: the tool method forces its own tool_choice; this request "
                "sets one already"
            )
        if method == "tool" and self.structured.json_schema.get("type") != "object":
            raise ValueError(
                "structured: the tool method needs a schema whose root is an object "
                "(a tool's input is one)"
            )
        return self

    @property
    def schema_method(self) -> str | None:
        """How the structure is asked of this request's model (``workers.structured``),
        None without a schema."""
        if self.structured is None:
            return None
        from workers.structured import resolve_method

        return resolve_method(
            self.model,
            self.structured.method,
            self.structured.json_schema,
            tool_choice=self.tool_choice,
            thinking=self.thinking,
        )

    @model_validator(mode="after")
    def _rules_of_the_model(self) -> CallRequest:
        # The rules the API enforces per model (config.models): refused here,
        # before anything is enqueued, rather than as a 400 on every item.
        problem = request_problem(self._what_the_rules_read())
        if problem is not None:
            raise ValueError(
                f"{problem.field}: {problem.rule}; the API answers 400: {problem.message}"
            )
        return self

    def _what_the_rules_read(self) -> dict[str, Any]:
        """The parameters ``request_problem`` reads, and only the last message.

        Validation runs at submit and again on every worker: the rest of the
        conversation is not copied for rules that never look at it.
        """
        body = {name: getattr(self, name) for name in RULED_FIELDS}
        body["messages"] = [self.messages[-1].model_dump(mode="json", exclude_none=True)]
        body = {name: value for name, value in body.items() if value is not None}
        if self.structured is not None:
            # The rules see what is sent: the format, or the forced tool choice.
            self._ask_structure(body)
        return body

    def _ask_structure(self, params: dict[str, Any]) -> None:
        from workers.structured import apply

        assert self.structured is not None and self.schema_method is not None
        apply(params, self.structured.json_schema, self.schema_method)

    @property
    def uses_sampling_params(self) -> bool:
        return any(v is not None for v in (self.temperature, self.top_p, self.top_k))

    def api_params(self) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` (sampling ones excluded), with the
        ``cache_split`` marks in place."""
        params = self.model_dump(
            mode="json",
            exclude_none=True,
            exclude={*CHORUS_FIELDS, "temperature", "top_p", "top_k"},
        )
        if self.structured is not None:
            self._ask_structure(params)
        if self.cache_split is not None:
            self.cache_split.apply(params)
        return params

    def sampling_params(self) -> dict[str, Any]:
        return {
            name: value
            for name in ("temperature", "top_p", "top_k")
            if (value := getattr(self, name)) is not None
        }

    def worst_case_tokens(self, estimated_input: int) -> Tokens:
        """The most this call can bill, for a budget: ``max_tokens`` of output, and the
        estimated input written to the cache at the dearest TTL it marks, if it marks one.
        A structured request counts its re-asks too, each carrying the answers before it.

        A web search tool counts its ``max_uses`` searches (5 when it sets none).
        """
        ttls = [mark.get("ttl", "5m") for mark in self.cache_marks()]
        if self.cache_split is not None:
            ttls.append(self.cache_split.ttl or "5m")
        web_searches = sum(
            int(tool.get("max_uses", 5))
            for tool in self.tools or []
            if str(tool.get("type", "")).startswith("web_search")
        )
        if self.structured is not None and self.structured.reask:
            # Each re-ask is a call of its own that carries the answers before it.
            calls = 1 + self.structured.reask
            estimated_input = calls * estimated_input + self.max_tokens * (calls - 1) * calls // 2
            web_searches *= calls
            output = self.max_tokens * calls
        else:
            output = self.max_tokens
        if not ttls:
            return Tokens(input=estimated_input, output=output, web_search_requests=web_searches)
        one_hour = estimated_input if "1h" in ttls else 0
        return Tokens(
            output=output,
            cache_write=estimated_input,
            cache_write_1h=one_hour,
            web_search_requests=web_searches,
        )

    def cache_marks(self) -> list[dict[str, Any]]:
        """The ``cache_control`` of every tool, system block and content block that has one."""
        blocks: list[Any] = [*(self.tools or [])]
        if isinstance(self.system, list):
            blocks += self.system
        for message in self.messages:
            if isinstance(message.content, list):
                blocks += message.content
        return [
            b["cache_control"]
            for b in blocks
            if isinstance(b, dict) and isinstance(b.get("cache_control"), dict)
        ]

    def continued(self, content: list[dict[str, Any]]) -> CallRequest:
        """This request with ``content`` sent back as the assistant's turn: a paused turn goes on.

        The API's ``pause_turn``: "provide the response back as-is in a
        subsequent request to let the model continue" (SDK ``types/message.py``).
        """
        turn = MessageParam.model_construct(role="assistant", content=content)
        return self.model_copy(update={"messages": [*self.messages, turn]})

    def reasked(self, turns: list[dict[str, Any]]) -> CallRequest:
        """This request followed by ``turns`` (an invalid structured answer and the
        re-ask, ``workers.structured.reask_turns``)."""
        added = [MessageParam.model_construct(**turn) for turn in turns]
        return self.model_copy(update={"messages": [*self.messages, *added]})

    def idempotency_key(self) -> str:
        """The call's content address: equal requests share it, samples do not.

        A stored answer and a claim on a call in flight are kept under it
        (``workers.store``): it is what makes a repeated call free.

        ``cache_split`` is left out: where chorus caches a shared prefix
        changes what the call costs, not what it answers, so a call marked for
        the Message Batches route (1-hour TTL), for real time (5 minutes) or
        not at all shares one answer. Marks an author wrote are part of it.

        The canonical form cannot fail on any string JSON can carry: a lone
        surrogate (``"\\ud800"``, refused by validation but possible in a payload
        built by hand) is encoded as itself (``surrogatepass``), which no valid
        text's UTF-8 can equal; every other request's address is its UTF-8 as before.
        """
        body = self.model_dump(mode="json", exclude_none=True, exclude={"cache_split"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        return f"{KEY_VERSION}:{digest}"

    def prompt_text(self) -> str:
        """System and message text joined: for estimates, previews and logs."""
        parts: list[str] = []
        if isinstance(self.system, str):
            parts.append(self.system)
        elif self.system:
            parts.extend(b["text"] for b in self.system)
        parts.extend(m.text() for m in self.messages)
        if self.structured is not None:
            # Sent in one form or another (format, tool, system prompt): input all the same.
            parts.append(json.dumps(self.structured.json_schema))
        return "\n".join(parts)

    def preview(self, limit: int = 80) -> str:
        """The last user message, shortened: what Flower shows."""
        last = next((m for m in reversed(self.messages) if m.role == "user"), self.messages[-1])
        text = " ".join(last.text().split())
        return text if len(text) <= limit else text[: limit - 3] + "..."


class CacheCreation(BaseModel):
    """Cache writes by TTL (``usage.cache_creation``): they are priced apart."""

    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class ServerToolUse(BaseModel):
    """Server tool requests (``usage.server_tool_use``): each is charged."""

    web_search_requests: int = 0
    web_fetch_requests: int = 0


class Usage(BaseModel):
    """Tokens as the API reports them, for arithmetic (sums, costs, budgets).

    A view: the message keeps the usage object exactly as the API sent it.
    ``thinking_tokens`` is ``output_tokens_details.thinking_tokens``, a part
    of ``output_tokens`` (which stays the billed total).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreation = Field(default_factory=CacheCreation)
    server_tool_use: ServerToolUse = Field(default_factory=ServerToolUse)
    thinking_tokens: int = 0
    # "standard", "priority" or "batch" (the Message Batches API's half price).
    service_tier: str | None = None
    # Where inference ran: "us" is US-only inference, priced higher.
    inference_geo: str | None = None

    @classmethod
    def from_api(cls, raw: Mapping[str, Any] | None) -> Usage:
        """The view of an API ``usage`` object; absent or null fields count 0."""
        if not raw:
            return cls()
        details = raw.get("output_tokens_details") or {}
        return cls(
            input_tokens=raw.get("input_tokens") or 0,
            output_tokens=raw.get("output_tokens") or 0,
            cache_creation_input_tokens=raw.get("cache_creation_input_tokens") or 0,
            cache_read_input_tokens=raw.get("cache_read_input_tokens") or 0,
            cache_creation=CacheCreation.model_validate(raw.get("cache_creation") or {}),
            server_tool_use=ServerToolUse.model_validate(raw.get("server_tool_use") or {}),
            thinking_tokens=details.get("thinking_tokens") or 0,
            service_tier=raw.get("service_tier"),
            inference_geo=raw.get("inference_geo"),
        )

    def tokens(self) -> Tokens:
        """What a price is applied to: every billed part of this usage."""
        return Tokens(
            input=self.input_tokens,
            output=self.output_tokens,
            cache_write=self.cache_creation_input_tokens,
            cache_write_1h=self.cache_creation.ephemeral_1h_input_tokens,
            cache_read=self.cache_read_input_tokens,
            web_search_requests=self.server_tool_use.web_search_requests,
            batch=self.service_tier == "batch",
            us_only=self.inference_geo == "us",
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage.model_validate(sum_api_usage(self.model_dump(), other.model_dump()))

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


def sum_api_usage(one: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """Two usage objects as one, field by field: what a turn over several calls used.

    Numbers add, nested objects add recursively, anything else (``service_tier``,
    ``inference_geo``) is the later one's; a field only one has is kept as it is.
    """
    summed: dict[str, Any] = dict(one)
    for name, value in other.items():
        mine = summed.get(name)
        if isinstance(value, bool) or isinstance(mine, bool):
            summed[name] = value
        elif isinstance(value, int | float) and isinstance(mine, int | float):
            summed[name] = mine + value
        elif isinstance(value, Mapping) and isinstance(mine, Mapping):
            summed[name] = sum_api_usage(mine, value)
        else:
            summed[name] = value if value is not None else mine
    return summed


class ErrorInfo(BaseModel):
    """Why a call failed, or why its answer is not complete, in the provider's terms if any.

    ``code``: the API's ``error.details.error_code`` (``enforced_spend_limit_reached``, ...),
    which names the cause more precisely than ``type``.
    """

    type: str
    message: str
    status: int | None = None
    request_id: str | None = None
    retryable: bool = False
    code: str | None = None

    @classmethod
    def from_exception(cls, exc: ChorusError) -> ErrorInfo:
        return cls(
            type=getattr(exc, "type", exc.error_type),
            message=exc.message,
            status=getattr(exc, "status", None),
            request_id=getattr(exc, "request_id", None),
            retryable=exc.retryable,
            code=getattr(exc, "error_code", None),
        )


# The message fields an envelope kept before it held the message itself.
_LEGACY_FIELDS = ("model", "message_id", "text", "content", "stop_reason", "stop_sequence", "usage")


class Envelope(BaseModel):
    """The result of one call: the message exactly as the API sent it, and how the call went.

    ``message`` is the body of the API's reply, byte for byte what the SDK
    received (after ``pause_turn`` continuations: the last reply, with the
    whole turn's content and the usage of every call summed). ``text``,
    ``content``, ``usage``, ``stop_reason`` and the other message fields are
    read from it. ``outcome`` says how the call ended; ``ok`` is true for a
    complete answer only, and ``error`` says why not otherwise.
    """

    ok: bool
    outcome: Outcome = Outcome.FAILED
    # The request's content address (CallRequest.idempotency_key).
    idempotency_key: str
    message: dict[str, Any] | None = None
    # What this call cost at list price; None when the model's price is unknown.
    cost_usd: float | None = None
    # What attempts that broke off part way (a streamed generation cut, say) may
    # have been billed for as well: the API counts what it generated.
    maybe_billed_usd: float = 0.0
    # Time of the successful (or last) HTTP attempt, and of the whole task.
    latency_ms: float = 0.0
    elapsed_ms: float = 0.0
    # Time spent waiting on the rate limiter and between retries.
    waited_ms: float = 0.0
    attempts: int = 0
    delivery: int = 1
    # True when the answer came from chorus's result store, not a new API call
    # (not Anthropic's prompt cache: that is usage.cache_read_input_tokens).
    from_store: bool = False
    error: ErrorInfo | None = None
    # A structured request's answer (workers.structured): the parsed value when it
    # matches the schema (else None, and outcome invalid_output says why); the
    # follow-up calls made because an answer was invalid, and what they cost
    # (part of cost_usd; the message's usage sums every call's).
    data: Any = None
    reasks: int = 0
    reask_cost_usd: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _from_legacy(cls, data: Any) -> Any:
        # Results stored by older versions: "cached" is now "from_store", "key"
        # is "idempotency_key".
        if isinstance(data, dict) and ("cached" in data or "key" in data):
            data = {**data}
            for was, now in (("cached", "from_store"), ("key", "idempotency_key")):
                if was in data:
                    value = data.pop(was)
                    data.setdefault(now, value)
        # Results stored before envelopes held the message: rebuild it once, on read.
        if (
            isinstance(data, dict)
            and "message" not in data
            and any(name in data for name in _LEGACY_FIELDS)
        ):
            data = dict(data)
            old = {name: data.pop(name, None) for name in _LEGACY_FIELDS}
            if data.get("ok"):
                content = old["content"] or [{"type": "text", "text": old["text"] or ""}]
                data["outcome"] = Outcome.COMPLETE
                data["message"] = {
                    "id": old["message_id"],
                    "type": "message",
                    "role": "assistant",
                    "model": old["model"],
                    "content": content,
                    "stop_reason": old["stop_reason"],
                    "stop_sequence": old["stop_sequence"],
                    "usage": old["usage"] or {},
                }
        return data

    @classmethod
    def answered(
        cls,
        idempotency_key: str,
        message: dict[str, Any],
        *,
        max_tokens: int | None = None,
        **fields: Any,
    ) -> Envelope:
        """The envelope of a call the API answered with ``message``, whatever its outcome."""
        outcome, why = classify(message, max_tokens)
        error = None if outcome is Outcome.COMPLETE else ErrorInfo(type=outcome.value, message=why)
        return cls(
            ok=outcome is Outcome.COMPLETE,
            outcome=outcome,
            idempotency_key=idempotency_key,
            message=message,
            error=error,
            **fields,
        )

    @classmethod
    def failure(cls, idempotency_key: str, error: ErrorInfo, **fields: Any) -> Envelope:
        # The API bills no tokens for a call that failed.
        fields.setdefault("cost_usd", 0.0)
        return cls(
            ok=False,
            outcome=Outcome.FAILED,
            idempotency_key=idempotency_key,
            error=error,
            **fields,
        )

    def parsed(self, model: type[_T]) -> _T | None:
        """``data`` as an instance of the pydantic ``model`` the schema came from; None when
        the answer has no valid value (``outcome`` says why).

        Raises:
            pydantic.ValidationError: the value does not fit ``model`` (a schema
                from another model).
        """
        return None if self.data is None else model.model_validate(self.data)

    @property
    def content(self) -> list[dict[str, Any]]:
        """The reply's content blocks as received: text, thinking, tool calls, ..."""
        return list((self.message or {}).get("content") or [])

    @property
    def text(self) -> str:
        """The text blocks joined ("" when there are none)."""
        return answer_text(self.content)

    @property
    def usage(self) -> Usage:
        return Usage.from_api((self.message or {}).get("usage"))

    @property
    def model(self) -> str | None:
        return (self.message or {}).get("model")

    @property
    def message_id(self) -> str | None:
        return (self.message or {}).get("id")

    @property
    def stop_reason(self) -> str | None:
        return (self.message or {}).get("stop_reason")

    @property
    def stop_sequence(self) -> str | None:
        return (self.message or {}).get("stop_sequence")

    @property
    def stop_details(self) -> dict[str, Any] | None:
        return (self.message or {}).get("stop_details")
