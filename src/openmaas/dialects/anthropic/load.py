"""Anthropic Messages wire body → canonical request.

``thinking`` and ``context_management`` are kept in the native body (forwarded to Anthropic
deployments) and dropped elsewhere, never refused; so are ``cache_control`` marks. Volatile system
text (Claude Code's per-request billing line) is removed before any other deployment sees the
prompt, so it cannot defeat a local engine's prompt cache (``dialects.anthropic.volatile_system``).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from openmaas.core.types import (
    Document,
    Image,
    Message,
    Native,
    Part,
    Reasoning,
    Request,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from openmaas.dialects.anthropic.wire import Block, CountTokensRequest, MessagesRequest
from openmaas.errors import InvalidRequest, from_validation_error

DIALECT = "anthropic"
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def validate(model: type[MessagesRequest] | type[CountTokensRequest], body: dict[str, Any]) -> BaseModel:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _need(block: Block, key: str, kind: type, where: str) -> Any:
    """A field every block of this kind must carry (blocks are open objects: their fields are extras)."""
    value = (block.model_extra or {}).get(key)
    if not isinstance(value, kind):
        raise InvalidRequest(f"{where}: a '{block.type}' block needs '{key}' ({kind.__name__})", param=where)
    return value


def _source(block: Block, where: str) -> dict[str, Any]:
    source: dict[str, Any] = _need(block, "source", dict, where)
    return source


def _media(block: Block, where: str) -> Image | Document:
    source = _source(block, where)
    kind = source.get("type")
    extra = block.model_extra or {}
    if block.type == "image":
        if kind == "base64":
            return Image(str(source.get("media_type")), str(source.get("data")))
        if kind == "url":
            return Image(url=str(source.get("url")))
        raise InvalidRequest(f"{where}: image source type '{kind}' is not supported", param=where)
    title = extra.get("title") if isinstance(extra.get("title"), str) else None
    if kind == "text":
        return Document("text/plain", text=str(source.get("data", "")), title=title)
    if kind == "base64":
        return Document(str(source.get("media_type")), data=str(source.get("data")), title=title)
    if kind == "url":
        return Document("application/pdf", url=str(source.get("url")), title=title)
    if kind == "content":
        inner = source.get("content")
        text = inner if isinstance(inner, str) else "".join(str(b.get("text", "")) for b in inner or [])
        return Document("text/plain", text=text, title=title)
    raise InvalidRequest(f"{where}: document source type '{kind}' is not supported", param=where)


def _result_content(block: Block, where: str) -> list[Text | Image | Document]:
    content = (block.model_extra or {}).get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: tool_result content must be a string or blocks", param=where)
    out: list[Text | Image | Document] = []
    for i, raw in enumerate(content):
        inner = Block.model_validate(raw) if isinstance(raw, dict) and raw.get("type") else None
        if inner is None:
            raise InvalidRequest(f"{where}.content.{i}: a block with a 'type' is required", param=where)
        if inner.type == "text":
            out.append(Text(_need(inner, "text", str, where)))
        elif inner.type in ("image", "document"):
            out.append(_media(inner, where))
    return out


def _parts(content: str | list[Block], where: str, volatile: list[re.Pattern[str]] | None = None) -> list[Part]:
    if isinstance(content, str):
        return [Text(_strip(content, volatile))] if content else []
    parts: list[Part] = []
    for i, block in enumerate(content):
        at = f"{where}.{i}"
        extra = block.model_extra or {}
        cache = extra.get("cache_control") if isinstance(extra.get("cache_control"), dict) else None
        if block.type == "text":
            text = _strip(_need(block, "text", str, at), volatile)
            if text:
                parts.append(Text(text, cache))
        elif block.type in ("image", "document"):
            parts.append(_media(block, at))
        elif block.type == "tool_use":
            args = extra.get("input", {})
            parts.append(
                ToolCall(_need(block, "id", str, at), _need(block, "name", str, at), orjson.dumps(args).decode())
            )
        elif block.type == "tool_result":
            is_error = bool(extra.get("is_error"))
            parts.append(ToolResult(_need(block, "tool_use_id", str, at), _result_content(block, at), is_error))
        elif block.type == "thinking":
            parts.append(Reasoning(str(extra.get("thinking", "")), extra.get("signature")))
        elif block.type == "redacted_thinking":
            parts.append(Reasoning("", extra.get("data"), redacted=True))
        # other block kinds (server tool results, citations, search results) carry no prompt for other models
    return parts


def _strip(text: str, volatile: list[re.Pattern[str]] | None) -> str:
    """The text without its volatile lines; untouched when none is there."""
    for pattern in volatile or ():
        text = pattern.sub("", text)
    return text


def _choice(wire: MessagesRequest | CountTokensRequest) -> ToolChoice | None:
    choice = wire.tool_choice
    if choice is None:
        return None
    mode = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}[choice.type]
    if mode == "named" and not choice.name:
        raise InvalidRequest("tool_choice of type 'tool' needs a 'name'", param="tool_choice")
    names = {t.name for t in wire.tools or []}
    if choice.name and choice.name not in names:
        raise InvalidRequest(f"tool_choice names tool '{choice.name}', which is not in tools", param="tool_choice")
    parallel = None if choice.disable_parallel_tool_use is None else not choice.disable_parallel_tool_use
    return ToolChoice(mode, choice.name, parallel)  # type: ignore[arg-type]


def load(body: dict[str, Any], volatile: list[re.Pattern[str]] | None = None, counting: bool = False) -> Request:
    """Validate a Messages body and load it (``counting``: a count_tokens body, no ``max_tokens``)."""
    wire = validate(CountTokensRequest if counting else MessagesRequest, body)
    assert isinstance(wire, MessagesRequest | CountTokensRequest)
    system = wire.system
    instructions: list[Text] = []
    if isinstance(system, str):
        stripped = _strip(system, volatile)
        instructions = [Text(stripped)] if stripped else []
    elif system:
        instructions = [p for p in _parts(system, "system", volatile) if isinstance(p, Text)]
    messages = [Message(m.role, _parts(m.content, f"messages.{i}.content")) for i, m in enumerate(wire.messages)]
    if not messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    tools = [
        ToolSpec(t.name, t.description, t.input_schema or EMPTY_SCHEMA) for t in wire.tools or [] if t.type is None
    ]
    notes = [f"server tool '{t.name}' is not served; ignored" for t in wire.tools or [] if t.type is not None]
    request = Request(model=wire.model, messages=messages, instructions=instructions, tools=tools, notes=notes)
    request.tool_choice = _choice(wire)
    request.native = Native(DIALECT, body)
    if isinstance(wire, MessagesRequest):
        request.max_output_tokens = wire.max_tokens
        request.output_limit_is_ceiling = True  # Claude Code asks for 32k–128k: a bound, not a demand
        request.temperature, request.top_p, request.top_k = wire.temperature, wire.top_p, wire.top_k
        request.stop = list(wire.stop_sequences or [])
        request.stream = bool(wire.stream)
        if wire.metadata is not None and wire.metadata.user_id:
            request.user = wire.metadata.user_id
        extra = wire.model_extra or {}
        request.ttc, request.knowledge_base, request.route = (
            extra.get("ttc"),
            extra.get("knowledge_base"),
            extra.get("route"),
        )
    return request


def compile_patterns(patterns: list[str]) -> list[re.Pattern[str]]:
    return [re.compile(p, re.MULTILINE) for p in patterns]
