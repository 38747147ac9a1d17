"""How far n-gram speculation could go on a task set at best: the share of answer tokens any n-gram drafter could
draft, from the answers themselves.

An answer token is *draftable with context m* when the m tokens before it, followed by it, already occur earlier
in the prompt or the answer: that is all an n-gram drafter can know (``ngram-mod`` waits for 24 matching tokens,
``ngram-simple`` for 12 by default). Counting every such token as drafted and accepted, and a verified token as
costing ``r`` of a decode step, bounds the speed-up: ``1 / (1 - f × (1 - r))`` for a draftable share ``f`` —
an oracle bound, no real drafter reaches it (it drafts after matches that then diverge, and pays for them).
``r`` is 0 (free verification) and the measured ~0.35 (a batch token against a decode step, bench/kernel_cost.py).

Answers at temperature 0 from one batch-invariant engine (the same tokens with or without speculation). Sets: the
copy-heavy set of ``bench/local_engine.py`` (grounded answers over the RAG evaluation corpus, its three edits of
a short function) and six longer code edits that ask for the complete code back.

Usage: python bench/copy_ceiling.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, free_port
from kernel_cost import ready, start
from local_engine import body, grounded_prompts

from openmaas.engine.models import resolve_model_path
from openmaas.testing.samples import CODE, EDITS, LONG_EDITS, ORDERS

CONTEXTS = (4, 8, 12)


def draftable(tokens: list[int], start_at: int, m: int) -> int:
    """Answer tokens (from ``start_at``) whose m preceding tokens plus themselves occur earlier in ``tokens``."""
    seen: set[tuple[int, ...]] = set()
    count = 0
    for i in range(m, len(tokens)):
        gram = tuple(tokens[i - m : i + 1])
        if i >= start_at and gram in seen:
            count += 1
        seen.add(gram)
    return count


async def ceiling(client: httpx.AsyncClient, url: str, prompts: list[dict[str, Any]]) -> dict[str, Any]:
    answer_tokens = 0
    counts = dict.fromkeys(CONTEXTS, 0)
    for p in prompts:
        result = (await client.post(f"{url}/v1/chat/completions", json=p)).json()
        text = (await client.post(f"{url}/apply-template", json={"messages": p["messages"]})).json()["prompt"]
        tokenize = {"add_special": False, "parse_special": True}
        prompt = (await client.post(f"{url}/tokenize", json={"content": text, **tokenize})).json()["tokens"]
        answer = result["choices"][0]["message"]["content"]
        output = (await client.post(f"{url}/tokenize", json={"content": answer, **tokenize})).json()["tokens"]
        answer_tokens += len(output)
        for m in CONTEXTS:
            counts[m] += draftable(prompt + output, len(prompt), m)
    out: dict[str, Any] = {"requests": len(prompts), "answer_tokens": answer_tokens}
    for m in CONTEXTS:
        f = counts[m] / answer_tokens
        out[f"context_{m}"] = {
            "draftable_share": round(f, 3),
            "bound_free_verification": round(1 / (1 - f), 2),
            "bound_r_0.35": round(1 / (1 - f * 0.65), 2),
        }
    return out


async def main() -> dict[str, Any]:
    copy = [body(p["messages"]) for p in grounded_prompts()]
    copy += [body([{"role": "user", "content": f"{e}\n```python\n{CODE}```"}], 160) for e in EDITS]
    edits = [body([{"role": "user", "content": f"{e}\n\n```python\n{ORDERS}```"}], 400) for e in LONG_EDITS]
    port = free_port()
    proc = start(port, resolve_model_path("builtin:smollm2-135m"), True)
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            await ready(client, port)
            url = f"http://127.0.0.1:{port}"
            return {
                "copy-heavy set": await ceiling(client, url, copy),
                "long code edits": await ceiling(client, url, edits),
            }
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    result = asyncio.run(main())
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "copy_ceiling.json").write_text(json.dumps(result, indent=1))
