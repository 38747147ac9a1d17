from __future__ import annotations

import asyncio
import os
import time

import pytest
from sqlalchemy import func, select

from openmaas.errors import ServiceUnavailable
from openmaas.metering.ledger import Ledger, UsageEvent
from openmaas.store.db import Database
from openmaas.store.ledger_sink import COLUMNS, LedgerSink, Row, sink_for
from openmaas.store.ledger_spool import SpoolSink
from openmaas.store.schema import usage_events

pytestmark = pytest.mark.anyio


def event(i: int) -> UsageEvent:
    return UsageEvent(
        id=f"evt_{i}",
        request_id=f"req_{i}",
        tenant_id="ten_1",
        key_id="key_1",
        endpoint="chat",
        model="m",
        deployment="m",
        route_reason="",
        prompt_tokens=3,
        completion_tokens=4,
        cost_nanos=1000 + i,
        usage_source="upstream",
        latency_ms=1.0,
        ttft_ms=None,
        status=200,
        error_code=None,
        interrupted=False,
        created_at=time.time(),
        day="2026-11-22",
    )


class AckLostOnce(Ledger):
    """Commits the first batch, then reports a failure as if the acknowledgement was lost."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.writes = 0

    async def _write(self, events: list[UsageEvent]) -> None:
        self.writes += 1
        await super()._write(events)
        if self.writes == 1:
            raise ConnectionError("connection dropped after commit")


class CountingLedger(Ledger):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.batches: list[int] = []

    async def _write(self, events: list[UsageEvent]) -> None:
        self.batches.append(len(events))
        await super()._write(events)


async def rows(db: Database) -> tuple[int, int]:
    async with db.engine.connect() as conn:
        query = select(func.count(), func.coalesce(func.sum(usage_events.c.cost_nanos), 0))
        count, total = (await conn.execute(query)).one()
    return int(count), int(total)


async def test_a_reflushed_batch_is_counted_once(db: Database) -> None:
    ledger = AckLostOnce(db)
    await ledger.start()
    await asyncio.gather(*(ledger.record(event(i)) for i in range(5)))
    await ledger.close()
    assert ledger.writes >= 2  # the batch really was written twice
    assert await rows(db) == (5, sum(1000 + i for i in range(5)))


async def test_recording_the_same_request_twice_is_a_no_op(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.start()
    await ledger.record(event(1))
    await ledger.record(event(1))
    ledger.submit(event(1))
    await ledger.close()
    assert await rows(db) == (1, 1001)


async def test_concurrent_requests_share_group_commits(db: Database) -> None:
    ledger = CountingLedger(db)
    await ledger.start()
    await asyncio.gather(*(ledger.record(event(i)) for i in range(300)))
    await ledger.close()
    assert await rows(db) == (300, sum(1000 + i for i in range(300)))
    assert sum(ledger.batches) == 300
    assert len(ledger.batches) < 30, f"expected batched commits, got {len(ledger.batches)} transactions"


async def test_record_returns_only_after_the_row_is_durable(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.start()
    await ledger.record(event(7))
    if isinstance(ledger.sink, SpoolSink):  # the process dies this instant: its spool is never imported by it
        assert ledger.sink._fd is not None
        os.close(ledger.sink._fd)
        ledger.sink._fd, ledger.sink._rows = None, 0
    other = Database(db.url)  # a separate connection, after the start every gateway and command makes
    try:
        await other.migrate()
        assert await rows(other) == (1, 1007)
    finally:
        await other.close()
        await ledger.close()


async def test_close_flushes_events_that_nobody_waited_for(db: Database) -> None:
    ledger = Ledger(db)
    await ledger.start()
    for i in range(10):
        ledger.submit(event(i))
    await ledger.close()
    assert (await rows(db))[0] == 10


class DownUntilReleased(LedgerSink):
    """The real sink behind a switch: every write fails until ``release`` (a store outage)."""

    def __init__(self, inner: LedgerSink) -> None:
        self.inner = inner
        self.down = True
        self.attempts = 0

    async def write(self, rows: list[Row]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("store unreachable")
        await self.inner.write(rows)

    async def start(self) -> None:
        await self.inner.start()

    async def sync(self) -> None:
        await self.inner.sync()

    async def close(self) -> None:
        await self.inner.close()


async def test_an_outage_gives_503_after_the_wait_timeout_and_keeps_the_row(db: Database) -> None:
    sink = DownUntilReleased(sink_for(db))
    ledger = Ledger(db, wait_timeout=0.3, sink=sink)
    await ledger.start()
    with pytest.raises(ServiceUnavailable):
        await ledger.record(event(3))
    assert await rows(db) == (0, 0) and sink.attempts >= 2  # it kept retrying
    sink.down = False
    await ledger.close()  # flushes the queued row once the store is back
    assert await rows(db) == (1, 1003)


async def test_a_cancelled_waiter_does_not_drop_its_event(db: Database) -> None:
    sink = DownUntilReleased(sink_for(db))
    ledger = Ledger(db, sink=sink)
    await ledger.start()
    waiter = asyncio.ensure_future(ledger.record(event(4)))
    await asyncio.sleep(0.05)
    waiter.cancel()  # the client went away while its row was being committed
    sink.down = False
    await ledger.close()
    assert await rows(db) == (1, 1004)


def test_event_fields_are_the_ledger_columns_in_order() -> None:
    assert UsageEvent._fields == COLUMNS
    assert event(5)[COLUMNS.index("cost_nanos")] == 1005
