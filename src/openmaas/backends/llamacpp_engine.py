"""One supervised ``llama-server`` process of a local deployment, as a backend.

``backends.llamacpp`` runs one or more of these per deployment and places each request on one. The
engine talks to its process with the same OpenAI-compatible code as any upstream; when the model's
template has no tool support (SmolLM2's has none), tools are served by constrained decoding
(``backends.tool_emulation``). It counts its requests in flight (placement reads them) and tells its
slot store when a long cached prefix was reused (hot prefixes are saved to disk).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from openmaas.backends import tool_emulation
from openmaas.backends.base import Backend, Payload
from openmaas.backends.http import HTTPProvider
from openmaas.backends.openai_compat import OpenAICompatBackend
from openmaas.core.view import cached_tokens
from openmaas.engine.placement import SlotMap, SpeculationGain, prefix_keys
from openmaas.engine.slots import SlotStore
from openmaas.engine.supervisor import LlamaServerProcess
from openmaas.errors import UpstreamUnavailable
from openmaas.settings import Deployment

log = logging.getLogger("openmaas.engine")


class LlamaCppEngine(Backend):
    accepts_grammar = True

    def __init__(
        self,
        deployment: Deployment,
        index: int,
        process: LlamaServerProcess,
        *,
        slots: int,
        speculative: bool,
        tools: str,
        store: SlotStore | None = None,
        args_for: Callable[[bool], list[str]] | None = None,
        pin_slots: bool = True,
        copy_slots: bool = False,
        gain: SpeculationGain | None = None,
    ) -> None:
        """``args_for(contended)``: the engine's arguments for the calm or the contended thread count
        (``engine.threads``; None: it never switches); ``gain``: fed the timings of every answer (speculative
        engines of ``auto``)."""
        super().__init__(deployment)
        self.index = index
        self.process = process
        self.capacity = slots
        self.speculative = speculative
        self.tools = tools
        self.store = store
        self.gain = gain
        self.inflight = 0
        self.slot_map = SlotMap(slots) if pin_slots else None
        self.copy_slots = copy_slots  # the engine runs with --slot-save-path
        self.contended = False
        self._steady = asyncio.Event()  # cleared while the engine relaunches with another thread count
        self._steady.set()
        self.args_for = args_for
        self.http: OpenAICompatBackend | None = None
        self.root: HTTPProvider | None = None  # the engine's own endpoints (/tokenize, /apply-template)
        self.native_tools = tools == "native"
        self.props: dict[str, Any] = {}

    @property
    def label(self) -> str:
        return f"engine {self.index}" + (" (speculative)" if self.speculative else "")

    async def start(self) -> None:
        await self.process.start()
        self.http = OpenAICompatBackend(self.deployment, base_url=self.process.base_url + "/v1")
        self.root = HTTPProvider(self.deployment, self.process.base_url, {})
        props = await self.process.get_json("/props")
        self.props = props if isinstance(props, dict) else {}
        caps = self.props.get("chat_template_caps") or {}
        self.native_tools = self.tools == "native" or (self.tools == "auto" and bool(caps.get("supports_tools")))
        log.info(
            "engine %s/%s ready (tools: %s%s)",
            self.deployment.name,
            self.index,
            "native" if self.native_tools else "constrained decoding",
            ", n-gram speculation" if self.speculative else "",
        )

    @property
    def switching(self) -> bool:
        """Relaunching for a thread switch: requests wait for it rather than fail."""
        return not self._steady.is_set()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    async def switch(self, contended: bool) -> None:
        """Relaunch with the other thread count (``engine.adapt``; only called while nothing is in flight),
        hot slots saved first and restored by the start-up hook."""
        if self.args_for is None:
            self.contended = contended
            return
        if not self.process.ready:  # down or restarting: the supervisor owns it now
            return
        self._steady.clear()  # requests arriving from here wait for the relaunch
        try:
            await self.save_slots()
            if self.inflight:  # one slipped in while the slots were saved: try again later
                return
            state = "contended" if contended else "calm"
            log.info("engine %s/%s: switching to the %s thread count", self.deployment.name, self.index, state)
            await self.process.relaunch(self.args_for(contended))
            self.contended = contended
        finally:
            self._steady.set()

    async def _enter(self, payload: Payload) -> tuple[OpenAICompatBackend, Payload, int | None]:
        """Count a request in (placement reads the count), wait while the engine relaunches, and pin it to
        the slot that holds its prefix (``SlotMap``); ``_leave`` undoes it."""
        self.inflight += 1
        try:
            if not self._steady.is_set():
                await self._steady.wait()
            engine = self._engine()
        except BaseException:
            self.inflight -= 1
            raise
        slot = None
        if self.slot_map is not None and "id_slot" not in payload:
            slot, donor = self.slot_map.acquire(prefix_keys(payload))
            if slot is not None:
                payload = {**payload, "id_slot": slot}
                if donor is not None and self.copy_slots:
                    await self._copy_slot(donor, slot)
        return engine, payload, slot

    async def _copy_slot(self, source: int, target: int) -> None:
        """Give ``target`` the prompt ``source`` holds (a request pinned to a slot skips the engine's RAM
        prompt cache, so a new conversation would otherwise recompute the shared system prompt)."""
        filename = f"{self.process.name}-copy-{target}.bin"
        try:
            status, _ = await self.process.post_json(f"/slots/{source}?action=save", {"filename": filename})
            if status == 200:
                await self.process.post_json(f"/slots/{target}?action=restore", {"filename": filename})
        except Exception as exc:  # a cache miss, never a failed request
            log.info("engine %s/%s: slot copy failed (%s)", self.deployment.name, self.index, exc)

    async def _steady_engine(self) -> OpenAICompatBackend:
        """The engine's client once any relaunch for a thread switch is over (token counts, embeddings)."""
        if not self._steady.is_set():
            await self._steady.wait()
        return self._engine()

    def _leave(self, slot: int | None) -> None:
        self.inflight -= 1
        if self.slot_map is not None:
            self.slot_map.release(slot)

    async def save_slots(self) -> int:
        if self.store is None or not self.process.ready:
            return 0
        return await self.store.save(self.process)

    async def close(self) -> None:
        if self.store is not None and self.process.ready:
            try:
                await self.store.save(self.process)
            except Exception:  # stopping never fails on a save
                log.exception("engine %s/%s: saving slots at stop failed", self.deployment.name, self.index)
        if self.http is not None:
            await self.http.close()
        if self.root is not None:
            await self.root.close()
        await self.process.stop()

    async def health(self) -> bool:
        return self.process.ready

    def _engine(self) -> OpenAICompatBackend:
        if self.http is None or not self.process.ready:
            raise UpstreamUnavailable(f"local engine for '{self.deployment.name}' is not ready")
        return self.http

    def _seen(self, usage: Any, timings: Any = None) -> None:
        if self.store is not None:
            self.store.note_cached(cached_tokens(usage))
        if self.gain is not None and timings is not None:
            self.gain.note(timings)

    async def chat(self, payload: Payload) -> Payload:
        engine, payload, slot = await self._enter(payload)
        try:
            if tool_emulation.wants_tools(payload) and not self.native_tools:
                result = tool_emulation.convert_response(await engine.chat(tool_emulation.to_constrained(payload)))
            else:
                result = await engine.chat(_without_unused_tools(payload, not self.native_tools))
        finally:
            self._leave(slot)
        self._seen(result.get("usage"), result.get("timings"))
        return result

    async def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        if tool_emulation.wants_tools(payload) and not self.native_tools:
            # Constrained JSON can only be converted once complete: the answer is
            # generated first, then delivered as the chunks OpenAI would send.
            whole = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}
            response = await self.chat(whole)
            for chunk in tool_emulation.as_chunks(response):
                yield chunk
            return
        engine, payload, slot = await self._enter(payload)
        try:
            async for chunk in engine.chat_stream(_without_unused_tools(payload, not self.native_tools)):
                if not chunk.get("choices") and chunk.get("usage"):
                    self._seen(chunk["usage"], chunk.get("timings"))  # llama-server: on the usage chunk only
                yield chunk
        finally:
            self._leave(slot)

    async def complete(self, payload: Payload) -> Payload:
        engine, payload, slot = await self._enter(payload)
        try:
            result = await engine.complete(payload)
        finally:
            self._leave(slot)
        self._seen(result.get("usage"))
        return result

    async def complete_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        engine, payload, slot = await self._enter(payload)
        try:
            async for chunk in engine.complete_stream(payload):
                yield chunk
        finally:
            self._leave(slot)

    async def embed(self, payload: Payload) -> Payload:
        if not self.deployment.capabilities.embeddings:
            return await super().embed(payload)
        return await (await self._steady_engine()).embed(payload)

    async def count_tokens(self, text: str) -> int | None:
        await self._steady_engine()
        assert self.root is not None
        body = await self.root.post_json("/tokenize", {"content": text, "add_special": False})
        return len(body.get("tokens") or [])

    async def count_prompt_tokens(self, payload: Payload) -> int | None:
        await self._steady_engine()
        assert self.root is not None
        if "messages" in payload:
            rendered = await self.root.post_json("/apply-template", {"messages": payload["messages"]})
            text = str(rendered.get("prompt", ""))
        else:
            prompt = payload.get("prompt", payload.get("input")) or ""
            text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        body = await self.root.post_json("/tokenize", {"content": text, "add_special": True, "parse_special": True})
        return len(body.get("tokens") or [])


def _without_unused_tools(payload: Payload, flatten: bool) -> Payload:
    """A request that offers no tool: unused tool fields dropped; with ``flatten`` (no native tool template),
    earlier tool calls and results as plain text (a final answer after an agent's tool calls)."""
    if payload.get("tools") and payload.get("tool_choice") == "none":
        payload = {k: v for k, v in payload.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}
    if flatten and tool_emulation.has_tool_history(payload):
        payload = {**payload, "messages": tool_emulation.flatten_history(list(payload["messages"]), prose=True)}
    return payload
