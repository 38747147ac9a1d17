"""The one read of an execution payload that the features judging a request share.

Dialects load their wire bodies into the canonical ``Request`` (``core.types``) and hand the gateway its
execution payload (``core.chat.to_payload``); chat completions arrive in that shape already. Privacy
classification, the routing policy, pricing and token accounting do not walk that payload each its own
way: they read a ``PromptView`` built once per routed request (and, for results, ``completion_text`` and
``reported_usage``). This module and the adapters (dialects, backends) are the only places that know the
payload's keys; ``text_slots`` is also where masking finds the texts it rewrites, so what is scanned and
what is masked can never drift apart.
"""

from __future__ import annotations

from typing import Any

from openmaas.core.chat import CEILING_KEY

Slot = tuple[Any, Any]  # (container, key): where a text lives in the payload
NUMBER = (int, float)  # for isinstance (``int | float`` would build a union object on every call)


def text_slots(payload: dict[str, Any]) -> list[Slot]:
    """Every text the request sends, in order: message contents (strings and text parts, which carry
    system prompts, tool results and documents), tool-call arguments, ``prompt`` and ``input``."""
    slots: list[Slot] = []
    for message in payload.get("messages") or []:
        if not isinstance(message, dict):
            continue
        if "content" in message:
            _add(slots, message, "content")
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                slots.append((function, "arguments"))
    for key in ("prompt", "input"):
        if key in payload:
            _add(slots, payload, key)
    return slots


def _add(slots: list[Slot], container: Any, key: Any) -> None:
    value = container[key]
    if isinstance(value, str):
        slots.append((container, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                slots.append((value, i))
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                slots.append((item, "text"))


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_bytes(v) for k, v in value.items() if k not in ("role", "type"))
    return 0 if value is None else len(str(value))


class PromptView:
    """What a request asks for, read once from its execution payload (``endpoint``: chat, completions,
    embeddings). Attributes are plain values; the byte size of the prompt is walked only when asked.
    ``body_bytes``: the size of the JSON the payload was parsed from, when it was and nothing was added since
    (``gateway.Call.body_bytes``) — an upper bound on ``prompt_bytes`` that costs no walk."""

    def __init__(self, payload: dict[str, Any], endpoint: str = "chat", body_bytes: int | None = None) -> None:
        self._payload = payload
        self.endpoint = endpoint
        self.body_bytes = body_bytes
        self.texts: list[str] = [container[key] for container, key in text_slots(payload)]
        messages = payload.get("messages")
        self.messages = len(messages) if isinstance(messages, list) else 0
        self.tools = bool(payload.get("tools"))
        response_format = payload.get("response_format")
        self.output_format: str | None = response_format.get("type") if isinstance(response_format, dict) else None
        self.logprobs = bool(payload.get("logprobs"))
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        self.output_limit: int | None = int(limit) if isinstance(limit, NUMBER) else None
        self.ceiling = bool(payload.get(CEILING_KEY))
        self.choices = int(payload.get("n") or 1)
        self.hints: Any = payload.get("route")
        self._prompt_bytes: int | None = None

    @property
    def prompt_bytes(self) -> int:
        """UTF-8 bytes of every value the prompt carries (roles and types aside): the basis of the token
        upper bound when the JSON body's own size is unknown. Walked once, when first asked (a plain check:
        ``functools.cached_property`` takes a lock on every first read in Python 3.11)."""
        if self._prompt_bytes is None:
            p = self._payload
            if "messages" in p:
                self._prompt_bytes = (
                    _text_bytes(p.get("messages") or [])
                    + _text_bytes(p.get("tools"))
                    + _text_bytes(p.get("response_format"))
                )
            else:
                self._prompt_bytes = _text_bytes(p.get("prompt") if "prompt" in p else p.get("input"))
        return self._prompt_bytes

    @property
    def is_chat(self) -> bool:
        return "messages" in self._payload


def completion_text(result: dict[str, Any]) -> str:
    """The text a result (or one streamed chunk) generated: contents, tool names and arguments."""
    out: list[str] = []
    for choice in result.get("choices") or []:
        if "text" in choice:
            out.append(str(choice.get("text") or ""))
            continue
        message = choice.get("message") or choice.get("delta") or {}
        out.append(str(message.get("content") or ""))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            out.append(str(function.get("name") or "") + str(function.get("arguments") or ""))
    return "".join(out)


def cached_tokens(usage: Any) -> int:
    """Prompt tokens an OpenAI-shaped usage says were served from the prompt cache (0 when it says nothing)."""
    if not isinstance(usage, dict):
        return 0
    details = usage.get("prompt_tokens_details")
    return int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0


def engine_timings(result: Any) -> tuple[float, float | None, float] | None:
    """llama.cpp's ``timings`` of an answer (or of a stream's last chunk), in seconds: (prompt processing, time per
    output token, whole request); None when the upstream sent none."""
    timings = result.get("timings") if isinstance(result, dict) else None
    if not isinstance(timings, dict) or not isinstance(timings.get("prompt_ms"), NUMBER):
        return None
    prompt = float(timings["prompt_ms"]) / 1000
    per_token = timings.get("predicted_per_token_ms")
    predicted = timings.get("predicted_ms")
    total = prompt + (float(predicted) / 1000 if isinstance(predicted, NUMBER) else 0.0)
    return prompt, (float(per_token) / 1000 if isinstance(per_token, NUMBER) and per_token > 0 else None), total


def reported_usage(result: dict[str, Any]) -> tuple[int, int] | None:
    """(prompt, completion) tokens a result (or a stream's usage chunk) reports, or None when it has none."""
    usage = result.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0)
    return None
