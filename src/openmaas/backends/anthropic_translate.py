"""OpenAI chat ⇄ Anthropic Messages: pure translation functions.

``to_messages_request`` maps an OpenAI chat request to a Messages request;
``from_messages_response`` maps a Messages response back; ``StreamTranslator``
maps Messages stream events to OpenAI chunks one by one.

``response_format`` (``json_object`` / ``json_schema``) has no Messages field: it becomes one tool,
``FORMAT_TOOL``, whose input schema is the requested schema, with ``tool_choice`` forcing it; the
tool call's input comes back as the message's JSON content (streamed as content deltas), with
``finish_reason`` ``stop`` — what an OpenAI client asking for structured output expects.
"""

from __future__ import annotations

import json
import time
from typing import Any

from openmaas.errors import InvalidRequest

Payload = dict[str, Any]

# a stream's first chunk may carry the prompt's token count, known before any output (Anthropic's
# message_start); the gateway strips it before a chat client sees the chunk
PROMPT_TOKENS_KEY = "x_openmaas_prompt_tokens"
FORMAT_TOOL = "json_answer"  # the forced tool that carries a response_format's JSON

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


def _blocks(content: Any) -> list[Payload]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[Payload] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            url = part["image_url"]["url"]
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
        else:
            raise InvalidRequest(f"content part type '{kind}' is not supported by Anthropic models", param="messages")
    return blocks


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _tool_choice(choice: Any, parallel: bool | None) -> Payload | None:
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict):
        out: Payload = {"type": "tool", "name": choice["function"]["name"]}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    else:
        out = {"type": "auto"}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def to_messages_request(payload: Payload, default_max_tokens: int = 4096) -> Payload:
    system: list[str] = []
    messages: list[Payload] = []

    def add(role: str, blocks: list[Payload]) -> None:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)  # Messages wants alternating roles
        else:
            messages.append({"role": role, "content": blocks})

    for m in payload["messages"]:
        role = m["role"]
        if role in ("system", "developer"):
            system.append(_text(m["content"]))
        elif role == "user":
            add("user", _blocks(m["content"]))
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or []:
                try:
                    args = json.loads(call["function"].get("arguments") or "{}")
                except json.JSONDecodeError as exc:
                    raise InvalidRequest("assistant tool_calls arguments must be JSON", param="messages") from exc
                blocks.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": args})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": _text(m["content"])}])
        else:
            raise InvalidRequest(f"message role '{role}' is not supported by Anthropic models", param="messages")
    body: Payload = {
        "model": payload["model"],
        "messages": messages,
        "max_tokens": payload.get("max_completion_tokens") or payload.get("max_tokens") or default_max_tokens,
    }
    if system:
        body["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if payload.get(key) is not None:
            body[key] = payload[key]
    stop = payload.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if payload.get("tools"):
        body["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description") or "",
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in payload["tools"]
        ]
    choice = _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
    if choice is not None and payload.get("tools"):
        body["tool_choice"] = choice
    schema = json_format(payload)
    if schema is not None:
        if payload.get("tools"):
            raise InvalidRequest(
                "response_format together with tools is not supported on Anthropic deployments",
                param="response_format",
            )
        description = "Give your whole answer by calling this tool: its input is the answer."
        body["tools"] = [{"name": FORMAT_TOOL, "description": description, "input_schema": schema}]
        body["tool_choice"] = {"type": "tool", "name": FORMAT_TOOL}
    if payload.get("user"):
        body["metadata"] = {"user_id": payload["user"]}
    if payload.get("stream"):
        body["stream"] = True
    return body


def json_format(payload: Payload) -> Payload | None:
    """The JSON Schema a request's ``response_format`` asks for (``{"type": "object"}`` for json_object), or None."""
    fmt = payload.get("response_format") or {}
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        return None
    schema = dict((fmt.get("json_schema") or {}).get("schema") or {"type": "object"})
    if schema.get("type", "object") != "object":
        raise InvalidRequest(
            "On Anthropic deployments a response_format schema must describe a JSON object",
            param="response_format",
        )
    return {"type": "object", **schema}


def _usage(usage: Payload | None) -> Payload:
    usage = usage or {}
    prompt = (
        int(usage.get("input_tokens") or 0)
        + int(usage.get("cache_read_input_tokens") or 0)
        + int(usage.get("cache_creation_input_tokens") or 0)
    )
    completion = int(usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def from_messages_response(resp: Payload, model: str, json_mode: bool = False) -> Payload:
    text: list[str] = []
    thinking: list[str] = []
    signature: str | None = None
    calls: list[Payload] = []
    for block in resp.get("content") or []:
        if json_mode:  # only the forced tool's input is the answer
            if block.get("type") == "tool_use" and block.get("name") == FORMAT_TOOL:
                text.append(json.dumps(block.get("input") or {}))
        elif block.get("type") == "text":
            text.append(block["text"])
        elif block.get("type") == "thinking":
            thinking.append(str(block.get("thinking") or ""))
            signature = block.get("signature") or signature
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": json.dumps(block.get("input") or {})},
                }
            )
    message: Payload = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:  # as DeepSeek and llama.cpp name it; the signature lets a Messages client send it back
        message["reasoning_content"] = "".join(thinking)
        message["reasoning_signature"] = signature
    reason = STOP_REASONS.get(str(resp.get("stop_reason")), "stop")
    if json_mode and reason == "tool_calls":
        reason = "stop"
    return {
        "id": "chatcmpl-" + str(resp.get("id", "")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reason,
            }
        ],
        "usage": _usage(resp.get("usage")),
    }


class StreamTranslator:
    """Feeds on Messages stream events, returns the OpenAI chunks each produces."""

    def __init__(self, model: str, json_mode: bool = False) -> None:
        self.model = model
        self.json_mode = json_mode  # the forced format tool's input streams as content; nothing else does
        self.format_block: int | None = None
        self.id = "chatcmpl-anthropic"
        self.created = int(time.time())
        self.usage: Payload = {}
        self.tool_index: dict[int, int] = {}  # content block index -> tool_calls index

    def _chunk(self, delta: Payload, finish: str | None = None) -> Payload:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def feed(self, event: Payload) -> list[Payload]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.id = "chatcmpl-" + str(message.get("id", ""))
            self.usage.update(message.get("usage") or {})
            first = self._chunk({"role": "assistant", "content": ""})
            first[PROMPT_TOKENS_KEY] = _usage(self.usage)["prompt_tokens"]  # the upstream's count, up front
            return [first]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if self.json_mode:
                if block.get("type") == "tool_use" and block.get("name") == FORMAT_TOOL:
                    self.format_block = int(event.get("index", 0))
                return []
            if block.get("type") == "tool_use":
                index = len(self.tool_index)
                self.tool_index[int(event.get("index", 0))] = index
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": block["id"],
                                    "type": "function",
                                    "function": {"name": block["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                ]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            if self.json_mode:
                if delta.get("type") == "input_json_delta" and int(event.get("index", 0)) == self.format_block:
                    return [self._chunk({"content": delta.get("partial_json", "")})]
                return []
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "thinking_delta":
                return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(int(event.get("index", 0)), 0)
                return [
                    self._chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]}
                    )
                ]
            return []
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            reason = STOP_REASONS.get(str((event.get("delta") or {}).get("stop_reason")), "stop")
            return [self._chunk({}, "stop" if self.json_mode and reason == "tool_calls" else reason)]
        if kind == "message_stop":
            return [
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": _usage(self.usage),
                }
            ]
        return []  # ping, content_block_stop, unknown future events
