"""What batch-invariant kernels cost on raw engines: a batch token against a decode step, after a cached prefix.

Three ``llama-server`` processes of the project's build side by side (``--poll 0`` so the idle ones do not
spin): ggml's fast kernels; ``GGML_CPU_BATCH_INVARIANT=1`` and ``--no-repack`` (what the pool starts with
``batch_invariant``, flash attention left on); the same with ``--flash-attn off`` (``flash_attention: off``).
Per round and engine: a prefix of about ``--words`` × 4 tokens is cached, then ~110 new tokens are processed
in one batch (what verifying a speculative draft or a follow-up turn costs) and 64 tokens decoded; ms per batch
token and per decode step, middle two of four rounds, order rotating.

``--before PATH`` adds a fourth engine: another build's ``llama-server`` on the batch-invariant kernels (a patch
against the one before it, in one run).

Usage: python bench/kernel_cost.py [--words 10,250,900] [--model PATH] [--before PATH]   (default: builtin SmolLM2 Q4_1)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, free_port

from openmaas.engine.build import binary_path
from openmaas.engine.models import resolve_model_path

WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "near",
    "river",
    "bank",
    "while",
    "birds",
    "sing",
)


def start(
    port: int, model: Path, invariant: bool, attention: str = "auto", binary: Path | None = None
) -> subprocess.Popen[bytes]:
    args = [
        str(binary or binary_path()),
        "-m",
        str(model),
        "--port",
        str(port),
        "-np",
        "1",
        "-t",
        "2",
        "-c",
        "8192",
        "--jinja",
    ]
    args += ["--poll", "0", "--no-webui", "--flash-attn", attention] + (["--no-repack"] if invariant else [])
    env = {**os.environ, **({"GGML_CPU_BATCH_INVARIANT": "1"} if invariant else {})}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def ready(client: httpx.AsyncClient, port: int) -> None:
    for _ in range(600):
        try:
            if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"engine on {port} did not start")


async def measure(client: httpx.AsyncClient, ports: dict[str, int], words: int, rounds: int = 4) -> dict[str, Any]:
    base = " ".join(WORDS[i % len(WORDS)] + str(i) for i in range(words))
    batch: dict[str, list[float]] = {k: [] for k in ports}
    decode: dict[str, list[float]] = {k: [] for k in ports}
    cached = 0
    for n in range(rounds):
        for label in list(ports) if n % 2 == 0 else list(ports)[::-1]:
            url = f"http://127.0.0.1:{ports[label]}/completion"
            prefix = f"{base} round{n}"
            await client.post(url, json={"prompt": prefix, "n_predict": 1, "temperature": 0})
            more = " ".join(f"extra{n}_{j}" for j in range(24))
            body = {"prompt": f"{prefix} {more}", "n_predict": 64, "temperature": 0, "ignore_eos": True}
            t = (await client.post(url, json=body)).json()["timings"]
            batch[label].append(t["prompt_ms"] / t["prompt_n"])
            decode[label].append(t["predicted_ms"] / t["predicted_n"])
            cached = int(t.get("cache_n") or 0)

    def mid(values: list[float]) -> float:
        ordered = sorted(values)[1:-1] or values
        return round(sum(ordered) / len(ordered), 2)

    out: dict[str, Any] = {"cached_tokens": cached}
    for label in ports:
        out[label] = {"ms_per_batch_token": mid(batch[label]), "ms_per_decode_step": mid(decode[label])}
    for label in list(ports)[1:]:
        out[f"{label} over fast"] = {k: round(out[label][k] / out["fast kernels"][k], 3) for k in out["fast kernels"]}
    return out


async def main(words: list[int], model: Path, before: Path | None = None) -> dict[str, Any]:
    labels = ["fast kernels", "batch-invariant", "batch-invariant, no flash attention"]
    if before is not None:
        labels.append("batch-invariant, before")
    ports = {label: free_port() for label in labels}
    procs = [start(ports["fast kernels"], model, False), start(ports["batch-invariant"], model, True)]
    procs.append(start(ports["batch-invariant, no flash attention"], model, True, "off"))
    if before is not None:
        procs.append(start(ports["batch-invariant, before"], model, True, binary=before))
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            for port in ports.values():
                await ready(client, port)
            return {"model": model.name, "runs": [await measure(client, ports, w) for w in words]}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", default="10,250,900")
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--before", type=Path, default=None, help="another build's llama-server, invariant too")
    args = parser.parse_args()
    words = [int(w) for w in args.words.split(",")]
    result = asyncio.run(main(words, resolve_model_path(args.model), args.before))
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kernel_cost.json").write_text(json.dumps(result, indent=1))
