"""Any OpenAI-compatible server: vLLM, llama.cpp's server, OpenAI, DeepSeek,
Qwen/DashScope compatible mode, Moonshot…

Requests are passed through as they came (unknown fields included), streams
chunk by chunk. Params: ``base_url``, ``api_key_env`` (name of the variable
holding the key), ``headers`` (extra headers), ``stream_usage`` (ask for
``stream_options.include_usage``; default true).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

from pydantic import Field

from openmaas.backends.base import Backend, Params, Payload
from openmaas.backends.http import HTTPProvider, loads, resolve_api_key
from openmaas.errors import UpstreamError, redact
from openmaas.settings import Deployment


class OpenAICompatParams(Params):
    base_url: str
    api_key_env: str | None = None
    api_key: str | None = None  # prefer api_key_env: a key in the config file is a secret on disk
    headers: dict[str, str] = Field(default_factory=dict)
    stream_usage: bool = True
    grammar: bool = False  # the upstream is a llama.cpp server: it takes GBNF grammars


class OpenAICompatBackend(Backend):
    Params = OpenAICompatParams

    def __init__(self, deployment: Deployment, base_url: str | None = None) -> None:
        super().__init__(deployment)
        # ``base_url``: an engine this gateway runs itself (llama.cpp), whose deployment has other params
        p = OpenAICompatParams(base_url=base_url) if base_url else self.typed_params(OpenAICompatParams)
        headers = dict(p.headers)
        key = resolve_api_key(p.api_key_env, p.api_key)
        if key:
            headers["authorization"] = f"Bearer {key}"
        self.provider = HTTPProvider(deployment, p.base_url, headers)
        self.stream_usage = p.stream_usage
        # an upstream that is a llama.cpp server takes grammars too (params.grammar: true)
        self.accepts_grammar = p.grammar

    async def close(self) -> None:
        await self.provider.close()

    async def health(self) -> bool:
        try:
            await self.provider.get_json("/models")
        except Exception:
            return False
        return True

    # the coroutine of ``_post`` itself, not one awaiting it: an await level less on every resumption of a call
    def chat(self, payload: Payload) -> Coroutine[Any, Any, Payload]:
        return self._post("/chat/completions", payload)

    def complete(self, payload: Payload) -> Coroutine[Any, Any, Payload]:
        return self._post("/completions", payload)

    def embed(self, payload: Payload) -> Coroutine[Any, Any, Payload]:
        return self._post("/embeddings", payload)

    def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        return self._stream("/chat/completions", payload)

    def complete_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        return self._stream("/completions", payload)

    async def _post(self, path: str, payload: Payload) -> Payload:
        body = await self.provider.post_json(path, payload)
        if not isinstance(body, dict):
            raise UpstreamError(f"upstream for '{self.deployment.name}' returned a non-object")
        return body

    async def _stream(self, path: str, payload: Payload) -> AsyncIterator[Payload]:
        body = dict(payload)
        body["stream"] = True
        if self.stream_usage:
            body["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        async for _event, data in self.provider.stream_sse(path, body):
            if data == b"[DONE]":
                return
            try:
                chunk: Any = loads(data)
            except ValueError as exc:
                raise UpstreamError(f"upstream for '{self.deployment.name}' sent a malformed stream event") from exc
            if isinstance(chunk, dict) and "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else str(error)
                raise UpstreamError(
                    f"upstream for '{self.deployment.name}' failed mid-stream: "
                    f"{redact(str(message), self.provider.secrets)[:300]}"
                )
            yield chunk
