"""Token counts for the ledger: the upstream's ``usage`` when present, else the model's tokenizer.

Only when neither exists (a cloud stream cut short before its usage chunk) is
an estimate used, and the event says so (``usage_source = "estimate"``).
"""

from __future__ import annotations

from openmaas.backends.base import Backend, Payload
from openmaas.core.view import PromptView, cached_tokens, completion_text, engine_timings, reported_usage
from openmaas.metering.meter import EngineTimings, Outcome
from openmaas.metering.pricing import estimate_prompt_tokens


async def _prompt_tokens(backend: Backend, payload: Payload) -> tuple[int, str]:
    counted = await backend.count_prompt_tokens(payload)
    if counted is not None:
        return counted, "tokenizer"
    return estimate_prompt_tokens(PromptView(payload)), "estimate"


async def from_response(backend: Backend, payload: Payload, result: Payload) -> Outcome:
    reported = reported_usage(result)
    if reported is not None:
        outcome = Outcome(*reported, "upstream", cached_tokens=cached_tokens(result.get("usage")))
        if "timings" in result and (timed := engine_timings(result)) is not None:  # a llama.cpp engine's
            outcome.engine = EngineTimings(*timed)
        return outcome
    prompt, source = await _prompt_tokens(backend, payload)
    counted = await backend.count_tokens(completion_text(result))
    if counted is None:
        return Outcome(prompt, max(1, len(completion_text(result)) // 4), "estimate")
    return Outcome(prompt, counted, source)


async def from_partial_stream(
    backend: Backend, payload: Payload, usage: Payload | None, text: str, content_chunks: int
) -> Outcome:
    """What a stream that ended early actually produced."""
    reported = reported_usage({"usage": usage})
    if reported is not None:
        return Outcome(*reported, "upstream", cached_tokens=cached_tokens(usage))
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
