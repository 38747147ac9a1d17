"""Responses wire body (+ the stored conversation it continues) → canonical request and input items.

Input items are normalised (each gets an ``id``) so they can be stored and listed; the conversation a
``previous_response_id`` names is prepended. Hosted ``mcp`` tools, ``mcp_call`` items and approval
answers go to the agent loop (``agent_spec``; earlier ``mcp_call`` items become calls and results the model
sees). Other tool types and items no deployment here can act on (``custom_tool_call``,
``local_shell_call``…) are accepted and ignored with a note in the response.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from openmaas.agents.spec import AgentSpec, Pending, hosted_mcp
from openmaas.core.types import (
    Document,
    Image,
    Message,
    OutputFormat,
    Part,
    Reasoning,
    Request,
    Text,
    ToolCall,
    ToolChoice,
    ToolResult,
    ToolSpec,
)
from openmaas.dialects.responses.wire import ResponsesRequest
from openmaas.errors import InvalidRequest, from_validation_error
from openmaas.ids import IdGenerator

Item = dict[str, Any]
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
TEXT_KINDS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


def validate(body: dict[str, Any]) -> ResponsesRequest:
    try:
        return ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def normalise(wire: ResponsesRequest, new_id: IdGenerator) -> list[Item]:
    """This turn's input items, each with an id (the short message form gets ``type: message``)."""
    if wire.input is None:
        return []
    if isinstance(wire.input, str):
        return [
            {"type": "message", "id": new_id(), "role": "user", "content": [{"type": "input_text", "text": wire.input}]}
        ]
    items: list[Item] = []
    for item in wire.input:
        raw = item.model_dump(exclude_none=True, by_alias=True)
        raw.setdefault("type", "message")
        raw.setdefault("id", new_id())
        items.append(raw)
    return items


def _parts(content: Any, at: str) -> list[Text | Image | Document]:
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"{at}: content must be a string or a list of parts", param=at)
    out: list[Text | Image | Document] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_KINDS:
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{at}.{i}: a '{kind}' part needs 'text'", param=f"{at}.{i}")
            out.append(Text(part["text"]))
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise InvalidRequest(f"{at}.{i}: input_image needs an 'image_url' here", param=f"{at}.{i}")
            out.append(Image(url=url))
        elif kind == "input_file":
            data = part.get("file_data") or part.get("file_url")
            if not isinstance(data, str):
                raise InvalidRequest(f"{at}.{i}: input_file needs 'file_data' or 'file_url'", param=f"{at}.{i}")
            out.append(Document("application/octet-stream", url=data, title=part.get("filename")))
        elif kind == "refusal":
            out.append(Text(str(part.get("refusal", ""))))
        else:
            raise InvalidRequest(f"{at}.{i}: content part type '{kind}' is not supported", param=f"{at}.{i}")
    return out


def to_messages(items: list[Item], notes: list[str]) -> list[Message]:
    messages: list[Message] = []

    def add(role: str, parts: list[Part]) -> None:
        if messages and messages[-1].role == role and role in ("assistant", "tool"):
            messages[-1].parts.extend(parts)
        else:
            messages.append(Message(role, parts))  # type: ignore[arg-type]

    for n, item in enumerate(items):
        at = f"input.{n}"
        kind = item.get("type")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise InvalidRequest(f"{at}: role must be user, system, developer or assistant", param=at)
            parts = list(_parts(item.get("content"), f"{at}.content"))
            add("system" if role == "developer" else str(role), list(parts))
        elif kind == "function_call":
            for key in ("call_id", "name"):
                if not isinstance(item.get(key), str):
                    raise InvalidRequest(f"{at}: a function_call item needs '{key}'", param=at)
            add("assistant", [ToolCall(item["call_id"], item["name"], str(item.get("arguments") or "{}"))])
        elif kind == "function_call_output":
            output = item.get("output")
            content = _parts(output, f"{at}.output") if output not in (None, "") else []
            if isinstance(item.get("call_id"), str):
                add("tool", [ToolResult(item["call_id"], content)])
            elif isinstance(item.get("name"), str):  # Codex reports some outputs by name, not answering a call
                label = ".".join(str(x) for x in (item.get("namespace"), item["name"]) if x)
                add("user", [Text(f"[{label} output] "), *content])
            else:
                raise InvalidRequest(f"{at}: a function_call_output item needs 'call_id'", param=at)
        elif kind == "mcp_call":  # a hosted tool call of an earlier turn: the call and its result
            name = f"{item.get('server_label')}__{item.get('name')}"
            error = item.get("error")
            text = str(item.get("output") or "") if not error else f"Error: {_error_text(error)}"
            add("assistant", [ToolCall(str(item.get("id")), name, str(item.get("arguments") or "{}"))])
            add("tool", [ToolResult(str(item.get("id")), [Text(text)], bool(error))])
        elif kind in ("mcp_list_tools", "mcp_approval_request", "mcp_approval_response"):
            pass  # the agent loop reads these (``agent_spec``); they are not conversation turns
        elif kind == "reasoning":
            text = "".join(p.get("text", "") for p in item.get("summary") or [] if isinstance(p, dict))
            add("assistant", [Reasoning(text, item.get("encrypted_content"))])
        else:
            notes.append(f"input item type '{kind}' is not served here; ignored")
    return messages


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        content = error.get("content")
        if isinstance(content, list):
            return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        return str(error.get("message") or error)
    return str(error)


def agent_spec(wire: ResponsesRequest, items: list[Item], history: list[Item]) -> AgentSpec | None:
    """The hosted MCP tools of the request and the answers to the previous turn's approval requests."""
    spec = AgentSpec()
    for i, tool in enumerate(wire.tools or []):
        if tool.type == "mcp":
            spec.mcp.append(hosted_mcp(tool.model_dump(exclude_none=True), f"tools.{i}"))
    asked: dict[str, Item] = {i["id"]: i for i in history if i.get("type") == "mcp_approval_request" and "id" in i}
    for n, item in enumerate(items):
        if item.get("type") != "mcp_approval_response":
            continue
        ref = item.get("approval_request_id")
        request = asked.pop(ref, None) if isinstance(ref, str) else None
        if request is None:
            raise InvalidRequest(
                f"input.{n}: approval_request_id '{ref}' names no pending approval request of the previous response",
                param=f"input.{n}.approval_request_id",
            )
        spec.pending.append(
            Pending(
                str(ref),
                str(request.get("server_label")),
                str(request.get("name")),
                str(request.get("arguments") or "{}"),
                item.get("approve") is True,
                item.get("reason"),
            )
        )
    if spec.pending and not spec.mcp:
        raise InvalidRequest("mcp_approval_response items need the mcp tools in 'tools' again", param="tools")
    extra = wire.model_extra or {}
    if isinstance(extra.get("agent"), dict):
        spec.asked = extra["agent"]
    return spec if spec.mcp else None


def _tool_choice(wire: ResponsesRequest, names: set[str], notes: list[str]) -> ToolChoice | None:
    choice = wire.tool_choice
    parallel = wire.parallel_tool_calls
    if choice is None:
        return ToolChoice("auto", parallel=parallel) if parallel is not None else None
    if choice in ("auto", "required", "none"):
        return ToolChoice(choice, parallel=parallel)  # type: ignore[arg-type]
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if name not in names:
            raise InvalidRequest(f"tool_choice names function '{name}', which is not in tools", param="tool_choice")
        return ToolChoice("named", str(name), parallel)
    if isinstance(choice, str):
        raise InvalidRequest("tool_choice must be 'auto', 'required', 'none' or a function", param="tool_choice")
    notes.append(f"tool_choice of type '{choice.get('type')}' is not served here; 'auto' used")
    return ToolChoice("auto", parallel=parallel)


def load(wire: ResponsesRequest, items: list[Item], history: list[Item]) -> Request:
    notes: list[str] = []
    tools: list[ToolSpec] = []
    for i, tool in enumerate(wire.tools or []):
        if tool.type == "mcp":
            continue  # served by the agent loop (``agent_spec``)
        if tool.type != "function":
            notes.append(f"tool type '{tool.type}' is not served here; ignored")
            continue
        if not tool.name:
            raise InvalidRequest(f"tools.{i}: a function tool needs a 'name'", param=f"tools.{i}.name")
        tools.append(ToolSpec(tool.name, tool.description, tool.parameters or EMPTY_SCHEMA))
    request = Request(model=wire.model, messages=to_messages([*history, *items], notes), tools=tools, notes=notes)
    if not request.messages:
        raise InvalidRequest("input: at least one input item is required", param="input")
    if wire.instructions:
        request.instructions = [Text(wire.instructions)]
    request.tool_choice = _tool_choice(wire, {t.name for t in tools}, notes)
    fmt = wire.text.format if wire.text is not None else None
    if fmt is not None and fmt.type != "text":
        request.output = OutputFormat(fmt.type, fmt.name, fmt.schema_, fmt.strict)
    request.max_output_tokens = wire.max_output_tokens
    request.temperature, request.top_p = wire.temperature, wire.top_p
    request.stream = bool(wire.stream)
    request.user = wire.user
    request.metadata = dict(wire.metadata or {})
    extra = wire.model_extra or {}
    request.ttc, request.knowledge_base, request.route = (
        extra.get("ttc"),
        extra.get("knowledge_base"),
        extra.get("route"),
    )
    return request
