"""The NumPy encoder against embeddings made by sentence-transformers with the same model files
(tests/rag/data/minilm_reference.json, made once with sentence-transformers 6.2 and torch)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openmaas.backends.encoder import EncoderBackend
from openmaas.errors import InvalidRequest
from openmaas.rag.encoder import SentenceEncoder, builtin_path
from openmaas.settings import Deployment

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(builtin_path("all-minilm-l6-v2"))


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_matches_the_reference_model(encoder: SentenceEncoder, batch_size: int) -> None:
    vectors, tokens = encoder.encode(REFERENCE["sentences"], batch_size)
    reference = np.array(REFERENCE["embeddings"], dtype=np.float32)
    cosine = (vectors * reference).sum(1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.999, dict(zip(REFERENCE["sentences"], cosine.round(5).tolist(), strict=True))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert tokens == sum(len(ids) for ids in encoder.tokenize(REFERENCE["sentences"]))


def test_long_input_is_truncated_to_the_model_window(encoder: SentenceEncoder) -> None:
    long = " ".join(["word"] * 2000)
    assert encoder.count_tokens(long) == encoder.max_tokens == 256


@pytest.mark.anyio
async def test_backend_serves_float_and_base64() -> None:
    backend = EncoderBackend(Deployment(name="mini", backend="encoder", capabilities={"embeddings": True}))
    await backend.start()
    as_float = await backend.embed({"model": "mini", "input": ["hello world", "bye"]})
    as_b64 = await backend.embed({"model": "mini", "input": ["hello world", "bye"], "encoding_format": "base64"})
    first = np.frombuffer(base64.b64decode(as_b64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(first, as_float["data"][0]["embedding"], atol=1e-7)
    assert len(as_float["data"]) == 2
    assert as_float["usage"]["prompt_tokens"] == (2 + 2) + (1 + 2)  # words + [CLS], [SEP]
    with pytest.raises(InvalidRequest):
        await backend.embed({"model": "mini", "input": [[1, 2, 3]]})
    with pytest.raises(InvalidRequest):
        await backend.embed({"model": "mini", "input": "x", "dimensions": 12})
    await backend.close()


@pytest.mark.anyio
async def test_the_encoder_encodes_on_one_thread_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    backend = EncoderBackend(Deployment(name="mini", backend="encoder"))
    await backend.start()
    encoder = backend._encoder()
    real = encoder.encode
    seen: list[str] = []

    def spy(texts: list[str], batch: int) -> Any:
        seen.append(threading.current_thread().name)
        return real(texts, batch)

    monkeypatch.setattr(encoder, "encode", spy)
    for _ in range(4):  # OpenBLAS is never entered from two of the gateway's worker threads (module doc)
        await backend.embed({"model": "mini", "input": ["hello"]})
    await backend.close()
    assert len(seen) == 4 and len(set(seen)) == 1 and seen[0].startswith("encoder-mini")
