"""Anthropic Messages API upstreams, served through the OpenAI chat interface.

Params: ``base_url`` (default ``https://api.anthropic.com``), ``api_key_env``,
``anthropic_version`` (default ``2023-06-01``), ``default_max_tokens``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from pydantic import Field

from openmaas.backends.anthropic_translate import (
    StreamTranslator,
    from_messages_response,
    json_format,
    to_messages_request,
)
from openmaas.backends.base import Backend, Params, Payload
from openmaas.backends.http import HTTPProvider, resolve_api_key
from openmaas.core.chat import NATIVE_KEY
from openmaas.core.types import Native
from openmaas.errors import UpstreamError, redact
from openmaas.settings import Deployment


class AnthropicParams(Params):
    base_url: str = "https://api.anthropic.com"
    api_key_env: str | None = None
    api_key: str | None = None
    anthropic_version: str = "2023-06-01"
    default_max_tokens: int = Field(default=4096, ge=1)


class AnthropicBackend(Backend):
    native_dialect = "anthropic"
    Params = AnthropicParams

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        p = self.typed_params(AnthropicParams)
        headers = {"anthropic-version": p.anthropic_version}
        key = resolve_api_key(p.api_key_env, p.api_key)
        if key:
            headers["x-api-key"] = key
        self.provider = HTTPProvider(deployment, p.base_url, headers)
        self.default_max_tokens = p.default_max_tokens

    async def close(self) -> None:
        await self.provider.close()

    def _body(self, payload: Payload, stream: bool) -> tuple[Payload, bool]:
        """The Messages body: a Messages client's own body as is (``cache_control``, thinking, documents,
        ``top_k``… kept), else the translation of the chat payload; and whether JSON mode applies."""
        native = payload.get(NATIVE_KEY)
        if isinstance(native, Native) and native.dialect == self.native_dialect:
            return {**native.body, "model": payload["model"], "stream": stream}, False
        body = to_messages_request({**payload, "stream": stream}, self.default_max_tokens)
        return body, json_format(payload) is not None

    async def chat(self, payload: Payload) -> Payload:
        body, json_mode = self._body(payload, False)
        resp = await self.provider.post_json("/v1/messages", body)
        return from_messages_response(resp, payload["model"], json_mode)

    async def count_prompt_tokens(self, payload: Payload) -> int | None:
        """The upstream's own count (``/v1/messages/count_tokens``)."""
        body, _ = self._body(payload, False)
        keep = ("model", "messages", "system", "tools", "tool_choice", "thinking")
        resp = await self.provider.post_json("/v1/messages/count_tokens", {k: body[k] for k in keep if k in body})
        count = resp.get("input_tokens")
        return int(count) if isinstance(count, int) else None

    async def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        body, json_mode = self._body(payload, True)
        translator = StreamTranslator(payload["model"], json_mode)
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
