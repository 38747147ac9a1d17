"""The engine build's batch-invariant kernels against a real ``llama-server`` (engine.patches, engine.tiles): a
token's probabilities are the same bits whether its row was decoded alone or computed inside a batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openmaas.backends.llamacpp import LlamaCppBackend
from openmaas.settings import Deployment
from openmaas.testing.samples import CODE, EDITS

pytestmark = [pytest.mark.real, pytest.mark.anyio]


@pytest.fixture(params=["off", "on"], ids=["attention by dot products", "tiled flash attention"])
async def engine_url(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Both attention paths of the invariant kernels: the tiled flash-attention kernel (the engine's default) and
    per-element dot products (``flash_attention: off``)."""
    params = {"batch_invariant": True, "parallel": 1, "threads": 2, "prompt_cache": {"save_slots": False}}
    params["flash_attention"] = request.param
    deployment = Deployment(name="kernels", backend="llamacpp", locality="local", context_length=4096, params=params)
    backend = LlamaCppBackend(deployment, data_dir=tmp_path)
    await backend.start()
    try:
        [engine] = backend.engines
        args = engine.process.args
        assert engine.process.env.get("GGML_CPU_BATCH_INVARIANT") == "1" and "--no-repack" in args
        assert args[args.index("--flash-attn") + 1] == request.param
        yield engine.process.base_url
    finally:
        await backend.close()


async def complete(client: httpx.AsyncClient, url: str, prompt: list[int], n: int) -> list[dict[str, Any]]:
    body = {"prompt": prompt, "n_predict": n, "n_probs": 5, "temperature": 0, "cache_prompt": False}
    probabilities: list[dict[str, Any]] = (await client.post(f"{url}/completion", json=body)).json()[
        "completion_probabilities"
    ]
    return probabilities


@pytest.mark.parametrize(
    "text",
    ["The harbour office opens at", f"{EDITS[0]}\n```python\n{CODE}```"],
    ids=["short prompt", "code edit"],
)
async def test_a_token_computed_in_a_batch_has_the_bits_of_the_same_token_decoded_alone(
    engine_url: str, text: str
) -> None:
    """Generate 12 tokens (each after the first decoded alone: one column through every product); then put
    the prompt and the first k generated tokens through as one batch and compare the next token's top-5
    log-probabilities — the batch runs the tiled Q4_1 products over dozens of columns, decode the per-element
    ``vec_dot``. Exactly equal, not close: that is what makes speculation and batching answer-neutral."""
    async with httpx.AsyncClient(timeout=120) as client:
        prompt = (await client.post(f"{engine_url}/tokenize", json={"content": text})).json()["tokens"]
        decoded = await complete(client, engine_url, prompt, 12)
        assert len(decoded) == 12
        for k in (1, 5, 11):
            [batched] = await complete(client, engine_url, prompt + [p["id"] for p in decoded[:k]], 1)
            assert batched["id"] == decoded[k]["id"]
            assert batched["top_logprobs"] == decoded[k]["top_logprobs"], k
