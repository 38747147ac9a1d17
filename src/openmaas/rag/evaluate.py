"""``openmaas kb eval``: retrieval quality and speed on a labelled question set over a real corpus.

The default corpus is the Python 3 documentation from Debian's ``python3-doc`` package (HTML; nobody
here wrote it); the default questions (``rag/data/python_docs_questions.json``) were written for this
evaluation and name the document(s) that answer each. Everything runs in-process through the same
service the API uses: ingestion (parse → chunk → embed → store), then every question under each
retrieval configuration.

Metrics, at the document level: recall@k is the share of questions with a chunk of a relevant document
among the top k; MRR is the mean of 1/rank of the first such chunk (0 when none is in the top 10).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from openmaas.auth.principal import ANONYMOUS
from openmaas.protocol.knowledge import KnowledgeBaseCreate, Retrieval
from openmaas.settings import Settings

DEFAULT_CORPUS = Path("/usr/share/doc/python3/html")
CONFIGS = ["bm25", "vector", "hybrid", "hybrid+rewrite", "hybrid+hyde", "hybrid+rewrite+hyde"]
KS = (1, 3, 5, 10)


def install_corpus(say: Callable[[str], None]) -> None:
    """The default corpus is a Debian package: install it when we may (root, apt-get present)."""
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    say("installing the corpus: apt-get install python3-doc")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-doc"]
    if subprocess.run(command, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(command, env=env, check=False)


def default_questions() -> dict[str, Any]:
    text = resources.files("openmaas.rag").joinpath("data/python_docs_questions.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def parse_config(name: str) -> Retrieval:
    parts = name.split("+")
    if parts[0] not in ("bm25", "vector", "hybrid") or any(p not in ("rewrite", "hyde") for p in parts[1:]):
        raise ValueError(f"unknown retrieval configuration '{name}' (e.g. bm25, vector, hybrid, hybrid+rewrite+hyde)")
    return Retrieval(top_k=max(KS), mode=parts[0], rewrite="rewrite" in parts, hyde="hyde" in parts)  # type: ignore[arg-type]


def first_relevant_rank(found: list[str], relevant: set[str]) -> int | None:
    for rank, name in enumerate(found, 1):
        if name in relevant:
            return rank
    return None


def summarize(ranks: list[int | None], latencies: list[float], ks: tuple[int, ...] = KS) -> dict[str, Any]:
    n = max(len(ranks), 1)
    out: dict[str, Any] = {f"recall@{k}": sum(1 for r in ranks if r is not None and r <= k) / n for k in ks}
    out["mrr"] = sum(1 / r for r in ranks if r is not None and r <= max(ks)) / n
    ordered = sorted(latencies)
    out["p50_ms"] = statistics.median(ordered) * 1000 if ordered else 0.0
    out["p99_ms"] = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000 if ordered else 0.0
    return out


@dataclass
class EvalRun:
    corpus: Path
    folders: list[str]
    questions: list[dict[str, Any]]
    configs: list[str] = field(default_factory=lambda: list(CONFIGS))
    model: str = "default"
    progress: Callable[[str], None] = print

    def files(self) -> list[Path]:
        """The corpus: each entry of ``folders`` is a folder (taken recursively) or one file."""
        roots = [self.corpus / f for f in self.folders] if self.folders else [self.corpus]
        suffixes = {".html", ".htm", ".md", ".txt", ".pdf"}
        found = sorted(
            {
                p
                for root in roots
                for p in ([root] if root.is_file() else root.rglob("*"))
                if p.is_file() and p.suffix.lower() in suffixes
            }
        )
        if not found:
            raise FileNotFoundError(f"no documents under {', '.join(map(str, roots))}")
        return found

    async def run(self, settings: Settings) -> dict[str, Any]:
        from openmaas.gateway import Call
        from openmaas.server import create_app

        specs = {name: parse_config(name) for name in self.configs}
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            kbs = app.state.knowledge
            if kbs is None:
                raise RuntimeError("knowledge bases are not available: install the 'rag' extra")
            call = Call("req_kb_eval", ANONYMOUS)
            kb = await kbs.create(call, KnowledgeBaseCreate(name=f"eval-{int(time.time())}"))
            files = self.files()
            started = time.perf_counter()
            chunks = failed = 0
            for i, path in enumerate(files, 1):
                name = str(path.relative_to(self.corpus))
                try:
                    result = await kbs.ingest(call, kb["id"], name, path.read_bytes())
                    chunks += result["document"]["chunks"]
                except Exception as exc:  # a bad file is reported, the rest go on
                    failed += 1
                    self.progress(f"  {name}: {exc}")
                if i % 10 == 0 or i == len(files):
                    self.progress(f"ingested {i}/{len(files)} files, {chunks} chunks")
            ingest_s = time.perf_counter() - started
            await kbs.search(call, kb["id"], "warm up", Retrieval(mode="hybrid"))  # builds the index once
            results: dict[str, Any] = {}
            per_question: dict[str, list[dict[str, Any]]] = {}
            for name, spec in specs.items():
                ranks: list[int | None] = []
                latencies: list[float] = []
                rows = per_question.setdefault(name, [])
                for q in self.questions:
                    t0 = time.perf_counter()
                    found = await kbs.search(call, kb["id"], q["question"], spec, chat_model=self.model)
                    latencies.append(time.perf_counter() - t0)
                    rank = first_relevant_rank([r["filename"] for r in found.results], set(q["relevant"]))
                    ranks.append(rank)
                    rows.append({"id": q["id"], "rank": rank, "queries": found.queries})
                results[name] = summarize(ranks, latencies)
                self.progress(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[name].items()))
        return {
            "corpus": str(self.corpus),
            "folders": self.folders,
            "documents": len(files),
            "failed_documents": failed,
            "chunks": chunks,
            "ingest_seconds": round(ingest_s, 2),
            "chunks_per_second": round(chunks / ingest_s, 1) if ingest_s else 0.0,
            "questions": len(self.questions),
            "model": self.model,
            "results": results,
            "per_question": per_question,
        }


def table(report: dict[str, Any]) -> str:
    cols = [f"recall@{k}" for k in KS] + ["mrr", "p50_ms", "p99_ms"]
    lines = ["| retrieval | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, metrics in report["results"].items():
        cells = [f"{metrics[c]:.3f}" if not c.endswith("_ms") else f"{metrics[c]:.1f}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
