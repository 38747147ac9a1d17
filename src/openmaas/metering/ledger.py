"""The usage ledger: one row per admitted request, written by group commit.

Requests hand their event to ``record`` and wait; one writer task inserts
everything that queued up meanwhile in one transaction, then wakes them all.
Responses send their final byte only after that, so a response the client
received in full is on disk even if the process is killed right after. Rows
are keyed by a server-generated event id and inserted with ON CONFLICT DO
NOTHING: re-flushing a batch after a failure never counts anything twice.
After each commit the batch's budget settlements are applied in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from openmaas.errors import ServiceUnavailable
from openmaas.limits.counters import Settlement
from openmaas.store.db import Database
from openmaas.store.schema import usage_events

log = logging.getLogger("openmaas.ledger")


@dataclass
class UsageEvent:
    id: str
    request_id: str
    tenant_id: str | None
    key_id: str | None
    endpoint: str
    model: str
    deployment: str | None
    route_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_nanos: int
    usage_source: str
    latency_ms: float
    ttft_ms: float | None
    status: int
    error_code: str | None
    interrupted: bool
    created_at: float
    day: str


@dataclass
class _Pending:
    event: UsageEvent
    settlement: Settlement | None
    done: asyncio.Future[None] | None


class Ledger:
    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 1024,
        wait_timeout: float = 10.0,
        on_commit: Callable[[list[Settlement]], Awaitable[None]] | None = None,
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.wait_timeout = wait_timeout
        self.on_commit = on_commit
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.committed = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._writer(), name="openmaas-ledger")

    async def close(self) -> None:
        """Flush everything queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def record(self, event: UsageEvent, settlement: Settlement | None = None) -> None:
        """Queue the event and wait until it is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(event, settlement, done))
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(done), self.wait_timeout)
        except TimeoutError:
            # The row stays queued and will be written when the store is back.
            raise ServiceUnavailable("The usage ledger is unavailable; please retry shortly.") from None

    def submit(self, event: UsageEvent, settlement: Settlement | None = None) -> None:
        """Queue without waiting (for streams the client already abandoned)."""
        self._queue.append(_Pending(event, settlement, None))
        self._wake.set()

    async def _writer(self) -> None:
        delay = 0.05
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch = self._queue[: self.max_batch]
            try:
                await self._write([p.event for p in batch])
            except Exception as exc:
                log.warning("ledger write of %d events failed (%s); retrying", len(batch), type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            del self._queue[: len(batch)]
            self.committed += len(batch)
            for pending in batch:
                if pending.done is not None and not pending.done.done():
                    pending.done.set_result(None)
            settlements = [p.settlement for p in batch if p.settlement is not None]
            if settlements and self.on_commit is not None:
                try:
                    await self.on_commit(settlements)
                except Exception as exc:
                    log.warning("settling %d budget reservations failed: %s", len(settlements), exc)

    async def _write(self, events: list[UsageEvent]) -> None:
        rows: list[dict[str, Any]] = [asdict(e) for e in events]
        async with self.db.engine.begin() as conn:
            await conn.execute(self.db.insert_ignore(usage_events), rows)


async def close_quietly(ledger: Ledger) -> None:
    with contextlib.suppress(Exception):
        await ledger.close()
