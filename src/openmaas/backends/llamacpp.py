"""Local GGUF models on llama.cpp's ``llama-server``.

The gateway starts one supervised ``llama-server`` per local deployment on a
private loopback port (continuous batching over ``parallel`` slots, the
model's own chat template via ``--jinja``) and talks to it with the same
OpenAI-compatible code as any upstream. When the model's template has no tool
support (SmolLM2's has none), tools are served by constrained decoding
(``openmaas.backends.tool_emulation``).

Params: ``model_path`` (``builtin:NAME`` or a file), ``parallel`` (slots,
default 4), ``threads``, ``http_threads`` (default max(64, 8 × parallel): every
waiting request holds one of llama-server's HTTP threads, and when they are all
taken even ``/health`` waits — the supervisor would then restart a merely busy
engine, failing every request in it), ``binary`` (a llama-server to use instead of the
cached build), ``extra_args``, ``tools`` (``auto`` | ``native`` | ``emulated``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from openmaas.backends import tool_emulation
from openmaas.backends.base import Backend, Params, Payload
from openmaas.backends.http import HTTPProvider
from openmaas.backends.openai_compat import OpenAICompatBackend
from openmaas.engine import build
from openmaas.engine.models import resolve_model_path
from openmaas.engine.supervisor import LlamaServerProcess
from openmaas.errors import UpstreamUnavailable
from openmaas.settings import Deployment

log = logging.getLogger("openmaas.engine")


def engine_binary(binary: str | None) -> Path:
    explicit = binary or os.environ.get("OPENMAAS_LLAMA_SERVER")
    if explicit:
        return Path(str(explicit))
    path = build.binary_path()
    if not path.exists():
        log.warning("llama-server is not built yet; building it now (a few minutes, once)")
        path = build.build()
    return path


class LlamaCppParams(Params):
    model_path: str = "builtin:smollm2-135m"
    parallel: int = Field(default=4, ge=1, le=256)
    threads: int | None = Field(default=None, ge=1)
    http_threads: int | None = Field(default=None, ge=1)
    binary: str | None = None
    extra_args: list[str] = Field(default_factory=list)
    tools: Literal["auto", "native", "emulated"] = "auto"


class LlamaCppBackend(Backend):
    accepts_grammar = True
    Params = LlamaCppParams

    @classmethod
    def from_deployment(cls, deployment: Deployment, data_dir: Path | None = None) -> LlamaCppBackend:
        return cls(deployment, data_dir=data_dir)

    def __init__(self, deployment: Deployment, data_dir: Path | None = None) -> None:
        super().__init__(deployment)
        self.data_dir = Path(data_dir or Path.home() / ".local/share/openmaas")
        self.params = self.typed_params(LlamaCppParams)
        self.process: LlamaServerProcess | None = None
        self.http: OpenAICompatBackend | None = None
        self.root: HTTPProvider | None = None  # the engine's own endpoints (/tokenize, /apply-template)
        self.native_tools = self.params.tools == "native"
        self.props: dict[str, Any] = {}

    def engine_args(self, model_path: Path) -> list[str]:
        parallel = self.params.parallel
        args = [
            "-m",
            str(model_path),
            "--alias",
            self.deployment.upstream_model,
            "--parallel",
            str(parallel),
            "--kv-unified-per-slot",
            str(self.deployment.context_length),
            "--jinja",
            "--no-webui",
            "--metrics",
        ]
        http_threads = self.params.http_threads or max(64, 8 * parallel)
        args += ["--threads-http", str(http_threads)]
        threads = self.params.threads
        if threads:
            args += ["--threads", str(threads)]
        args += self.params.extra_args
        return args

    async def start(self) -> None:
        model_path = resolve_model_path(self.params.model_path)
        self.process = LlamaServerProcess(
            self.deployment.name,
            engine_binary(self.params.binary),
            self.engine_args(model_path),
            self.data_dir / "logs" / f"engine-{self.deployment.name}.log",
        )
        await self.process.start()
        self.http = OpenAICompatBackend(self.deployment, base_url=self.process.base_url + "/v1")
        self.root = HTTPProvider(self.deployment, self.process.base_url, {})
        self.props = await self.process.get_json("/props")
        caps = self.props.get("chat_template_caps") or {}
        mode = self.params.tools
        self.native_tools = mode == "native" or (mode == "auto" and bool(caps.get("supports_tools")))
        log.info(
            "engine %s ready (tools: %s)",
            self.deployment.name,
            "native" if self.native_tools else "constrained decoding",
        )

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.root is not None:
            await self.root.close()
        if self.process is not None:
            await self.process.stop()

    async def health(self) -> bool:
        return self.process is not None and self.process.ready

    def _engine(self) -> OpenAICompatBackend:
        if self.http is None or self.process is None or not self.process.ready:
            raise UpstreamUnavailable(f"local engine for '{self.deployment.name}' is not ready")
        return self.http

    async def chat(self, payload: Payload) -> Payload:
        engine = self._engine()
        if tool_emulation.wants_tools(payload) and not self.native_tools:
            return tool_emulation.convert_response(await engine.chat(tool_emulation.to_constrained(payload)))
        return await engine.chat(_without_unused_tools(payload))

    async def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        engine = self._engine()
        if tool_emulation.wants_tools(payload) and not self.native_tools:
            # Constrained JSON can only be converted once complete: the answer is
            # generated first, then delivered as the chunks OpenAI would send.
            whole = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
            response = await self.chat(whole)
            for chunk in tool_emulation.as_chunks(response):
                yield chunk
            return
        async for chunk in engine.chat_stream(_without_unused_tools(payload)):
            yield chunk

    async def complete(self, payload: Payload) -> Payload:
        return await self._engine().complete(payload)

    def complete_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        return self._engine().complete_stream(payload)

    async def embed(self, payload: Payload) -> Payload:
        if not self.deployment.capabilities.embeddings:
            return await super().embed(payload)
        return await self._engine().embed(payload)

    async def count_tokens(self, text: str) -> int | None:
        self._engine()
        assert self.root is not None
        body = await self.root.post_json("/tokenize", {"content": text, "add_special": False})
        return len(body.get("tokens") or [])

    async def count_prompt_tokens(self, payload: Payload) -> int | None:
        self._engine()
        assert self.root is not None
        if "messages" in payload:
            rendered = await self.root.post_json("/apply-template", {"messages": payload["messages"]})
            text = str(rendered.get("prompt", ""))
        else:
            prompt = payload.get("prompt", payload.get("input")) or ""
            text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        body = await self.root.post_json("/tokenize", {"content": text, "add_special": True, "parse_special": True})
        return len(body.get("tokens") or [])


def _without_unused_tools(payload: Payload) -> Payload:
    if payload.get("tools") and payload.get("tool_choice") == "none":
        return {k: v for k, v in payload.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}
    return payload
