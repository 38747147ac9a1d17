"""Embedding throughput: our NumPy all-MiniLM-L6-v2 against sentence-transformers (torch), same texts, same run.

    python bench/embeddings.py [--reference-python /path/to/python-with-sentence-transformers] [--blas-threads N]

Workloads: 256 short sentences (~20 tokens) and the chunks the knowledge-base chunker makes from a real
page (python3-doc's tutorial/datastructures.html when installed, ~150 tokens each). The baseline runs in a
Python that has sentence-transformers (it is not one of our dependencies: give its interpreter); without it
only our figures are printed. Each figure is the best of 3 runs; results go to bench/results/embeddings.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from openmaas.rag import chunking, parsing
from openmaas.rag.encoder import SentenceEncoder, builtin_path

PAGE = Path("/usr/share/doc/python3/html/tutorial/datastructures.html")
BASELINE = """
import json, sys, time
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[2]))
model = SentenceTransformer(sys.argv[1], device="cpu")
model.encode(texts["short"][:16])
out = {}
for name, items in texts.items():
    best = min(
        (lambda t0: (model.encode(items, batch_size=32), time.perf_counter() - t0)[1])(time.perf_counter())
        for _ in range(3)
    )
    out[name] = {"per_s": len(items) / best, "vectors": model.encode(items[:8]).tolist()}
print(json.dumps(out))
"""


def workloads(encoder: SentenceEncoder) -> dict[str, list[str]]:
    short = [f"This is test sentence number {i} about topic {i % 7} and a few more words." for i in range(256)]
    if PAGE.exists():
        parsed = parsing.parse(PAGE.read_bytes(), PAGE.name)
    else:
        sentence = "Paragraph {} explains list methods such as append, extend and pop. "
        body = "\n\n".join(sentence.format(i) * 3 for i in range(60))
        parsed = parsing.parse(f"# Lists\n\n{body}".encode(), "lists.md")
    chunks = [c.indexed_text for c in chunking.chunk(parsed.text, parsed.title, encoder.count_tokens, 200, 40)]
    return {"short": short, "chunks": chunks}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference-python", default=None)
    parser.add_argument(
        "--out", default=None, help="results file (default: bench/results/embeddings.json, with a reference only)"
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="OpenBLAS threads (the served encoder's blas_threads, default 1 there); default: OpenBLAS's own",
    )
    args = parser.parse_args()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads, user_api="blas")
    model_dir = builtin_path("all-minilm-l6-v2")
    encoder = SentenceEncoder(model_dir)
    texts = workloads(encoder)
    encoder.encode(texts["short"][:16])
    ours: dict[str, dict[str, float]] = {}
    for name, items in texts.items():
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            _, tokens = encoder.encode(items)
            best = min(best, time.perf_counter() - t0)
        ours[name] = {"per_s": len(items) / best, "tokens_per_s": tokens / best, "items": len(items)}
    report: dict[str, object] = {"numpy": ours}
    if args.reference_python:
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(texts, f)
            f.flush()
            proc = subprocess.run(
                [args.reference_python, "-c", BASELINE, str(model_dir), f.name],
                capture_output=True,
                text=True,
                check=True,
            )
        baseline = json.loads(proc.stdout.strip().splitlines()[-1])
        report["sentence_transformers"] = {k: {"per_s": v["per_s"]} for k, v in baseline.items()}
        for name in texts:
            ref = np.array(baseline[name]["vectors"], dtype=np.float32)
            mine, _ = encoder.encode(texts[name][:8])
            cosine = (mine * ref).sum(1) / np.linalg.norm(ref, axis=1)
            ours[name]["ratio_vs_torch"] = ours[name]["per_s"] / baseline[name]["per_s"]
            ours[name]["min_cosine_vs_torch"] = float(cosine.min())
    for name, figures in ours.items():
        line = f"{name:7s} numpy {figures['per_s']:7.1f}/s ({figures['tokens_per_s']:.0f} tokens/s)"
        if "ratio_vs_torch" in figures:
            ref_rate = figures["per_s"] / figures["ratio_vs_torch"]
            line += f"   torch {ref_rate:7.1f}/s   ratio {figures['ratio_vs_torch']:.2f}"
            line += f"   min cosine {figures['min_cosine_vs_torch']:.6f}"
        print(line)
    out = args.out or ("bench/results/embeddings.json" if args.reference_python else None)
    if out is None:  # the recorded results hold the comparison: a run without its baseline keeps them
        print("no --reference-python: figures not saved (bench/results/embeddings.json keeps the comparison)")
        return
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
