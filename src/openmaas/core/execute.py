"""Run a canonical request through the gateway's one request lifecycle, and count its prompt.

Every dialect calls ``Executor.run``: the canonical request becomes the execution payload
(``core.chat.to_payload``) and goes through ``Gateway.chat`` — authenticate, admit, classify
privacy, ground, route, execute (single call or TTC), settle, observe — exactly like a chat
completion; the result comes back canonical (``Result``, or an ``EventStream`` of events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from openmaas.backends.anthropic_translate import PROMPT_TOKENS_KEY
from openmaas.core.chat import StreamDecoder, from_result, request_head, to_payload
from openmaas.core.types import Event, Request, Result
from openmaas.gateway import Call, Gateway
from openmaas.metering import tokens
from openmaas.streams import Stream


@dataclass
class EventStream:
    """A stream that already has its first chunk (early failures were HTTP errors), as canonical events."""

    input_tokens: int  # the prompt as counted before the first event (the model's tokenizer where we have it)
    events: AsyncIterator[Event]


@dataclass
class Count:
    input_tokens: int
    source: str  # "tokenizer" | "upstream" | "estimate"
    deployment: str


async def _events(stream: Stream) -> AsyncIterator[Event]:
    decoder = StreamDecoder()
    async for chunk in stream.chunks():
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event


class Executor:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def run(self, request: Request, call: Call) -> Result | EventStream:
        payload = self.gateway.registry.resolve_pattern(to_payload(request))
        out = await self.gateway.chat(payload, call, request_head(payload))
        if isinstance(out, Stream):
            counted = out.first.get(PROMPT_TOKENS_KEY)  # the upstream said (Anthropic's message_start)
            if not isinstance(counted, int) and out.served is not None:  # else the model's tokenizer, or an estimate
                counted = (await tokens.prompt_only(out.served.target.backend, out.served.payload)).prompt_tokens
            return EventStream(counted if isinstance(counted, int) else 0, _events(out))
        return from_result(out, request.model, request.stop)

    async def count(self, request: Request, call: Call) -> Count:
        """Prompt tokens of a request on the deployment routing would pick first: the model's own tokenizer
        over the templated prompt (local), the upstream's count endpoint (Anthropic), else an estimate."""
        router = self.gateway.router
        payload = self.gateway.registry.resolve_pattern(to_payload(request))
        route = router.route(payload["model"], "chat", payload, call.principal, None)
        first = route.decision.plan[0].name
        call.principal.check_model(payload["model"], first)
        target = router.registry.target(first, payload["model"])
        sent, _ = router.payload_for(route, target)
        counted = await target.backend.count_prompt_tokens(sent)
        if counted is not None:
            source = "upstream" if target.deployment.locality == "cloud" else "tokenizer"
            return Count(counted, source, first)
        return Count((await tokens.prompt_only(target.backend, sent)).prompt_tokens, "estimate", first)
