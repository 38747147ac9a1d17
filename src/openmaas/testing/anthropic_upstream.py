"""A local upstream that speaks the Anthropic Messages API (``POST /v1/messages``).

Deterministic: answers with a tool call when tools are offered and
``tool_choice`` asks for one (``any``/``tool``), else with fixed text. Streams
the events the real API sends (``message_start`` … ``message_stop``).
Requests are kept in ``requests`` so tests see what the gateway translated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

TEXT = "Hello from Claude"


def _error(status: int, kind: str, message: str) -> Response:
    return Response(
        orjson.dumps({"type": "error", "error": {"type": kind, "message": message}}),
        status_code=status,
        media_type="application/json",
    )


def _answer(body: dict[str, Any]) -> list[dict[str, Any]]:
    choice = body.get("tool_choice") or {}
    tools = body.get("tools") or []
    if tools and choice.get("type") in ("any", "tool"):
        name = choice.get("name") or tools[0]["name"]
        return [{"type": "tool_use", "id": "toolu_01", "name": name, "input": {"city": "Paris"}}]
    return [{"type": "text", "text": TEXT}]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicUpstream:
    def __init__(self, api_key: str = "sk-ant-test-key-0123456789") -> None:
        self.api_key = api_key
        self.requests: deque[dict[str, Any]] = deque(maxlen=100)
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            ]
        )

    async def count_tokens(self, request: Request) -> Response:
        """Words of the system prompt and every text block, plus 7: distinguishable from any local count."""
        if self.api_key not in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:]):
            return _error(401, "authentication_error", "invalid x-api-key")
        body = orjson.loads(await request.body())
        self.requests.append(body)
        system = body.get("system") or ""
        texts = [system] if isinstance(system, str) else [b.get("text", "") for b in system]
        for m in body.get("messages") or []:
            content = m.get("content")
            texts += [content] if isinstance(content, str) else [b.get("text", "") for b in content or []]
        return Response(orjson.dumps({"input_tokens": 7 + sum(len(t.split()) for t in texts)}))

    async def messages(self, request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (request.headers.get("x-api-key"), bearer):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        body = orjson.loads(await request.body())
        self.requests.append(body)
        if "max_tokens" not in body or not body.get("messages"):
            return _error(400, "invalid_request_error", "max_tokens and messages are required")
        content = _answer(body)
        usage = {"input_tokens": 12, "output_tokens": 4}
        stop = "tool_use" if content[0]["type"] == "tool_use" else "end_turn"
        message = {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return Response(orjson.dumps(message), media_type="application/json")
        return StreamingResponse(self._events(message), media_type="text/event-stream")

    async def _events(self, message: dict[str, Any]) -> AsyncIterator[bytes]:
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1},
        }
        yield _sse("message_start", {"type": "message_start", "message": start})
        yield _sse("ping", {"type": "ping"})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                )
                for word in block["text"].split(" "):
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": word + " "},
                        },
                    )
            else:
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
                )
                raw = orjson.dumps(block["input"]).decode()
                for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                    yield _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": part},
                        },
                    )
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
        yield _sse("message_stop", {"type": "message_stop"})
