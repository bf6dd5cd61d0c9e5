"""Every content block type a Messages API reply can hold, built as the API builds it.

One builder per type (the SDK's ``anthropic.types.ContentBlock`` union lists
them): the handlers use them for thinking, tools, server tools and paused
turns, and a script names them (``{"blocks": ["thinking", "text"]}``) to make
any reply at all. ``tests/unit/test_localapi_contract.py`` feeds every
builder's block to the SDK's own typed models, and fails when the SDK knows a
type that has no builder here.

Shapes: the SDK's ``types/*_block.py`` (2.14) and the API reference
(platform.claude.com/docs/en/api/messages).
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from localapi.replies import generate_text

Block = dict[str, Any]

# The server tools whose calls a reply shows as server_tool_use blocks, by the
# prefix of the tool's `type` in the request (web_search_20250305, ...), with
# the name the API gives the call and the result block that follows it.
SERVER_TOOLS: dict[str, tuple[str, str]] = {
    "web_search_": ("web_search", "web_search_tool_result"),
    "web_fetch_": ("web_fetch", "web_fetch_tool_result"),
    "code_execution_": ("code_execution", "code_execution_tool_result"),
    "tool_search_tool_regex": ("tool_search_tool_regex", "tool_search_tool_result"),
    "tool_search_tool_bm25": ("tool_search_tool_bm25", "tool_search_tool_result"),
}


_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def new_block_id(prefix: str, rng: random.Random) -> str:
    """`toolu_`/`srvtoolu_` and 24 alphanumerics, drawn from the call's generator."""
    return prefix + "".join(rng.choices(_ID_CHARS, k=24))


def signature_for(model: str, thinking: str) -> str:
    """An opaque signature, as the API returns it: base64, bound to the model and the text."""
    digest = hashlib.sha256(f"{model}\x00{thinking}".encode()).digest()
    return base64.b64encode(b"chorus-local-signature:" + digest * 2).decode()


def text_block(text: str) -> Block:
    return {"type": "text", "text": text}


def thinking_block(model: str, thinking: str, *, display: str) -> Block:
    """With ``display: omitted`` the text is empty and only the signature comes back."""
    shown = thinking if display == "summarized" else ""
    return {"type": "thinking", "thinking": shown, "signature": signature_for(model, thinking)}


def redacted_thinking_block(model: str, rng: random.Random) -> Block:
    data = base64.b64encode(rng.randbytes(48) + model.encode()).decode()
    return {"type": "redacted_thinking", "data": data}


def tool_use_block(name: str, tool_input: Mapping[str, Any], rng: random.Random) -> Block:
    return {"type": "tool_use", "id": new_block_id("toolu_", rng), "name": name,
            "input": dict(tool_input), "caller": {"type": "direct"}}  # fmt: skip


def server_tool_use_block(name: str, tool_input: Mapping[str, Any], block_id: str) -> Block:
    return {"type": "server_tool_use", "id": block_id, "name": name, "input": dict(tool_input),
            "caller": {"type": "direct"}}  # fmt: skip


def server_tool_result_block(result_type: str, tool_use_id: str, rng: random.Random) -> Block:
    """The result block of one server tool call, with plausible content."""
    return {"tool_use_id": tool_use_id, "type": result_type, **_RESULT_CONTENT[result_type](rng)}


def _web_search(rng: random.Random) -> dict[str, Any]:
    results = [
        {
            "type": "web_search_result",
            "url": f"https://example.com/{rng.randrange(10_000)}",
            "title": generate_text(rng, 6),
            "encrypted_content": base64.b64encode(rng.randbytes(32)).decode(),
            "page_age": "3 days ago",
        }
        for _ in range(2)
    ]
    return {"content": results, "caller": {"type": "direct"}}


def _web_fetch(rng: random.Random) -> dict[str, Any]:
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": generate_text(rng, 30)},
        "title": generate_text(rng, 4),
        "citations": {"enabled": False},
    }
    return {
        "content": {
            "type": "web_fetch_result",
            "url": f"https://example.com/{rng.randrange(10_000)}",
            "content": document,
            "retrieved_at": "2026-11-29T10:00:00Z",
        },
        "caller": {"type": "direct"},
    }


def _code_execution(rng: random.Random) -> dict[str, Any]:
    return {"content": {"type": "code_execution_result", "stdout": "42\n", "stderr": "",
                        "return_code": 0, "content": []}}  # fmt: skip


def _bash_code_execution(rng: random.Random) -> dict[str, Any]:
    return {"content": {"type": "bash_code_execution_result", "stdout": "ok\n", "stderr": "",
                        "return_code": 0, "content": []}}  # fmt: skip


def _text_editor(rng: random.Random) -> dict[str, Any]:
    text = generate_text(rng, 12)
    return {"content": {"type": "text_editor_code_execution_view_result", "content": text,
                        "file_type": "text", "num_lines": 1, "start_line": 1,
                        "total_lines": 1}}  # fmt: skip


def _tool_search(rng: random.Random) -> dict[str, Any]:
    return {"content": {"type": "tool_search_tool_search_result",
                        "tool_references": [{"type": "tool_reference",
                                             "tool_name": "get_weather"}]}}  # fmt: skip


_RESULT_CONTENT: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "web_search_tool_result": _web_search,
    "web_fetch_tool_result": _web_fetch,
    "code_execution_tool_result": _code_execution,
    "bash_code_execution_tool_result": _bash_code_execution,
    "text_editor_code_execution_tool_result": _text_editor,
    "tool_search_tool_result": _tool_search,
}
# The server tool whose call each result block answers.
_RESULT_TOOL = {
    "web_search_tool_result": ("web_search", {"query": "local weather"}),
    "web_fetch_tool_result": ("web_fetch", {"url": "https://example.com/"}),
    "code_execution_tool_result": ("code_execution", {"code": "print(6 * 7)"}),
    "bash_code_execution_tool_result": ("bash_code_execution", {"command": "echo ok"}),
    "text_editor_code_execution_tool_result": (
        "text_editor_code_execution",
        {"command": "view", "path": "/tmp/notes.txt"},
    ),
    "tool_search_tool_result": ("tool_search_tool_regex", {"query": "weather"}),
}
RESULT_BLOCK_TYPES = tuple(_RESULT_CONTENT)


def container_upload_block(rng: random.Random) -> Block:
    return {"type": "container_upload", "file_id": new_block_id("file_", rng)}


def server_tool_turn(result_type: str, rng: random.Random) -> list[Block]:
    """A server tool's call and its result: the two blocks it always comes as."""
    name, tool_input = _RESULT_TOOL[result_type]
    block_id = new_block_id("srvtoolu_", rng)
    return [
        server_tool_use_block(name, tool_input, block_id),
        server_tool_result_block(result_type, block_id, rng),
    ]


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a scripted block is built from."""

    model: str
    rng: random.Random
    display: str = "summarized"


def _scripted(kind: str, ctx: BlockContext) -> list[Block]:
    rng = ctx.rng
    if kind == "text":
        return [text_block(generate_text(rng, 12))]
    if kind == "thinking":
        return [thinking_block(ctx.model, generate_text(rng, 20), display=ctx.display)]
    if kind == "redacted_thinking":
        return [redacted_thinking_block(ctx.model, rng)]
    if kind == "tool_use":
        return [tool_use_block("get_weather", {"city": "Paris"}, rng)]
    if kind == "server_tool_use":
        name, tool_input = _RESULT_TOOL["web_search_tool_result"]
        return [server_tool_use_block(name, tool_input, new_block_id("srvtoolu_", rng))]
    if kind == "container_upload":
        return [container_upload_block(rng)]
    if kind in _RESULT_CONTENT:
        return server_tool_turn(kind, rng)
    raise ValueError(f"unknown block type {kind!r}; one of {sorted(BLOCK_TYPES)}")


# Every block type a script can ask for by name. A server tool's result block
# comes with the server_tool_use block it answers, as in a real reply.
BLOCK_TYPES: frozenset[str] = frozenset(
    {"text", "thinking", "redacted_thinking", "tool_use", "server_tool_use", "container_upload",
     *RESULT_BLOCK_TYPES}
)  # fmt: skip


def build_blocks(kinds: list[str], ctx: BlockContext) -> list[Block]:
    """The blocks a script names, in order (ValueError on an unknown name)."""
    blocks: list[Block] = []
    for kind in kinds:
        blocks += _scripted(kind, ctx)
    return blocks
