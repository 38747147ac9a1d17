"""A fast OpenAI-compatible upstream, as a bare ASGI app (no framework).

Deterministic. Behaviour is chosen by the requested model name:
``fail-429``, ``fail-500``, ``fail-503``, ``fail-400``, ``fail-401`` (echoes the
caller's Authorization header in its error, to prove the gateway redacts it),
``context-overflow``, ``slow-<ms>`` (waits before answering), ``midstream-error``
(a stream that errors after two tokens), ``garbage`` (invalid JSON).
``echo`` answers with the last user message; ``echo-tool`` calls the request's first
tool with ``{"text": <last user message>}`` (streamed 7 characters at a time). Every request body is kept in
``requests`` (bounded) so tests can see exactly what the gateway forwarded.

Faults on command (fault injection): ``fail(model, *faults)`` queues faults for
the next requests to that upstream model; ``break_(model, fault)`` applies one
to every request until ``heal(model)``. Faults: ``500``, ``503``, ``429``, ``400``,
``drop`` (headers sent, then the connection is cut), ``hang`` (answers nothing for 5 s),
``slow_first:<ms>`` (first token late), ``die_midstream`` (the connection is cut
after two streamed tokens).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import orjson

REPLY = "Hello from the upstream"


class OpenAIUpstream:
    def __init__(self, reply: str = REPLY, keep: int = 100, chunk_delay: float = 0.0) -> None:
        self.reply = reply
        self.chunk_delay = chunk_delay  # seconds between streamed tokens
        self.requests: deque[dict[str, Any]] = deque(maxlen=keep)
        self.headers: deque[dict[str, str]] = deque(maxlen=keep)
        self.queued: dict[str, deque[str]] = {}
        self.broken: dict[str, str] = {}
        self.calls: dict[str, int] = {}

    def fail(self, model: str, *faults: str) -> None:
        self.queued.setdefault(model, deque()).extend(faults)

    def break_(self, model: str, fault: str) -> None:
        self.broken[model] = fault

    def heal(self, model: str) -> None:
        self.broken.pop(model, None)
        self.queued.pop(model, None)

    def _next_fault(self, model: str) -> str | None:
        self.calls[model] = self.calls.get(model, 0) + 1
        queue = self.queued.get(model)
        if queue:
            return queue.popleft()
        return self.broken.get(model)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if scope["method"] == "GET" and path.endswith("/models"):
            await self._json(send, 200, {"object": "list", "data": [{"id": "up-model", "object": "model"}]})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            await self._json(send, 400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
            return
        self.requests.append(req)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.headers.append(headers)
        model = str(req.get("model", ""))
        fault = self._next_fault(model)
        if fault is not None and await self._inject(send, fault):
            return
        if await self._failure(send, model, headers):
            return
        if path.endswith("/embeddings"):
            inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
            data = [{"object": "embedding", "index": i, "embedding": [0.5, 0.5]} for i in range(len(inputs))]
            await self._json(
                send,
                200,
                {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 3, "total_tokens": 3}},
            )
            return
        text_mode = path.endswith("/completions") and not path.endswith("/chat/completions")
        reply = self.reply
        if model == "echo":
            user = [m.get("content") for m in req.get("messages") or [] if m.get("role") == "user"]
            reply = str(user[-1]) if user else ""
        if model == "echo-tool":
            await self._tool_call(send, req)
            return
        if req.get("stream"):
            await self._stream(send, req, model, text_mode, reply, fault)
            return
        words = reply.split()
        if text_mode:
            choice: dict[str, Any] = {"index": 0, "text": reply, "finish_reason": "stop", "logprobs": None}
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
                "logprobs": None,
            }
        await self._json(
            send,
            200,
            {
                "id": "chatcmpl-up",
                "object": "text_completion" if text_mode else "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)},
            },
        )

    async def _tool_call(self, send: Any, req: dict[str, Any]) -> None:
        user = [m.get("content") for m in req.get("messages") or [] if m.get("role") == "user"]
        name = ((req.get("tools") or [{}])[0].get("function") or {}).get("name", "tool")
        arguments = orjson.dumps({"text": str(user[-1]) if user else ""}).decode()
        base = {"id": "chatcmpl-up", "created": int(time.time()), "model": "echo-tool"}
        call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
        if not req.get("stream"):
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            usage = {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            await self._json(send, 200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        pieces = [arguments[i : i + 7] for i in range(0, len(arguments), 7)]
        opening = {**call, "index": 0, "function": {"name": name, "arguments": ""}}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "tool_calls": [opening]}]
        deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
        for i, delta in enumerate([*deltas, {}]):
            choice = {"index": 0, "delta": delta, "finish_reason": "tool_calls" if i == len(deltas) else None}
            body = orjson.dumps({**base, "object": "chat.completion.chunk", "choices": [choice]})
            await send({"type": "http.response.body", "body": b"data: " + body + b"\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _inject(self, send: Any, fault: str) -> bool:
        """Apply a fault before the response; True when the response is finished (or never comes)."""
        if fault in ("500", "503", "429", "400"):
            kind = "invalid_request_error" if fault == "400" else "server_error"
            await self._json(send, int(fault), {"error": {"message": f"injected {fault}", "type": kind}})
            return True
        if fault == "drop":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
            await send({"type": "http.response.body", "body": b'{"id": "cut', "more_body": True})
            raise ConnectionResetError("injected: connection dropped")
        if fault == "hang":
            await asyncio.sleep(5)  # far past any first-token timeout a test sets
        return False  # stream faults act later

    async def _failure(self, send: Any, model: str, headers: dict[str, str]) -> bool:
        if model.startswith("slow-"):
            await asyncio.sleep(int(model.split("-", 1)[1]) / 1000)
            return False
        failures = {
            "fail-429": (429, "Rate limit reached for requests", "rate_limit_exceeded"),
            "fail-500": (500, "The server had an error", None),
            "fail-503": (503, "The engine is overloaded", None),
            "fail-400": (400, "Invalid 'temperature': too high", "invalid_value"),
            "fail-401": (401, f"Incorrect API key provided: {headers.get('authorization', '')}", "invalid_api_key"),
            "context-overflow": (400, "This model's maximum context length is 4096 tokens.", "context_length_exceeded"),
        }
        if model == "garbage":
            await self._raw(send, 200, b"{not json", b"application/json")
            return True
        if model in failures:
            status, message, code = failures[model]
            await self._json(
                send, status, {"error": {"message": message, "type": "invalid_request_error", "code": code}}
            )
            return True
        return False

    async def _stream(
        self, send: Any, req: dict[str, Any], model: str, text_mode: bool, reply: str, fault: str | None
    ) -> None:
        if fault and fault.startswith("slow_first:"):
            await asyncio.sleep(int(fault.split(":")[1]) / 1000)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        words = reply.split()
        base = {
            "id": "chatcmpl-up",
            "object": "text_completion" if text_mode else "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

        async def event(data: dict[str, Any]) -> None:
            await send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(data) + b"\n\n", "more_body": True}
            )

        for i, word in enumerate(words):
            if fault == "die_midstream" and i == 2:
                raise ConnectionResetError("injected: died mid-stream")
            if model == "midstream-error" and i == 2:
                await event({"error": {"message": "engine crashed", "type": "server_error"}})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if i and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            piece = ("" if i == 0 else " ") + word
            choice = (
                {"index": 0, "text": piece, "finish_reason": None}
                if text_mode
                else {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            )
            await event({**base, "choices": [choice]})
        end = (
            {"index": 0, "text": "", "finish_reason": "stop"}
            if text_mode
            else {"index": 0, "delta": {}, "finish_reason": "stop"}
        )
        await event({**base, "choices": [end]})
        if (req.get("stream_options") or {}).get("include_usage"):
            await event(
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": len(words), "total_tokens": 5 + len(words)},
                }
            )
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    async def _json(self, send: Any, status: int, data: dict[str, Any]) -> None:
        await self._raw(send, status, orjson.dumps(data), b"application/json")

    async def _raw(self, send: Any, status: int, body: bytes, ctype: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
