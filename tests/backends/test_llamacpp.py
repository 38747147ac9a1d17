"""The local engine pool's launch settings (no engine started): batch-invariant kernels follow speculation and
the weights' type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from openmaas.backends.llamacpp import LlamaCppBackend
from openmaas.engine.models import resolve_model_path
from openmaas.settings import Deployment
from tests.engine.gguf_files import write_header


def backend(tmp_path: Path, **params: Any) -> LlamaCppBackend:
    deployment = Deployment(name="local", backend="llamacpp", locality="local", params={"threads": 2, **params})
    return LlamaCppBackend(deployment, data_dir=tmp_path)


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_speculation_runs_every_engine_of_the_deployment_on_batch_invariant_kernels(tmp_path: Path, mode: str) -> None:
    pool = backend(tmp_path, speculative=mode)
    model = tmp_path / "m.gguf"
    assert pool.batch_invariant
    assert pool.engine_env()["GGML_CPU_BATCH_INVARIANT"] == "1"
    for speculative in (False, True):  # auto: the plain engine too, so where a request lands changes no answer
        args = pool.engine_args(model, speculative)
        assert "--no-repack" in args
        assert ("--spec-type" in args) is speculative


def test_without_speculation_the_fast_kernels_stay_where_invariance_would_cost(tmp_path: Path) -> None:
    q4_0 = write_header(tmp_path / "q4_0.gguf", 2)  # Q4_0: sgemm and repacked batches to lose
    plain = backend(tmp_path)
    assert not plain.settle_kernels(q4_0) and not plain.batch_invariant
    assert "GGML_CPU_BATCH_INVARIANT" not in plain.engine_env()
    assert "--no-repack" not in plain.engine_args(q4_0)
    asked = backend(tmp_path, batch_invariant=True)
    assert asked.settle_kernels(q4_0)
    assert asked.engine_env()["GGML_CPU_BATCH_INVARIANT"] == "1"
    declined = backend(tmp_path, speculative="on", batch_invariant=False)
    assert not declined.settle_kernels(q4_0)
    assert "--no-repack" not in declined.engine_args(q4_0, True)
    assert "GGML_CPU_BATCH_INVARIANT" not in declined.engine_env()


def test_without_speculation_invariance_is_on_where_it_costs_nothing(tmp_path: Path) -> None:
    builtin = resolve_model_path("builtin:smollm2-135m")  # Q4_1: no faster batch kernel (measured free)
    pool = backend(tmp_path)
    assert pool.settle_kernels(builtin)
    assert pool.engine_env()["GGML_CPU_BATCH_INVARIANT"] == "1" and "--no-repack" in pool.engine_args(builtin)
    declined = backend(tmp_path, batch_invariant=False)
    assert not declined.settle_kernels(builtin) and "GGML_CPU_BATCH_INVARIANT" not in declined.engine_env()


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_flash_attention_is_the_engines_own_choice_unless_asked(tmp_path: Path) -> None:
    builtin = resolve_model_path("builtin:smollm2-135m")
    for params in ({}, {"batch_invariant": True}, {"speculative": "auto"}):
        pool = backend(tmp_path, **params)
        pool.settle_kernels(builtin)
        assert pool.attention is None and "--flash-attn" not in pool.engine_args(builtin)
    for value in ("on", "off", "auto"):
        asked = backend(tmp_path, speculative="on", flash_attention=value)
        assert asked.attention == value and flag(asked.engine_args(builtin, True), "--flash-attn") == value
    with pytest.raises(ValidationError):
        backend(tmp_path, flash_attention="sometimes")
