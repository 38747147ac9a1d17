"""``openmaas kb`` against a real gateway process on loopback (real encoder; an echo model that answers
with its whole prompt, so the cited sources are visible), and ``openmaas kb eval`` on a small corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openmaas.rag.evaluate import first_relevant_rank, parse_config, summarize
from tests.helpers import RunningServer, start_server
from tests.rag.docs import DOGS_HTML, EIFFEL_TXT, LISTS_MD, VOLCANO_PDF_LINES, pdf

ENCODER = {
    "name": "all-minilm-l6-v2",
    "backend": "encoder",
    "locality": "local",
    "context_length": 512,
    "capabilities": {"embeddings": True, "chat": False, "completions": False},
}
CONFIG = {
    "deployments": [
        {"name": "echo", "backend": "fake", "locality": "local", "params": {"echo": "prompt"}},
        ENCODER,
    ],
    "aliases": {"default": "echo"},
}


def kb(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "openmaas", "kb", *args, "--base-url", server.base_url + "/v1"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("kb-cli")
    running = start_server("kb-cli", data, CONFIG)
    try:
        yield running
    finally:
        running.stop()


def test_create_ingest_a_folder_search_and_ask_with_citations(server: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "nested").mkdir(parents=True)
    (folder / "lists.md").write_bytes(LISTS_MD)
    (folder / "dogs.html").write_bytes(DOGS_HTML)
    (folder / "nested" / "eiffel.txt").write_bytes(EIFFEL_TXT)
    (folder / "nested" / "volcano.pdf").write_bytes(pdf(VOLCANO_PDF_LINES))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")  # not a document type: not picked up from folders

    created = kb(server, "create", "handbook")
    assert created.returncode == 0, created.stderr
    kb_id = created.stdout.strip()
    assert kb_id.startswith("kb_")

    first = kb(server, "ingest", "handbook", str(folder))
    assert first.returncode == 1  # one file failed …
    assert "4 added" in first.stdout and "1 failed" in first.stdout
    assert "broken.pdf" in first.stderr and "not a readable PDF" in first.stderr
    again = kb(server, "ingest", kb_id, str(folder / "nested"))  # … and the rest went on; unchanged: no-op
    assert again.returncode == 0 and "0 added (0 chunks), 2 unchanged, 0 failed" in again.stdout

    listed = kb(server, "list")
    assert "handbook" in listed.stdout and kb_id in listed.stdout
    docs = kb(server, "docs", "handbook")
    assert all(name in docs.stdout for name in ("lists.md", "dogs.html", "eiffel.txt", "volcano.pdf"))

    search = kb(server, "search", "handbook", "Uhuru peak height", "--json")
    assert search.returncode == 0, search.stderr
    assert json.loads(search.stdout)["data"][0]["filename"] == "volcano.pdf"

    asked = kb(server, "ask", "handbook", "When was the Eiffel Tower completed?", "--top-k", "2")
    assert asked.returncode == 0, asked.stderr
    assert "The Eiffel Tower is in Paris" in asked.stdout and "completed in 1889" in asked.stdout
    assert "*[1] eiffel.txt" in asked.stdout  # the echoed prompt cites [1]: marked as cited

    deleted = kb(server, "delete", "handbook")
    assert deleted.returncode == 0 and kb_id in deleted.stdout
    assert "handbook" not in kb(server, "list").stdout


def test_unknown_knowledge_base_and_missing_server_are_clear_errors(server: RunningServer) -> None:
    missing = kb(server, "search", "kb_nope", "x")
    assert missing.returncode != 0 and "HTTP 404" in missing.stderr
    command = [sys.executable, "-m", "openmaas", "kb", "list", "--base-url", "http://127.0.0.1:9/v1"]
    down = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert down.returncode != 0 and "is `openmaas serve` running?" in down.stderr


def test_metric_arithmetic() -> None:
    assert first_relevant_rank(["a", "b", "c"], {"c", "x"}) == 3
    assert first_relevant_rank(["a"], {"z"}) is None
    metrics = summarize([1, 3, None, 7], [0.010, 0.020, 0.030, 0.040], ks=(1, 3, 5, 10))
    assert metrics["recall@1"] == 0.25 and metrics["recall@3"] == 0.5
    assert metrics["recall@5"] == 0.5 and metrics["recall@10"] == 0.75
    assert metrics["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 4)
    assert metrics["p50_ms"] == pytest.approx(25.0)
    assert parse_config("hybrid+rewrite+hyde").mode == "hybrid"
    with pytest.raises(ValueError):
        parse_config("hybrid+magic")


def test_kb_eval_reports_each_configuration(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "lists.md").write_bytes(LISTS_MD)
    (corpus / "dogs.html").write_bytes(DOGS_HTML)
    (corpus / "eiffel.txt").write_bytes(EIFFEL_TXT)
    questions = tmp_path / "q.json"
    items = [
        {"id": "a", "question": "How many meals do puppies need?", "relevant": ["dogs.html"]},
        {"id": "b", "question": "When was the Eiffel Tower completed?", "relevant": ["eiffel.txt"]},
        {"id": "c", "question": "How do I sort a list in place?", "relevant": ["lists.md"]},
    ]
    questions.write_text(json.dumps({"questions": items}))
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(CONFIG))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "openmaas", "kb", "eval", "--config", str(config), "--corpus", str(corpus)]
    command += ["--questions", str(questions), "--configs", "bm25,vector,hybrid,hybrid+rewrite", "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr + run.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["documents"] == 3 and report["questions"] == 3 and report["chunks"] >= 3
    assert set(report["results"]) == {"bm25", "vector", "hybrid", "hybrid+rewrite"}
    assert report["results"]["hybrid"]["recall@1"] == 1.0
    rewritten = report["per_question"]["hybrid+rewrite"][0]["queries"]
    assert len(rewritten) == 3 and rewritten[1].startswith("Rewrite the question below")  # the echo model's lines
    assert rewritten[2] == "Question: How many meals do puppies need?"
    assert "| hybrid |" in (out / "table.md").read_text() and "| hybrid |" in run.stdout
