"""SQLite's ledger spool: background import, recovery after a kill, torn and corrupt files, races with
other importers, a locked database, checkpoints."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from openmaas.store import ledger_spool
from openmaas.store.db import Database
from openmaas.store.ledger_sink import sink_for
from openmaas.store.ledger_spool import SpoolSink, SQLiteSpool, recover, spool_dir
from tests.store.test_ledger_sink import count, row

pytestmark = pytest.mark.anyio


async def migrated(tmp_path: Path) -> tuple[Database, Path]:
    path = tmp_path / "ledger.db"
    db = Database(f"sqlite:///{path}")
    await db.migrate()
    return db, path


async def test_sqlite_batches_are_spooled_then_imported_in_the_background(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    sink = sink_for(db)
    assert isinstance(sink, SpoolSink)
    await sink.start()
    try:
        await sink.write([row(i) for i in range(3)])
        assert sorted(spool_dir(str(path)).glob("*.jsonl")), "the batch is in a spool file"
        for _ in range(100):  # the periodic import (every IMPORT_SECONDS) picks it up without a sync
            if (await count(db))[0] == 3:
                break
            await asyncio.sleep(0.1)
        assert await count(db) == (3, 3, 2)
        assert not sorted(spool_dir(str(path)).glob("*.jsonl")), "imported files are deleted"
    finally:
        await sink.close()
        await db.close()


async def test_a_killed_writers_spool_is_imported_by_the_next_start_torn_tail_ignored(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    dead = SQLiteSpool(str(path))
    await dead.start()
    await dead.write([row(i) for i in range(5)])
    await dead.write([row(i) for i in range(5, 8)])
    assert dead._fd is not None
    os.write(dead._fd, b'[["evt_torn", "req_')  # the process died in the middle of an append
    os.close(dead._fd)  # ... and the kernel released its lock
    assert dead._timer is not None
    dead._timer.cancel()
    assert (await count(db))[0] == 0
    await db.migrate()  # what every gateway start and every openmaas command does first
    assert await count(db) == (8, sum(range(8)), 4)
    assert not sorted(spool_dir(str(path)).glob("*"))
    await db.migrate()  # nothing left to import; nothing counted twice
    assert (await count(db))[0] == 8
    await db.close()


async def test_an_importer_at_the_worst_moment_never_loses_a_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another importer (a replica, the CLI) sweeps the spool just after this process created a new
    file and just before it locked it. The file must not be visible yet: swept while empty and
    unlocked, it would be deleted, and the batch written next would go to a deleted file."""
    db, path = await migrated(tmp_path)
    sink = SQLiteSpool(str(path))
    real_flock = ledger_spool.fcntl.flock
    swept: list[int] = []

    class SweepFirst:
        LOCK_EX, LOCK_NB = fcntl.LOCK_EX, fcntl.LOCK_NB

        @staticmethod
        def flock(fd: int, operation: int) -> None:
            if operation == fcntl.LOCK_EX:  # the writer, about to lock its new file: sweep first
                swept.append(recover(str(path)))
            real_flock(fd, operation)

    monkeypatch.setattr(ledger_spool, "fcntl", SweepFirst)
    try:
        for i in range(3):
            await sink.write([row(i)])
            sink._import_soon()  # rotate: the next write creates (and races on) a new file
        await sink.sync()
    finally:
        await sink.close()
    assert len(swept) == 3
    assert await count(db) == (3, 3, 2)
    await db.close()


async def test_a_live_writers_file_is_left_alone_and_a_corrupt_file_is_kept(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    sink = SQLiteSpool(str(path))
    await sink.start()
    try:
        await sink.write([row(1)])
        corrupt = spool_dir(str(path)) / "other-00000001.jsonl"
        corrupt.write_bytes(b'[["evt_x"]]\nnot json\n')
        assert recover(str(path)) == 0  # the live file is locked by its writer; the corrupt one is set aside
        assert (await count(db))[0] == 0
        assert (spool_dir(str(path)) / "other-00000001.corrupt").exists()
        await sink.sync()
        assert (await count(db))[0] == 1
    finally:
        await sink.close()
        await db.close()


async def test_a_locked_database_delays_the_import_not_the_write(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    sink = sink_for(db)
    await sink.start()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer (the CLI, an admin call) holds the lock
    try:
        await asyncio.wait_for(sink.write([row(1)]), 5)  # the request's commit does not wait for SQLite
        syncing = asyncio.ensure_future(sink.sync())
        await asyncio.sleep(0.3)  # the event loop kept running meanwhile; the import waits for the lock
        assert not syncing.done()
        other.execute("COMMIT")
        await asyncio.wait_for(syncing, 10)
    finally:
        other.close()
        await sink.close()
    assert (await count(db))[0] == 1
    await db.close()


async def test_the_wal_is_checkpointed_into_the_database_file_off_the_event_loop(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    await db.close()
    sink = SQLiteSpool(str(path))
    await sink.start()
    try:
        await sink.write([row(i) for i in range(10)])
        await sink.sync()
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


async def test_with_fsync_a_batch_is_on_disk_before_write_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``metering.ledger_fsync``: each batch's data is flushed (and a new file's directory entry). Imports
    commit with synchronous=FULL either way, so an imported row is on disk before its spool file goes."""
    db, path = await migrated(tmp_path)
    flushed: list[str] = []  # what each fdatasync/fsync call flushed, in order

    def spy(real: Callable[[int], None]) -> Callable[[int], None]:
        def call(fd: int) -> None:
            flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
            real(fd)

        return call

    monkeypatch.setattr(os, "fdatasync", spy(os.fdatasync))
    monkeypatch.setattr(os, "fsync", spy(os.fsync))
    sink = SQLiteSpool(str(path), fsync=True)
    await sink.start()
    try:
        await sink.write([row(0)])
        await sink.write([row(1)])
        spool = spool_dir(str(path))
        (file,) = sorted(spool.glob("*.jsonl"))
        assert flushed == [str(file), str(spool), str(file)]  # the directory once per file
        await sink.sync()
        assert await count(db) == (2, 1, 1)
        assert sink._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        await sink.close()
    (tmp_path / "plain").mkdir()
    _, plain_path = await migrated(tmp_path / "plain")
    plain = SQLiteSpool(str(plain_path))
    await plain.start()
    try:
        flushed.clear()
        await plain.write([row(2)])
        assert flushed == []  # default: page cache only (safe from a killed process, not a power cut)
        await plain.sync()
        assert plain._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # imports: FULL
    finally:
        await plain.close()


async def test_a_writer_that_died_before_renaming_its_new_file_leaves_nothing_behind(tmp_path: Path) -> None:
    """A process killed between creating ``.<name>.new`` and renaming it leaves an empty hidden file;
    importers delete it once it is a minute old and unlocked, and never a live writer's."""
    db, path = await migrated(tmp_path)
    folder = spool_dir(str(path))
    folder.mkdir()
    stale, fresh, held = (folder / f".dead-{n}-00000001.jsonl.new" for n in ("stale", "fresh", "held"))
    for f in (stale, fresh, held):
        f.touch()
    os.utime(stale, (0, 0))
    os.utime(held, (0, 0))
    fd = os.open(held, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a writer still owns it
    try:
        recover(str(path))
        assert not stale.exists() and fresh.exists() and held.exists()
    finally:
        os.close(fd)
    await db.close()


async def test_a_spool_written_before_a_column_was_added_imports_with_that_column_null(tmp_path: Path) -> None:
    db, path = await migrated(tmp_path)
    folder = spool_dir(str(path))
    folder.mkdir(parents=True, exist_ok=True)
    old = [list(row(i))[:-1] for i in range(2)]  # as the version before ``cached_tokens`` wrote them
    (folder / "old.jsonl").write_bytes(orjson.dumps(old) + b"\n")
    assert recover(str(path)) == 2
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*), count(cached_tokens) FROM usage_events").fetchone() == (2, 0)
    await db.close()
