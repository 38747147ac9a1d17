"""Usage reports: totals by dimension, and inclusive UTC date ranges (on both stores)."""

from __future__ import annotations

import datetime as dt

import pytest

from openmaas.metering.ledger import UsageEvent
from openmaas.store import usage
from openmaas.store.db import Database
from openmaas.store.ledger_sink import sink_for

pytestmark = pytest.mark.anyio


def _at(day: str, hour: int, minute: int = 0) -> float:
    date = dt.date.fromisoformat(day)
    return dt.datetime(date.year, date.month, date.day, hour, minute, tzinfo=dt.UTC).timestamp()


def _event(i: int, created_at: float, key: str, cost: int) -> UsageEvent:
    day = dt.datetime.fromtimestamp(created_at, dt.UTC).date().isoformat()
    return UsageEvent(
        f"evt_u{i}", f"req_u{i}", "ten_1", key, "chat", "m", "m", "", 10, 5, cost, "upstream",
        1.0, None, 200, None, False, created_at, day,
    )  # fmt: skip


async def test_a_date_range_keeps_exactly_the_rows_of_those_utc_days(db: Database) -> None:
    events = [
        _event(1, _at("2026-11-20", 23, 59), "key_a", 1),  # the day before the range
        _event(2, _at("2026-11-21", 0, 0), "key_a", 10),  # the range's first instant
        _event(3, _at("2026-11-21", 12), "key_b", 100),
        _event(4, _at("2026-11-22", 23, 59), "key_a", 1_000),  # the range's last day, late
        _event(5, _at("2026-11-23", 0, 0), "key_a", 10_000),  # the day after
    ]
    sink = sink_for(db)
    await sink.write(events)
    await sink.close()

    by_day = await usage.report(db, group_by=["day"], start="2026-11-21", end="2026-11-22")
    assert [(r["day"], r["requests"], r["cost_usd"]) for r in by_day] == [
        ("2026-11-21", 2, 110 / 1e9),
        ("2026-11-22", 1, 1_000 / 1e9),
    ]
    one_key = await usage.report(db, group_by=["key"], start="2026-11-21", end="2026-11-22", key_id="key_a")
    assert [(r["key"], r["requests"]) for r in one_key] == [("key_a", 2)]
    since = await usage.report(db, group_by=[], start="2026-11-22")
    assert since[0]["requests"] == 2 and since[0]["cost_usd"] == 11_000 / 1e9
    until = await usage.report(db, group_by=[], end="2026-11-20")
    assert until[0]["requests"] == 1
