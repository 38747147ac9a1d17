"""The database handle: one async SQLAlchemy engine for SQLite (WAL) or PostgreSQL, and migrations.

Schema changes are Alembic revisions under ``store/migrations/versions``; ``migrate()``
brings any database to the newest one (under an advisory lock on PostgreSQL, so
replicas starting together migrate once).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 7_212_001


log = logging.getLogger("openmaas.store")


def normalize_url(url: str) -> str:
    """Accept plain ``sqlite:///`` and ``postgresql://`` URLs; pick the async drivers."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL + NORMAL: a committed transaction is in the WAL file before commit returns,
    # so it survives the process being killed (not a power cut: set store.url to PostgreSQL for that).
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def owned_by(column: Any, tenant_id: str | None) -> Any:
    """The filter that scopes a row to the caller's tenant (None: the anonymous caller of an open server)."""
    return column.is_(None) if tenant_id is None else column == tenant_id


class Database:
    def __init__(self, url: str, spool: Path | Literal["auto"] | None = "auto") -> None:
        """``spool``: the ledger's spool folder (``metering.ledger_spool``), None for none; "auto":
        SQLite on disk spools beside its file, PostgreSQL does not (``Settings.database()`` decides
        for servers and commands)."""
        self.url = normalize_url(url)
        self.dialect = "sqlite" if self.url.startswith("sqlite") else "postgresql"
        if self.dialect == "sqlite":
            path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(self.url)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # No pre-ping: it would cost a round-trip per transaction; a dead connection fails the
            # ledger batch, which is retried (idempotently) on a fresh one.
            self.engine = create_async_engine(self.url, pool_size=8, max_overflow=8, pool_recycle=1800)
        if spool == "auto":
            from openmaas.store.ledger_spool import spool_dir

            on_disk = self.sqlite_path
            spool = spool_dir(on_disk) if on_disk is not None else None
        self.spool: Path | None = spool

    @property
    def sqlite_path(self) -> str | None:
        """The database file, for SQLite on disk."""
        if self.dialect != "sqlite" or ":///" not in self.url:
            return None
        path = self.url.split(":///", 1)[1]
        return None if not path or path == ":memory:" else str(Path(path).expanduser())

    @property
    def asyncpg_dsn(self) -> str:
        """The PostgreSQL URL as asyncpg takes it (the ledger's own connections bypass SQLAlchemy)."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def migrate(self) -> None:
        """Bring the store up to date: the schema, then the ledger spool a killed gateway left."""
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            await conn.run_sync(_upgrade)
        if self.spool is None:
            return
        if self.sqlite_path is not None:
            from openmaas.store.ledger_spool import recover

            recovered = await asyncio.to_thread(recover, self.sqlite_path, self.spool)
            if recovered:
                log.info("ledger: %d usage events recovered from the spool", recovered)
        elif self.dialect == "postgresql":
            from openmaas.store import ledger_pg

            await ledger_pg.recover(self.spool, self.asyncpg_dsn)

    def insert_ignore(self, table: Table) -> Insert:
        """INSERT … ON CONFLICT DO NOTHING: writing the same row twice is a no-op."""
        if self.dialect == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    def upsert(self, table: Table, key: str) -> Insert:
        """INSERT … ON CONFLICT (key) DO UPDATE every other column: the row as given wins."""
        insert = sqlite.insert(table) if self.dialect == "sqlite" else postgresql.insert(table)
        columns = {c.name: insert.excluded[c.name] for c in table.columns if c.name != key}
        return insert.on_conflict_do_update(index_elements=[key], set_=columns)

    async def close(self) -> None:
        await self.engine.dispose()


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
