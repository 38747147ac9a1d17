"""The local engine pool's launch settings (no engine started): batch-invariant kernels follow speculation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openmaas.backends.llamacpp import LlamaCppBackend
from openmaas.settings import Deployment


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


def test_without_speculation_the_fast_prompt_kernels_stay_unless_asked(tmp_path: Path) -> None:
    plain = backend(tmp_path)
    assert not plain.batch_invariant
    assert "GGML_CPU_BATCH_INVARIANT" not in plain.engine_env()
    assert "--no-repack" not in plain.engine_args(tmp_path / "m.gguf")
    asked = backend(tmp_path, batch_invariant=True)
    assert asked.engine_env()["GGML_CPU_BATCH_INVARIANT"] == "1"
    declined = backend(tmp_path, speculative="on", batch_invariant=False)
    assert "--no-repack" not in declined.engine_args(tmp_path / "m.gguf", True)
    assert "GGML_CPU_BATCH_INVARIANT" not in declined.engine_env()
