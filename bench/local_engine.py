"""The local engine pool against its own baselines, in one run: threads, speculation, placement, restarts.

Every part drives real ``llama-server`` processes (SmolLM2-135M Q4_1) through the gateway's engine pool
(``backends.llamacpp``) in this process; the competing load is generated here (``engine.tune.Load``: one
pure-Python busy process).

- ``threads``: single-stream greedy decode tokens/s (96 tokens, median of 3 after a warm-up), idle and
  beside one busy core, for the old default (every core, never switching) and the new one (every core
  while calm, ``contended`` threads once the load watch sees the host contended — measured after it
  switched). Ratios: loaded / idle, and idle / best idle.
- ``speculative``: decode tokens/s (the engine's ``timings``: tokens over decode time of the whole set) on a
  copy-heavy set — answers grounded in sources from the project's RAG evaluation corpus (Python docs, first two
  chunks of each question's relevant page) and three edits of a short function —, on six whole-file code edits
  (a 30-line module back with one change), on both together, and on a free-writing set (12 prompts: with 6,
  two engines alike read ±3 % apart), with ``speculative`` off, on and auto running side by side (every prompt
  to each in turn, the order rotating, one pass); outputs
  at temperature 0 are compared with off's. All three run ggml's batch-invariant kernels (the default with
  speculation; off given them too), so the comparison is speculation's alone.
- ``invariance``: what batch-invariant kernels cost a plain engine: prompt tokens/s over a ~1,100 and a
  ~3,300-token prompt (no prompt cache), decode tokens/s, and 4 streams at once on 4 slots, ``batch_invariant``
  false against true side by side, order rotating.
- ``placement``: 2 engines × 4 slots, a ~2,000-token system prompt shared by 4 conversations of 5 turns
  (turns interleaved across conversations), time to first token per turn, placement ``prefix`` vs
  ``least_loaded``.
- ``restart``: time to first token of the first request after an engine restart, with and without the
  saved slots restored.

Usage: python bench/local_engine.py [--parts threads,speculative,invariance,placement,restart]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS

from openmaas.backends.llamacpp import LlamaCppBackend
from openmaas.backends.llamacpp_engine import LlamaCppEngine
from openmaas.core.view import cached_tokens
from openmaas.engine.tune import Load, decode_rate
from openmaas.settings import Deployment
from openmaas.testing.samples import CODE, EDITS, LONG_EDITS, ORDERS

FREE = [
    "Write a short story about a lighthouse keeper.",
    "Describe a walk through a forest in autumn.",
    "Write a poem about the city at night.",
    "Tell me about the history of the bicycle.",
    "Write a letter to a friend who moved abroad.",
    "Describe your ideal weekend.",
    "Explain why the sky changes colour at sunset.",
    "Write a fable about a fox and a crow.",
    "Describe a busy market on a Saturday morning.",
    "Write a diary entry of a sailor on a long voyage.",
    "Tell me about the invention of the printing press.",
    "Write a speech for a school's first day.",
]


# the comparisons of speculation and placement hold the thread count still (the threads part measures it)
FIXED: dict[str, Any] = {"threads": 2}


def pool(tmp: Path, name: str, **params: Any) -> LlamaCppBackend:
    deployment = Deployment(name=name, backend="llamacpp", locality="local", context_length=4096, params=params)
    return LlamaCppBackend(deployment, data_dir=tmp)


def grounded_prompts(limit: int = 6) -> list[dict[str, Any]]:
    from openmaas.rag.chunking import chunk
    from openmaas.rag.context import source_block, system_message
    from openmaas.rag.evaluate import default_questions, install_corpus
    from openmaas.rag.parsing import parse

    root = Path("/usr/share/doc/python3/html")
    if not root.is_dir():
        install_corpus(print)
    prompts = []
    for q in default_questions()["questions"]:
        path = root / q["relevant"][0]
        if not path.is_file():
            continue
        parsed = parse(path.read_bytes(), path.name)
        chunks = chunk(parsed.text, parsed.title, lambda text: len(text.split()))[:2]  # words ≈ tokens
        blocks = [
            source_block(i + 1, {"title": parsed.title, "heading": c.heading, "filename": path.name, "text": c.text})
            for i, c in enumerate(chunks)
        ]
        messages = [{"role": "system", "content": system_message(blocks)}, {"role": "user", "content": q["question"]}]
        prompts.append({"messages": messages})
        if len(prompts) == limit:
            break
    return prompts


def body(messages: list[dict[str, Any]], tokens: int = 128) -> dict[str, Any]:
    return {"model": "m", "messages": messages, "max_tokens": tokens, "temperature": 0}


WARM_UP = body([{"role": "user", "content": "Say hello to the harbour office."}], 16)


async def part_threads(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, params in (("old default", {"threads": 2}), ("new default", {})):
        backend = pool(tmp, "threads", parallel=1, **params)
        await backend.start()
        try:
            [engine] = backend.engines
            backend.load.interval = 0.5
            idle = await decode_rate(engine.process.base_url, 3, 96)
            with Load(1):
                for _ in range(100):  # the new default switches once it sees the load (old: never)
                    if engine.contended or not backend.thread_plan.adaptive:
                        break
                    await asyncio.sleep(0.1)
                await engine.process.wait_ready(30)
                loaded = await decode_rate(engine.process.base_url, 3, 96)
            out[label] = {"plan": backend.thread_plan.to_json(), "idle": round(idle, 1), "loaded": round(loaded, 1)}
        finally:
            await backend.close()
    best_idle = max(v["idle"] for v in out.values())
    for v in out.values():
        v["loaded_over_idle"] = round(v["loaded"] / v["idle"], 2)
        v["idle_over_best_idle"] = round(v["idle"] / best_idle, 2)
    return out


async def part_speculative(tmp: Path, passes: int = 1) -> dict[str, Any]:
    """The three settings run side by side (their engines all started) and every prompt goes to each in turn,
    the order rotating: the VM's drift lands on all three alike. Rates: tokens over decode time of a whole set.
    One pass: ``ngram-mod``'s hash pool is shared by all requests of an engine and kept between them, so a
    prompt seen before is answered from its own earlier answer (all drafts accepted) — real for repeated
    requests, but not what this part measures (a second pass read free text 1.2× "faster")."""
    copy = [body(p["messages"]) for p in grounded_prompts()]
    copy += [body([{"role": "user", "content": f"{e}\n```python\n{CODE}```"}], 160) for e in EDITS]
    edits = [body([{"role": "user", "content": f"{e}\n\n```python\n{ORDERS}```"}], 400) for e in LONG_EDITS]
    free = [body([{"role": "user", "content": f}]) for f in FREE]
    sets = {"copy_heavy": copy, "code_edits": edits, "free": free}
    modes = ("off", "on", "auto")
    out: dict[str, Any] = {f"{name}_requests": len(prompts) for name, prompts in sets.items()}
    out["passes"] = passes
    backends = {
        mode: pool(
            tmp,
            f"spec-{mode}",
            parallel=1,
            speculative=mode,
            batch_invariant=True,
            prompt_cache={"save_slots": False},
            **FIXED,
        )
        for mode in modes
    }
    try:
        for backend in backends.values():
            await backend.start()
        both: dict[str, list[float]] = {m: [0, 0.0] for m in modes}  # copy-heavy and code edits together
        for name, prompts in sets.items():
            tokens = {m: 0 for m in modes}
            ms = {m: 0.0 for m in modes}
            texts: dict[str, list[str]] = {m: [] for m in modes}
            for mode in modes:  # warm-up on a prompt outside the set: ngram-mod's pool would remember the answer
                await backends[mode].place(dict(WARM_UP)).backend.chat(dict(WARM_UP))
            for n in range(passes):
                for i, p in enumerate(prompts):
                    turn = (n * len(prompts) + i) % len(modes)
                    for mode in modes[turn:] + modes[:turn]:
                        engine = backends[mode].place(dict(p)).backend
                        assert isinstance(engine, LlamaCppEngine)
                        result = await engine.chat(dict(p))
                        tokens[mode] += int(result["timings"]["predicted_n"])
                        ms[mode] += float(result["timings"]["predicted_ms"])
                        if n == 0:
                            texts[mode].append(result["choices"][0]["message"]["content"])
            for mode in modes:
                row = out.setdefault(mode, {})
                row[name] = round(tokens[mode] / ms[mode] * 1000, 1)
                if name != "free":
                    both[mode][0] += tokens[mode]
                    both[mode][1] += ms[mode]
                if mode != "off":
                    row[f"{name}_identical"] = sum(a == b for a, b in zip(texts[mode], texts["off"], strict=True))
        for mode in modes:
            out[mode]["copy_heavy_and_code_edits"] = round(both[mode][0] / both[mode][1] * 1000, 1)
    finally:
        for backend in backends.values():
            await backend.close()
    for mode in ("on", "auto"):
        for name in (*sets, "copy_heavy_and_code_edits"):
            out[mode][f"{name}_vs_off"] = round(out[mode][name] / out["off"][name], 3)
    out["auto_gain_estimate"] = round(backends["auto"].gain.value, 3)
    return out


def harbour_rules(n: int) -> str:
    return " ".join(
        f"Rule {i}: the assistant of the harbour office answers briefly and names the pier, berth {i} and tide table."
        for i in range(n)
    )


async def part_invariance(tmp: Path, rounds: int = 4) -> dict[str, Any]:
    """Fast kernels against batch-invariant ones, side by side, order rotating: prompt tokens/s over a ~1,100 and a
    ~3,300-token prompt (no prompt cache), single-stream decode tokens/s, and 4 streams at once on 4 slots
    (tokens over wall time: continuous batching, where the fast kernels batch the rows of different requests)."""
    settings = {"fast kernels": False, "batch-invariant": True}
    prompts = {"1k": harbour_rules(40), "3k": harbour_rules(120)}
    backends = {
        label: pool(tmp, f"inv-{i}", parallel=4, batch_invariant=on, prompt_cache={"save_slots": False}, **FIXED)
        for i, (label, on) in enumerate(settings.items())
    }
    sums = {label: {k: [0, 0.0] for k in (*prompts, "decode", "4 streams")} for label in settings}
    try:
        for backend in backends.values():
            await backend.start()
        labels = list(settings)
        for n in range(rounds):
            for label in labels if n % 2 == 0 else labels[::-1]:
                [engine] = backends[label].engines
                for size, system in prompts.items():
                    messages = [
                        {"role": "system", "content": system},
                        {"role": "user", "content": f"Tell a long story about berth {n}."},
                    ]
                    t = (await engine.chat({**body(messages), "cache_prompt": False}))["timings"]
                    sums[label][size][0] += t["prompt_n"]
                    sums[label][size][1] += t["prompt_ms"]
                    sums[label]["decode"][0] += t["predicted_n"]
                    sums[label]["decode"][1] += t["predicted_ms"]
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(engine.chat(body([{"role": "user", "content": f}], 96)) for f in FREE[:4])
                )
                sums[label]["4 streams"][0] += sum(r["timings"]["predicted_n"] for r in results)
                sums[label]["4 streams"][1] += (time.perf_counter() - started) * 1000
    finally:
        for backend in backends.values():
            await backend.close()
    names = {"1k": "prompt_1k", "3k": "prompt_3k", "decode": "decode", "4 streams": "4_streams"}
    out: dict[str, Any] = {
        label: {f"{names[k]}_tokens_per_s": round(n / ms * 1000, 1) for k, (n, ms) in s.items()}
        for label, s in sums.items()
    }
    out["prompt_tokens"] = {size: sums["fast kernels"][size][0] // rounds for size in prompts}
    out["invariant_vs_fast"] = {
        k: round(out["batch-invariant"][k] / out["fast kernels"][k], 3) for k in out["fast kernels"]
    }
    return out


async def ttft(engine: LlamaCppEngine, payload: dict[str, Any]) -> tuple[float, str, int]:
    started = time.perf_counter()
    first = None
    text, cached = [], 0
    async for chunk in engine.chat_stream(dict(payload, stream=True, stream_options={"include_usage": True})):
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                first = first or time.perf_counter()
                text.append(piece)
        if chunk.get("usage"):
            cached = cached_tokens(chunk["usage"])
    return ((first or time.perf_counter()) - started) * 1000, "".join(text), cached


SYSTEM = " ".join(
    f"Rule {i}: the harbour office assistant answers in one sentence, names berth {i}, its pier and the tide."
    for i in range(95)
)  # ~2,000 tokens


async def part_placement(tmp: Path, conversations: int = 4, turns: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("least_loaded", "prefix"):
        backend = pool(
            tmp, f"place-{mode}", parallel=4, engines=2, prompt_cache={"placement": mode, "save_slots": False}, **FIXED
        )
        await backend.start()
        try:
            history = [[{"role": "system", "content": SYSTEM}] for _ in range(conversations)]
            by_turn: list[list[float]] = [[] for _ in range(turns)]
            cached: list[list[int]] = [[] for _ in range(turns)]
            for turn in range(turns):
                for c in range(conversations):
                    history[c].append({"role": "user", "content": f"Conversation {c}: where is berth {turn * 7 + c}?"})
                    payload = body(history[c], 16)
                    engine = backend.place(payload).backend
                    assert isinstance(engine, LlamaCppEngine)
                    ms, text, hit = await ttft(engine, payload)
                    history[c].append({"role": "assistant", "content": text})
                    by_turn[turn].append(ms)
                    cached[turn].append(hit)
            first = statistics.mean(by_turn[0])
            later = [statistics.mean(t) for t in by_turn[1:]]
            out[mode] = {
                "ttft_ms_per_turn": [round(statistics.mean(t), 1) for t in by_turn],
                "cached_tokens_per_turn": [round(statistics.mean(c)) for c in cached],
                "follow_up_over_first": round(statistics.mean(later) / first, 3),
            }
        finally:
            await backend.close()
    return out


async def part_restart(tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    payload = body([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Where is berth 3?"}], 8)
    for label, save in (("without saved slots", False), ("with restored slots", True)):
        backend = pool(tmp, f"restart-{int(save)}", parallel=2, prompt_cache={"save_slots": save})
        await backend.start()
        try:
            [engine] = backend.engines
            cold, _, _ = await ttft(engine, payload)
            if save:
                await engine.save_slots()
            await engine.process.relaunch(engine.process.args)
            after, _, hit = await ttft(engine, payload)
            out[label] = {"first_ttft_ms": round(cold, 1), "after_restart_ttft_ms": round(after, 1), "cached": hit}
        finally:
            await backend.close()
    out["ratio"] = round(
        out["with restored slots"]["after_restart_ttft_ms"] / out["without saved slots"]["after_restart_ttft_ms"], 3
    )
    return out


async def main(parts: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="openmaas-bench-engine-") as tmp:
        for part in parts:
            started = time.perf_counter()
            report[part] = await globals()[f"part_{part}"](Path(tmp))
            report[part]["seconds"] = round(time.perf_counter() - started, 1)
            print(part, json.dumps(report[part], indent=1), flush=True)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="threads,speculative,invariance,placement,restart")
    args = parser.parse_args()
    result = asyncio.run(main(args.parts.split(",")))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "local_engine.json"
    kept = json.loads(out.read_text()) if out.is_file() else {}  # the parts not run this time stay as they were
    out.write_text(json.dumps({**kept, **result}, indent=2))
