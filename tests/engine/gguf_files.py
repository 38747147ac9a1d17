"""GGUF headers written by hand for the tests (the format: github.com/ggml-org/ggml/blob/master/docs/gguf.md)."""

from __future__ import annotations

import struct
from pathlib import Path


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_header(path: Path, file_type: int | None, tokens: int = 3) -> Path:
    """A GGUF v3 header: a name, a tokenizer's string array and a float array *before* ``general.file_type``
    (so a reader has to skip arrays to find it), no tensors."""
    kvs = [
        _string("general.name") + struct.pack("<I", 8) + _string("tiny"),
        _string("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, tokens)
        + b"".join(_string(f"tok{i}") for i in range(tokens)),
        _string("tokenizer.ggml.scores")
        + struct.pack("<IIQ", 9, 6, tokens)
        + struct.pack(f"<{tokens}f", *[0.5] * tokens),
        _string("general.alignment") + struct.pack("<II", 4, 32),
    ]
    if file_type is not None:
        kvs.append(_string("general.file_type") + struct.pack("<II", 4, file_type))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))
    return path
