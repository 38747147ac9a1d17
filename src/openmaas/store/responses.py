"""Stored Responses (``store: true``), scoped by tenant (SQLite or PostgreSQL, same code).

Every read names the caller's tenant; another tenant's response is reported as not found (its
existence is not disclosed). ``conversation`` holds the whole conversation after a response as input
items, so ``previous_response_id`` continues it with one read, on any replica, after any restart.

Writes are group-committed: ``put`` returns once its row is committed, but the rows of every request
waiting meanwhile go in one transaction (one upsert), so a busy gateway pays one commit per batch,
not per response (docs/benchmarks.md §g).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update

from openmaas.errors import NotFound
from openmaas.store.db import Database, owned_by
from openmaas.store.schema import responses

Item = dict[str, Any]


@dataclass
class StoredResponse:
    id: str
    tenant_id: str | None
    key_id: str | None
    status: str
    model: str
    response: dict[str, Any]
    input_items: list[Item] | None
    conversation: list[Item] | None
    content_stored: bool
    background: bool
    previous_response_id: str | None = None
    privacy: str | None = None
    created_at: float = 0.0


def _owner(tenant_id: str | None) -> Any:
    return owned_by(responses.c.tenant_id, tenant_id)


class ResponseStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.pending: dict[str, tuple[dict[str, Any], list[asyncio.Future[None]]]] = {}
        self.writer: asyncio.Task[None] | None = None
        self.on_latency: Callable[[str, float], None] | None = None  # (operation, seconds): metrics

    async def put(self, r: StoredResponse) -> None:
        """Insert or replace (a background response is written when queued and again when done);
        returns once the row is committed."""
        values = {
            "id": r.id,
            "tenant_id": r.tenant_id,
            "key_id": r.key_id,
            "created_at": r.created_at or time.time(),
            "status": r.status,
            "model": r.model,
            "previous_response_id": r.previous_response_id,
            "privacy": r.privacy,
            "content_stored": r.content_stored,
            "background": r.background,
            "response": r.response,
            "input_items": r.input_items,
            "conversation": r.conversation,
        }
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        waiting = self.pending.get(r.id, (values, []))[1]  # a later write of the same response wins
        self.pending[r.id] = (values, [*waiting, done])
        if self.writer is None or self.writer.done():
            self.writer = loop.create_task(self._write())
        await asyncio.shield(done)

    async def _write(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, {}
            try:
                started = time.perf_counter()
                async with self.db.engine.begin() as conn:
                    await conn.execute(self.db.upsert(responses, "id"), [values for values, _ in batch.values()])
                if self.on_latency is not None:
                    self.on_latency("responses_write", time.perf_counter() - started)
            except Exception as exc:
                for _, futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
            else:
                for _, futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_result(None)

    async def get(self, response_id: str, tenant_id: str | None) -> StoredResponse:
        started = time.perf_counter()
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(select(responses).where(responses.c.id == response_id, _owner(tenant_id)))
            ).first()
        if self.on_latency is not None:
            self.on_latency("responses_read", time.perf_counter() - started)
        if row is None:
            raise NotFound(f"No response found with id '{response_id}'.", param="response_id", code="not_found")
        m = row._mapping
        return StoredResponse(
            id=m["id"],
            tenant_id=m["tenant_id"],
            key_id=m["key_id"],
            status=m["status"],
            model=m["model"],
            response=m["response"],
            input_items=m["input_items"],
            conversation=m["conversation"],
            content_stored=bool(m["content_stored"]),
            background=bool(m["background"]),
            previous_response_id=m["previous_response_id"],
            privacy=m["privacy"],
            created_at=float(m["created_at"]),
        )

    async def set_status(
        self, response_id: str, tenant_id: str | None, status: str, only_from: tuple[str, ...]
    ) -> bool:
        """Move a response to ``status`` if it is in one of ``only_from`` (cancel); True if it moved."""
        async with self.db.engine.begin() as conn:
            stored = (
                await conn.execute(
                    select(responses.c.response).where(
                        responses.c.id == response_id, _owner(tenant_id), responses.c.status.in_(only_from)
                    )
                )
            ).first()
            if stored is None:
                return False
            body = {**stored[0], "status": status}
            await conn.execute(
                update(responses).where(responses.c.id == response_id).values(status=status, response=body)
            )
        return True

    async def delete(self, response_id: str, tenant_id: str | None) -> None:
        async with self.db.engine.begin() as conn:
            done = await conn.execute(delete(responses).where(responses.c.id == response_id, _owner(tenant_id)))
        if done.rowcount == 0:
            raise NotFound(f"No response found with id '{response_id}'.", param="response_id", code="not_found")

    async def purge(self, older_than: float) -> int:
        """Delete responses created before ``older_than`` (epoch seconds): the retention setting."""
        async with self.db.engine.begin() as conn:
            done = await conn.execute(delete(responses).where(responses.c.created_at < older_than))
        return int(done.rowcount or 0)
