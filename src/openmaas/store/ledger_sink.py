"""Where ledger batches go, on the database's own driver.

The ledger writer is the only hot-path database client, so it skips the ORM
layer: rows arrive as tuples in ``usage_events`` column order. By default a
batch goes to a spool file that a background task imports in large
transactions (``store.ledger_spool``; into PostgreSQL through
``store.ledger_pg``); with ``metering.ledger_spool: false``, PostgreSQL gets one
``INSERT … SELECT`` per batch instead. Every insert is ON CONFLICT DO NOTHING on
the event id, so writing a batch again after a lost acknowledgement changes
nothing. Everything else (admin, reports, migrations) stays on SQLAlchemy.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from openmaas.store import rollups
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
    """The database's ledger spool when it has one (``db.spool``), else straight into the database.
    ``fsync``: a batch counts as written only once it is on disk (survives a power loss), not only
    once it is out of the gateway process (survives the gateway being killed)."""
    if db.dialect == "postgresql":
        from openmaas.store.ledger_pg import PostgresSink, PostgresSpool

        dsn = db.asyncpg_dsn
        return PostgresSpool(db.spool, dsn, fsync) if db.spool is not None else PostgresSink(dsn, fsync)
    if db.spool is not None and db.sqlite_path is not None:
        from openmaas.store.ledger_spool import SQLiteSpool

        return SQLiteSpool(db.sqlite_path, fsync, db.spool)
    return EngineSink(db)


class EngineSink(LedgerSink):
    """Through SQLAlchemy (in-memory SQLite, where a second connection would be another database)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, rows: Sequence[Row]) -> None:
        async with self.db.engine.begin() as conn:
            sqlite = self.db.dialect == "sqlite"
            before = (await conn.execute(text(rollups.SQLITE_LAST_ROWID))).scalar_one() if sqlite else 0
            await conn.execute(self.db.insert_ignore(usage_events), [dict(zip(COLUMNS, r, strict=True)) for r in rows])
            if sqlite:  # PostgreSQL's trigger keeps the rollups; SQLite's writers do (store.rollups)
                for statement in rollups.SQLITE_AFTER:
                    await conn.execute(text(statement), {"before": before})
