"""Which ``ngram-mod`` sizes pay on a CPU: raw engines side by side, one per setting, on the copy-heavy set and the
whole-file code edits of ``bench/local_engine.py`` and on free text.

Every engine runs the project's build with batch-invariant kernels (so outputs can be compared token for token),
one slot, 2 threads, passive waiting and no RAM prompt cache; all are started, and each prompt goes to each in
turn, the order rotating (the VM's drift lands on all alike), one pass (``ngram-mod``'s pool keeps earlier answers).
Per set and setting: decode tokens/s over the whole set against the plain engine, drafted and accepted tokens,
the ratio those counts predict at a verified token costing 0.35 of a decode step (``engine.placement
.SpeculationGain``), and answers identical to the plain engine's.

Settings are ``match-min-max`` (``--spec-ngram-mod-n-match / -n-min / -n-max``); ``engine`` is llama.cpp's own
default (24-48-64), ``8-4-16`` the project's (``backends.llamacpp_params.MOD_SIZES``).

Usage: python bench/spec_sizes.py [--sizes engine,8-4-16,8-2-16,10-4-16,8-4-24,12-8-32]
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
from kernel_cost import ready
from local_engine import FREE, WARM_UP, body, grounded_prompts

from openmaas.engine.build import binary_path
from openmaas.engine.models import resolve_model_path
from openmaas.testing.samples import CODE, EDITS, LONG_EDITS, ORDERS


def spec_args(setting: str) -> list[str]:
    if setting == "plain":
        return []
    if setting == "engine":
        return ["--spec-type", "ngram-mod"]
    match, low, high = setting.split("-")
    flags = ("--spec-ngram-mod-n-match", match, "--spec-ngram-mod-n-min", low, "--spec-ngram-mod-n-max", high)
    return ["--spec-type", "ngram-mod", *flags]


def start(port: int, setting: str) -> subprocess.Popen[bytes]:
    model = resolve_model_path("builtin:smollm2-135m")
    args = [str(binary_path()), "-m", str(model), "--port", str(port), "-np", "1", "-t", "2", "-c", "8192"]
    args += ["--jinja", "--no-webui", "--no-repack", "--cache-ram", "0", *spec_args(setting)]
    env = {**os.environ, "GGML_CPU_BATCH_INVARIANT": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def main(settings: list[str]) -> dict[str, Any]:
    sets = {
        "copy_heavy": [body(p["messages"]) for p in grounded_prompts()]
        + [body([{"role": "user", "content": f"{e}\n```python\n{CODE}```"}], 160) for e in EDITS],
        "code_edits": [body([{"role": "user", "content": f"{e}\n\n```python\n{ORDERS}```"}], 400) for e in LONG_EDITS],
        "free": [body([{"role": "user", "content": f}]) for f in FREE],
    }
    names = ["plain", *settings]
    ports = {n: free_port() for n in names}
    procs = [start(ports[n], n) for n in names]
    # per setting and set: tokens, decode ms, drafted, accepted, answers
    counts = {n: {s: [0, 0.0, 0, 0] for s in sets} for n in names}
    texts: dict[str, dict[str, list[str]]] = {n: {s: [] for s in sets} for n in names}
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            for n in names:
                await ready(client, ports[n])
                await client.post(f"http://127.0.0.1:{ports[n]}/v1/chat/completions", json=WARM_UP)
            turn = 0
            for s, prompts in sets.items():
                for p in prompts:
                    for n in names[turn % len(names) :] + names[: turn % len(names)]:
                        url = f"http://127.0.0.1:{ports[n]}/v1/chat/completions"
                        result = (await client.post(url, json=p)).json()
                        t, row = result["timings"], counts[n][s]
                        row[0] += int(t["predicted_n"])
                        row[1] += float(t["predicted_ms"])
                        row[2] += int(t.get("draft_n") or 0)
                        row[3] += int(t.get("draft_n_accepted") or 0)
                        texts[n][s].append(result["choices"][0]["message"]["content"])
                    turn += 1
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
    out: dict[str, Any] = {"requests": {s: len(p) for s, p in sets.items()}}
    for n in names:
        out[n] = {}
        for s in sets:
            tokens, ms, drafted, accepted = counts[n][s]
            base = counts["plain"][s]
            out[n][s] = {
                "tok_s": round(tokens / ms * 1000, 1),
                "vs_plain": round((tokens / ms) / (base[0] / base[1]), 3),
                "drafted": drafted,
                "accepted": accepted,
                "predicted_at_0.35": round(tokens / (tokens - accepted + 0.35 * drafted), 3),
                "identical": sum(a == b for a, b in zip(texts[n][s], texts["plain"][s], strict=True)),
            }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="engine,8-4-16,8-2-16,10-4-16,8-4-24,12-8-32")
    result = asyncio.run(main(parser.parse_args().sizes.split(",")))
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spec_sizes.json").write_text(json.dumps(result, indent=1))
