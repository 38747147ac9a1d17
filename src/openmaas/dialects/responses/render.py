"""Canonical results and events → Responses API objects and typed SSE events (with ``sequence_number``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from openmaas.core.types import (
    Event,
    Finish,
    Part,
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
from openmaas.dialects.responses.wire import ResponsesRequest
from openmaas.errors import OpenMaaSError
from openmaas.ids import IdGenerator

Item = dict[str, Any]


@dataclass
class Shell:
    """What every response object of one request repeats: its id, the request's settings, notes."""

    id: str
    model: str
    wire: ResponsesRequest
    notes: list[str] = field(default_factory=list)
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        status: str,
        output: list[Item],
        usage: Usage | None,
        error: dict[str, Any] | None = None,
        incomplete: str = "max_output_tokens",
    ) -> Item:
        w = self.wire
        fmt = (
            w.text.format.model_dump(by_alias=True, exclude_none=True) if w.text and w.text.format else {"type": "text"}
        )
        body: Item = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": bool(w.background),
            "error": error,
            "incomplete_details": {"reason": incomplete} if status == "incomplete" else None,
            "instructions": w.instructions,
            "max_output_tokens": w.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": w.parallel_tool_calls if w.parallel_tool_calls is not None else True,
            "previous_response_id": w.previous_response_id,
            "reasoning": w.reasoning,
            "store": w.store is not False,
            "temperature": w.temperature,
            "text": {"format": fmt},
            "tool_choice": w.tool_choice if w.tool_choice is not None else "auto",
            "tools": [t.model_dump(exclude_none=True) for t in w.tools or []],
            "top_p": w.top_p,
            "truncation": "disabled",
            "usage": usage_of(usage) if usage is not None else None,
            "user": w.user,
            "metadata": w.metadata or {},
        }
        if self.notes:
            body["openmaas"] = {"notes": self.notes}
        return body


def usage_of(u: Usage) -> Item:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def status_of(result_reason: str) -> str:
    return "incomplete" if result_reason == "max_tokens" else "completed"


def output_items(parts: list[Part], new_id: IdGenerator) -> list[Item]:
    """A result's parts as output items: reasoning, one message for the text, one item per tool call."""
    items: list[Item] = []
    message: Item | None = None
    for part in parts:
        if isinstance(part, Reasoning):
            summary = [{"type": "summary_text", "text": part.text}] if part.text else []
            items.append({"type": "reasoning", "id": "rs_" + new_id(), "summary": summary})
        elif isinstance(part, Text):
            if message is None:
                message = {"type": "message", "id": "msg_" + new_id(), "status": "completed", "role": "assistant"}
                message["content"] = []
                items.append(message)
            message["content"].append({"type": "output_text", "text": part.text, "annotations": []})
        elif isinstance(part, ToolCall):
            fc = {"type": "function_call", "id": "fc_" + new_id(), "call_id": part.id, "name": part.name}
            items.append({**fc, "arguments": part.arguments, "status": "completed"})
    return items


def from_result(shell: Shell, result: Result, new_id: IdGenerator) -> Item:
    return shell.response(status_of(result.stop_reason), output_items(result.parts, new_id), result.usage)


def sse(event: Item) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


Finished = Callable[[Item], Awaitable[None]]


class Encoder:
    """Canonical events → the Responses stream; ``finished`` gets the final response object (to store)."""

    def __init__(self, shell: Shell, new_id: IdGenerator, finished: Finished) -> None:
        self.shell, self.new_id, self.finished = shell, new_id, finished
        self.sequence = 0
        self.items: dict[int, Item] = {}  # part index → output item
        self.order: list[int] = []

    def _event(self, kind: str, **data: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        return sse(event)

    def _output(self) -> list[Item]:
        return [self.items[i] for i in self.order]

    def _open(self, index: int, item: Item) -> bytes:
        self.items[index] = item
        self.order.append(index)
        return self._event("response.output_item.added", output_index=len(self.order) - 1, item=item)

    def _at(self, index: int) -> int:
        return self.order.index(index)

    async def encode(self, events: AsyncIterator[Event]) -> AsyncIterator[bytes]:
        yield self._event("response.created", response=self.shell.response("in_progress", [], None))
        yield self._event("response.in_progress", response=self.shell.response("in_progress", [], None))
        try:
            async for event in events:
                for out in self._render(event):
                    yield out
                if isinstance(event, Finish):
                    final = self.shell.response(status_of(event.stop_reason), self._output(), event.usage)
                    await self.finished(final)
                    yield self._event(
                        "response.completed" if final["status"] == "completed" else "response.incomplete",
                        response=final,
                    )
        except OpenMaaSError as exc:
            error = {"code": exc.code or exc.type, "message": exc.message}
            failed = self.shell.response("failed", self._output(), None, error)
            await self.finished(failed)
            yield self._event("error", code=error["code"], message=exc.message, param=exc.param)
            yield self._event("response.failed", response=failed)

    def _render(self, event: Event) -> list[bytes]:
        if isinstance(event, PartStart) and event.kind == "text":
            item: Item = {
                "type": "message",
                "id": "msg_" + self.new_id(),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            part: Item = {"type": "output_text", "text": "", "annotations": []}
            opened = self._open(event.index, item)
            item["content"].append(part)
            added = self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=self._at(event.index),
                content_index=0,
                part=part,
            )
            return [opened, added]
        if isinstance(event, PartStart):
            return [self._open(event.index, {"type": "reasoning", "id": "rs_" + self.new_id(), "summary": []})]
        if isinstance(event, TextDelta):
            item = self.items[event.index]
            item["content"][0]["text"] += event.text
            at = self._at(event.index)
            return [
                self._event(
                    "response.output_text.delta",
                    item_id=item["id"],
                    output_index=at,
                    content_index=0,
                    delta=event.text,
                    logprobs=[],
                )
            ]
        if isinstance(event, ReasoningDelta):
            item = self.items[event.index]
            if not item["summary"]:
                item["summary"].append({"type": "summary_text", "text": ""})
            item["summary"][0]["text"] += event.text
            return []
        if isinstance(event, ToolCallStart):
            fc: Item = {"type": "function_call", "id": "fc_" + self.new_id(), "call_id": event.id, "name": event.name}
            return [self._open(event.index, {**fc, "arguments": "", "status": "in_progress"})]
        if isinstance(event, ToolArgsDelta):
            item = self.items[event.index]
            item["arguments"] += event.arguments
            return [
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self._at(event.index),
                    delta=event.arguments,
                )
            ]
        if isinstance(event, PartEnd):
            return self._close(event.index)
        return []

    def _close(self, index: int) -> list[bytes]:
        item = self.items[index]
        at = self._at(index)
        out: list[bytes] = []
        if item["type"] == "message":
            part = item["content"][0]
            out.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=at,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
            )
            out.append(
                self._event(
                    "response.content_part.done", item_id=item["id"], output_index=at, content_index=0, part=part
                )
            )
        elif item["type"] == "function_call":
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=at,
                    arguments=item["arguments"],
                )
            )
        if "status" in item:
            item["status"] = "completed"
        out.append(self._event("response.output_item.done", output_index=at, item=item))
        return out
