"""How much the local engine's parallel slots save on best-of-N: N candidates at once versus one by one.

Method: ``openmaas serve`` with its embedded defaults (SmolLM2-135M, llama.cpp, 4 slots, 2 cores).
For N in 2, 4, 8: one ``best_of_n`` request (the N candidates run concurrently through the router)
versus N single requests sent one after another — same prompt, temperature 0.7, max_tokens 64 (the
prompt asks for a long story, so nearly every call uses all 64). Alternating, ``--rounds`` rounds,
medians. Figure of merit: speedup = sequential wall time / concurrent wall time, and the aggregate
completion tokens per second of each.

Usage: python bench/ttc_parallel.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, free_port, python, start, stop, wait_http

ANY = {"type": "regex", "pattern": "."}  # a verifier that needs no logprobs (they slow decoding)
MESSAGES = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, nargs="+", default=[2, 4, 8])
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="openmaas-bench-ttc-"))
    port = free_port()
    proc = start(
        [python(), "-m", "openmaas", "serve", "--port", str(port)],
        "0-1",
        tmp / "serve.log",
        env={"OPENMAAS_DATA_DIR": str(tmp / "data")},
    )
    rows = []
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 900, {})
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=600)
        client.chat.completions.create(model="smollm2-135m", messages=MESSAGES, max_tokens=8)  # warm
        for n in args.n:
            seq, par, seq_tok, par_tok = [], [], [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                tokens = 0
                for _ in range(n):
                    r = client.chat.completions.create(
                        model="smollm2-135m", messages=MESSAGES, max_tokens=64, temperature=0.7
                    )
                    tokens += r.usage.completion_tokens if r.usage else 0
                seq.append(time.perf_counter() - t0)
                seq_tok.append(tokens)
                t0 = time.perf_counter()
                r = client.chat.completions.create(
                    model="smollm2-135m",
                    messages=MESSAGES,
                    max_tokens=64,
                    extra_body={"ttc": {"strategy": "best_of_n", "n": n, "verifier": ANY}},
                )
                par.append(time.perf_counter() - t0)
                par_tok.append(r.usage.completion_tokens if r.usage else 0)
            row = {
                "n": n,
                "sequential_s": round(statistics.median(seq), 2),
                "concurrent_s": round(statistics.median(par), 2),
                "speedup": round(statistics.median(seq) / statistics.median(par), 2),
                "sequential_tok_s": round(statistics.median(t / s for t, s in zip(seq_tok, seq, strict=True)), 1),
                "concurrent_tok_s": round(statistics.median(t / s for t, s in zip(par_tok, par, strict=True)), 1),
            }
            rows.append(row)
            print(row, flush=True)
    finally:
        stop(proc)
    print("| N | N one by one (s) | best-of-N, concurrent (s) | speedup | tok/s one by one | tok/s concurrent |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']} | {r['sequential_s']} | {r['concurrent_s']} | {r['speedup']}× | {r['sequential_tok_s']} |"
            f" {r['concurrent_tok_s']} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ttc_parallel.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
