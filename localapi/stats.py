"""What the local API did: counters for `/_mock/stats` and a bounded request log for `/_mock/log`.

A call is *paid* when it got a 200 (a malformed 200 too: the work was done).
Its identity is the `x-chorus-key` header, else the SHA-256 of its canonical
JSON body; `duplicates_paid` counts every paid call beyond the first per
identity, which is what "never paid for twice" is measured by.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.models import base_model
from config.prices import DEFAULT_PRICES, ModelPrice, Tokens
from config.structured import METHODS
from localapi.config import FAULT_KINDS

# The log keeps this much of each prompt for `?contains=` (bounds its memory).
LOG_PROMPT_CHARS = 2000
# ... and shows this much.
LOG_PROMPT_SHOWN_CHARS = 200


@functools.lru_cache(maxsize=256)
def list_price(model: str) -> ModelPrice | None:
    """The built-in list price of ``model``: the server bills as Anthropic publishes."""
    row = DEFAULT_PRICES.get(model) or DEFAULT_PRICES.get(base_model(model))
    return None if row is None else ModelPrice.model_validate(row)


class Stats:
    """Counters since start or the last reset."""

    def __init__(self, in_flight: int = 0) -> None:
        self.started_at = time.time()
        self.requests = 0
        self.count_tokens_requests = 0
        self.by_status: dict[int, int] = {}
        self.paid = 0
        self.duplicates_paid = 0
        # Calls whose client went away, finished and billed (honest_billing).
        self.abandoned_billed = 0
        # Message Batches created, and their requests billed (at the Batches discount).
        self.batches_created = 0
        self.batch_paid = 0
        self.rate_limited = 0
        self.injected = dict.fromkeys(FAULT_KINDS, 0)
        self.scripted = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_creation_input_tokens = 0
        self.cache_read_input_tokens = 0
        # Of the cache writes, those with the 1-hour TTL (the rest are 5-minute).
        self.cache_creation_1h_input_tokens = 0
        # Paid calls that wrote to the prompt cache, and that read from it.
        self.cache_writes = 0
        self.cache_reads = 0
        # Of the output tokens, those spent thinking.
        self.thinking_tokens = 0
        self.web_search_requests = 0
        self.web_fetch_requests = 0
        # Every reply by stop reason, billed or not (a refusal before any output is not).
        self.stop_reasons: dict[str, int] = {}
        # Answers to structured requests (localapi.structured), also by the way they
        # asked; of them, the invalid ones (drawn at rate_invalid_output, or a
        # script's answer that does not validate) and the follow-ups (a conversation
        # that already holds an answer: how chorus asks again).
        self.structured_answers = 0
        self.structured_answers_by_method = dict.fromkeys(METHODS, 0)
        self.structured_invalid = 0
        self.structured_followups = 0
        # What the paid calls cost at list price (config/prices.py), as this
        # server billed them; calls of a model with no price are counted apart.
        self.cost_usd = 0.0
        self.unpriced_calls = 0
        # Calls in flight outlive a reset, so their count carries over.
        self.in_flight = in_flight
        self.max_in_flight = in_flight
        self._paid_by_identity: dict[str, int] = {}

    def begin(self) -> None:
        self.requests += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def end(self, status: int) -> None:
        self.in_flight -= 1
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def structured(self, method: str, *, invalid: bool, followup: bool) -> None:
        """Count one answer to a structured request."""
        self.structured_answers += 1
        by_method = self.structured_answers_by_method
        by_method[method] = by_method.get(method, 0) + 1
        self.structured_invalid += invalid
        self.structured_followups += followup

    def paid_call(
        self,
        identity: str,
        input_tokens: int,
        output_tokens: int,
        cache_creation: int,
        cache_read: int,
        *,
        cache_creation_1h: int = 0,
        thinking_tokens: int = 0,
        server_tool_use: Mapping[str, int] | None = None,
        model: str | None = None,
        batch: bool = False,
    ) -> None:
        """Count one billed call; ``batch``: through the Message Batches API, at half price."""
        self.paid += 1
        self.batch_paid += batch
        seen = self._paid_by_identity.get(identity, 0)
        if seen:
            self.duplicates_paid += 1
        self._paid_by_identity[identity] = seen + 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cache_creation_input_tokens += cache_creation
        self.cache_read_input_tokens += cache_read
        self.cache_creation_1h_input_tokens += cache_creation_1h
        self.cache_writes += cache_creation > 0
        self.cache_reads += cache_read > 0
        self.thinking_tokens += thinking_tokens
        searches = 0
        if server_tool_use:
            searches = server_tool_use.get("web_search_requests", 0)
            self.web_search_requests += searches
            self.web_fetch_requests += server_tool_use.get("web_fetch_requests", 0)
        price = list_price(model) if model is not None else None
        if price is None:
            self.unpriced_calls += 1
            return
        self.cost_usd += price.cost_usd(
            Tokens(
                input=input_tokens,
                output=output_tokens,
                cache_write=cache_creation,
                cache_write_1h=cache_creation_1h,
                cache_read=cache_read,
                web_search_requests=searches,
                batch=batch,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_status": {str(status): n for status, n in sorted(self.by_status.items())},
            "paid": self.paid,
            "duplicates_paid": self.duplicates_paid,
            "abandoned_billed": self.abandoned_billed,
            "batches_created": self.batches_created,
            "batch_paid": self.batch_paid,
            "rate_limited": self.rate_limited,
            "injected": dict(self.injected),
            "scripted": self.scripted,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation_1h_input_tokens": self.cache_creation_1h_input_tokens,
            "cache_writes": self.cache_writes,
            "cache_reads": self.cache_reads,
            "thinking_tokens": self.thinking_tokens,
            "web_search_requests": self.web_search_requests,
            "web_fetch_requests": self.web_fetch_requests,
            "stop_reasons": dict(self.stop_reasons),
            "structured_answers": self.structured_answers,
            "structured_answers_by_method": dict(self.structured_answers_by_method),
            "structured_invalid": self.structured_invalid,
            "structured_followups": self.structured_followups,
            "cost_usd": self.cost_usd,
            "unpriced_calls": self.unpriced_calls,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "started_at": self.started_at,
            "count_tokens_requests": self.count_tokens_requests,
        }


@dataclass(slots=True)
class LogEntry:
    """One `/v1/messages` call, filled in as the call proceeds."""

    t: float
    t_end: float = 0.0
    status: int = 0
    key: str | None = None
    prompt: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    fault: str | None = None
    scripted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "t_end": self.t_end,
            "status": self.status,
            "key": self.key,
            "prompt": self.prompt[:LOG_PROMPT_SHOWN_CHARS],
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "fault": self.fault,
            "scripted": self.scripted,
        }


class RequestLog:
    """The last `size` calls, oldest first."""

    def __init__(self, size: int) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: LogEntry) -> None:
        self._entries.append(entry)

    def resize(self, size: int) -> None:
        self._entries = deque(self._entries, maxlen=size)

    def clear(self) -> None:
        self._entries.clear()

    def entries(self, contains: str | None = None) -> list[dict[str, Any]]:
        """Entries as JSON-ready dicts; `contains` filters on the kept prompt text."""
        return [
            entry.to_dict()
            for entry in self._entries
            if contains is None or contains in entry.prompt
        ]
