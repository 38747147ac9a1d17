"""Local GGUF models on llama.cpp's ``llama-server``: a pool of supervised engine processes per deployment.

Each process (``backends.llamacpp_engine``) runs on a private loopback port with continuous batching over
``parallel`` slots and the model's own chat template (``--jinja``). The pool places every request on one
of them (``place``): the engine holding its longest prompt prefix unless that one is overloaded
(``engine.placement``), and, with ``speculative.mode: auto``, copy-heavy requests on the engine that runs
n-gram speculation and the rest on the plain ones. This engine version has no per-request switch for
speculation (a request's ``speculative.*`` fields are accepted and ignored — measured), hence a second
process; its memory cost is its KV cache and compute buffers (the weights are mapped from the same file
and shared through the page cache): for SmolLM2-135M with 4 slots × 8,192 tokens, about 0.75 GB of KV.

Params: ``backends.llamacpp_params``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from openmaas.backends.base import Backend, Occupancy, Payload, Placement
from openmaas.backends.llamacpp_engine import LlamaCppEngine
from openmaas.backends.llamacpp_params import LlamaCppParams
from openmaas.engine import build, placement, threads
from openmaas.engine.adapt import LoadWatch
from openmaas.engine.models import batch_invariance_is_free, resolve_model_path
from openmaas.engine.slots import SlotStore, fingerprint
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
        self.engines: list[LlamaCppEngine] = []
        self.placer = placement.Placer(queue=self.params.prompt_cache.queue)
        spec = self.params.speculative
        plain = self.params.engines
        extra = spec.engines if spec.mode == "auto" else 0
        self.kinds = [spec.mode == "on"] * plain + [True] * extra  # speculative or not, per engine
        self.plain = [i for i, s in enumerate(self.kinds) if not s] or list(range(len(self.kinds)))
        self.fast_copy = [i for i, s in enumerate(self.kinds) if s] or self.plain
        self.gain = placement.SpeculationGain()  # auto: does speculation pay on the copy-heavy traffic?
        invariant = self.params.batch_invariant
        self.batch_invariant = spec.mode != "off" if invariant is None else invariant
        self.thread_plan = threads.resolve(
            self.params.threads,
            self.params.threads_batch,
            self.params.wait_policy,
            self.data_dir,
            engines=len(self.kinds),
            contended=self.params.threads_contended,
        )
        self.load = LoadWatch()
        self._tasks: list[asyncio.Task[None]] = []

    def settle_kernels(self, model_path: Path) -> bool:
        """``batch_invariant`` as asked; by default on with speculation, and on wherever it costs nothing (the
        weights' type has no faster batch kernel to give up: a header read)."""
        if self.params.batch_invariant is None and not self.batch_invariant:
            self.batch_invariant = batch_invariance_is_free(model_path)
        return self.batch_invariant

    @property
    def attention(self) -> str | None:
        """``--flash-attn`` for the engines: as asked, else the engine's own choice (on). On batch-invariant kernels
        flash attention runs the tiled kernel for every row count (engine.patches): batches at or below the fast
        kernels' cost, a decode step 1.2–1.35× theirs at 0.9–3.5 k cached tokens on an AVX-512 host; ``off`` gives
        per-element dot products instead — decode as fast as theirs, batches up to 1.55× dearer, drafts verified
        at a cost that takes most of speculation's gain (docs/benchmarks.md §i)."""
        return self.params.flash_attention

    @property
    def slot_folder(self) -> Path:
        return self.data_dir / "slots"

    def engine_args(self, model_path: Path, speculative: bool = False, contended: bool = False) -> list[str]:
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
        args += ["--threads-http", str(http_threads), *self.thread_plan.args(contended)]
        cache = self.params.prompt_cache
        if cache.cache_reuse:
            args += ["--cache-reuse", str(cache.cache_reuse)]
        if cache.save_slots or cache.placement == "prefix":  # saved hot slots; slot copies (SlotMap.donor)
            args += ["--slot-save-path", str(self.slot_folder)]
        if speculative:
            args += self.params.speculative.args()
        if self.batch_invariant:
            args.append("--no-repack")  # repacked weights have a gemv kernel for one row, a gemm for a batch
        if self.attention is not None:
            args += ["--flash-attn", self.attention]
        args += self.params.extra_args
        return args

    def engine_env(self) -> dict[str, str]:
        env = self.thread_plan.env()
        if self.batch_invariant:
            env["GGML_CPU_BATCH_INVARIANT"] = "1"  # read by the project's build (engine.patches)
        return env

    async def start(self) -> None:
        model_path = resolve_model_path(self.params.model_path)
        self.settle_kernels(model_path)
        binary = engine_binary(self.params.binary)
        cache = self.params.prompt_cache
        self.slot_folder.mkdir(parents=True, exist_ok=True)
        for index, speculative in enumerate(self.kinds):
            name = f"{self.deployment.name}-e{index}"
            store = None
            if cache.save_slots:
                store = SlotStore(
                    self.slot_folder,
                    name,
                    fingerprint(
                        model_path, binary, self.deployment.context_length, self.batch_invariant, self.attention
                    ),
                    self.params.parallel,
                    budget_bytes=cache.save_budget_mib * 1024 * 1024,
                    min_tokens=cache.save_min_tokens,
                    interval=cache.save_interval,
                )
            process = LlamaServerProcess(
                name if len(self.kinds) > 1 else self.deployment.name,
                binary,
                self.engine_args(model_path, speculative),
                self.data_dir / "logs" / f"engine-{name if len(self.kinds) > 1 else self.deployment.name}.log",
                env=self.engine_env(),
                on_ready=self._restorer(index, store),
            )
            engine = LlamaCppEngine(
                self.deployment,
                index,
                process,
                slots=self.params.parallel,
                speculative=speculative,
                tools=self.params.tools,
                store=store,
                args_for=self._args_for(model_path, speculative),
                pin_slots=cache.placement == "prefix",
                copy_slots=cache.placement == "prefix",
                gain=self.gain if speculative and self.fast_copy is not self.plain else None,
            )
            self.engines.append(engine)
        await asyncio.gather(*(e.start() for e in self.engines))
        kernels = "batch-invariant" if self.batch_invariant else "fast"
        log.info(
            "deployment %s: %s engine(s), threads %s, %s kernels",
            self.deployment.name,
            len(self.engines),
            self.thread_plan,
            kernels,
        )
        if cache.save_slots:
            self._tasks.append(asyncio.create_task(self._save_hot(), name=f"slots-{self.deployment.name}"))
        if self.thread_plan.adaptive:
            self._tasks.append(asyncio.create_task(self.load.run(self.engines), name=f"load-{self.deployment.name}"))

    def _args_for(self, model_path: Path, speculative: bool) -> Any:
        def args(contended: bool) -> list[str]:
            return self.engine_args(model_path, speculative, contended)

        return args

    def _restorer(self, index: int, store: SlotStore | None) -> Any:
        async def ready() -> None:
            """A (re)started engine holds what it restored (slot N's file goes back into slot N, where the
            maps say it was), or nothing."""
            engine = self.engines[index] if index < len(self.engines) else None
            restored = 0
            if store is not None and engine is not None:
                restored = await store.restore(engine.process)
            if not restored:
                self.placer.forget(index)
                if engine is not None and engine.slot_map is not None:
                    engine.slot_map.clear()

        return ready

    async def _save_hot(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, self.params.prompt_cache.save_interval))
            for engine in self.engines:
                if engine.store is not None and engine.store.due():
                    try:
                        await engine.save_slots()
                    except Exception:
                        log.exception("engine %s: saving hot slots failed", engine.label)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(e.close() for e in self.engines), return_exceptions=True)

    async def health(self) -> bool:
        return any(e.process.ready or e.switching for e in self.engines)

    @property
    def native_tools(self) -> bool:
        return bool(self.engines) and self.engines[0].native_tools

    @property
    def props(self) -> dict[str, Any]:
        return self.engines[0].props if self.engines else {}

    def occupancy(self) -> list[Occupancy]:
        return [
            Occupancy(e.label, e.capacity, min(e.inflight, e.capacity), max(0, e.inflight - e.capacity))
            for e in self.engines
        ]

    def place(self, payload: Payload) -> Placement:
        engines = self.engines
        if not engines:
            raise UpstreamUnavailable(f"local engine for '{self.deployment.name}' is not started")
        if len(engines) == 1:
            return Placement(engines[0], None)
        copy = self.fast_copy is not self.plain and placement.copy_heavy(payload)
        paused = copy and not self.gain.wants()  # speculation does not pay on this traffic (yet)
        up = [i for i in range(len(engines)) if engines[i].process.ready or engines[i].switching]
        eligible = [i for i in (self.fast_copy if copy and not paused else self.plain) if i in up] or up
        if not eligible:
            raise UpstreamUnavailable(f"local engine for '{self.deployment.name}' is not ready")
        note = f", copy-heavy but speculation paused (gain {self.gain.value:.2f})" if paused else ""
        if self.params.prompt_cache.placement == "prefix":
            choice = self.placer.choose(engines, eligible, placement.prefix_keys(payload))
            label = f"{engines[choice.index].label}: {choice.reason}"
            if choice.matched:
                label += f", {choice.matched} prefix level(s) held"
            return Placement(engines[choice.index], label + note)
        index = self.placer.least_loaded(engines, eligible)
        return Placement(engines[index], f"{engines[index].label}: least_loaded{note}")

    def _any(self) -> LlamaCppEngine:
        """A ready engine, else one relaunching for a thread switch (the call waits for it)."""
        for engine in self.engines:
            if engine.process.ready:
                return engine
        for engine in self.engines:
            if engine.switching:
                return engine
        raise UpstreamUnavailable(f"local engine for '{self.deployment.name}' is not ready")

    async def chat(self, payload: Payload) -> Payload:
        return await self.place(payload).backend.chat(payload)

    def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        return self.place(payload).backend.chat_stream(payload)

    async def complete(self, payload: Payload) -> Payload:
        return await self.place(payload).backend.complete(payload)

    def complete_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        return self.place(payload).backend.complete_stream(payload)

    async def embed(self, payload: Payload) -> Payload:
        return await self._any().embed(payload)

    async def count_tokens(self, text: str) -> int | None:
        return await self._any().count_tokens(text)

    async def count_prompt_tokens(self, payload: Payload) -> int | None:
        return await self._any().count_prompt_tokens(payload)
