"""A validated chat-completions body → the canonical request (for features that run a conversation of several
model calls, such as the agent loop; a plain chat request goes to the pipeline as it is)."""

from __future__ import annotations

from typing import Any

from openmaas.core.types import (
    Image,
    Message,
    OutputFormat,
    Part,
    Request,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
)


def _parts(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    out: list[Part] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            out.append(Text(str(part.get("text", ""))))
        elif kind == "image_url":
            url = part.get("image_url")
            out.append(Image(url=url.get("url") if isinstance(url, dict) else str(url)))
    return out


def from_chat(body: dict[str, Any]) -> Request:
    messages: list[Message] = []
    for m in body.get("messages") or []:
        role = m.get("role")
        if role in ("system", "developer"):
            messages.append(Message("system", _parts(m.get("content"))))
        elif role == "assistant":
            parts = _parts(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                parts.append(ToolCall(str(call.get("id")), str(fn.get("name")), str(fn.get("arguments") or "{}")))
            messages.append(Message("assistant", parts))
        elif role == "tool":
            content = [p for p in _parts(m.get("content")) if isinstance(p, Text)]
            result = ToolResult(str(m.get("tool_call_id")), list(content))
            if messages and messages[-1].role == "tool":
                messages[-1].parts.append(result)
            else:
                messages.append(Message("tool", [result]))
        else:
            messages.append(Message("user", _parts(m.get("content"))))
    tools = [
        ToolSpec(f["name"], f.get("description"), f.get("parameters") or {"type": "object", "properties": {}})
        for t in body.get("tools") or []
        if isinstance(f := t.get("function"), dict)
    ]
    request = Request(model=str(body["model"]), messages=messages, tools=tools)
    choice = body.get("tool_choice")
    if choice in ("auto", "required", "none"):
        request.tool_choice = ToolChoice(choice, parallel=body.get("parallel_tool_calls"))
    elif isinstance(choice, dict):
        request.tool_choice = ToolChoice("named", (choice.get("function") or {}).get("name"))
    request.max_output_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    request.temperature, request.top_p = body.get("temperature"), body.get("top_p")
    stop = body.get("stop")
    request.stop = [stop] if isinstance(stop, str) else list(stop or [])
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        request.output = OutputFormat("json_object")
    elif fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        request.output = OutputFormat("json_schema", spec.get("name"), spec.get("schema"), spec.get("strict"))
    request.stream = bool(body.get("stream"))
    request.user = body.get("user")
    request.route = body.get("route")
    return request
