"""Tool calling by constrained decoding, for models whose chat template has none.

Pure functions. ``to_constrained`` rewrites an OpenAI request that offers
``tools`` into one the engine can serve: the tools are described in a system
message, the conversation's earlier tool calls and results become plain text,
and ``response_format`` carries a JSON schema that admits exactly the allowed
answers (``tool_choice``: ``"required"`` → one or more calls; a named function
→ a call of that function; ``"auto"`` → calls or ``{"content": …}``).
``from_constrained`` turns the engine's JSON back into OpenAI ``tool_calls``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

Payload = dict[str, Any]
MAX_PARALLEL_CALLS = 8


def wants_tools(payload: Payload) -> bool:
    return bool(payload.get("tools")) and payload.get("tool_choice") != "none"


def _call_schema(tool: Payload) -> Payload:
    fn = tool["function"]
    params = fn.get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"const": fn["name"]}, "arguments": params},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def response_schema(payload: Payload) -> Payload:
    tools = payload["tools"]
    choice = payload.get("tool_choice") or "auto"
    if isinstance(choice, dict):
        tools = [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
    # Small local models tend to repeat calls: one call per turn unless the
    # client explicitly asks for parallel calls.
    one_call = isinstance(choice, dict) or payload.get("parallel_tool_calls") is not True
    calls = {
        "type": "array",
        "items": {"anyOf": [_call_schema(t) for t in tools]},
        "minItems": 1,
        "maxItems": 1 if one_call else MAX_PARALLEL_CALLS,
    }
    with_calls = {
        "type": "object",
        "properties": {"tool_calls": calls},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    if choice == "auto":
        answer = {
            "type": "object",
            "properties": {"content": {"type": "string", "minLength": 1}},
            "required": ["content"],
            "additionalProperties": False,
        }
        return {"anyOf": [with_calls, answer]}
    return with_calls


def _instructions(payload: Payload) -> str:
    described = [
        {k: v for k, v in t["function"].items() if k in ("name", "description", "parameters")} for t in payload["tools"]
    ]
    choice = payload.get("tool_choice") or "auto"
    text = (
        "You can call these tools:\n" + json.dumps(described, ensure_ascii=False) + "\n"
        'To call tools, reply with JSON: {"tool_calls": [{"name": TOOL_NAME, "arguments": {...}}]}.'
    )
    if choice == "auto":
        text += ' To answer without a tool, reply with JSON: {"content": YOUR_ANSWER}.'
    elif isinstance(choice, dict):
        text += f" You must call the tool {choice['function']['name']}."
    else:
        text += " You must call at least one tool."
    return text


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def flatten_history(messages: list[Payload], prose: bool = False) -> list[Payload]:
    """Earlier tool calls and results as plain messages: calls as the JSON the constrained answer uses, or
    (``prose``, for a request that offers no tool) only their results, so the model answers in words."""
    names: dict[str, str] = {}
    out: list[Payload] = []
    for m in messages:
        role = m.get("role")
        if role == "assistant" and m.get("tool_calls"):
            calls = []
            for call in m["tool_calls"]:
                names[call.get("id", "")] = call["function"]["name"]
                try:
                    args = json.loads(call["function"].get("arguments") or "{}")
                except json.JSONDecodeError:
                    args = call["function"].get("arguments")
                calls.append({"name": call["function"]["name"], "arguments": args})
            if prose:  # the results below say what was called; an assistant turn of calls invites parroting
                if _text(m.get("content")).strip():
                    out.append({"role": "assistant", "content": m.get("content")})
            else:
                out.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
        elif role == "tool":
            name = names.get(m.get("tool_call_id", ""), "tool")
            out.append({"role": "user", "content": f"Result of {name}: {_text(m.get('content'))}"})
        elif role == "function":
            out.append({"role": "user", "content": f"Result of {m.get('name')}: {_text(m.get('content'))}"})
        else:
            out.append(m)
    return out


def has_tool_history(payload: Payload) -> bool:
    return any(m.get("role") in ("tool", "function") or m.get("tool_calls") for m in payload.get("messages") or [])


def to_constrained(payload: Payload) -> Payload:
    messages = flatten_history(list(payload["messages"]))
    instructions = _instructions(payload)
    if messages and messages[0].get("role") in ("system", "developer"):
        first = messages[0]
        messages[0] = {"role": "system", "content": _text(first.get("content")) + "\n\n" + instructions}
    else:
        messages.insert(0, {"role": "system", "content": instructions})
    body = {k: v for k, v in payload.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}
    body["messages"] = messages
    body["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_calls", "schema": response_schema(payload)},
    }
    return body


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def from_constrained(text: str, finish_reason: str | None) -> tuple[Payload, str | None]:
    """Engine JSON → (OpenAI assistant message, finish_reason)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {"role": "assistant", "content": text}, finish_reason or "length"
    if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
        calls = [
            {
                "id": new_call_id(),
                "type": "function",
                "function": {
                    "name": c.get("name", ""),
                    "arguments": json.dumps(c.get("arguments", {}), ensure_ascii=False),
                },
            }
            for c in data["tool_calls"]
            if isinstance(c, dict)
        ]
        return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
    if isinstance(data, dict) and isinstance(data.get("content"), str):
        return {"role": "assistant", "content": data["content"]}, finish_reason
    return {"role": "assistant", "content": text}, finish_reason


def convert_response(response: Payload) -> Payload:
    for choice in response.get("choices", []):
        message = choice.get("message") or {}
        converted, finish = from_constrained(message.get("content") or "", choice.get("finish_reason"))
        choice["message"] = converted
        choice["finish_reason"] = finish
    return response


def as_chunks(response: Payload) -> list[Payload]:
    """A finished response as the stream of chunks OpenAI would have sent."""
    base = {k: response.get(k) for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    chunks: list[Payload] = []
    for choice in response.get("choices", []):
        i = choice.get("index", 0)
        message = choice["message"]
        chunks.append(
            {**base, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        )
        if message.get("tool_calls"):
            for k, call in enumerate(message["tool_calls"]):
                delta = {"tool_calls": [{"index": k, **call}]}
                chunks.append({**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
        elif message.get("content"):
            chunks.append(
                {**base, "choices": [{"index": i, "delta": {"content": message["content"]}, "finish_reason": None}]}
            )
        chunks.append({**base, "choices": [{"index": i, "delta": {}, "finish_reason": choice.get("finish_reason")}]})
    chunks.append({**base, "choices": [], "usage": response.get("usage")})
    return chunks
