"""What a ``llamacpp`` deployment takes (``LlamaCppBackend``).

Params: ``model_path`` (``builtin:NAME`` or a file), ``parallel`` (slots per engine, default 4),
``engines`` (plain engine processes, default 1), ``threads`` / ``threads_batch`` / ``wait_policy`` (default:
``engine.threads`` — the tuned plan, else cores − 1 with passive waiting), ``http_threads`` (default
max(64, 8 × parallel): every waiting request holds one of llama-server's HTTP threads, and when they are
all taken even ``/health`` waits), ``speculative`` (``off`` | ``on`` | ``auto``, or a mapping with ``mode``,
``type`` and the n-gram sizes), ``prompt_cache`` (placement, ``--cache-reuse``, saved hot slots),
``batch_invariant`` (an answer is the same token for token whether or not it was speculated, whatever the
thread count and the requests batched beside it; default: on with speculation, and on wherever it costs nothing
— weights with no faster batch kernel to give up, such as Q4_1 (``engine.models.batch_invariance_is_free``);
a batch token of Q4_0 weights costs ~1.45× under it: docs/benchmarks.md §i),
``binary`` (a llama-server to use instead of the cached build; batch invariance needs the project's build),
``flash_attention`` (``on`` | ``off`` | ``auto``: llama-server's ``--flash-attn``; default: the
engine's own), ``extra_args``, ``tools`` (``auto`` | ``native`` | ``emulated``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from openmaas.backends.base import Params

# ngram-mod's sizes when none is given: match 8 tokens, draft 4 to 16. The engine's own (24 / 48 / 64) suit models
# whose verified batch is nearly free; on a CPU a drafted token costs ~0.35 of a decode step, so a long draft
# that diverges early costs more than it saves (raw engines side by side, bench/spec_sizes.py: whole-file code
# edits 1.22× → 1.34–1.39×, grounded answers 0.98× → 1.04–1.06×, free text unchanged; on the tiled invariant
# products edits 1.52–1.67× raw, 8-4-16 still ahead of 8-4-24 / 8-4-32 — docs/benchmarks.md §i)
MOD_SIZES = {"n_match": 8, "n_min": 4, "n_max": 16}
_FAMILY_SIZES = {"mod": ("n_match", "n_min", "n_max"), "other": ("size_n", "size_m", "min_hits")}


class SpeculativeParams(Params):
    """N-gram speculative decoding (no draft model): ``off``, ``on`` (every engine) or ``auto`` (a separate
    speculative engine for copy-heavy requests, ``engine.placement.copy_heavy``)."""

    mode: Literal["off", "on", "auto"] = "off"
    type: Literal["ngram-mod", "ngram-simple", "ngram-map-k", "ngram-map-k4v"] = "ngram-mod"
    n_match: int | None = Field(default=None, ge=1)  # ngram-mod (default MOD_SIZES)
    n_min: int | None = Field(default=None, ge=1)
    n_max: int | None = Field(default=None, ge=1)
    size_n: int | None = Field(default=None, ge=1)  # ngram-simple / map-k / map-k4v (engine defaults 12 / 48 / 1)
    size_m: int | None = Field(default=None, ge=1)
    min_hits: int | None = Field(default=None, ge=1)
    engines: int = Field(default=1, ge=1, le=16)  # auto: speculative processes beside the plain ones

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"mode": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _sizes_fit_the_type(self) -> SpeculativeParams:
        family = "mod" if self.type == "ngram-mod" else "other"
        foreign = [
            n for f, names in _FAMILY_SIZES.items() if f != family for n in names if getattr(self, n) is not None
        ]
        if foreign:
            raise ValueError(f"{', '.join(foreign)} do not apply to speculative type '{self.type}'")
        sizes = self.sizes()
        if "n_min" in sizes and "n_max" in sizes and sizes["n_min"] > sizes["n_max"]:
            raise ValueError(f"n_min ({sizes['n_min']}) is above n_max ({sizes['n_max']})")
        return self

    def sizes(self) -> dict[str, int]:
        """The sizes passed to the engine: the ones given, and MOD_SIZES for the rest of ngram-mod's."""
        given = {n: v for n in (*_FAMILY_SIZES["mod"], *_FAMILY_SIZES["other"]) if (v := getattr(self, n)) is not None}
        return {**MOD_SIZES, **given} if self.type == "ngram-mod" else given

    def args(self) -> list[str]:
        args = ["--spec-type", self.type]
        family = "mod" if self.type == "ngram-mod" else self.type.removeprefix("ngram-")
        for name, value in self.sizes().items():
            args += [f"--spec-ngram-{family}-{name.replace('_', '-')}", str(value)]
        return args


class PromptCacheParams(Params):
    placement: Literal["prefix", "least_loaded"] = "prefix"  # across engine processes
    queue: int = Field(default=4, ge=0)  # waiting requests an engine that holds a prefix may take beyond its slots
    cache_reuse: int = Field(default=256, ge=0)  # --cache-reuse: shifted chunks of ≥ N tokens are reused (0: off)
    save_slots: bool = True  # hot prefixes survive restarts (engine.slots)
    save_budget_mib: int = Field(default=1024, ge=0)
    save_min_tokens: int = Field(default=512, ge=1)
    save_interval: float = Field(default=30.0, gt=0)


class LlamaCppParams(Params):
    model_path: str = "builtin:smollm2-135m"
    parallel: int = Field(default=4, ge=1, le=256)
    engines: int = Field(default=1, ge=1, le=16)
    threads: int | None = Field(default=None, ge=1)
    threads_batch: int | None = Field(default=None, ge=1)
    threads_contended: int | None = Field(default=None, ge=1)  # decode threads while the host is contended
    wait_policy: Literal["active", "passive"] | None = None
    http_threads: int | None = Field(default=None, ge=1)
    speculative: SpeculativeParams = Field(default_factory=SpeculativeParams)
    prompt_cache: PromptCacheParams = Field(default_factory=PromptCacheParams)
    # identical tokens whether or not a request is speculated (and at any thread count): ggml's batch-invariant
    # kernels (engine.patches) and no weight repacking; default: on when speculation is on or auto
    batch_invariant: bool | None = None
    # llama-server's --flash-attn (attention); default: the engine's own choice
    flash_attention: Literal["auto", "on", "off"] | None = None
    binary: str | None = None
    extra_args: list[str] = Field(default_factory=list)
    tools: Literal["auto", "native", "emulated"] = "auto"
