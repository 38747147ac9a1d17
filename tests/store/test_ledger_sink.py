"""The ledger's direct-driver sinks: idempotent batches, both write paths of SQLite, lock hand-over."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import pytest

from openmaas.store.db import Database
from openmaas.store.ledger_sink import COLUMNS, Row, SqliteSink, sink_for

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
    try:
        await sink.write([row(i) for i in range(10)])  # inline on SQLite
        await sink.write([row(i) for i in range(10, 510)])  # in the writer thread on SQLite
        await sink.write([row(i) for i in range(510)])  # all again: a re-flush after a lost acknowledgement
    finally:
        await sink.close()
    assert await count(db) == (510, sum(range(510)), 255)


async def test_a_locked_database_hands_the_batch_to_the_thread_instead_of_blocking(tmp_path: Any) -> None:
    path = tmp_path / "ledger.db"
    db = Database(f"sqlite:///{path}")
    await db.migrate()
    sink = sink_for(db)
    assert isinstance(sink, SqliteSink)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer (the CLI, an admin call) holds the lock
    try:
        write = asyncio.ensure_future(sink.write([row(1)]))
        await asyncio.sleep(0.3)  # the event loop kept running meanwhile
        assert not write.done()
        other.execute("COMMIT")
        await asyncio.wait_for(write, 10)
    finally:
        other.close()
        await sink.close()
    assert (await count(db))[0] == 1
    await db.close()


async def test_the_wal_is_checkpointed_into_the_database_file_off_the_event_loop(tmp_path: Any) -> None:
    path = tmp_path / "ledger.db"
    db = Database(f"sqlite:///{path}")
    await db.migrate()
    await db.close()
    sink = SqliteSink(str(path))
    sink.CHECKPOINT_ROWS = 8
    try:
        await sink.write([row(i) for i in range(5)])
        assert sink._checkpoint is None  # not yet: the ledger connection never checkpoints by itself
        await sink.write([row(i) for i in range(5, 10)])
        assert sink._checkpoint is not None
        await sink._checkpoint
        # The database file alone (without its -wal) now holds the rows: the checkpoint ran.
        copy = tmp_path / "copy.db"
        copy.write_bytes(path.read_bytes())
        alone = sqlite3.connect(copy)
        try:
            assert alone.execute("SELECT count(*) FROM usage_events").fetchone()[0] == 10
        finally:
            alone.close()
    finally:
        await sink.close()
