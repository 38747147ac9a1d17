"""The ledger on PostgreSQL: a batch per statement (``PostgresSink``), or the spool imported in bulk.

``PostgresSpool`` (the default, ``metering.ledger_spool``) is the SQLite design on
PostgreSQL: a batch is durable once appended to a spool file on the gateway's
disk (``store.ledger_spool``), and a task imports closed files into
``usage_events`` every 4,096 rows or 0.5 s, one statement per file. The request
path never waits for PostgreSQL: its CPU per row falls to what a large insert
costs, a batch costs no database round trip, and a database outage delays the
import instead of failing requests. The spool folder is per database
(``<data_dir>/ledger-spool-<hash of the URL>``), so a data directory pointed at
another database never imports rows into the wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import BigInteger, Boolean, Float, Integer
from sqlalchemy.engine import make_url

from openmaas.store.ledger_sink import COLUMNS, LedgerSink, Row
from openmaas.store.ledger_spool import SpoolSink, claim, drop_orphans, parse
from openmaas.store.schema import usage_events

log = logging.getLogger("openmaas.ledger")


def spool_folder(data_dir: Path, url: str) -> Path:
    """The spool folder of one PostgreSQL database (host, port, database; not the password)."""
    where = make_url(url).set(password=None, drivername="postgresql").render_as_string(hide_password=True)
    return data_dir / f"ledger-spool-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


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
        await self.write_json(orjson.dumps(rows, default=tuple).decode())

    async def write_json(self, rows: str) -> None:
        """The rows as one JSON array of row arrays, already encoded."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.dsn, timeout=10, server_settings=self.settings)
        try:
            await self._conn.execute(self.SQL, rows)
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


class PostgresSpool(SpoolSink):
    """Spool files imported into PostgreSQL, one file per statement, one import at a time."""

    def __init__(self, folder: Path, dsn: str, fsync: bool = False) -> None:
        super().__init__(folder, fsync)
        self.target = PostgresSink(dsn, fsync=True)  # a file is deleted only after a durable commit
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await self.target.close()

    async def _import(self, paths: list[Path] | None) -> None:
        async with self._lock:
            if paths is None:
                await asyncio.to_thread(drop_orphans, self.dir)
            for path in sorted(self.dir.glob("*.jsonl")) if paths is None else paths:
                await import_file(self.target, path)


async def import_file(target: PostgresSink, path: Path) -> None:
    """Import one spool file unless its writer still holds it; delete it after the commit.

    Its lines (each a JSON array of rows) are joined into one array without being parsed here;
    only if PostgreSQL refuses the JSON is the file parsed line by line (a corrupt line sets it
    aside, ``store.ledger_spool.parse``)."""
    claimed = await asyncio.to_thread(_claim_joined, path)  # off the event loop: files reach megabytes
    if claimed is None:
        return
    fd, data, joined = claimed
    try:
        imported = False
        if joined:
            with contextlib.suppress(asyncpg.DataError):  # not JSON to PostgreSQL: parse it here
                await target.write_json(joined)
                imported = True
        if joined is not None and not imported:
            rows = parse(data, path)
            if rows is None:
                return  # set aside as .corrupt
            await target.write_json(orjson.dumps(rows).decode())
        await asyncio.to_thread(path.unlink, missing_ok=True)
    finally:
        os.close(fd)


def _claim_joined(path: Path) -> tuple[int, bytes, str | None] | None:
    """``claim``, and the file's rows as one JSON array (None: it holds none; "": not UTF-8)."""
    claimed = claim(path)
    if claimed is None:
        return None
    fd, data = claimed
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends on a whole line
    if tail:
        log.warning("ledger spool %s ends in a torn line (%d bytes), ignored", path.name, len(tail))
    inner = [line[1:-1] for line in lines if len(line) > 2]
    if not inner:
        return fd, data, None
    try:
        return fd, data, (b"[" + b",".join(inner) + b"]").decode()
    except UnicodeDecodeError:
        return fd, data, ""  # unreadable: parsed line by line, and set aside


async def recover(folder: Path, dsn: str) -> None:
    """Import every spool file no live process holds (run before the database is used)."""
    if not await asyncio.to_thread(folder.is_dir):
        return
    spool = PostgresSpool(folder, dsn)
    try:
        await spool._import(None)
    finally:
        await spool.target.close()
