"""The usage ledger: one row per admitted request, written by group commit.

Requests hand their event to ``record`` and wait; one writer task inserts
everything that queued up meanwhile in one statement (``store.ledger_sink``),
then wakes them all.
Responses send their final byte only after that, so a response the client
received in full is on disk even if the process is killed right after. Rows
are keyed by a server-generated event id and inserted with ON CONFLICT DO
NOTHING: re-flushing a batch after a failure never counts anything twice.
After each commit the batch's budget settlements are applied in one go, off
the writer's path. A request waits at most ``wait_timeout`` for its commit
(then 503, its row stays queued); a watchdog enforces that, so the per-request
cost is one future, not a timer task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from openmaas.errors import ServiceUnavailable
from openmaas.limits.counters import Settlement
from openmaas.store.db import Database
from openmaas.store.ledger_sink import LedgerSink, sink_for

log = logging.getLogger("openmaas.ledger")


class UsageEvent(NamedTuple):
    """One ledger row; the tuple is the row itself, in ``usage_events`` column order (tested)."""

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
    degraded: bool = False
    route: str | None = None
    cached_tokens: int | None = 0


@dataclass(slots=True)
class _Pending:
    event: UsageEvent
    settlement: Settlement | None
    done: asyncio.Future[None] | None
    queued_at: float


class Ledger:
    GATHER_PASSES = 4

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 1024,
        wait_timeout: float = 10.0,
        on_commit: Callable[[list[Settlement]], Awaitable[None]] | None = None,
        sink: LedgerSink | None = None,
        settle_inline: bool = False,
        fsync: bool = False,
    ) -> None:
        """``settle_inline``: ``on_commit`` never waits on I/O (in-process counters), so the writer
        applies it directly instead of in a task of its own."""
        self.db = db
        self.sink = sink or sink_for(db, fsync)
        self.max_batch = max_batch
        self.wait_timeout = wait_timeout
        self.on_commit = on_commit
        self.settle_inline = settle_inline
        self.on_latency: Callable[[float], None] | None = None  # seconds of each batch write (metrics)
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()
        self._closing = False
        self.committed = 0
        self.commits = 0

    async def start(self) -> None:
        self._closing = False
        await self.sink.start()
        self._task = asyncio.create_task(self._writer(), name="openmaas-ledger")
        self._watchdog = asyncio.create_task(self._watch(), name="openmaas-ledger-watchdog")

    async def close(self) -> None:
        """Flush everything queued, apply its settlements, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self.settled()
        await self.sink.close()
        if self.commits:
            log.info("ledger: %d events committed in %d batches", self.committed, self.commits)

    async def sync(self) -> None:
        """Return once everything recorded so far is committed and visible in ``usage_events``
        (reports, audit trails and budget seeding read it)."""
        target = self.committed + len(self._queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout
        while self.committed < target and self._task is not None and not self._task.done():
            if loop.time() > deadline:
                raise ServiceUnavailable("The usage ledger is unavailable; please retry shortly.")
            await asyncio.sleep(0.005)
        await self.sink.sync()

    async def settled(self) -> None:
        """Wait until the settlements of every committed batch have been applied."""
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def record(self, event: UsageEvent, settlement: Settlement | None = None) -> None:
        """Queue the event and wait until it is committed.

        Cancelling the caller does not drop the event: it stays queued and is written.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Pending(event, settlement, done, loop.time()))
        self._wake.set()
        await done

    def submit(self, event: UsageEvent, settlement: Settlement | None = None) -> None:
        """Queue without waiting (for streams the client already abandoned)."""
        self._queue.append(_Pending(event, settlement, None, 0.0))
        self._wake.set()

    async def _watch(self) -> None:
        """Fail waiters whose commit is overdue (the store is down); their rows stay queued."""
        loop = asyncio.get_running_loop()
        tick = min(1.0, self.wait_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            overdue = loop.time() - self.wait_timeout
            for pending in self._queue:
                if pending.queued_at > overdue:
                    break  # the queue is in arrival order
                done = pending.done
                if done is not None and not done.done():
                    done.set_exception(ServiceUnavailable("The usage ledger is unavailable; please retry shortly."))
                    done.exception()  # retrieved here, so an abandoned waiter logs nothing
                pending.done = None

    async def _writer(self) -> None:
        delay = 0.05
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            await self._gather()
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
            for pending in batch:  # first, so that nothing below can strand a waiter
                done = pending.done
                if done is not None and not done.done():
                    done.set_result(None)
            self.committed += len(batch)
            self.commits += 1
            settlements = [p.settlement for p in batch if p.settlement is not None]
            if settlements and self.on_commit is not None:
                if self.settle_inline:
                    await self._settle(self.on_commit, settlements)
                    continue
                task = asyncio.create_task(self._settle(self.on_commit, settlements))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)

    async def _gather(self) -> None:
        """Let handlers that are about to finish join this commit: yield to the loop while
        each pass brings more events (a few passes at most; no timer, so an idle server
        commits at once). Fewer, larger commits cost far less per row."""
        queued = len(self._queue)
        for _ in range(self.GATHER_PASSES):
            await asyncio.sleep(0)
            if len(self._queue) == queued or len(self._queue) >= self.max_batch:
                return
            queued = len(self._queue)

    @staticmethod
    async def _settle(apply: Callable[[list[Settlement]], Awaitable[None]], settlements: list[Settlement]) -> None:
        try:
            await apply(settlements)
        except Exception as exc:
            log.warning("settling %d budget reservations failed: %s", len(settlements), type(exc).__name__)

    async def _write(self, events: list[UsageEvent]) -> None:
        started = time.perf_counter()
        await self.sink.write(events)  # a UsageEvent is its row
        if self.on_latency is not None:
            self.on_latency(time.perf_counter() - started)


async def close_quietly(ledger: Ledger) -> None:
    with contextlib.suppress(Exception):
        await ledger.close()
