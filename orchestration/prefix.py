"""Shared prompt prefixes: found across a batch's items or a pattern's branches, marked
for the prompt cache, and one call sent first so the others read what it wrote.

Requests share a prefix when they have the same model, tools and system
prompt and their first user message starts with the same text (a template's
fixed part, a document). :class:`PrefixFinder` sees every request once, groups
them by that head, and keeps each group's longest common start, cut back to a
word boundary. A group of two or more whose prefix reaches the model's
minimum cacheable length (``config.models.min_cache_tokens``, estimated as the
limiter estimates input) is marked: ``cache_control`` on the system prompt's
last block when the system alone is long enough, and on the shared part of
the first user message, split into a block of its own. A prefix written once
(1.25x the input price for 5 minutes, 2x for an hour) and read by the rest
(0.1x) costs less from the second request on; a group of one is never marked.

The request keeps its content as its author wrote it and carries where to mark
(``CallRequest.cache_split``); the marks are put in only when it is sent
(``CallRequest.api_params``). The content address leaves the split out, so a
call answered marked or unmarked, on either route, is answered once.

In real time the first request of a group to be sent is its *leader*; the
others carry the group's digest and wait, on the worker, until the leader's
call has returned (``workers.prefix_gate``), so they read the cache instead of
all writing it at once. Through the Message Batches API nothing waits: the
marks carry the 1-hour TTL the batch-processing guide recommends for batches
sharing context.

Sources: platform.claude.com/docs build-with-claude/prompt-caching (prefix
order tools, system, messages; up to 4 breakpoints; TTLs and prices; the
minimum length) and build-with-claude/batch-processing (1-hour cache in batches).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from config.models import min_cache_tokens, rules_for
from config.settings import get_settings
from workers.models import CacheSplit, CallRequest, MessageParam
from workers.ratelimit.estimate import CHARS_PER_TOKEN, estimate_input_tokens

# Requests are grouped by their head up to here in the first message's text.
HEAD_CHARS = 1000
# A batch with more distinct heads than this keeps finding prefixes for the first ones only.
MAX_GROUPS = 10_000
# A shared start shorter than this is not split off the first message.
MIN_SPLIT_CHARS = 200


@dataclass
class _Group:
    count: int
    common: str  # the longest start of the first message's text the group shares


@dataclass
class _Context:
    """Requests with the same model, tools and system prompt."""

    count: int
    system_tokens: int  # estimated tokens of the tools and system prompt


@dataclass(frozen=True)
class Share:
    """A group's marked prefix: its digest, the text split off, whether the system is marked."""

    digest: str
    text: str
    system: bool
    requests: int


class _Head(NamedTuple):
    context: str  # digest of the model, tools and system prompt
    group: str  # and of the first HEAD_CHARS of the first message's text
    text: str


class PrefixFinder:
    """Feed it every request (:meth:`add`), then :meth:`mark` each one on the way out.

    Requests are grouped twice: by context (model, tools, system prompt), whose
    system prompt is marked when two or more share it; and within a context by
    the start of the first message, whose common part is split off and marked
    when two or more share it.
    """

    def __init__(self) -> None:
        self._contexts: dict[str, _Context] = {}
        self._groups: dict[str, _Group] = {}
        self._shares: dict[str, Share | None] = {}

    def add(self, request: CallRequest) -> None:
        head = _head(request)
        if head is None:
            return
        context = self._contexts.get(head.context)
        if context is None:
            if len(self._contexts) >= MAX_GROUPS:
                return
            context = self._contexts[head.context] = _Context(0, _system_tokens(request))
        context.count += 1
        group = self._groups.get(head.group)
        if group is None:
            if len(self._groups) < MAX_GROUPS:
                self._groups[head.group] = _Group(1, head.text)
            return
        group.count += 1
        if not head.text.startswith(group.common):
            group.common = _common_start(group.common, head.text)

    def mark(
        self, request: CallRequest, ttl: Literal["5m", "1h"] | None
    ) -> tuple[CallRequest, Share | None]:
        """``request`` with its group's prefix marked, and the group's share (None: unmarked)."""
        head = _head(request)
        if head is None:
            return request, None
        if head.group not in self._shares:
            self._shares[head.group] = self._share_of(head, request)
        share = self._shares[head.group]
        if share is None:
            return request, None
        split = CacheSplit(system=share.system, chars=len(share.text), ttl=ttl)
        return request.model_copy(update={"cache_split": split}), share

    def shares(self) -> list[Share]:
        """Every marked group (after :meth:`mark` has seen one request of each)."""
        unique = {share.digest: share for share in self._shares.values() if share is not None}
        return list(unique.values())

    def _share_of(self, head: _Head, request: CallRequest) -> Share | None:
        context = self._contexts.get(head.context)
        if context is None or context.count < 2:
            return None
        minimum = min_cache_tokens(request.model)
        system = bool(request.system) and context.system_tokens >= minimum
        group = self._groups.get(head.group)
        common = _word_boundary(group.common) if group is not None and group.count > 1 else ""
        rules = rules_for(request.model)
        ratio = rules.token_ratio if rules else 1.0
        text_tokens = int(len(common) / CHARS_PER_TOKEN * ratio)
        if len(common) < MIN_SPLIT_CHARS or context.system_tokens + text_tokens < minimum:
            common = ""
        if not common and not system:
            return None
        # Calls wait for the lead of the narrowest group their marks cover.
        digest, requests = (
            (head.group, group.count) if common and group else (head.context, context.count)
        )
        return Share(digest=digest, text=common, system=system, requests=requests)


def find_shares(requests: Iterable[CallRequest]) -> PrefixFinder:
    """A finder that has seen every one of ``requests``."""
    finder = PrefixFinder()
    for request in requests:
        finder.add(request)
    return finder


def _head(request: CallRequest) -> _Head | None:
    """Where ``request`` is grouped; None when it cannot be marked (already marked by its
    author, its first turn is not user text, or the whole prompt is shorter than the
    model's minimum cacheable length, so no prefix of it can be cached)."""
    if request.cache_marks() or request.cache_split is not None:
        return None
    if estimate_input_tokens(request) < min_cache_tokens(request.model):
        return None
    first = request.messages[0]
    text = _first_text(first)
    if first.role != "user" or text is None:
        return None
    context = _digest([request.model, request.tools, request.system])
    return _Head(context, _digest([context, text[:HEAD_CHARS]]), text)


def _digest(parts: list[Any]) -> str:
    identity = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _first_text(message: MessageParam) -> str | None:
    if isinstance(message.content, str):
        return message.content
    block = message.content[0]
    return block["text"] if block.get("type") == "text" else None


def _system_tokens(request: CallRequest) -> int:
    """The estimated tokens of the tools and system prompt: the prefix before the messages."""
    if not request.system and not request.tools:
        return 0
    probe = request.model_copy(update={"messages": [MessageParam(role="user", content=".")]})
    return estimate_input_tokens(probe)


def _common_start(a: str, b: str) -> str:
    """The longest start ``a`` and ``b`` share (characters, not path parts)."""
    end = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        end += 1
    return a[:end]


def _word_boundary(text: str) -> str:
    """``text`` cut after its last whitespace, so the rest of each request starts a word;
    as it is when the last 200 characters hold none (a script written without spaces)."""
    cut = max(text.rfind(" "), text.rfind("\n"))
    if cut < len(text) - 200:
        return text
    return text[: cut + 1] if cut > 0 else ""


class Leads:
    """Which call of each marked group leads: the first one sent.

    ``scope`` (a batch's id; a fresh one per pattern by default) keeps each
    submit's groups apart: a later batch with the same prefix has a lead of its own.
    """

    def __init__(self, scope: str | None = None) -> None:
        self._scope = scope if scope is not None else uuid.uuid4().hex
        self._led: set[str] = set()

    def option(self, share: Share | None) -> dict[str, Any] | None:
        """The ``prefix`` task option of the next call of ``share``'s group (None: unmarked)."""
        return None if share is None else self.option_for(share.digest)

    def option_for(self, digest: str) -> dict[str, Any]:
        """The ``prefix`` task option of the next call of the group ``digest`` names."""
        lead = digest not in self._led
        self._led.add(digest)
        return {"digest": _digest([self._scope, digest]), "lead": lead}


def mark_all(
    requests: Sequence[CallRequest], ttl: Literal["5m", "1h"] | None = None
) -> list[tuple[CallRequest, dict[str, Any] | None]]:
    """``requests`` with their shared prefixes marked, each with its ``prefix`` task option.

    Nothing is marked when ``CHORUS_CACHE__ENABLED`` is false.
    """
    if not get_settings().cache.enabled:
        return [(request, None) for request in requests]
    finder, leads = find_shares(requests), Leads()
    marked: list[tuple[CallRequest, dict[str, Any] | None]] = []
    for request in requests:
        if request.cache_split is not None:
            # Split already (a batch item's vote): its calls still take turns.
            marked.append((request, leads.option_for(_split_digest(request))))
            continue
        request, share = finder.mark(request, ttl)
        marked.append((request, leads.option(share)))
    return marked


def _split_digest(request: CallRequest) -> str:
    """What a request already split shares with its group: the prefix its split marks."""
    split = request.cache_split
    assert split is not None
    text = _first_text(request.messages[0]) or ""
    return _digest(
        [request.model, request.tools, request.system, split.system, text[: split.chars]]
    )
