"""The ledger's PostgreSQL spool: batches on the gateway's disk, imported in bulk; outages and kills lose nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from openmaas.settings import Settings
from openmaas.store.db import Database
from openmaas.store.ledger_pg import PostgresSink, PostgresSpool, spool_folder
from openmaas.store.ledger_sink import sink_for
from tests.helpers import PG_URL, reset_postgres_and_redis
from tests.store.test_ledger_sink import count, row

pytestmark = pytest.mark.anyio


async def migrated(folder: Path) -> Database:
    await reset_postgres_and_redis()
    db = Database(PG_URL, spool=folder)
    await db.migrate()
    return db


async def test_batches_are_spooled_then_imported_into_postgres_in_the_background(tmp_path: Path) -> None:
    db = await migrated(tmp_path / "spool")
    sink = sink_for(db)
    assert isinstance(sink, PostgresSpool)
    await sink.start()
    try:
        await sink.write([row(i) for i in range(3)])
        await sink.write([row(i) for i in range(3, 5)])
        assert sorted((tmp_path / "spool").glob("*.jsonl")), "the batches are in a spool file"
        for _ in range(100):  # the periodic import picks them up without a sync
            if (await count(db))[0] == 5:
                break
            await asyncio.sleep(0.1)
        assert await count(db) == (5, 10, 3)
        assert not sorted((tmp_path / "spool").glob("*.jsonl")), "imported files are deleted"
        await sink.write([row(i) for i in range(5)])  # a re-flush: nothing counted twice
        await sink.sync()
        assert await count(db) == (5, 10, 3)
        # the import's commit is durable (its file is deleted after it), whatever ledger_fsync says
        assert await sink.target._conn.fetchval("SHOW synchronous_commit") == "on"
    finally:
        await sink.close()
        await db.close()


async def test_a_database_outage_delays_the_import_and_fails_no_request(tmp_path: Path) -> None:
    db = await migrated(tmp_path / "spool")
    (tmp_path / "spool").mkdir()
    down = PostgresSpool(tmp_path / "spool", "postgresql://openmaas:openmaas@127.0.0.1:9/openmaas_test")
    for i in range(4):
        await down.write([row(i)])  # durable in the spool although the database is unreachable
    with pytest.raises(OSError):
        await down.sync()  # readers that must see every row are told
    assert down._fd is None  # the file was closed for the import that failed, and stays in the spool
    assert await count(db) == (0, 0, 0)
    await db.migrate()  # the next start, or any openmaas command, imports what it left
    assert await count(db) == (4, 6, 2)
    assert not sorted((tmp_path / "spool").glob("*.jsonl"))
    await db.close()


def spool_line(ids: list[int]) -> bytes:
    return orjson.dumps([row(i) for i in ids]) + b"\n"


async def test_a_killed_writers_torn_and_corrupt_files(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    db = await migrated(folder)
    folder.mkdir()
    (folder / "dead-1.jsonl").write_bytes(spool_line([0, 1]) + b'[["evt_x", "req_x"')  # torn by a power cut
    (folder / "dead-2.jsonl").write_bytes(b"not json\n" + spool_line([2]))
    (folder / "dead-3.jsonl").write_bytes(spool_line([3]) + b"[[\xff\xfe]]\n")  # not even UTF-8
    await db.migrate()
    assert await count(db) == (2, 1, 1)  # rows 0 and 1; the torn line ignored
    assert not (folder / "dead-1.jsonl").exists()
    assert (folder / "dead-2.corrupt").exists(), "a corrupt file is set aside, not deleted"
    assert (folder / "dead-3.corrupt").exists()
    await db.close()


def test_each_database_has_its_own_spool_folder_named_without_its_password(tmp_path: Path) -> None:
    a = spool_folder(tmp_path, "postgresql://u:secret@db1:5432/ledger")
    assert a == spool_folder(tmp_path, "postgresql+asyncpg://u:other@db1:5432/ledger")
    assert a != spool_folder(tmp_path, "postgresql://u:secret@db2:5432/ledger")
    assert "secret" not in str(a) and a.parent == tmp_path


def test_settings_choose_the_spool_or_a_commit_per_batch(tmp_path: Path) -> None:
    on = Settings.model_validate({"data_dir": str(tmp_path), "store": {"url": PG_URL}}).database()
    off = Settings.model_validate(
        {"data_dir": str(tmp_path), "store": {"url": PG_URL}, "metering": {"ledger_spool": False}}
    ).database()
    try:
        assert on.spool == spool_folder(tmp_path, PG_URL) and isinstance(sink_for(on), PostgresSpool)
        assert off.spool is None and isinstance(sink_for(off), PostgresSink)
    finally:
        asyncio.run(on.close())
        asyncio.run(off.close())
