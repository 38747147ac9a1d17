"""Canonical ⇄ the execution payload: the one translation between dialects and the pipeline.

Backends speak the OpenAI chat shape (``backends/base.py``); every inbound dialect loads into a
canonical ``Request`` and reaches the pipeline through ``to_payload`` — so privacy scanning, routing
policy, pricing and token accounting see *every* text of every dialect (Anthropic's top-level
``system`` and ``tool_result`` blocks, Responses' ``instructions`` and ``function_call_output``s)
in one place. Results come back through ``from_result`` (unary) and ``StreamDecoder`` (chunks →
canonical events). What chat cannot express travels as ``Request.native`` (see ``NATIVE_KEY``).

Rules for what chat cannot express (documented in docs/dialects.md):
* a tool result's ``is_error`` becomes a ``[tool error]`` prefix of its text;
* reasoning items given back by the client are dropped (only their own deployment could read them);
* a text document becomes a text part headed by its title; other documents a ``file`` part.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from openmaas.core.types import (
    Document,
    Event,
    Finish,
    Image,
    Message,
    PartEnd,
    PartStart,
    Reasoning,
    ReasoningDelta,
    Request,
    Result,
    StopReason,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolCallStart,
    ToolResult,
    Usage,
)
from openmaas.protocol.chat import ChatCompletionRequest

Payload = dict[str, Any]

NATIVE_KEY = "_native"  # carries core.types.Native to the router, which hands it only to a same-dialect backend
CEILING_KEY = "_max_tokens_is_ceiling"  # max_tokens may be lowered to fit the deployment (router, admission)


def fit_ceiling(payload: dict[str, Any], room: int) -> None:
    """Lower a ceiling ``max_tokens`` to ``room`` (what the deployment's context leaves after the prompt)."""
    payload.pop(CEILING_KEY, None)
    if isinstance(payload.get("max_tokens"), int):
        payload["max_tokens"] = max(1, min(payload["max_tokens"], room))


FINISH_TO_STOP: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}


def _content_part(part: Text | Image | Document) -> Payload:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, Image):
        url = part.url or f"data:{part.media_type};base64,{part.data}"
        return {"type": "image_url", "image_url": {"url": url}}
    if part.text is not None:
        head = f"Document: {part.title}\n" if part.title else ""
        return {"type": "text", "text": head + part.text}
    data = part.url or f"data:{part.media_type};base64,{part.data}"
    return {"type": "file", "file": {"file_data": data, "filename": part.title or "document"}}


def _content(parts: list[Text | Image | Document]) -> str | list[Payload]:
    if all(isinstance(p, Text) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, Text))
    return [_content_part(p) for p in parts]


def _messages(request: Request) -> list[Payload]:
    out: list[Payload] = []
    if request.instructions:
        out.append({"role": "system", "content": "\n\n".join(t.text for t in request.instructions)})
    for message in request.messages:
        plain = [p for p in message.parts if isinstance(p, Text | Image | Document)]
        if message.role == "system":
            out.append({"role": "system", "content": "\n\n".join(message.texts())})
        elif message.role == "assistant":
            calls = [p for p in message.parts if isinstance(p, ToolCall)]
            entry: Payload = {"role": "assistant", "content": _content(plain) if plain else None}
            if calls:
                entry["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            elif not plain:
                entry["content"] = ""
            out.append(entry)
        else:  # user / tool: results first (chat wants them right after the assistant's calls)
            for result in (p for p in message.parts if isinstance(p, ToolResult)):
                text = _content(result.content) if result.content else ""
                if result.is_error:
                    text = "[tool error] " + text if isinstance(text, str) else [_error_part(), *text]
                out.append({"role": "tool", "tool_call_id": result.call_id, "content": text})
            if plain:
                out.append({"role": "user", "content": _content(plain)})
    return out


def _error_part() -> Payload:
    return {"type": "text", "text": "[tool error] "}


def to_payload(request: Request) -> Payload:
    """The pipeline's execution payload for a canonical request."""
    payload: Payload = {"model": request.model, "messages": _messages(request)}
    if request.max_output_tokens is not None:
        payload["max_tokens"] = request.max_output_tokens
        if request.output_limit_is_ceiling:
            payload[CEILING_KEY] = True
    for key in ("temperature", "top_p", "top_k", "user"):
        value = getattr(request, key)
        if value is not None:
            payload[key] = value
    if request.stop:
        payload["stop"] = list(request.stop)
    if request.tools and not (request.tool_choice and request.tool_choice.mode == "none"):
        payload["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    **({"description": t.description} if t.description else {}),
                    "parameters": t.parameters,
                },
            }
            for t in request.tools
        ]
        choice = request.tool_choice
        if choice is not None:
            if choice.mode == "named":
                payload["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            else:
                payload["tool_choice"] = choice.mode
            if choice.parallel is not None:
                payload["parallel_tool_calls"] = choice.parallel
    out = request.output
    if out is not None and out.kind == "json_object":
        payload["response_format"] = {"type": "json_object"}
    elif out is not None and out.kind == "json_schema":
        spec: Payload = {"name": out.name or "output", "schema": out.schema or {"type": "object"}}
        if out.strict is not None:
            spec["strict"] = out.strict
        payload["response_format"] = {"type": "json_schema", "json_schema": spec}
    if request.stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    for key in ("ttc", "knowledge_base", "route"):
        value = getattr(request, key)
        if value is not None:
            payload[key] = value
    if request.native is not None and request.knowledge_base is None and request.ttc is None:
        payload[NATIVE_KEY] = request.native
    return payload


class RequestHead(NamedTuple):  # immutable and one tuple allocation (a frozen dataclass sets each field by a call)
    """What the gateway reads of a chat request to run it: from a validated ``ChatCompletionRequest``, or
    straight from a payload ``to_payload`` built (``request_head``) — the dialect validated its wire body and
    ``to_payload`` writes only well-formed values, so that payload is not validated a second time."""

    model: str
    stream: bool
    output_limit: int | None
    wants_usage_chunk: bool

    @classmethod
    def of(cls, request: ChatCompletionRequest) -> RequestHead:
        return cls(request.model, bool(request.stream), request.output_limit, request.wants_usage_chunk)


def request_head(payload: Payload) -> RequestHead:
    limit = payload.get("max_tokens")
    return RequestHead(payload["model"], bool(payload.get("stream")), limit, bool(payload.get("stream_options")))


def usage_of(raw: Payload | None) -> Usage:
    raw = raw or {}
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        int(raw.get("prompt_tokens") or 0),
        int(raw.get("completion_tokens") or 0),
        int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0,
    )


def from_result(result: Payload, model: str, stop: list[str] | None = None) -> Result:
    """A unary chat result (first choice) as a canonical result."""
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    parts: list[Any] = []
    if message.get("reasoning_content"):
        parts.append(Reasoning(str(message["reasoning_content"]), message.get("reasoning_signature")))
    content = message.get("content")
    if isinstance(content, str) and (content or not message.get("tool_calls")):
        parts.append(Text(content))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(ToolCall(str(call.get("id")), str(function.get("name")), str(function.get("arguments") or "{}")))
    reason = FINISH_TO_STOP.get(str(choice.get("finish_reason")), "end_turn")
    matched = _matched_stop(content if isinstance(content, str) else "", stop, choice)
    if matched is not None and reason == "end_turn":
        reason = "stop_sequence"
    return Result(
        str(result.get("id") or ""), model, parts, reason, usage_of(result.get("usage")), stop_sequence=matched
    )


def _matched_stop(text: str, stop: list[str] | None, choice: Payload) -> str | None:
    """Which stop sequence ended generation: llama.cpp says (``stop_type``/``stopping_word``); else unknown."""
    word = choice.get("stopping_word")
    if isinstance(word, str) and word and stop and word in stop:
        return word
    return None


class StreamDecoder:
    """OpenAI chunks (first choice) → canonical events, with output part indices in output order."""

    def __init__(self) -> None:
        self.open: tuple[str, int] | None = None  # (kind, part index) of the part being written
        self.next_index = 0
        self.tools: dict[int, int] = {}  # chunk tool_calls index → part index
        self.usage: Usage | None = None
        self.finish: StopReason | None = None

    def _switch(self, kind: str, key: int | None = None) -> tuple[list[Event], int]:
        events: list[Event] = []
        if self.open is not None and self.open[0] == kind and key is None:
            return events, self.open[1]
        if self.open is not None:
            events.append(PartEnd(self.open[1]))
        index = self.next_index
        self.next_index += 1
        self.open = (kind, index)
        if kind in ("text", "reasoning"):
            events.append(PartStart(index, "text" if kind == "text" else "reasoning"))
        return events, index

    def feed(self, chunk: Payload) -> list[Event]:
        events: list[Event] = []
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        for choice in (chunk.get("choices") or [])[:1]:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                opened, index = self._switch("reasoning")
                events += [*opened, ReasoningDelta(index, reasoning)]
            content = delta.get("content")
            if isinstance(content, str) and content:
                opened, index = self._switch("text")
                events += [*opened, TextDelta(index, content)]
            for call in delta.get("tool_calls") or []:
                position = int(call.get("index") or 0)
                function = call.get("function") or {}
                if position not in self.tools:
                    opened, index = self._switch("tool", position)
                    self.tools[position] = index
                    events += [*opened, ToolCallStart(index, str(call.get("id") or f"call_{index}"), function["name"])]
                if function.get("arguments"):
                    events.append(ToolArgsDelta(self.tools[position], str(function["arguments"])))
            if choice.get("finish_reason"):
                self.finish = FINISH_TO_STOP.get(str(choice["finish_reason"]), "end_turn")
        return events

    def close(self) -> list[Event]:
        """The events that end the stream: the open part, then the finish with the final usage."""
        events: list[Event] = []
        if self.open is not None:
            events.append(PartEnd(self.open[1]))
            self.open = None
        events.append(Finish(self.finish or "end_turn", self.usage or Usage()))
        return events


def message_of(result: Result) -> Message:
    """The assistant message a result adds to a conversation (stored Responses state)."""
    return Message("assistant", list(result.parts))
