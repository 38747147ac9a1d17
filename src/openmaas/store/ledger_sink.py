"""Where ledger batches go: one multi-row insert per batch on the database's own driver.

The ledger writer is the only hot-path database client, so it skips the ORM
layer: rows arrive as tuples in ``usage_events`` column order and go out in
one statement per batch — ``executemany`` on a dedicated sqlite3 connection in
its own thread (SQLite), or a single ``INSERT … SELECT FROM unnest(…)`` on an
asyncpg connection (PostgreSQL). Both use ON CONFLICT DO NOTHING on the event
id, so writing a batch again after a lost acknowledgement changes nothing.
Everything else (admin, reports, migrations) stays on SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from sqlalchemy import BigInteger, Boolean, Float, Integer
from sqlalchemy.engine import make_url

from openmaas.store.db import Database
from openmaas.store.schema import usage_events

log = logging.getLogger("openmaas.ledger")

COLUMNS: tuple[str, ...] = tuple(usage_events.c.keys())
Row = tuple[Any, ...]


class LedgerSink(ABC):
    @abstractmethod
    async def write(self, rows: Sequence[Row]) -> None:
        """Insert the rows in one transaction (rows whose id exists are skipped)."""

    async def close(self) -> None:
        return None


def sink_for(db: Database) -> LedgerSink:
    url = make_url(db.url)
    if db.dialect == "sqlite" and url.database and url.database != ":memory:":
        return SqliteSink(url.database)
    if db.dialect == "postgresql":
        return PostgresSink(url.set(drivername="postgresql").render_as_string(hide_password=False))
    return EngineSink(db)


class SqliteSink(LedgerSink):
    """A dedicated connection. Small batches are written inline (well under a millisecond:
    cheaper than a thread hop, whose GIL hand-offs cost more than the insert on a busy
    core); large ones in a dedicated thread, so the event loop is never blocked for long."""

    INLINE_ROWS = 64

    SQL = (
        f"INSERT INTO usage_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        " ON CONFLICT (id) DO NOTHING"
    )

    CHECKPOINT_ROWS = 4096  # the ledger connection does not auto-checkpoint: a thread does, every so many rows
    INLINE_WAIT_MS = 20  # inline, never wait long for another writer's lock: hand over to the thread
    THREAD_WAIT_MS = 10_000

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._wait_ms = 0
        self._unchecked = 0  # rows committed since the last checkpoint was started
        self._checkpoint: asyncio.Future[None] | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # Same durability as the main engine: WAL, so a commit survives the process being killed.
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def _write(self, rows: Sequence[Row], wait_ms: int) -> None:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        if wait_ms != self._wait_ms:
            conn.execute(f"PRAGMA busy_timeout={wait_ms}")
            self._wait_ms = wait_ms
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(self.SQL, rows)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    async def write(self, rows: Sequence[Row]) -> None:
        if len(rows) > self.INLINE_ROWS or not self._write_inline(rows):
            await asyncio.get_running_loop().run_in_executor(self._executor(), self._write, rows, self.THREAD_WAIT_MS)
        self._unchecked += len(rows)
        if self._unchecked >= self.CHECKPOINT_ROWS and (self._checkpoint is None or self._checkpoint.done()):
            self._unchecked = 0
            self._checkpoint = asyncio.get_running_loop().run_in_executor(self._executor(), self._run_checkpoint)

    def _write_inline(self, rows: Sequence[Row]) -> bool:
        try:
            self._write(rows, self.INLINE_WAIT_MS)
        except sqlite3.OperationalError:  # locked by another writer (admin, CLI): wait in the thread
            return False
        return True

    def _executor(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openmaas-ledger")
        return self._thread

    def _run_checkpoint(self) -> None:
        """Copy the WAL back into the database off the event loop (its fsyncs would stall it).

        PASSIVE: it never blocks the writer; SQLite restarts the WAL from the top once a
        checkpoint has caught up and nobody is reading the old frames."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("ledger checkpoint failed: %s", type(exc).__name__)
        finally:
            conn.close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        self._close()


def _pg_type(column: Any) -> str:
    kind = column.type
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, Boolean):
        return "bool"
    return "text"


class PostgresSink(LedgerSink):
    """One asyncpg connection; a batch is one statement, one round-trip, whatever its size.

    The batch travels as one JSON array of row arrays (orjson, in C) that PostgreSQL unpacks
    on its own side: encoding 21 typed parameter arrays in the gateway cost more than the
    rest of the ledger's work per request."""

    SQL = (
        f"INSERT INTO usage_events ({', '.join(COLUMNS)}) SELECT "
        + ", ".join(f"(r->>{i})::{_pg_type(c)}" for i, c in enumerate(usage_events.c))
        + " FROM json_array_elements($1::text::json) AS r ON CONFLICT (id) DO NOTHING"
    )

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn: Any = None

    async def write(self, rows: Sequence[Row]) -> None:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            await self._conn.execute(self.SQL, orjson.dumps(rows, default=tuple).decode())
        except BaseException:
            # The connection's state is unknown: start over on a fresh one (the retry is idempotent).
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.terminate()
            raise

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=5)
            self._conn = None


class EngineSink(LedgerSink):
    """Through SQLAlchemy (in-memory SQLite, where a second connection would be another database)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, rows: Sequence[Row]) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(self.db.insert_ignore(usage_events), [dict(zip(COLUMNS, r, strict=True)) for r in rows])
