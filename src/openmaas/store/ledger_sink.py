"""Where ledger batches go, on the database's own driver.

The ledger writer is the only hot-path database client, so it skips the ORM
layer: rows arrive as tuples in ``usage_events`` column order. PostgreSQL: one
``INSERT … SELECT`` per batch on an asyncpg connection. SQLite: a spool file
imported in large transactions (``store.ledger_spool``). Both insert with ON
CONFLICT DO NOTHING on the event id, so writing a batch again after a lost
acknowledgement changes nothing. Everything else (admin, reports, migrations)
stays on SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
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

    async def start(self) -> None:
        return None

    async def sync(self) -> None:
        """Return once every row written so far is visible to readers of ``usage_events``."""
        return None

    async def close(self) -> None:
        return None


def sink_for(db: Database, fsync: bool = False) -> LedgerSink:
    """``fsync``: a batch counts as written only once it is on disk (survives a power loss of the
    database host), not only once it is out of the gateway (survives the gateway being killed)."""
    url = make_url(db.url)
    if db.dialect == "sqlite" and url.database and url.database != ":memory:":
        from openmaas.store.ledger_spool import SpoolSink

        return SpoolSink(url.database, fsync)
    if db.dialect == "postgresql":
        return PostgresSink(url.set(drivername="postgresql").render_as_string(hide_password=False), fsync)
    return EngineSink(db)


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
    rest of the ledger's work per request. ``jsonb``, not ``json``: ``->>`` on a json array
    re-scans the text for every column, which cost PostgreSQL ~40 µs more per row (measured);
    a jsonb array is parsed once and indexed.

    Without ``fsync`` the connection runs with ``synchronous_commit = off``: a commit returns
    once it is in PostgreSQL's WAL buffers, visible to every session and safe from the gateway
    being killed, and the WAL writer puts it on disk within ~0.6 s (3 × ``wal_writer_delay``).
    Waiting for that flush on every batch cost PostgreSQL ~60 µs of CPU per commit and every
    metered request a disk flush of latency (measured); ``fsync`` restores it."""

    SQL = (
        f"INSERT INTO usage_events ({', '.join(COLUMNS)}) SELECT "
        + ", ".join(f"(r->>{i})::{_pg_type(c)}" for i, c in enumerate(usage_events.c))
        + " FROM jsonb_array_elements($1::text::jsonb) AS r ON CONFLICT (id) DO NOTHING"
    )

    def __init__(self, dsn: str, fsync: bool = False) -> None:
        self.dsn = dsn
        self.settings = {"synchronous_commit": "on" if fsync else "off"}
        self._conn: Any = None

    async def write(self, rows: Sequence[Row]) -> None:
        import asyncpg

        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn, timeout=10, server_settings=self.settings)
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
