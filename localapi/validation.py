"""Request checks with the API's answers: a 400 naming the field, or a 404 for an unknown model.

The rules that depend on the model (thinking forms, effort, sampling
parameters, assistant prefill, forced tool choice, its output limit) come
from ``config.models``, the table chorus's own validation reads too. Fields
the local API does not know (tools' schemas, ...) pass unchecked, so that new
SDK features still reach the handler.
"""

from __future__ import annotations

from typing import Any

from config.models import SAMPLING_API_VERSION, SAMPLING_PARAMS, request_problem, rules_for
from localapi.errors import APIErrorReply, invalid

# The SDK 2.x also types messages with role "system" (text only).
ROLES = ("user", "assistant", "system")
MAX_MESSAGES = 100_000


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_blocks(blocks: list[Any], where: str) -> None:
    for index, block in enumerate(blocks):
        if not isinstance(block, dict):
            raise invalid(f"{where}.{index}: Input should be a valid dictionary")
        block_type = block.get("type")
        if not isinstance(block_type, str):
            raise invalid(f"{where}.{index}.type: Field required")
        if block_type == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise invalid(f"{where}.{index}.text: Input should be a valid string")
            if not text:
                raise invalid(f"{where}.{index}.text: text content blocks must be non-empty")


def _check_system(system: object) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list):
        raise invalid("system: Input should be a valid string or a list of text blocks")
    _check_blocks(system, "system")
    for index, block in enumerate(system):
        if block["type"] != "text":
            raise invalid(f"system.{index}.type: Input should be 'text'")


def _check_messages(messages: object) -> None:
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    if len(messages) > MAX_MESSAGES:
        raise invalid(f"messages: {len(messages)} messages > {MAX_MESSAGES} maximum")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        if message.get("role") not in ROLES:
            raise invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if "content" not in message:
            raise invalid(f"{where}.content: Field required")
        content = message["content"]
        if isinstance(content, str):
            if not content:
                raise invalid(f"{where}.content: messages must have non-empty content")
        elif isinstance(content, list):
            if not content:
                raise invalid(f"{where}.content: messages must have non-empty content")
            _check_blocks(content, f"{where}.content")
            if message["role"] == "system" and any(b["type"] != "text" for b in content):
                raise invalid(f"{where}.content: system messages take text blocks only")
        else:
            raise invalid(f"{where}.content: Input should be a valid string or list of blocks")


def _check_sampling(body: dict[str, Any], api_version: str | None) -> None:
    used = [name for name in SAMPLING_PARAMS if name in body]
    if used and api_version != SAMPLING_API_VERSION:
        raise invalid(f"{used[0]}: Extra inputs are not permitted")
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise invalid(f"{name}: Input should be a valid number")
        if not 0.0 <= value <= 1.0:
            raise invalid(f"{name}: Input should be between 0 and 1")
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise invalid("top_k: Input should be an integer greater than or equal to 0")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list):
            raise invalid("stop_sequences: Input should be a valid list")
        for index, stop in enumerate(stops):
            if not isinstance(stop, str):
                raise invalid(f"stop_sequences.{index}: Input should be a valid string")


THINKING_TYPES = ("enabled", "disabled", "adaptive", "between_tools")
THINKING_DISPLAYS = ("summarized", "omitted")


def _check_thinking(thinking: object, output_config: object) -> None:
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise invalid("thinking: Input should be a valid dictionary")
        kind = thinking.get("type")
        if kind not in THINKING_TYPES:
            tags = ", ".join(f"'{t}'" for t in THINKING_TYPES)
            raise invalid(
                f"thinking: Input tag '{kind}' found using 'type' does not match any of the "
                f"expected tags: {tags}"
            )
        if kind == "enabled" and not _is_int(thinking.get("budget_tokens")):
            raise invalid("thinking.enabled.budget_tokens: Field required")
        display = thinking.get("display")
        if display is not None and display not in THINKING_DISPLAYS:
            raise invalid("thinking.display: Input should be 'summarized' or 'omitted'")
    if output_config is not None and not isinstance(output_config, dict):
        raise invalid("output_config: Input should be a valid dictionary")
    form = output_config.get("format") if isinstance(output_config, dict) else None
    if form is not None:
        if not isinstance(form, dict):
            raise invalid("output_config.format: Input should be a valid dictionary")
        if form.get("type") != "json_schema":
            raise invalid("output_config.format.type: Input should be 'json_schema'")
        if "schema" not in form:
            raise invalid("output_config.format.schema: Field required")
        if not isinstance(form["schema"], dict):
            raise invalid("output_config.format.schema: Input should be a valid dictionary")


def validate_request(
    body: object,
    *,
    max_output_tokens: int | None = None,
    counting: bool = False,
    api_version: str | None = SAMPLING_API_VERSION,
) -> None:
    """Raise APIErrorReply unless `body` is a request the API would accept.

    `counting` is for `/v1/messages/count_tokens`, which takes no `max_tokens`.
    `max_output_tokens`: the server's own cap, below the model's (None: the model's).
    """
    if not isinstance(body, dict):
        raise invalid("body: Input should be a valid dictionary")
    model = body.get("model")
    if model is None:
        raise invalid("model: Field required")
    if not isinstance(model, str):
        raise invalid("model: Input should be a valid string")
    if not counting:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise invalid("max_tokens: Field required")
        if not _is_int(max_tokens):
            raise invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise invalid("max_tokens: Input should be greater than or equal to 1")
        if max_output_tokens is not None and max_tokens > max_output_tokens:
            raise invalid(
                f"max_tokens: {max_tokens} > {max_output_tokens}, which is the maximum "
                f"allowed number of output tokens for {model}"
            )
    _check_messages(body.get("messages"))
    if "system" in body:
        _check_system(body["system"])
    _check_sampling(body, api_version)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata: Input should be a valid dictionary")
    cache_control = body.get("cache_control")
    if cache_control is not None and not isinstance(cache_control, dict):
        raise invalid("cache_control: Input should be a valid dictionary")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    _check_thinking(body.get("thinking"), body.get("output_config"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream: Input should be a valid boolean")
    if rules_for(model) is None:
        raise APIErrorReply(404, f"model: {model}")
    problem = request_problem(body, api_version=api_version)
    if problem is not None:
        raise invalid(problem.message)
