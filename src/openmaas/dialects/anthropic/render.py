"""Canonical result, events and errors → Anthropic Messages wire shapes (unary, SSE, error envelope)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from openmaas.core.types import (
    Event,
    Finish,
    PartEnd,
    PartStart,
    Reasoning,
    ReasoningDelta,
    Result,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolCallStart,
    Usage,
)
from openmaas.errors import OpenMaaSError

# Anthropic's error types by HTTP status (docs.anthropic.com/en/api/errors)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def error_body(exc: OpenMaaSError, request_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(exc.status), "message": exc.message}}
    if request_id:
        body["request_id"] = request_id
    return body


def message_id(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("req_")


def usage(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": u.input_tokens - u.cached_input_tokens,
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": u.cached_input_tokens,
    }


def _args(text: str) -> Any:
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": text}


def message(result: Result, request_id: str, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    for part in result.parts:
        if isinstance(part, Text):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCall):
            content.append({"type": "tool_use", "id": part.id, "name": part.name, "input": _args(part.arguments)})
        elif isinstance(part, Reasoning):
            content.append({"type": "thinking", "thinking": part.text, "signature": part.signature or ""})
    return {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": result.stop_reason if result.stop_reason != "content_filter" else "refusal",
        "stop_sequence": result.stop_sequence,
        "usage": usage(result.usage),
    }


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps({"type": event, **data}) + b"\n\n"


async def encode(events: AsyncIterator[Event], request_id: str, model: str, input_tokens: int) -> AsyncIterator[bytes]:
    """The Messages event stream for canonical events; a failure after the start is an ``error`` event."""
    start: dict[str, Any] = {
        "id": message_id(request_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    yield sse("message_start", {"message": start})
    yield sse("ping", {})
    try:
        async for event in events:
            if isinstance(event, PartStart):
                kind = "text" if event.kind == "text" else "thinking"
                block: dict[str, Any] = {"type": kind, kind: ""}
                yield sse("content_block_start", {"index": event.index, "content_block": block})
            elif isinstance(event, TextDelta):
                yield sse(
                    "content_block_delta", {"index": event.index, "delta": {"type": "text_delta", "text": event.text}}
                )
            elif isinstance(event, ToolArgsDelta):
                delta = {"type": "input_json_delta", "partial_json": event.arguments}
                yield sse("content_block_delta", {"index": event.index, "delta": delta})
            elif isinstance(event, ReasoningDelta):
                delta = {"type": "thinking_delta", "thinking": event.text}
                yield sse("content_block_delta", {"index": event.index, "delta": delta})
            elif isinstance(event, ToolCallStart):
                block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
                yield sse("content_block_start", {"index": event.index, "content_block": block})
            elif isinstance(event, PartEnd):
                yield sse("content_block_stop", {"index": event.index})
            elif isinstance(event, Finish):
                reason = event.stop_reason if event.stop_reason != "content_filter" else "refusal"
                out = {"output_tokens": event.usage.output_tokens, "input_tokens": event.usage.input_tokens}
                yield sse("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": None}, "usage": out})
                yield sse("message_stop", {})
    except OpenMaaSError as exc:
        yield sse("error", {"error": error_body(exc)["error"]})


def model_card(card: dict[str, Any]) -> dict[str, Any]:
    """One of our model cards as Anthropic's Models API shows a model."""
    return {"type": "model", "id": card["id"], "display_name": card["id"], "created_at": "1970-01-01T00:00:00Z"}


def model_list(cards: list[dict[str, Any]]) -> dict[str, Any]:
    data = [model_card(c) for c in cards]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return {"data": data, "has_more": False, "first_id": first, "last_id": last}
