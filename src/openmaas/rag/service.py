"""Knowledge bases as a service: ingest documents, retrieve with BM25 + vectors + RRF, and ground chats.

Every model call made here goes through the gateway, so it is routed, privacy-checked and metered
against the caller like any other request: embeddings of ingested chunks and of queries, query
rewriting and HyDE passages. Each such call is its own ledger row carrying the caller's request id
(each is priced at the deployment that served it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from openmaas.errors import InvalidRequest, PayloadTooLarge
from openmaas.lifecycle import RetrievalEvent
from openmaas.protocol.knowledge import KnowledgeBaseCreate, Retrieval
from openmaas.rag import chunking, parsing
from openmaas.rag.retrieval import Hit, KbIndex, rrf
from openmaas.settings import RagSettings
from openmaas.store.knowledge import KnowledgeStore

if TYPE_CHECKING:
    from openmaas.gateway import Call, Gateway

REWRITE_PROMPT = (
    "Rewrite the question below into up to 3 short keyword search queries for a documentation search engine. "
    "Write one query per line, with no numbering and no explanation.\n\nQuestion: {query}"
)
HYDE_PROMPT = (
    "Write a short passage, in the style of technical documentation, that answers the question below. "
    "Three or four sentences.\n\nQuestion: {query}"
)


@dataclass
class SearchResult:
    queries: list[str]
    hyde: str | None
    results: list[dict[str, Any]]
    usage: dict[str, int] = field(default_factory=lambda: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})


def _count_estimate(text: str) -> int:
    return max(1, round(len(text.split()) * 1.4))  # only for embedding upstreams whose tokenizer we lack


class KnowledgeBases:
    def __init__(self, store: KnowledgeStore, gateway: Gateway, settings: RagSettings) -> None:
        self.store = store
        self.gateway = gateway
        self.settings = settings
        self._indexes: OrderedDict[str, tuple[int, KbIndex, list[str]]] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    # knowledge bases -------------------------------------------------------
    async def create(self, call: Call, spec: KnowledgeBaseCreate) -> dict[str, Any]:
        model = spec.embedding_model or self.settings.embedding_model
        deployments = self.gateway.registry.deployments
        names = self.gateway.registry.aliases.get(model, [model])
        if not all(n in deployments and deployments[n].capabilities.embeddings for n in names):
            raise InvalidRequest(
                f"'{model}' is not an embedding model served here", param="embedding_model", code="model_not_found"
            )
        values = spec.model_dump(exclude_none=True)
        values.update(
            embedding_model=model,
            chunk_tokens=spec.chunk_tokens or self.settings.chunk_tokens,
            chunk_overlap=spec.chunk_overlap if spec.chunk_overlap is not None else self.settings.chunk_overlap,
        )
        if values["chunk_overlap"] >= values["chunk_tokens"]:
            raise InvalidRequest("chunk_overlap must be smaller than chunk_tokens", param="chunk_overlap")
        return await self.store.create(call.principal.tenant_id, values)

    async def get(self, call: Call, kb_id: str) -> dict[str, Any]:
        return await self.store.get(call.principal.tenant_id, kb_id)

    async def delete(self, call: Call, kb_id: str) -> None:
        await self.store.delete(call.principal.tenant_id, kb_id)
        self._indexes.pop(kb_id, None)
        self._locks.pop(kb_id, None)

    # documents -------------------------------------------------------------
    async def ingest(
        self, call: Call, kb_id: str, filename: str, data: bytes, content_type: str | None = None
    ) -> dict[str, Any]:
        """One file → {document, created, chunks}; unchanged bytes already in the knowledge base: a no-op."""
        kb = await self.store.get(call.principal.tenant_id, kb_id)
        if len(data) > self.settings.max_document_bytes:
            raise PayloadTooLarge(
                f"'{filename}' is {len(data)} bytes; the limit is {self.settings.max_document_bytes}",
                code="document_too_large",
            )
        parsing.kind_of(filename, content_type)  # unsupported type: 415 before any work
        digest = hashlib.sha256(data).hexdigest()
        existing = await self.store.find_document(kb_id, digest)
        if existing is not None:
            return {"document": existing, "created": False}
        parsed = await asyncio.to_thread(parsing.parse, data, filename, content_type)
        counter = self._counter(kb["embedding_model"])
        pieces = await asyncio.to_thread(
            chunking.chunk, parsed.text, parsed.title, counter, kb["chunk_tokens"], kb["chunk_overlap"]
        )
        if not pieces:
            raise parsing.DocumentError(f"'{filename}' has no text to index")
        vectors, tokens = await self.embed(call, kb["embedding_model"], [p.indexed_text for p in pieces])
        rows = [
            {
                "position": p.position,
                "heading": p.heading,
                "text": p.text,
                "digest": p.digest,
                "tokens": p.tokens,
                "embedding": vectors[i].astype("<f4").tobytes(),
            }
            for i, p in enumerate(pieces)
        ]
        document = {
            "filename": filename[:500],
            "kind": parsed.kind,
            "title": parsed.title,
            "sha256": digest,
            "bytes": len(data),
            "chunks": len(rows),
            "tokens": tokens,
        }
        row, created = await self.store.add_document(kb_id, document, rows)
        return {"document": row, "created": created}

    async def delete_document(self, call: Call, kb_id: str, document_id: str) -> None:
        await self.store.get(call.principal.tenant_id, kb_id)
        await self.store.delete_document(kb_id, document_id)

    async def documents(self, call: Call, kb_id: str) -> list[dict[str, Any]]:
        await self.store.get(call.principal.tenant_id, kb_id)
        return await self.store.list_documents(kb_id)

    def _counter(self, model: str) -> chunking.Counter:
        from openmaas.backends.encoder import EncoderBackend

        name = self.gateway.registry.aliases.get(model, [model])[0]
        backend = self.gateway.registry.backends.get(name)
        if isinstance(backend, EncoderBackend) and backend.encoder is not None:
            return backend.encoder.count_tokens
        return _count_estimate

    async def embed(self, call: Call, model: str, texts: list[str]) -> tuple[NDArray[np.float32], int]:
        """Unit-length embeddings through the gateway (metered), in batches; (vectors, tokens)."""
        from openmaas.gateway import Call as SubCall

        out: list[NDArray[np.float32]] = []
        tokens = 0
        step = self.settings.embed_batch
        for start in range(0, len(texts), step):
            body = {"model": model, "input": texts[start : start + step], "encoding_format": "base64"}
            result = await self.gateway.embed(body, SubCall(call.request_id, call.principal))
            tokens += int((result.get("usage") or {}).get("prompt_tokens") or 0)
            for item in sorted(result["data"], key=lambda d: d["index"]):
                raw = item["embedding"]
                vector = (
                    np.frombuffer(base64.b64decode(raw), dtype="<f4")
                    if isinstance(raw, str)
                    else np.asarray(raw, dtype=np.float32)
                )
                out.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
        return np.vstack(out).astype(np.float32), tokens

    # retrieval -------------------------------------------------------------
    async def _index(self, kb: dict[str, Any]) -> tuple[KbIndex, list[str]]:
        kb_id = kb["id"]
        cached = self._indexes.get(kb_id)
        if cached is not None and cached[0] == kb["revision"]:
            self._indexes.move_to_end(kb_id)
            return cached[1], cached[2]
        lock = self._locks.setdefault(kb_id, asyncio.Lock())
        async with lock:
            cached = self._indexes.get(kb_id)
            if cached is not None and cached[0] == kb["revision"]:
                return cached[1], cached[2]
            rows = await self.store.chunk_rows(kb_id)
            index = await asyncio.to_thread(KbIndex, rows.ids, rows.texts, rows.vectors)
            self._indexes[kb_id] = (rows.revision, index, rows.digests)
            while len(self._indexes) > self.settings.index_cache:
                self._indexes.popitem(last=False)
            return index, rows.digests

    async def _generate(self, call: Call, model: str, prompt: str, max_tokens: int, usage: dict[str, int]) -> str:
        from openmaas.gateway import Call as SubCall

        body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
        body["temperature"] = 0
        result = await self.gateway.chat(body, SubCall(call.request_id, call.principal))
        assert isinstance(result, dict)
        used = result.get("usage") or {}
        usage["calls"] += 1
        usage["prompt_tokens"] += int(used.get("prompt_tokens") or 0)
        usage["completion_tokens"] += int(used.get("completion_tokens") or 0)
        return str(((result.get("choices") or [{}])[0].get("message") or {}).get("content") or "")

    async def search(
        self, call: Call, kb_id: str, query: str, spec: Retrieval, chat_model: str | None = None
    ) -> SearchResult:
        wall, started = time.time(), time.perf_counter()
        kb = await self.store.get(call.principal.tenant_id, kb_id)
        llm = spec.rewrite_model or self.settings.rewrite_model or chat_model or "default"
        out = SearchResult([query], None, [])
        if spec.rewrite:
            text = await self._generate(call, llm, REWRITE_PROMPT.format(query=query), 96, out.usage)
            for line in text.splitlines():
                line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", line).strip().strip("\"'")
                if line and line.lower() not in (q.lower() for q in out.queries) and len(out.queries) < 4:
                    out.queries.append(line[:500])
        if spec.hyde:
            out.hyde = (await self._generate(call, llm, HYDE_PROMPT.format(query=query), 160, out.usage)).strip()
        vector_inputs = out.queries + ([out.hyde] if out.hyde else [])
        embedded = None
        if spec.mode != "bm25":
            embedded, tokens = await self.embed(call, kb["embedding_model"], vector_inputs)
            out.usage["embedding_tokens"] = tokens
        index, digests = await self._index(kb)
        depth = max(self.settings.candidates, spec.top_k)
        lists: list[tuple[str, list[Hit]]] = []
        if spec.mode != "vector":
            lists += [("bm25", index.bm25(q, depth)) for q in out.queries]
        if embedded is not None and len(index):
            lists += [("vector", index.vector(v, depth)) for v in embedded]
        fused = rrf([[h.chunk_id for h in hits] for _, hits in lists])
        position = {cid: i for i, cid in enumerate(index.ids)}
        chosen: list[tuple[str, float]] = []
        seen: set[str] = set()
        for cid, score in fused:  # the same text in several documents is shown once
            digest = digests[position[cid]]
            if digest not in seen:
                seen.add(digest)
                chosen.append((cid, score))
            if len(chosen) == spec.top_k:
                break
        rows = await self.store.chunks(kb_id, [cid for cid, _ in chosen])
        chosen = [(cid, score) for cid, score in chosen if cid in rows]  # deleted since the index was read
        for rank, (cid, score) in enumerate(chosen, 1):
            row = rows[cid]
            scores: dict[str, Any] = {}
            for kind, hits in lists:
                for hit in hits:
                    if hit.chunk_id == cid and (kind not in scores or hit.rank < scores[kind]["rank"]):
                        scores[kind] = {"score": round(hit.score, 6), "rank": hit.rank}
            out.results.append(
                {
                    "rank": rank,
                    "chunk_id": cid,
                    "document_id": row["document_id"],
                    "filename": row["filename"],
                    "title": row["title"],
                    "position": row["position"],
                    "heading": row["heading"],
                    "text": row["text"],
                    "score": round(score, 6),
                    "scores": scores,
                }
            )
        event = RetrievalEvent(
            call.request_id, kb_id, spec.mode, spec.top_k, len(out.results), wall, time.perf_counter() - started
        )
        self.gateway.observer.retrieved(event)
        return out
