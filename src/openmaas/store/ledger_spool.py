"""The ledger's spool: a batch is durable once appended to a file; a background import moves it into the database.

``SpoolSink`` keeps the files; ``SQLiteSpool`` (here) imports them in a thread,
``store.ledger_pg.PostgresSpool`` over asyncpg. A group commit into SQLite
costs a transaction (locks, a WAL frame per dirty page of the table and its indexes) for the ~16 rows one loop pass
gathers; measured, that was a quarter of a metered request's CPU. Here a batch
is one ``write()`` of one JSON line to a spool file: once it returns, the
bytes are in the kernel's page cache, so a response sent after it survives the
process being killed (the same durability as SQLite's WAL at
``synchronous=NORMAL``, which does not fsync either). The spool is then imported
into ``usage_events`` in large transactions (every ``IMPORT_ROWS`` rows or
``IMPORT_SECONDS``), with ON CONFLICT DO NOTHING on the event id, and deletes
the file only after the commit: a crash between the two re-imports rows that
are skipped. Reads that must see every row (reports, audit, budget seeding)
call ``sync``; every gateway start and every ``openmaas`` command imports what
a killed process left (``recover``).

Imports always commit durably (``synchronous=FULL``; on PostgreSQL
``synchronous_commit = on``) before deleting their file: one disk flush per
import, so a power loss can only take rows not yet imported (≤ ``IMPORT_SECONDS``),
from the page cache. With ``fsync`` (``metering.ledger_fsync``) a batch is
durable only once the file's data (and, for a new file, its directory entry) is
on disk: it then survives a power loss too, at the price of a disk flush per batch.

Files: ``<database>-ledger/<node>-<seq>.jsonl`` (SQLite; PostgreSQL: a folder in the
data directory, ``store.ledger_pg.spool_folder``), each held under an exclusive
``flock`` by the process appending to it, so an importer takes only files
whose writer closed them or died. A torn last line (power loss mid-append) is
ignored; any other unreadable line keeps the file aside as ``.corrupt``
(logged), never deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from openmaas.store import rollups
from openmaas.store.ledger_sink import COLUMNS, LedgerSink, Row

log = logging.getLogger("openmaas.ledger")

SQL = (
    f"INSERT INTO usage_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    " ON CONFLICT (id) DO NOTHING"
)


def spool_dir(db_path: str) -> Path:
    return Path(f"{db_path}-ledger")


class SpoolSink(LedgerSink):
    """The spool files: append, rotate, lock, hand closed files to ``_import`` (per store)."""

    IMPORT_ROWS = 4096
    IMPORT_SECONDS = 0.5

    def __init__(self, folder: Path, fsync: bool = False) -> None:
        self.fsync = fsync
        self._synced_seq = 0  # the last file whose directory entry is on disk
        self.dir = folder
        self.node = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._seq = 0
        self._fd: int | None = None
        self._offset = 0
        self._rows = 0  # rows in the open file
        self._pending: set[asyncio.Future[None]] = set()
        self._timer: asyncio.Task[None] | None = None

    @abstractmethod
    async def _import(self, paths: list[Path] | None) -> None:
        """Import these closed spool files (None: every file in the folder), each unless its writer
        still holds it; delete each after its commit. One import at a time per sink."""

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        await self._import(None)  # what a killed process left
        self._timer = asyncio.create_task(self._tick(), name="openmaas-ledger-import")

    async def write(self, rows: Sequence[Row]) -> None:
        fd = self._fd if self._fd is not None else self._open()
        data = orjson.dumps(rows, default=tuple) + b"\n"
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to the ledger spool ({written} of {len(data)} bytes)")
        except BaseException:
            # Leave the file ending on a whole line, so the retry appends after a complete batch.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._offset)
            raise
        self._offset += written
        self._rows += len(rows)
        if self.fsync:
            new = self._synced_seq != self._seq
            # A duplicate descriptor: ``sync`` may close ``fd`` (rotating the file) meanwhile.
            await asyncio.get_running_loop().run_in_executor(None, flush, os.dup(fd), self.dir if new else None)
            self._synced_seq = self._seq
        if self._rows >= self.IMPORT_ROWS:
            self._import_soon()

    async def sync(self) -> None:
        """Return once every row written so far is in ``usage_events``."""
        if self._rows:
            self._import_soon()
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._import(None)  # files of other processes that were closed meanwhile

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.sync()

    # -- the event loop's side: append, rotate, hand closed files to the thread

    def _open(self) -> int:
        """A new spool file, locked before importers can see it: it is created under a name they
        do not look at, locked, then renamed (the lock belongs to the open file, not the name).
        Created under its final name, an importer could lock and delete it, still empty, between
        the creation and our lock, and the batches written next would go to a deleted file. (A
        process killed between creating and renaming leaves an empty ``.*.new``: harmless, kept.)"""
        self._seq += 1
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{self.node}-{self._seq:08d}.jsonl"
        hidden = self.dir / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # ours alone until closed: importers skip it
            os.rename(hidden, self.dir / name)
        except BaseException:
            os.close(fd)  # the batch fails and is retried, on a new file
            raise
        self._fd, self._offset, self._rows = fd, 0, 0
        return fd

    def _import_soon(self) -> None:
        """Close the current file (the next write opens another) and import it in the thread."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        path = self.dir / f"{self.node}-{self._seq:08d}.jsonl"
        os.close(fd)  # releases the lock
        self._rows = 0
        future = asyncio.ensure_future(self._import([path]))
        self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: asyncio.Future[None]) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            # The file stays in the spool: the next sync, tick or start imports it.
            log.warning("ledger import failed (%s); retrying later", type(future.exception()).__name__)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.IMPORT_SECONDS)
            if self._rows:
                self._import_soon()
            elif not self._pending and any(self.dir.glob("*.jsonl")):
                with contextlib.suppress(Exception):
                    await self._import(None)  # a failed import, or another process's files


class SQLiteSpool(SpoolSink):
    """Imports into SQLite in a thread of its own, with its own connection."""

    BUSY_TIMEOUT_MS = 10_000

    def __init__(self, db_path: str, fsync: bool = False, folder: Path | None = None) -> None:
        super().__init__(folder or spool_dir(db_path), fsync)
        self.db_path = db_path
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used by the thread only

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            thread, self._thread = self._thread, None
            if thread is not None:
                thread.shutdown(wait=True)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _import(self, paths: list[Path] | None) -> None:
        await self._run(self._import_files, paths)

    async def _run(self, work: Callable[..., None], *args: Any) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openmaas-ledger")
        await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    # -- the thread's side

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            # FULL: imported rows are on disk before their file is deleted (one fsync per import)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", f"busy_timeout={self.BUSY_TIMEOUT_MS}"):
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn
        return self._conn

    def _import_files(self, paths: list[Path] | None) -> None:
        imported = 0
        if paths is None:
            drop_orphans(self.dir)
        for path in sorted(self.dir.glob("*.jsonl")) if paths is None else paths:
            imported += import_file(self._connection(), path)
        if imported:
            with contextlib.suppress(sqlite3.Error):  # copy the WAL back while we are off the loop anyway
                self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")


def flush(fd: int, folder: Path | None) -> None:
    """Put a spool file's data on disk, and its directory entry when ``folder`` is given; closes ``fd``."""
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if folder is not None:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def drop_orphans(folder: Path, older_than: float = 60.0) -> None:
    """Delete the hidden ``.*.new`` files of writers that died between creating a spool file and
    renaming it (nothing is written before the rename, so they are empty): those no one holds and
    older than a minute, so that a writer between its create and its lock is never raced."""
    cutoff = time.time() - older_than
    for path in folder.glob(".*.jsonl.new"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime > cutoff:
                continue
            claimed = claim(path)
            if claimed is not None:
                try:
                    path.unlink()
                finally:
                    os.close(claimed[0])


def claim(path: Path) -> tuple[int, bytes] | None:
    """Open, lock and read a spool file — None if it is gone (imported by another process) or its
    writer still holds it. The caller closes the descriptor, releasing the lock, after deleting it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with os.fdopen(os.dup(fd), "rb") as file:
            return fd, file.read()
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise


def import_file(conn: sqlite3.Connection, path: Path) -> int:
    """Import one spool file into SQLite unless its writer still holds it; delete it after the commit."""
    claimed = claim(path)
    if claimed is None:
        return 0
    fd, data = claimed
    try:
        rows = parse(data, path)
        if rows is None:
            return 0
        if rows:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.execute(rollups.SQLITE_LAST_ROWID).fetchone()[0]
                changes = conn.total_changes
                conn.executemany(SQL, rows)
                added = conn.total_changes - changes
                # the console's rollups, in the same transaction: summed here when every row was new (the usual
                # case), else by SQL over the rows that were (a file imported again after a crash)
                if added == len(rows):
                    rollups.sqlite_add(conn, rows)
                elif added:
                    for statement in rollups.SQLITE_AFTER:
                        conn.execute(statement, {"before": before})
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return len(rows)
    finally:
        os.close(fd)


def parse(data: bytes, path: Path) -> list[list[object]] | None:
    """The rows of a spool file, or None (file set aside as ``.corrupt``) if a line other than a
    torn last one is unreadable."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends on a whole line
    if tail:
        log.warning("ledger spool %s ends in a torn line (%d bytes), ignored", path.name, len(tail))
    rows: list[list[object]] = []
    for number, line in enumerate(lines, 1):
        try:
            rows.extend(orjson.loads(line))
        except (orjson.JSONDecodeError, TypeError):
            corrupt = path.with_suffix(".corrupt")
            path.rename(corrupt)
            log.error("ledger spool %s: line %d unreadable; file kept as %s", path.name, number, corrupt.name)
            return None
    width = len(COLUMNS)  # a spool written by an older version lacks the columns added since: null
    if not rows or min(map(len, rows)) >= width:  # the usual case, checked without a Python step per row
        return rows
    return [row + [None] * (width - len(row)) if len(row) < width else row for row in rows]


def recover(db_path: str, folder: Path | None = None) -> int:
    """Import every spool file no live process holds (run before a database is used)."""
    folder = folder or spool_dir(db_path)
    if not folder.is_dir():
        return 0
    drop_orphans(folder)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={SQLiteSpool.BUSY_TIMEOUT_MS}")
        return sum(import_file(conn, path) for path in sorted(folder.glob("*.jsonl")))
    finally:
        conn.close()
