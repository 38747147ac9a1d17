"""The request pipeline, independent of HTTP: validate → place → admit → call → meter.

Routes hand this the parsed JSON body and a ``Call`` (request id, caller); it
returns an OpenAI response dict or a ``Stream``. Later stages (privacy, routing
policy, test-time compute) compose here, not in the routes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from openmaas.auth.principal import ANONYMOUS, Principal
from openmaas.backends.base import Backend, Payload
from openmaas.errors import ContextLengthExceeded, OpenMaaSError, from_validation_error
from openmaas.metering import tokens
from openmaas.metering.meter import Metering, Outcome, Ticket
from openmaas.protocol.chat import ChatCompletionRequest
from openmaas.protocol.completions import CompletionRequest, EmbeddingRequest
from openmaas.routing.registry import Registry, Target

M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


@dataclass
class Call:
    """One HTTP request as the pipeline sees it; ``headers`` go back on the response."""

    request_id: str = "req_internal"
    principal: Principal = ANONYMOUS
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamMeter:
    metering: Metering
    ticket: Ticket
    backend: Backend
    payload: Payload
    text: list[str] = field(default_factory=list)
    content_chunks: int = 0

    async def _outcome(self, usage: Payload | None, status: int, code: str | None, interrupted: bool) -> Outcome:
        if usage and not interrupted:
            outcome = Outcome(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        else:
            text = "".join(self.text)
            outcome = await tokens.from_partial_stream(self.backend, self.payload, usage, text, self.content_chunks)
        outcome.status, outcome.error_code, outcome.interrupted = status, code, interrupted
        return outcome

    async def end(self, usage: Payload | None, status: int = 200, code: str | None = None) -> None:
        outcome = await self._outcome(usage, status, code, interrupted=status != 200)
        await self.metering.finish(self.ticket, outcome)

    def abandon(self, usage: Payload | None) -> None:
        """The client went away mid-stream: bill what was produced, without blocking the teardown."""

        async def later() -> None:
            try:
                outcome = await self._outcome(usage, 499, "client_disconnected", interrupted=True)
            except Exception:
                outcome = Outcome(0, self.content_chunks, "estimate", 499, "client_disconnected", True)
            self.metering.finish_later(self.ticket, outcome)

        if not self.ticket.finished:
            self.metering.spawn(later())


@dataclass
class Stream:
    """A stream whose first chunk has already arrived (so early failures are HTTP errors)."""

    first: Payload
    rest: AsyncIterator[Payload]
    public_model: str
    include_usage: bool
    usage: Payload | None = None
    meter: StreamMeter | None = None

    async def chunks(self) -> AsyncIterator[Payload]:
        held: Payload | None = None
        chunk: Payload | None = self.first
        try:
            while chunk is not None:
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                chunk["model"] = self.public_model
                if chunk.get("choices"):
                    if self.meter is not None:
                        self._observe(self.meter, chunk)
                    if not self.include_usage:
                        chunk.pop("usage", None)
                    yield chunk
                elif self.include_usage:
                    held = chunk  # the usage chunk goes out after the ledger commit
                chunk = await anext(self.rest, None)
        except OpenMaaSError as exc:
            if self.meter is not None:
                await self.meter.end(self.usage, exc.status, exc.code)
            raise
        except BaseException:
            if self.meter is not None:
                self.meter.abandon(self.usage)
            raise
        if self.meter is not None:
            await self.meter.end(self.usage)
        if held is not None:
            yield held

    @staticmethod
    def _observe(meter: StreamMeter, chunk: Payload) -> None:
        for choice in chunk["choices"]:
            piece = tokens.completion_text({"choices": [choice]})
            if piece:
                meter.text.append(piece)
                meter.content_chunks += 1


class Gateway:
    def __init__(self, registry: Registry, metering: Metering | None = None) -> None:
        self.registry = registry
        self.metering = metering

    def _place(self, model: str, capability: str, body: Payload, output_limit: int | None) -> tuple[Target, Payload]:
        target = self.registry.resolve(model, capability)
        self.registry.check_request(target, body)
        limit = target.deployment.context_length
        if output_limit is not None and output_limit >= limit:
            raise ContextLengthExceeded(
                f"max_tokens is {output_limit}, but the model '{model}' has a context of {limit} tokens",
                param="max_tokens",
            )
        payload = dict(body)
        payload["model"] = target.deployment.upstream_model
        return target, payload

    async def _admit(self, call: Call, endpoint: str, model: str, target: Target, body: Payload) -> Ticket | None:
        if self.metering is None:
            call.principal.check_model(model, target.deployment.name)
            return None
        ticket = await self.metering.admit(call.principal, call.request_id, endpoint, model, target.deployment, body)
        call.headers.update(ticket.headers)
        return ticket

    async def _unary(
        self, ticket: Ticket | None, target: Target, payload: Payload, pending: Coroutine[Any, Any, Payload]
    ) -> Payload:
        try:
            result = await pending
        except OpenMaaSError as exc:
            if ticket is not None and self.metering is not None:
                await self.metering.finish(ticket, Outcome(status=exc.status, error_code=exc.code))
            raise
        except BaseException as exc:  # cancelled (the client left) or a bug: still settle the reservation
            if ticket is not None and self.metering is not None:
                status, code = (
                    (499, "client_disconnected") if isinstance(exc, asyncio.CancelledError) else (500, "internal_error")
                )
                self.metering.spawn(self._cut_off(ticket, target, payload, status, code))
            raise
        if ticket is not None and self.metering is not None:
            await self.metering.finish(ticket, await tokens.from_response(target.backend, payload, result))
        return result

    async def _cut_off(self, ticket: Ticket, target: Target, payload: Payload, status: int, code: str) -> None:
        assert self.metering is not None
        try:
            outcome = await tokens.prompt_only(target.backend, payload)
        except Exception:
            outcome = Outcome(source="estimate")
        outcome.status, outcome.error_code, outcome.interrupted = status, code, True
        self.metering.finish_later(ticket, outcome)

    async def chat(self, body: Payload, call: Call | None = None) -> Payload | Stream:
        call = call or Call()
        request = validate(ChatCompletionRequest, body)
        target, payload = self._place(request.model, "chat", body, request.output_limit)
        ticket = await self._admit(call, "chat", request.model, target, body)
        if request.stream:
            stream = target.backend.chat_stream(payload)
            return await self._open_stream(ticket, target, payload, stream, request.model, request.wants_usage_chunk)
        result = await self._unary(ticket, target, payload, target.backend.chat(payload))
        result["model"] = request.model
        return result

    async def complete(self, body: Payload, call: Call | None = None) -> Payload | Stream:
        call = call or Call()
        request = validate(CompletionRequest, body)
        target, payload = self._place(request.model, "completions", body, request.max_tokens)
        ticket = await self._admit(call, "completions", request.model, target, body)
        if request.stream:
            include = bool(request.stream_options and request.stream_options.include_usage)
            stream = target.backend.complete_stream(payload)
            return await self._open_stream(ticket, target, payload, stream, request.model, include)
        result = await self._unary(ticket, target, payload, target.backend.complete(payload))
        result["model"] = request.model
        return result

    async def embed(self, body: Payload, call: Call | None = None) -> Payload:
        call = call or Call()
        request = validate(EmbeddingRequest, body)
        target, payload = self._place(request.model, "embeddings", body, None)
        ticket = await self._admit(call, "embeddings", request.model, target, body)
        result = await self._unary(ticket, target, payload, target.backend.embed(payload))
        result["model"] = request.model
        return result

    async def _open_stream(
        self,
        ticket: Ticket | None,
        target: Target,
        payload: Payload,
        chunks: AsyncIterator[Payload],
        model: str,
        include_usage: bool,
    ) -> Stream:
        meter = None
        if ticket is not None and self.metering is not None:
            meter = StreamMeter(self.metering, ticket, target.backend, payload)
        iterator = aiter(chunks)
        try:
            first = await anext(iterator, None)
        except OpenMaaSError as exc:
            if meter is not None:
                await meter.end(None, exc.status, exc.code)
            raise
        if ticket is not None:
            ticket.first_token_at = time.perf_counter()
        if first is None:
            first = {"object": "chat.completion.chunk", "choices": []}
        return Stream(first, iterator, model, include_usage, meter=meter)

    def models(self) -> list[Payload]:
        out = []
        for d in self.registry.deployments.values():
            out.append(_model_card(d.name, d, None))
        for alias, target in self.registry.aliases.items():
            out.append(_model_card(alias, self.registry.deployments[target], target))
        return out


def _model_card(name: str, d: Any, alias_of: str | None) -> Payload:
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "openmaas",
        "openmaas": {
            "alias_of": alias_of,
            "backend": d.backend,
            "locality": d.locality,
            "context_length": d.context_length,
            "capabilities": d.capabilities.model_dump(),
            "pricing": d.pricing.model_dump(),
        },
    }
