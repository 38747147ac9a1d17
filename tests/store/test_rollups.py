"""Ledger rollups: the trigger keeps them equal to the ledger, on both stores, whatever writes the rows."""

from __future__ import annotations

import datetime as dt
import importlib
import random
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from openmaas.metering.ledger import UsageEvent
from openmaas.store import insights, rollups
from openmaas.store.db import Database
from openmaas.store.ledger_sink import sink_for
from openmaas.store.schema import usage_events

pytestmark = pytest.mark.anyio
BASE = dt.datetime(2026, 11, 30, 22, 0, tzinfo=dt.UTC).timestamp()  # spans a day and a month boundary


def events(n: int, seed: int = 7) -> list[UsageEvent]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        at = BASE + rng.uniform(0, 5 * 3600)
        status = rng.choice([200] * 8 + [429, 502])
        ttft = rng.choice([None, rng.uniform(1, 5000)])
        out.append(
            UsageEvent(
                f"evt_r{seed}_{i}",
                f"req_r{i}",
                rng.choice([None, "ten_a", "ten_b"]),
                rng.choice([None, "key_1", "key_2"]),
                "chat",
                rng.choice(["m1", "m2"]),
                rng.choice([None, "d1", "d2"]),
                "",
                rng.randint(0, 900),
                rng.randint(0, 300),
                rng.randint(0, 10**6),
                "upstream",
                rng.uniform(0.5, 200_000),
                ttft,
                status,
                None,
                rng.random() < 0.1,
                at,
                dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat(),
                rng.random() < 0.2,
                None,
                rng.choice([None, 0, 64]),
            )
        )
    return out


def _bucket(ms: float | None) -> int | None:
    if ms is None:
        return None
    return next((i for i, bound in enumerate(rollups.LATENCY_BOUNDS_MS) if ms < bound), len(rollups.LATENCY_BOUNDS_MS))


def expected(rows: list[UsageEvent], seconds: int) -> dict[tuple[Any, ...], dict[str, float]]:
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for e in rows:
        key = (int(e.created_at // seconds) * seconds, e.tenant_id or "", e.key_id or "", e.model, e.deployment or "")
        acc = out.setdefault(key, {name: 0 for name in rollups.SUMS})
        acc["requests"] += 1
        acc["errors"] += e.status >= 400
        acc["interrupted"] += e.interrupted
        acc["degraded"] += e.degraded
        acc["prompt_tokens"] += e.prompt_tokens
        acc["completion_tokens"] += e.completion_tokens
        acc["cached_tokens"] += e.cached_tokens or 0
        acc["cost_nanos"] += e.cost_nanos
        acc["latency_ms_sum"] += e.latency_ms
        acc["ttft_count"] += e.ttft_ms is not None
        acc["ttft_ms_sum"] += e.ttft_ms or 0
        acc[f"lat_{_bucket(e.latency_ms)}"] += 1
        if e.ttft_ms is not None:
            acc[f"ttft_{_bucket(e.ttft_ms)}"] += 1
    return out


async def stored(db: Database, grain: str) -> dict[tuple[Any, ...], dict[str, float]]:
    table = rollups.TABLES[grain]
    async with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in await conn.execute(select(table))]
    return {tuple(r[k] for k in rollups.KEYS): {name: r[name] for name in rollups.SUMS} for r in rows}


def close(a: dict[tuple[Any, ...], dict[str, float]], b: dict[tuple[Any, ...], dict[str, float]]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for name in rollups.SUMS:
            assert a[key][name] == pytest.approx(b[key][name], rel=1e-9, abs=1e-6), (key, name)


async def test_rollups_equal_the_ledger_and_a_rewritten_batch_adds_nothing(db: Database) -> None:
    rows = events(600)
    sink = sink_for(db)
    await sink.write(rows[:400])
    await sink.write(rows[200:])  # half of it again: a re-imported batch
    await sink.write(rows[:50])
    await sink.close()
    async with db.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(usage_events))).scalar_one() == 600
    close(await stored(db, "hour"), expected(rows, 3600))
    close(await stored(db, "day"), expected(rows, 86400))


async def test_the_overview_and_the_usage_report_agree_with_the_ledger(db: Database) -> None:
    rows = events(300, seed=3)
    sink = sink_for(db)
    await sink.write(rows)
    await sink.close()
    view = await insights.overview(db, BASE - 3600, BASE + 6 * 3600, insights.Filters(tenant_id="ten_a"))
    mine = [e for e in rows if e.tenant_id == "ten_a"]
    assert view["grain"] == "hour" and len(view["series"]) == 7  # every hour of the range, empty ones too
    assert view["totals"]["requests"] == len(mine)
    assert view["totals"]["cost_usd"] == pytest.approx(sum(e.cost_nanos for e in mine) / 1e9)
    assert view["totals"]["errors"] == sum(e.status >= 400 for e in mine)
    by_model = {r["value"]: r["requests"] for r in view["by"]["model"]}
    assert by_model == {m: sum(e.model == m for e in mine) for m in {e.model for e in mine}}
    # the p95 lies in the bucket of the exact p95
    latencies = sorted(e.latency_ms for e in mine)
    exact = latencies[int(0.95 * len(latencies)) - 1]
    b = _bucket(exact) or 0
    low = rollups.LATENCY_BOUNDS_MS[b - 1] if b else 0
    high = rollups.LATENCY_BOUNDS_MS[b] if b < len(rollups.LATENCY_BOUNDS_MS) else low * 2
    assert low <= view["totals"]["latency_ms"]["p95"] <= high
    report = await usage_report(db)
    assert sum(r["requests"] for r in report) == len(rows)


async def usage_report(db: Database) -> list[dict[str, Any]]:
    from openmaas.store import usage

    return await usage.report(db, group_by=["tenant", "day"])


async def test_keyset_pages_cover_every_row_once_in_order(db: Database) -> None:
    rows = events(230, seed=5)
    rows += [r._replace(id=f"{r.id}_twin", created_at=rows[0].created_at) for r in rows[:30]]  # equal times
    sink = sink_for(db)
    await sink.write(rows)
    await sink.close()
    seen: list[str] = []
    cursor = None
    while True:
        page = await insights.requests_page(db, insights.Filters(), cursor=cursor, limit=37)
        seen += [r["id"] for r in page["data"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(rows)
    order = {e.id: (e.created_at, e.id) for e in rows}
    assert [order[i] for i in seen] == sorted(order.values(), reverse=True)
    errors = await insights.requests_page(db, insights.Filters(model="m1"), status="error", limit=200)
    assert {r["id"] for r in errors["data"]} == {e.id for e in rows if e.model == "m1" and e.status >= 400}


def test_the_migration_keeps_the_same_bucket_bounds() -> None:
    migration = importlib.import_module("openmaas.store.migrations.versions.0010_console")
    assert tuple(migration.BOUNDS) == rollups.LATENCY_BOUNDS_MS
    assert migration.SUMS == rollups.SUMS and migration.KEYS == rollups.KEYS


def test_percentiles_interpolate_inside_their_bucket() -> None:
    counts = [0] * rollups.BUCKETS
    counts[3] = 100  # 50–100 ms
    assert rollups.percentile(counts, 0.5) == pytest.approx(75)
    assert rollups.percentile([0] * rollups.BUCKETS, 0.5) is None
    counts[-1] = 100  # beyond the last bound
    assert rollups.percentile(counts, 0.99) >= rollups.LATENCY_BOUNDS_MS[-1]


async def test_the_migration_backfills_the_rollups_of_an_existing_ledger(store: dict[str, Any]) -> None:
    from alembic import command
    from sqlalchemy import insert

    from openmaas.store.db import alembic_config

    db = Database(store["url"], spool=None)
    try:

        def upgrade(connection: Any, target: str) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, target)

        async with db.engine.begin() as conn:
            await conn.run_sync(upgrade, "0009")
        rows = events(200, seed=11)
        async with db.engine.begin() as conn:
            await conn.execute(insert(usage_events), [r._asdict() for r in rows])
        async with db.engine.begin() as conn:
            await conn.run_sync(upgrade, "head")
        close(await stored(db, "hour"), expected(rows, 3600))
        close(await stored(db, "day"), expected(rows, 86400))
    finally:
        await db.close()


async def test_an_import_of_new_rows_sums_them_in_python_and_a_partly_known_file_by_sql(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool importer's two ways of keeping the rollups (store.ledger_spool.import_file): every row new —
    summed in Python (``rollups.sqlite_add``); some already imported — summed by SQL over the ones that were
    not. Both give what the ledger holds."""
    import sqlite3

    from openmaas.store.ledger_spool import import_file

    db = Database(f"sqlite:///{tmp_path / 'r.db'}", spool=None)
    await db.migrate()
    await db.close()
    conn = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    rows = events(700, seed=5)
    used: list[str] = []
    original = rollups.sqlite_add

    def spy(c: sqlite3.Connection, batch: Any) -> None:
        used.append("python")
        original(c, batch)

    def spool(name: str, batch: list[UsageEvent]) -> None:
        (tmp_path / name).write_bytes(b"".join(orjson.dumps([list(r)]) + b"\n" for r in batch))
        assert import_file(conn, tmp_path / name) == len(batch)

    monkeypatch.setattr(rollups, "sqlite_add", spy)
    try:
        spool("a.jsonl", rows[:400])  # all new
        assert used == ["python"]
        spool("b.jsonl", rows[300:])  # 100 already there: SQL sums the 300 new ones
        assert used == ["python"]
        spool("c.jsonl", rows[:10])  # nothing new
    finally:
        conn.close()
    db = Database(f"sqlite:///{tmp_path / 'r.db'}", spool=None)
    try:
        close(await stored(db, "hour"), expected(rows, 3600))
        close(await stored(db, "day"), expected(rows, 86400))
    finally:
        await db.close()


@pytest.mark.parametrize("one_group", [False, True])
def test_python_sums_equal_the_grouped_sql_on_the_same_rows(one_group: bool) -> None:
    """``rollups.grouped`` against SQLite running ``grouped_sql`` over the same rows (bucket edges included): rows
    of many groups (some of one row), and a batch whose rows all share one group (summed without splitting)."""
    import sqlite3

    rows = events(500, seed=9)
    edges = [r._replace(latency_ms=b, ttft_ms=b) for r, b in zip(rows, rollups.LATENCY_BOUNDS_MS, strict=False)]
    rows = rows + [r._replace(id=r.id + "_edge") for r in edges]
    if one_group:
        rows = [
            r._replace(tenant_id="ten_a", key_id=None, model="m1", deployment="d1", created_at=BASE + 60) for r in rows
        ]
    conn = sqlite3.connect(":memory:")
    columns = list(usage_events.c.keys())
    conn.execute(f"CREATE TABLE usage_events ({', '.join(columns)})")
    conn.executemany(f"INSERT INTO usage_events VALUES ({', '.join('?' * len(columns))})", rows)
    for grain, seconds in rollups.GRAINS.items():
        sql = rollups.grouped_sql(rollups.TABLES[grain].name, "usage_events", postgres=False)
        select_part = sql[sql.index("SELECT") : sql.index(" ON CONFLICT")]
        by_sql = {tuple(r[:5]): dict(zip(rollups.SUMS, r[5:], strict=True)) for r in conn.execute(select_part)}
        by_python = {k: dict(zip(rollups.SUMS, v, strict=True)) for k, v in rollups.grouped(rows, seconds).items()}
        close(by_python, by_sql)
