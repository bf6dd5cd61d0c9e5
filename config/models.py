"""What each model accepts: one table that chorus's request validation and the local API both read.

A request the real Messages API would answer with a 400 for its model
(a thinking form the model refuses, sampling parameters, an assistant
prefill, a forced tool choice, ``max_tokens`` above the model's output
limit) is refused by chorus before it is enqueued, naming the rule, and by
the local API with the API's own 400. Both read :data:`MODELS` through
:func:`request_problem`, so the two cannot drift apart.

Sources (read 2026-11-29): platform.claude.com/docs build-with-claude/
thinking-troubleshooting ("Thinking support, defaults, and rejected
configurations by model"), build-with-claude/effort, each model's overview
and migration guide (models/sonnet-5/migration-guide,
models/sonnet-5-5/migration-guide, models/haiku-5-5/migration-guide,
models/fable-5/migration-guide), and the SDK's ``types/model.py`` for the
ids. Where the pages are silent a row says so in ``notes`` and takes the
rule of its nearest documented sibling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ThinkingDefault = Literal["off", "on", "always"]
EFFORTS: tuple[str, ...] = ("low", "medium", "high", "xhigh", "max")
# The API version that still takes temperature, top_p and top_k; SDK 2.x
# sends 2026-10-21, which answers 400 to any of them ("Extra inputs").
SAMPLING_API_VERSION = "2023-06-01"
SAMPLING_PARAMS: tuple[str, ...] = ("temperature", "top_p", "top_k")
# What request_problem reads of a request besides its last message.
RULED_FIELDS: tuple[str, ...] = (
    "model", "max_tokens", *SAMPLING_PARAMS, "thinking", "output_config", "tool_choice",
)  # fmt: skip
NEW_TOKENIZER = 1.3
CLASSIC_TOKENIZER = 1.0
MIN_BUDGET_TOKENS = 1024
# The output cap of a request that names none (chorus call, patterns, batch lines):
# room for a short answer after effort-low thinking. One value for every producer.
DEFAULT_MAX_TOKENS = 2048
_SNAPSHOT = re.compile(r"-\d{8}$")


@dataclass(frozen=True, slots=True)
class ModelRules:
    """The request rules of one model, as its documentation states them.

    ``thinking_default``: ``off`` (no thinking unless asked), ``on`` (adaptive
    thinking unless turned off) or ``always`` (cannot be turned off).
    ``thinking_types``: the ``thinking.type`` values accepted; any other
    answers 400. ``disabled_max_effort``: ``disabled`` (or ``between_tools``)
    only at this effort or lower. ``effort_default``: None when the model
    takes no ``output_config.effort``.
    """

    id: str
    family: str
    thinking_default: ThinkingDefault
    thinking_types: frozenset[str]
    effort_default: str | None
    max_output_tokens: int
    context_window: int
    efforts: tuple[str, ...] = EFFORTS
    disabled_max_effort: str | None = None
    sampling: bool = False
    prefill: bool = False
    forced_tool_choice: bool = True
    # Takes a JSON Schema in output_config.format (structured outputs); a model
    # that does not answers it 400. Which models do: see STRUCTURED_OUTPUTS_READ.
    structured_outputs: bool = True
    display_default: Literal["omitted", "summarized"] = "omitted"
    # Tokens per token of the 4.6-and-earlier tokenizer for the same text: the
    # newer tokenizer of Opus 4.7 and later makes "approximately 30% more"
    # (about-claude/pricing, build-with-claude/token-counting).
    token_ratio: float = NEW_TOKENIZER
    # The shortest prefix the API caches; a shorter marked prefix is sent
    # uncached, without an error (build-with-claude/prompt-caching, "Cache
    # limitations": 512 on Opus 5 and the Fable and Mythos lines; 1,024 on
    # Sonnet 5, Opus 4.8 and Sonnet 4.5; 2,048 on Sonnet 4.6; 4,096 on Haiku
    # 4.5 and Opus 4.5 to 4.7; where a model is not listed, its nearest sibling's).
    min_cache_tokens: int = 1024
    notes: str = ""

    @property
    def thinks_by_default(self) -> bool:
        return self.thinking_default != "off"


_M = 1_000_000
_K128 = 128_000
_OLD_EFFORTS = ("low", "medium", "high", "max")  # no xhigh before the 4.7 line
_ADAPTIVE = frozenset({"adaptive"})
_ADAPTIVE_OR_OFF = frozenset({"adaptive", "disabled"})
_EXTENDED = frozenset({"enabled", "disabled"})
_ALL_FORMS = frozenset({"adaptive", "enabled", "disabled"})


def _row(
    id: str, family: str, default: ThinkingDefault, forms: frozenset[str], **kw: Any
) -> ModelRules:
    kw.setdefault("min_cache_tokens", 512 if family in ("fable", "mythos") else 1024)
    kw.setdefault("effort_default", "high")
    kw.setdefault("max_output_tokens", _K128)
    kw.setdefault("context_window", _M)
    return ModelRules(id=id, family=family, thinking_default=default, thinking_types=forms, **kw)


# Which models take output_config.format. The structured-outputs page
# (build-with-claude/structured-outputs, "generally available on the Claude API
# for ...") names, in the copies read: Opus 4.5 to 4.8, Sonnet 4.5 and 4.6,
# Haiku 4.5, Mythos Preview, then Sonnet 5, Fable 5 and Mythos 5; a dated
# third-party reading of it (2026-09) adds Opus 5.5. No copy names Sonnet 5.5,
# Haiku 5.5, Opus 5 or the Fable and Mythos 5.1 and 5.2 models: chorus sends
# them no output_config.format and asks for the structure another way
# (workers/structured.py); a request can still ask for it (schema method native).
STRUCTURED_OUTPUTS_READ = "2026-11-30"

_AS_51 = "prefill and forced tool choice not documented: taken as on the 5.1 model"
_AS_OPUS_46 = "prefill not documented: refused, as on Opus 4.6"

MODELS: dict[str, ModelRules] = {
    row.id: row
    for row in (
        _row("claude-fable-5-2", "fable", "always", _ADAPTIVE, forced_tool_choice=False,
             structured_outputs=False, notes=_AS_51),
        _row("claude-mythos-5-2", "mythos", "always", _ADAPTIVE, forced_tool_choice=False,
             structured_outputs=False, notes=_AS_51),
        _row("claude-haiku-5-5", "haiku", "on", _ADAPTIVE_OR_OFF, effort_default="medium",
             disabled_max_effort="high", structured_outputs=False,
             notes="sampling: temperature 1 and top_p 0.99 only; chorus refuses them all"),
        _row("claude-sonnet-5-5", "sonnet", "on", frozenset({"adaptive", "between_tools"}),
             disabled_max_effort="high", forced_tool_choice=False, structured_outputs=False),
        _row("claude-fable-5-1", "fable", "always", _ADAPTIVE, forced_tool_choice=False,
             structured_outputs=False),
        _row("claude-opus-5-5", "opus", "always", _ADAPTIVE, effort_default="medium",
             forced_tool_choice=False, min_cache_tokens=512),
        _row("claude-mythos-5-1", "mythos", "always", _ADAPTIVE, forced_tool_choice=False,
             structured_outputs=False),
        _row("claude-sonnet-5", "sonnet", "on", _ADAPTIVE_OR_OFF),
        _row("claude-fable-5", "fable", "always", _ADAPTIVE),
        _row("claude-mythos-5", "mythos", "always", _ADAPTIVE),
        _row("claude-opus-5", "opus", "on", _ADAPTIVE_OR_OFF, disabled_max_effort="high",
             min_cache_tokens=512, structured_outputs=False),
        _row("claude-opus-4-8", "opus", "off", _ADAPTIVE_OR_OFF, notes=_AS_OPUS_46),
        _row("claude-opus-4-7", "opus", "off", _ADAPTIVE_OR_OFF, notes=_AS_OPUS_46,
             min_cache_tokens=4096),
        _row("claude-mythos-preview", "mythos", "always", frozenset({"adaptive", "enabled"}),
             efforts=_OLD_EFFORTS, notes="context window and output limit not documented"),
        _row("claude-opus-4-6", "opus", "off", _ALL_FORMS, efforts=_OLD_EFFORTS, sampling=True,
             display_default="summarized", token_ratio=CLASSIC_TOKENIZER,
             min_cache_tokens=4096),
        _row("claude-sonnet-4-6", "sonnet", "off", _ALL_FORMS, efforts=_OLD_EFFORTS,
             sampling=True, display_default="summarized", token_ratio=CLASSIC_TOKENIZER,
             min_cache_tokens=2048,
             notes="prefill: only Sonnet 4.5, Haiku 4.5 and older take one (sonnet-5-5 guide)"),
        _row("claude-haiku-4-5", "haiku", "off", _EXTENDED, effort_default=None, efforts=(),
             max_output_tokens=64_000, context_window=200_000, sampling=True, prefill=True,
             display_default="summarized", token_ratio=CLASSIC_TOKENIZER,
             min_cache_tokens=4096),
        _row("claude-opus-4-5", "opus", "off", _EXTENDED, efforts=_OLD_EFFORTS,
             max_output_tokens=64_000, context_window=200_000, sampling=True, prefill=True,
             display_default="summarized", token_ratio=CLASSIC_TOKENIZER,
             min_cache_tokens=4096),
        _row("claude-sonnet-4-5", "sonnet", "off", _EXTENDED, effort_default=None, efforts=(),
             max_output_tokens=64_000, context_window=200_000, sampling=True, prefill=True,
             display_default="summarized", token_ratio=CLASSIC_TOKENIZER),
    )
}  # fmt: skip


def base_model(model: str) -> str:
    """``claude-haiku-4-5-20251001`` is the model ``claude-haiku-4-5``."""
    return _SNAPSHOT.sub("", model)


def rules_for(model: str) -> ModelRules | None:
    """The rules of ``model`` (a dated snapshot id resolves to its model); None if unknown."""
    return MODELS.get(model) or MODELS.get(base_model(model))


def min_cache_tokens(model: str) -> int:
    """The shortest prefix ``model`` caches, in tokens (1,024 for a model not in the table)."""
    rules = rules_for(model)
    return rules.min_cache_tokens if rules else 1024


@dataclass(frozen=True, slots=True)
class Problem:
    """A rule a request breaks: the field, and the API's 400 message for it."""

    field: str
    message: str
    rule: str = ""


def effective_effort(rules: ModelRules, body: Mapping[str, Any]) -> str | None:
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, Mapping) else None
    return effort if isinstance(effort, str) else rules.effort_default


def request_problem(body: Mapping[str, Any], *, api_version: str | None = None) -> Problem | None:
    """The first rule of its model that ``body`` breaks, or None.

    ``body`` is a Messages API request as sent (``model``, ``max_tokens``,
    ``messages``, ``thinking``, ``output_config``, ``tool_choice``, sampling
    parameters). ``api_version``: the ``anthropic-version`` header, when
    known; sampling parameters need :data:`SAMPLING_API_VERSION`. An unknown
    model breaks no rule here (the API answers 404 for it).
    """
    model = body.get("model")
    rules = rules_for(model) if isinstance(model, str) else None
    if rules is None:
        return None
    return (
        _max_tokens_problem(rules, body)
        or _sampling_problem(rules, body, api_version)
        or _thinking_problem(rules, body)
        or _effort_problem(rules, body)
        or _prefill_problem(rules, body)
        or _tool_choice_problem(rules, body)
        or _format_problem(rules, body)
    )


def _max_tokens_problem(rules: ModelRules, body: Mapping[str, Any]) -> Problem | None:
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens > rules.max_output_tokens:
        return Problem(
            "max_tokens",
            f"max_tokens: {max_tokens} > {rules.max_output_tokens}, which is the maximum "
            f"allowed number of output tokens for {rules.id}",
            f"{rules.id} writes at most {rules.max_output_tokens:,} output tokens",
        )
    return None


def _sampling_problem(
    rules: ModelRules, body: Mapping[str, Any], api_version: str | None
) -> Problem | None:
    used = [name for name in SAMPLING_PARAMS if body.get(name) is not None]
    if not used:
        return None
    if api_version is not None and api_version != SAMPLING_API_VERSION:
        return Problem(used[0], f"{used[0]}: Extra inputs are not permitted")
    if not rules.sampling:
        return Problem(
            used[0],
            f"`{used[0]}` is deprecated for this model.",
            f"{rules.id} does not accept sampling parameters (Anthropic removed temperature, "
            "top_p and top_k from Opus 4.7, Sonnet 5 and later models); leave them out",
        )
    return None


def _thinking_problem(rules: ModelRules, body: Mapping[str, Any]) -> Problem | None:
    thinking = body.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, Mapping) else None
    if kind not in rules.thinking_types:
        return Problem("thinking", _refused_thinking_message(rules, kind), _thinking_rule(rules))
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        max_tokens = body.get("max_tokens")
        if (
            not isinstance(budget, int)
            or budget < MIN_BUDGET_TOKENS
            or (isinstance(max_tokens, int) and budget >= max_tokens)
        ):
            return Problem(
                "thinking.budget_tokens",
                f"thinking.budget_tokens: must be >= {MIN_BUDGET_TOKENS} and < max_tokens",
                f"{rules.id} takes a thinking budget of at least {MIN_BUDGET_TOKENS:,} tokens "
                "and below max_tokens",
            )
    if kind in ("disabled", "between_tools") and rules.disabled_max_effort is not None:
        effort = effective_effort(rules, body)
        if effort in EFFORTS and EFFORTS.index(effort) > EFFORTS.index(rules.disabled_max_effort):
            return Problem(
                "output_config.effort",
                f"output_config.effort '{effort}' is not supported when thinking is disabled "
                f"on this model. Use effort '{rules.disabled_max_effort}' or below, or enable "
                "thinking.",
                f"{rules.id} takes thinking {kind!r} only at effort "
                f"{rules.disabled_max_effort!r} or lower",
            )
    return None


def _refused_thinking_message(rules: ModelRules, kind: object) -> str:
    if kind == "adaptive":
        return "adaptive thinking is not supported on this model"
    hint = 'Use "thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
    if "between_tools" in rules.thinking_types:
        hint = (
            'Use "thinking.type.between_tools" for the lowest thinking setting, or '
            '"thinking.type.adaptive" and "output_config.effort" to control thinking behavior.'
        )
    elif "adaptive" not in rules.thinking_types:
        hint = 'Use "thinking.type.enabled" with "budget_tokens".'
    return f'"thinking.type.{kind}" is not supported for this model. {hint}'


def _thinking_rule(rules: ModelRules) -> str:
    accepted = ", ".join(sorted(rules.thinking_types))
    default = {
        "off": "off unless asked for",
        "on": "adaptive by default",
        "always": "always on, cannot be turned off",
    }[rules.thinking_default]
    return f"{rules.id} takes thinking types {accepted} (thinking is {default})"


def _effort_problem(rules: ModelRules, body: Mapping[str, Any]) -> Problem | None:
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, Mapping) else None
    if effort is None:
        return None
    if not rules.efforts:
        return Problem(
            "output_config.effort",
            "This model does not support the effort parameter.",
            f"{rules.id} takes no output_config.effort",
        )
    if effort not in rules.efforts:
        return Problem(
            "output_config.effort",
            f"output_config.effort: Input should be {', '.join(map(repr, rules.efforts))}",
            f"{rules.id} takes effort {', '.join(rules.efforts)}",
        )
    return None


def last_assistant_block(messages: object) -> str | None:
    """The type of the last block of a conversation that ends with an assistant turn
    ("text" for a string turn); None when it ends with the user's."""
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, Mapping) or last.get("role") != "assistant":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return "text"
    if isinstance(content, list) and content and isinstance(content[-1], Mapping):
        kind = content[-1].get("type")
        return kind if isinstance(kind, str) else None
    return None


def ends_with_prefill(messages: object) -> bool:
    """Whether the conversation ends with an assistant turn the model would continue in text.

    A last assistant turn that ends with a server tool's block is the
    continuation of a paused turn (``pause_turn``), which every model takes.
    """
    return last_assistant_block(messages) in ("text", "thinking", "redacted_thinking")


def _prefill_problem(rules: ModelRules, body: Mapping[str, Any]) -> Problem | None:
    if rules.prefill or not ends_with_prefill(body.get("messages")):
        return None
    return Problem(
        "messages",
        "This model does not support assistant message prefill. The conversation must end "
        "with a user message.",
        f"{rules.id} refuses an assistant prefill (the last message must be the user's)",
    )


def _tool_choice_problem(rules: ModelRules, body: Mapping[str, Any]) -> Problem | None:
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, Mapping) else None
    if kind not in ("any", "tool"):
        return None
    if not rules.forced_tool_choice:
        return Problem(
            "tool_choice",
            'tool_choice: type "tool" and "any" are not supported for this model.',
            f"{rules.id} refuses a forced tool choice (any or tool)",
        )
    thinking = body.get("thinking")
    if isinstance(thinking, Mapping) and thinking.get("type") == "enabled":
        return Problem(
            "tool_choice",
            "Thinking may not be enabled when tool_choice forces tool use.",
            f"{rules.id} cannot combine manual thinking with a forced tool choice",
        )
    return None


def _format_problem(rules: ModelRules, body: Mapping[str, Any]) -> Problem | None:
    config = body.get("output_config")
    if rules.structured_outputs or not isinstance(config, Mapping) or not config.get("format"):
        return None
    return Problem(
        "output_config.format",
        "output_config.format: structured outputs are not supported for this model.",
        f"{rules.id} takes no output_config.format (structured outputs); give the schema "
        "to chorus (--schema) and it asks for the structure in a way the model takes",
    )
