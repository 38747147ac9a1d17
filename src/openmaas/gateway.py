"""The request pipeline, independent of HTTP: validate → place → call → shape.

Routes hand this the parsed JSON body; it returns an OpenAI response dict or
an async iterator of chunk dicts. Later stages (admission, privacy, metering,
routing policy, test-time compute) compose here, not in the routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from openmaas.backends.base import Payload
from openmaas.errors import ContextLengthExceeded, from_validation_error
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
class Stream:
    """A stream whose first chunk has already arrived (so early failures are HTTP errors)."""

    first: Payload
    rest: AsyncIterator[Payload]
    public_model: str
    include_usage: bool
    usage: Payload | None = None

    async def chunks(self) -> AsyncIterator[Payload]:
        chunk: Payload | None = self.first
        while chunk is not None:
            if chunk.get("usage"):
                self.usage = chunk["usage"]
            chunk["model"] = self.public_model
            if chunk.get("choices") or self.include_usage:
                if not self.include_usage and "usage" in chunk:
                    chunk.pop("usage")
                yield chunk
            chunk = await anext(self.rest, None)


class Gateway:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

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

    async def chat(self, body: Payload) -> Payload | Stream:
        request = validate(ChatCompletionRequest, body)
        target, payload = self._place(request.model, "chat", body, request.output_limit)
        if request.stream:
            return await self._open_stream(
                target.backend.chat_stream(payload), request.model, request.wants_usage_chunk
            )
        result = await target.backend.chat(payload)
        result["model"] = request.model
        return result

    async def complete(self, body: Payload) -> Payload | Stream:
        request = validate(CompletionRequest, body)
        target, payload = self._place(request.model, "completions", body, request.max_tokens)
        if request.stream:
            include = bool(request.stream_options and request.stream_options.include_usage)
            return await self._open_stream(target.backend.complete_stream(payload), request.model, include)
        result = await target.backend.complete(payload)
        result["model"] = request.model
        return result

    async def embed(self, body: Payload) -> Payload:
        request = validate(EmbeddingRequest, body)
        target, payload = self._place(request.model, "embeddings", body, None)
        result = await target.backend.embed(payload)
        result["model"] = request.model
        return result

    async def _open_stream(self, chunks: AsyncIterator[Payload], model: str, include_usage: bool) -> Stream:
        iterator = aiter(chunks)
        first = await anext(iterator, None)
        if first is None:
            first = {"object": "chat.completion.chunk", "choices": []}
        return Stream(first, iterator, model, include_usage)

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
