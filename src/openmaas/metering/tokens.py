"""Token counts for the ledger: the upstream's ``usage`` when present, else the model's tokenizer.

Only when neither exists (a cloud stream cut short before its usage chunk) is
an estimate used, and the event says so (``usage_source = "estimate"``).
"""

from __future__ import annotations

from typing import Any

from openmaas.backends.base import Backend, Payload
from openmaas.metering.meter import Outcome
from openmaas.metering.pricing import estimate_prompt_tokens


def _text_of_choice(choice: dict[str, Any]) -> str:
    if "text" in choice:
        return str(choice.get("text") or "")
    message = choice.get("message") or choice.get("delta") or {}
    parts = [str(message.get("content") or "")]
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(str(function.get("name") or "") + str(function.get("arguments") or ""))
    return "".join(parts)


def completion_text(result: Payload) -> str:
    return "".join(_text_of_choice(c) for c in result.get("choices") or [])


async def _prompt_tokens(backend: Backend, payload: Payload) -> tuple[int, str]:
    counted = await backend.count_prompt_tokens(payload)
    if counted is not None:
        return counted, "tokenizer"
    return estimate_prompt_tokens(payload), "estimate"


async def from_response(backend: Backend, payload: Payload, result: Payload) -> Outcome:
    usage = result.get("usage") or {}
    if isinstance(usage.get("prompt_tokens"), int):
        return Outcome(int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0), "upstream")
    prompt, source = await _prompt_tokens(backend, payload)
    counted = await backend.count_tokens(completion_text(result))
    if counted is None:
        return Outcome(prompt, max(1, len(completion_text(result)) // 4), "estimate")
    return Outcome(prompt, counted, source)


async def from_partial_stream(
    backend: Backend, payload: Payload, usage: Payload | None, text: str, content_chunks: int
) -> Outcome:
    """What a stream that ended early actually produced."""
    if usage and isinstance(usage.get("prompt_tokens"), int):
        return Outcome(int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0), "upstream")
    prompt, source = await _prompt_tokens(backend, payload)
    counted = await backend.count_tokens(text) if text else 0
    if counted is None:
        # Upstreams stream about one token per content chunk.
        return Outcome(prompt, content_chunks, "estimate")
    return Outcome(prompt, counted, source)


async def prompt_only(backend: Backend, payload: Payload) -> Outcome:
    """A call cut off before any output reached us: the prompt was sent, so it is billed."""
    prompt, source = await _prompt_tokens(backend, payload)
    return Outcome(prompt, 0, source)
