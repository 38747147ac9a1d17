"""``openmaas kb``: knowledge bases through a running gateway's public API (any key the server accepts)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click

from openmaas.cli_admin import _table

SUFFIXES = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf"}
base_url_option = click.option("--base-url", default="http://127.0.0.1:8000/v1", show_default=True)
api_key_option = click.option("--api-key", envvar="OPENMAAS_API_KEY", default="none", help="or OPENMAAS_API_KEY")


class Api:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"authorization": f"Bearer {api_key}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import aiohttp

        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3600)) as session,
                session.request(method, self.base_url + path, headers=self.headers, **kwargs) as resp,
            ):
                body = await resp.json(content_type=None)
                if resp.status >= 400:
                    error = body.get("error", {}) if isinstance(body, dict) else {}
                    raise click.ClickException(f"HTTP {resp.status}: {error.get('message', body)}")
                return body
        except aiohttp.ClientConnectionError as exc:
            raise click.ClickException(f"cannot reach {self.base_url} (is `openmaas serve` running?)") from exc

    async def resolve(self, kb: str) -> str:
        """A knowledge base by id or by name."""
        if kb.startswith("kb_"):
            return kb
        listed = await self.call("GET", "/knowledge_bases")
        matches = [k["id"] for k in listed["data"] if k["name"] == kb]
        if len(matches) != 1:
            raise click.ClickException(f"{len(matches)} knowledge bases are named '{kb}': use its id")
        return str(matches[0])

    async def upload(self, kb_id: str, name: str, data: bytes) -> Any:
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("file", data, filename=name)
        return await self.call("POST", f"/knowledge_bases/{kb_id}/documents", data=form)


def files_under(paths: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise click.ClickException(f"{raw}: no such file or folder")
    return out


def register(main: click.Group) -> None:
    @main.group()
    def kb() -> None:
        """Knowledge bases: create, ingest documents, search, ask with cited sources."""

    register_eval(kb)

    @kb.command("create")
    @click.argument("name")
    @click.option("--description", default="")
    @click.option("--embedding-model", default=None)
    @click.option("--chunk-tokens", type=int, default=None)
    @click.option("--chunk-overlap", type=int, default=None)
    @base_url_option
    @api_key_option
    def create(name: str, description: str, embedding_model: str | None, chunk_tokens: int | None,
               chunk_overlap: int | None, base_url: str, api_key: str) -> None:  # fmt: skip
        """Create a knowledge base; prints its id."""
        body: dict[str, Any] = {"name": name, "description": description, "embedding_model": embedding_model}
        body.update(chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap)
        body = {k: v for k, v in body.items() if v is not None}
        created = asyncio.run(Api(base_url, api_key).call("POST", "/knowledge_bases", json=body))
        click.echo(created["id"])

    @kb.command("list")
    @base_url_option
    @api_key_option
    def list_(base_url: str, api_key: str) -> None:
        """Your knowledge bases."""
        listed = asyncio.run(Api(base_url, api_key).call("GET", "/knowledge_bases"))
        _table(listed["data"], ["id", "name", "documents", "chunks", "embedding_model"])

    @kb.command("docs")
    @click.argument("kb_ref", metavar="KB")
    @base_url_option
    @api_key_option
    def docs(kb_ref: str, base_url: str, api_key: str) -> None:
        """The documents of a knowledge base."""
        api = Api(base_url, api_key)

        async def work() -> Any:
            return await api.call("GET", f"/knowledge_bases/{await api.resolve(kb_ref)}/documents")

        _table(asyncio.run(work())["data"], ["id", "filename", "kind", "title", "chunks", "bytes"])

    @kb.command("delete")
    @click.argument("kb_ref", metavar="KB")
    @click.option("--document", default=None, help="delete only this document")
    @base_url_option
    @api_key_option
    def delete(kb_ref: str, document: str | None, base_url: str, api_key: str) -> None:
        """Delete a knowledge base, or one of its documents (its chunks leave every index)."""
        api = Api(base_url, api_key)

        async def work() -> Any:
            kb_id = await api.resolve(kb_ref)
            suffix = f"/documents/{document}" if document else ""
            return await api.call("DELETE", f"/knowledge_bases/{kb_id}{suffix}")

        click.echo(f"deleted {asyncio.run(work())['id']}")

    @kb.command("ingest")
    @click.argument("kb_ref", metavar="KB")
    @click.argument("paths", nargs=-1, required=True)
    @base_url_option
    @api_key_option
    def ingest(kb_ref: str, paths: tuple[str, ...], base_url: str, api_key: str) -> None:
        """Ingest files and folders (txt, md, html, pdf; folders recursively). Unchanged files are skipped;
        a file that fails is reported and the rest go on; the exit status is 1 if any failed."""
        api = Api(base_url, api_key)
        files = files_under(paths)
        kb_id = asyncio.run(api.resolve(kb_ref))
        added = unchanged = chunks = 0
        failed: list[tuple[Path, str]] = []
        show = lambda p: p.name if p else None  # noqa: E731
        with click.progressbar(files, label="ingesting", show_pos=True, item_show_func=show) as bar:
            for path in bar:
                try:
                    result = asyncio.run(api.upload(kb_id, path.name, path.read_bytes()))
                except click.ClickException as exc:
                    failed.append((path, exc.message))
                    continue
                for doc in result["data"]:
                    added += doc["created"]
                    unchanged += not doc["created"]
                    chunks += doc["chunks"] if doc["created"] else 0
        click.echo(f"{added} added ({chunks} chunks), {unchanged} unchanged, {len(failed)} failed")
        for path, message in failed:
            click.echo(f"  {path}: {message}", err=True)
        if failed:
            raise SystemExit(1)

    @kb.command("search")
    @click.argument("kb_ref", metavar="KB")
    @click.argument("query")
    @click.option("--mode", type=click.Choice(["hybrid", "bm25", "vector"]), default="hybrid", show_default=True)
    @click.option("--top-k", type=int, default=5, show_default=True)
    @click.option("--rewrite", is_flag=True, help="an LLM rewrites the query into several")
    @click.option("--hyde", is_flag=True, help="an LLM writes a hypothetical answer to search with")
    @click.option("--json", "as_json", is_flag=True)
    @base_url_option
    @api_key_option
    def search(kb_ref: str, query: str, mode: str, top_k: int, rewrite: bool, hyde: bool, as_json: bool,
               base_url: str, api_key: str) -> None:  # fmt: skip
        """Ranked chunks with each retriever's score and the fused score."""
        api = Api(base_url, api_key)
        body = {"query": query, "mode": mode, "top_k": top_k, "rewrite": rewrite, "hyde": hyde}

        async def work() -> Any:
            return await api.call("POST", f"/knowledge_bases/{await api.resolve(kb_ref)}/search", json=body)

        found = asyncio.run(work())
        if as_json:
            click.echo(json.dumps(found, indent=2))
            return
        rows = [
            {
                "rank": d["rank"],
                "score": d["score"],
                "bm25": (d["scores"].get("bm25") or {}).get("score"),
                "vector": (d["scores"].get("vector") or {}).get("score"),
                "document": d["filename"],
                "section": (d["heading"] or "")[-50:],
            }
            for d in found["data"]
        ]
        _table(rows, ["rank", "score", "bm25", "vector", "document", "section"])

    @kb.command("ask")
    @click.argument("kb_ref", metavar="KB")
    @click.argument("question")
    @click.option("--model", "-m", default="default", show_default=True)
    @click.option("--top-k", type=int, default=4, show_default=True)
    @click.option("--max-tokens", type=int, default=256, show_default=True)
    @base_url_option
    @api_key_option
    def ask(kb_ref: str, question: str, model: str, top_k: int, max_tokens: int, base_url: str,
            api_key: str) -> None:  # fmt: skip
        """Answer a question from a knowledge base, with its numbered sources."""
        api = Api(base_url, api_key)

        async def work() -> Any:
            body = {
                "model": model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": question}],
                "knowledge_base": {"id": await api.resolve(kb_ref), "top_k": top_k},
            }
            return await api.call("POST", "/chat/completions", json=body)

        answer = asyncio.run(work())
        click.echo(answer["choices"][0]["message"]["content"].strip())
        info = answer["knowledge_base"]
        click.echo("")
        for source in info["sources"]:
            mark = "*" if source["index"] in info["citations"] else " "
            section = f" — {source['heading']}" if source["heading"] else ""
            click.echo(f"{mark}[{source['index']}] {source['filename']}{section}")


def register_eval(kb: click.Group) -> None:
    @kb.command("eval")
    @click.option("--config", "-c", type=click.Path(exists=True, dir_okay=False), help="openmaas.yaml")
    @click.option("--corpus", type=click.Path(file_okay=False), default=None, help="default: python3-doc's HTML")
    @click.option("--questions", type=click.Path(exists=True, dir_okay=False), default=None)
    @click.option("--configs", default=",".join(["bm25", "vector", "hybrid", "hybrid+rewrite", "hybrid+hyde"]),
                  show_default=True, help="retrieval configurations, comma-separated")  # fmt: skip
    @click.option("--model", "-m", default="default", show_default=True, help="rewrites queries, writes HyDE")
    @click.option("--limit", type=int, default=None, help="only the first N questions")
    @click.option("--out", type=click.Path(file_okay=False), default=None, help="write results.json and table.md")
    def eval_(config: str | None, corpus: str | None, questions: str | None, configs: str, model: str,
              limit: int | None, out: str | None) -> None:  # fmt: skip
        """Recall@k and MRR of bm25, vector, hybrid (RRF) and hybrid with rewriting/HyDE on a labelled question
        set; ingestion throughput and query latency. Runs in-process on a fresh data directory."""
        import tempfile

        from openmaas.rag import evaluate
        from openmaas.settings import load_settings

        spec = json.loads(Path(questions).read_text()) if questions else evaluate.default_questions()
        root = Path(corpus) if corpus else evaluate.DEFAULT_CORPUS
        if not root.is_dir() and not corpus:
            evaluate.install_corpus(click.echo)
        if not root.is_dir():
            raise click.ClickException(
                f"{root} does not exist: install Debian's python3-doc (apt-get install python3-doc) or pass --corpus"
            )
        items = spec["questions"][:limit] if limit else spec["questions"]
        folders = spec.get("folders", []) if not corpus or questions else []
        try:
            run = evaluate.EvalRun(root, folders, items, [c.strip() for c in configs.split(",") if c.strip()], model)
            [evaluate.parse_config(c) for c in run.configs]
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        with tempfile.TemporaryDirectory(prefix="openmaas-kb-eval-") as tmp:
            settings = load_settings(config)
            settings = settings.model_copy(
                update={"data_dir": Path(tmp), "store": settings.store.model_copy(update={"url": None})}
            )
            report = asyncio.run(run.run(settings))
        click.echo("")
        click.echo(
            f"{report['documents']} documents, {report['chunks']} chunks ingested in {report['ingest_seconds']} s "
            f"({report['chunks_per_second']} chunks/s); {report['questions']} questions"
        )
        click.echo(evaluate.table(report))
        if out:
            folder = Path(out)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "results.json").write_text(json.dumps(report, indent=1))
            (folder / "table.md").write_text(evaluate.table(report) + "\n")
            click.echo(f"wrote {folder / 'results.json'} and {folder / 'table.md'}")
