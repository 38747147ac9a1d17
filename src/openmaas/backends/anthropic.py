"""Anthropic Messages API upstreams, served through the OpenAI chat interface.

Params: ``base_url`` (default ``https://api.anthropic.com``), ``api_key_env``,
``anthropic_version`` (default ``2023-06-01``), ``default_max_tokens``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from openmaas.backends.anthropic_translate import (
    StreamTranslator,
    from_messages_response,
    json_format,
    to_messages_request,
)
from openmaas.backends.base import Backend, Payload
from openmaas.backends.http import HTTPProvider, resolve_api_key
from openmaas.errors import UpstreamError, redact
from openmaas.settings import Deployment


class AnthropicBackend(Backend):
    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        params = deployment.params
        headers = {"anthropic-version": str(params.get("anthropic_version", "2023-06-01"))}
        key = resolve_api_key(params)
        if key:
            headers["x-api-key"] = key
        self.provider = HTTPProvider(deployment, str(params.get("base_url", "https://api.anthropic.com")), headers)
        self.default_max_tokens = int(params.get("default_max_tokens", 4096))

    async def close(self) -> None:
        await self.provider.close()

    async def chat(self, payload: Payload) -> Payload:
        body = to_messages_request({**payload, "stream": False}, self.default_max_tokens)
        resp = await self.provider.post_json("/v1/messages", body)
        return from_messages_response(resp, payload["model"], json_format(payload) is not None)

    async def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        body = to_messages_request({**payload, "stream": True}, self.default_max_tokens)
        translator = StreamTranslator(payload["model"], json_format(payload) is not None)
        async for event_name, data in self.provider.stream_sse("/v1/messages", body):
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise UpstreamError(f"upstream for '{self.deployment.name}' sent a malformed event") from exc
            if event_name == "error" or event.get("type") == "error":
                message = (event.get("error") or {}).get("message", "unknown error")
                raise UpstreamError(
                    f"upstream for '{self.deployment.name}' failed mid-stream: "
                    f"{redact(str(message), self.provider.secrets)[:300]}"
                )
            for chunk in translator.feed(event):
                yield chunk
