"""The ledger's sinks, on each store: idempotent batches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from openmaas.store.db import Database
from openmaas.store.ledger_sink import COLUMNS, Row, sink_for
from tests.helpers import store_settings

pytestmark = pytest.mark.anyio


def row(i: int) -> Row:
    values: dict[str, Any] = {
        "id": f"evt_{i:08d}",
        "request_id": f"req_{i}",
        "tenant_id": "ten_1",
        "key_id": "key_1",
        "endpoint": "chat",
        "model": "m",
        "deployment": "m",
        "route_reason": "",
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "cost_nanos": i,
        "usage_source": "upstream",
        "latency_ms": 1.5,
        "ttft_ms": None,
        "status": 200,
        "error_code": None,
        "interrupted": i % 2 == 0,
        "created_at": time.time(),
        "day": "2026-11-22",
        "degraded": False,
        "route": '{"chosen": "m"}',
        "cached_tokens": i,
    }
    return tuple(values[c] for c in COLUMNS)


async def count(db: Database) -> tuple[int, int, int]:
    from sqlalchemy import func, select

    from openmaas.store.schema import usage_events as t

    async with db.engine.connect() as conn:
        query = select(func.count(), func.sum(t.c.cost_nanos), func.sum(t.c.interrupted.cast(t.c.status.type)))
        n, total, interrupted = (await conn.execute(query)).one()
    return int(n), int(total or 0), int(interrupted or 0)


async def test_small_and_large_batches_are_written_once(db: Database) -> None:
    sink = sink_for(db)
    await sink.start()
    try:
        await sink.write([row(i) for i in range(10)])
        await sink.write([row(i) for i in range(10, 510)])
        await sink.write([row(i) for i in range(510)])  # all again: a re-flush after a lost acknowledgement
        await sink.sync()
        assert await count(db) == (510, sum(range(510)), 255)
    finally:
        await sink.close()
    assert await count(db) == (510, sum(range(510)), 255)


@pytest.mark.parametrize("fsync", [False, True])
async def test_postgres_commits_wait_for_the_disk_only_with_ledger_fsync(tmp_path: Path, fsync: bool) -> None:
    """Default: ``synchronous_commit = off`` on the ledger's connection (committed rows are visible
    to every session, and safe from the gateway being killed); ``ledger_fsync``: on. (The SQLite
    spool's fsync: tests/store/test_ledger_spool.py.)"""
    db = Database((await store_settings("postgres", tmp_path))["url"])
    await db.migrate()
    sink = sink_for(db, fsync=fsync)
    await sink.start()
    try:
        await sink.write([row(i) for i in range(3)])
        assert await count(db) == (3, 3, 2)  # visible to another connection at once
        conn = sink._conn  # type: ignore[attr-defined]
        assert await conn.fetchval("SHOW synchronous_commit") == ("on" if fsync else "off")
    finally:
        await sink.close()
        await db.close()
