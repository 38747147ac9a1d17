"""Knowledge bases, documents and chunks in the store (SQLite or PostgreSQL, same code).

Ownership is checked here, in one place: every read or change of a knowledge base names the
caller's tenant, and a knowledge base of another tenant is reported as not found (never "forbidden":
its existence is not disclosed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from openmaas.errors import NotFound
from openmaas.ids import IdGenerator
from openmaas.store.db import Database, owned_by
from openmaas.store.schema import kb_chunks, kb_documents, knowledge_bases


@dataclass
class ChunkRows:
    """Everything an index is built from, at one revision."""

    revision: int
    ids: list[str]
    texts: list[str]
    digests: list[str]
    vectors: NDArray[np.float32]


def _row(row: Any) -> dict[str, Any]:
    return {str(k): v for k, v in row._mapping.items()}


def _owner(tenant_id: str | None) -> Any:
    return owned_by(knowledge_bases.c.tenant_id, tenant_id)


class KnowledgeStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.new_kb_id = IdGenerator("kb")
        self.new_doc_id = IdGenerator("doc")
        self.new_chunk_id = IdGenerator("chk")

    async def create(self, tenant_id: str | None, values: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        row = {**values, "id": self.new_kb_id(), "tenant_id": tenant_id, "revision": 0}
        row.update(created_at=now, updated_at=now)
        async with self.db.engine.begin() as conn:
            await conn.execute(knowledge_bases.insert().values(**row))
        return await self.get(tenant_id, row["id"])

    async def all(self, tenant_id: str | None) -> list[dict[str, Any]]:
        counts = (
            select(
                kb_documents.c.kb_id, func.count().label("documents"), func.sum(kb_documents.c.chunks).label("chunks")
            )
            .group_by(kb_documents.c.kb_id)
            .subquery()
        )
        query = (
            select(knowledge_bases, counts.c.documents, counts.c.chunks)
            .outerjoin(counts, counts.c.kb_id == knowledge_bases.c.id)
            .where(_owner(tenant_id))
            .order_by(knowledge_bases.c.created_at)
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [{**_row(r), "documents": r.documents or 0, "chunks": int(r.chunks or 0)} for r in rows]

    async def get(self, tenant_id: str | None, kb_id: str) -> dict[str, Any]:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(knowledge_bases).where(knowledge_bases.c.id == kb_id, _owner(tenant_id)))
            ).first()
            if row is None:
                raise NotFound(f"No knowledge base '{kb_id}'", param="knowledge_base", code="knowledge_base_not_found")
            stats = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(kb_documents.c.chunks), 0)).where(
                        kb_documents.c.kb_id == kb_id
                    )
                )
            ).one()
        return {**_row(row), "documents": int(stats[0]), "chunks": int(stats[1])}

    async def delete(self, tenant_id: str | None, kb_id: str) -> None:
        await self.get(tenant_id, kb_id)
        async with self.db.engine.begin() as conn:  # children first: no reliance on cascades being enabled
            await conn.execute(delete(kb_chunks).where(kb_chunks.c.kb_id == kb_id))
            await conn.execute(delete(kb_documents).where(kb_documents.c.kb_id == kb_id))
            await conn.execute(delete(knowledge_bases).where(knowledge_bases.c.id == kb_id))

    async def find_document(self, kb_id: str, sha256: str) -> dict[str, Any] | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(kb_documents).where(kb_documents.c.kb_id == kb_id, kb_documents.c.sha256 == sha256)
                )
            ).first()
        return None if row is None else _row(row)

    async def add_document(
        self, kb_id: str, document: dict[str, Any], chunks: list[dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """Insert a document and its chunks in one transaction; (row, created). The same bytes ingested
        concurrently end as one document (the unique (kb, sha256) index decides)."""
        doc = {**document, "id": self.new_doc_id(), "kb_id": kb_id, "created_at": time.time()}
        rows = [{**c, "id": self.new_chunk_id(), "kb_id": kb_id, "document_id": doc["id"]} for c in chunks]
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(kb_documents.insert().values(**doc))
                if rows:
                    await conn.execute(kb_chunks.insert(), rows)
                await self._bump(conn, kb_id)
        except IntegrityError:
            existing = await self.find_document(kb_id, document["sha256"])
            if existing is None:
                raise
            return existing, False
        return doc, True

    async def list_documents(self, kb_id: str) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(kb_documents).where(kb_documents.c.kb_id == kb_id).order_by(kb_documents.c.created_at)
                )
            ).all()
        return [_row(r) for r in rows]

    async def delete_document(self, kb_id: str, document_id: str) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(
                delete(kb_chunks).where(kb_chunks.c.document_id == document_id, kb_chunks.c.kb_id == kb_id)
            )
            gone = await conn.execute(
                delete(kb_documents).where(kb_documents.c.id == document_id, kb_documents.c.kb_id == kb_id)
            )
            if not gone.rowcount:
                raise NotFound(f"No document '{document_id}' in this knowledge base", code="document_not_found")
            await self._bump(conn, kb_id)

    async def _bump(self, conn: Any, kb_id: str) -> None:
        await conn.execute(
            update(knowledge_bases)
            .where(knowledge_bases.c.id == kb_id)
            .values(revision=knowledge_bases.c.revision + 1, updated_at=time.time())
        )

    async def revision(self, kb_id: str) -> int:
        async with self.db.engine.connect() as conn:
            query = select(knowledge_bases.c.revision).where(knowledge_bases.c.id == kb_id)
            value = (await conn.execute(query)).scalar()
        return int(value or 0)

    async def chunk_rows(self, kb_id: str) -> ChunkRows:
        async with self.db.engine.connect() as conn:
            revision = (
                await conn.execute(select(knowledge_bases.c.revision).where(knowledge_bases.c.id == kb_id))
            ).scalar()
            rows = (
                await conn.execute(
                    select(kb_chunks.c.id, kb_chunks.c.heading, kb_chunks.c.text, kb_chunks.c.digest)
                    .add_columns(kb_chunks.c.embedding)
                    .where(kb_chunks.c.kb_id == kb_id)
                    .order_by(kb_chunks.c.id)
                )
            ).all()
        dim = len(rows[0].embedding) // 4 if rows else 0
        vectors = np.zeros((len(rows), dim), dtype=np.float32)
        for i, r in enumerate(rows):
            vectors[i] = np.frombuffer(r.embedding, dtype="<f4")
        return ChunkRows(
            int(revision or 0),
            [r.id for r in rows],
            [f"{r.heading}\n{r.text}" if r.heading else r.text for r in rows],
            [r.digest for r in rows],
            vectors,
        )

    async def chunks(self, kb_id: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        query = (
            select(
                kb_chunks.c.id,
                kb_chunks.c.document_id,
                kb_chunks.c.position,
                kb_chunks.c.heading,
                kb_chunks.c.text,
                kb_chunks.c.tokens,
                kb_documents.c.filename,
                kb_documents.c.title,
            )
            .join(kb_documents, kb_documents.c.id == kb_chunks.c.document_id)
            .where(kb_chunks.c.kb_id == kb_id, kb_chunks.c.id.in_(ids))
        )
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.id: _row(r) for r in rows}
