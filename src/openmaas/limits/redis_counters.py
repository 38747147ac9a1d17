"""Counters in Redis, shared by every gateway replica: limits and budgets hold globally.

One Lua script does everything (atomic on the server, clock from Redis
``TIME`` so replicas agree): it first applies the settlements queued since the
last call, then admits the requests that queued meanwhile — each one still
all-or-nothing, in arrival order. So a busy replica sends one command per
round-trip, not one per request, and settlements ride along with admissions
instead of costing a call of their own. Inside the script each counter is read
once and written once per call however many requests touch it (a hot key's
bucket is one HMGET and one HSET for the whole batch, not one per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as redis

from openmaas.errors import ServiceUnavailable
from openmaas.limits.counters import Admission, Bucket, Counters, Quota, Settlement
from openmaas.limits.leases import Leases
from openmaas.limits.redis_scripts import CALL, RELEASE_DEAD

log = logging.getLogger("openmaas.limits")

_Group = tuple[list[Settlement], "asyncio.Future[None] | None"]  # one ``settle`` call's settlements, and its waiter
_Request = tuple[list[tuple[Bucket, float]], list[tuple[Quota, int]], list[float] | None, "asyncio.Future[Admission]"]


def _parse(
    verdict: str, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]]
) -> tuple[Admission, list[int]]:
    """The admission, and the lease granted on each counter (buckets, then quotas) when admitted."""
    parts = verdict.split(" ")
    status = int(parts[0])
    if status == 1:
        nb = len(buckets)
        return Admission(True, [float(left) for left in parts[1 : 1 + nb]]), [int(g) for g in parts[1 + nb :]]
    index = int(parts[1]) - 1
    if status == -1:
        return Admission(False, unloaded=quotas[index - len(buckets)][0]), []
    name = buckets[index][0].name if index < len(buckets) else quotas[index - len(buckets)][0].name
    return Admission(False, failed=name, retry_after=float(parts[2])), []


class RedisCounters(Counters):
    def __init__(
        self,
        url: str,
        prefix: str = "openmaas:",
        max_batch: int = 256,
        leases: Leases | None = None,
        settle_delay: float = 0.02,
        heartbeat: float = 30.0,
        settle_timeout: float = 10.0,
    ) -> None:
        """``leases``: how this replica leases capacity of hot counters (``Leases(0)``: never).
        ``settle_delay``: how long settlements may wait for an admission call to ride along with.
        ``heartbeat``: a replica silent this long is dead, and the reservations it held are released."""
        self.client: redis.Redis = redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.max_batch = max_batch
        self._script = self.client.register_script(CALL)
        self.on_latency: Callable[[float], None] | None = None  # seconds of each script call (metrics)
        self._release_dead = self.client.register_script(RELEASE_DEAD)
        self.node = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        self._owned = f"{prefix}owned:{self.node}"
        self.heartbeat = heartbeat
        self.settle_timeout = settle_timeout
        self._keeper: asyncio.Task[None] | None = None
        self.leases = leases if leases is not None else Leases()
        self.settle_delay = settle_delay
        self._settling_since = 0.0
        self._alarm: asyncio.Handle | None = None  # wakes the caller at the next deadline
        self._alarm_at = 0.0
        self._waiting: list[_Request] = []
        self._settling: list[_Group] = []
        # settlements of a call that failed: maybe applied, maybe not — sent again, alone, under the
        # same call id (the script applies a call id's settlements once), until Redis answers
        self._in_doubt: tuple[str, list[_Group]] | None = None
        self._calls = itertools.count()
        self._retry_at = 0.0
        self._backoff = 0.05
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        await self.client.ping()
        await self._beat()
        self._closing = False
        self._task = asyncio.create_task(self._caller(), name="openmaas-redis-counters")
        self._keeper = asyncio.create_task(self._keep(), name="openmaas-redis-heartbeat")

    async def close(self) -> None:
        """Apply everything queued (the ledger's last settlements), release what is left, then stop."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._task is not None:
            self._closing = True
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)  # cancelled if Redis hangs
            self._task = None
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        with contextlib.suppress(Exception):  # a clean stop leaves nothing for the others to sweep
            await self._release_node(self.node)
            await self.client.delete(f"{self.prefix}node:{self.node}")
        await self.client.aclose()

    async def _beat(self) -> None:
        await self.client.set(f"{self.prefix}node:{self.node}", 1, ex=max(1, int(self.heartbeat)))
        await self.client.sadd(f"{self.prefix}nodes", self.node)

    async def _keep(self) -> None:
        """Renew this replica's heartbeat, and release the reservations of replicas that have none."""
        while True:
            await asyncio.sleep(self.heartbeat / 3)
            try:
                await self._beat()
                await self._sweep()
            except Exception as exc:  # Redis unreachable: the next beat tries again
                log.warning("redis counters: heartbeat failed (%s)", type(exc).__name__)

    async def _sweep(self) -> None:
        for member in await self.client.smembers(f"{self.prefix}nodes"):
            node = member if isinstance(member, str) else member.decode()
            if node != self.node and not await self.client.exists(f"{self.prefix}node:{node}"):
                released = await self._release_node(node)
                log.warning("released the reservations of stopped replica %s on %d counters", node, released)

    async def _release_node(self, node: str) -> int:
        owned = f"{self.prefix}owned:{node}"
        keys = await self.client.smembers(owned)
        for key in keys:
            await self._release_dead(keys=[key], args=[f"r:{node}"])
        await self.client.delete(owned)
        await self.client.srem(f"{self.prefix}nodes", node)
        return len(keys)

    async def admit(self, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]]) -> Admission:
        loop = asyncio.get_running_loop()
        asks: list[float] | None = None
        leases = self.leases
        if leases.enabled and self._task is not None:
            now = loop.time()
            admitted = leases.take(buckets, quotas, now)
            if admitted is not None:
                return admitted
            asks = [leases.ask(b.name, now) for b, _ in buckets] + [leases.ask(q.name, now) for q, _ in quotas]
            if not any(asks):
                asks = None
        future: asyncio.Future[Admission] = loop.create_future()
        self._waiting.append((buckets, quotas, asks, future))
        self._wake.set()
        return await future

    async def settle(self, settlements: list[Settlement]) -> None:
        """Queue for the next script call — the next admissions' own, or one within ``settle_delay``
        when none comes (leased keys rarely need one) — and return once applied. While Redis is
        unreachable they stay queued and are sent again; the wait here gives up after
        ``settle_timeout`` (the settlements themselves are kept)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._settling:
            self._settling_since = loop.time()
        self._settling.append((settlements, future))
        if self._task is None:  # not started, or closed: apply now
            await self._call([])
            if not future.done():
                raise ServiceUnavailable("Rate limits are unavailable; please retry.")
        else:
            self._wake.set()
        await asyncio.wait_for(asyncio.shield(future), self.settle_timeout)

    async def _caller(self) -> None:
        """Send a call when admissions wait, when settlements have waited ``settle_delay``, or when
        leases expire (their leftovers go back). Sleeps on one event; a timer sets it for deadlines.
        A bug here must not strand requests: it is logged, what waits fails, and the loop goes on."""
        while True:
            try:
                if not await self._step():
                    return
            except Exception:
                log.exception("redis counters: unexpected error; failing the waiting admissions")
                waiting, self._waiting = self._waiting, []
                for _, _, _, future in waiting:
                    if not future.done():
                        future.set_exception(ServiceUnavailable("Rate limits are unavailable; please retry."))
                await asyncio.sleep(0.1)

    async def _step(self) -> bool:
        loop = asyncio.get_running_loop()
        leases = self.leases
        now = loop.time()
        if leases.held:
            returned = leases.release_all() if self._closing else leases.expired(now)
            if returned:
                if not self._settling:
                    self._settling_since = now
                self._settling.append((returned, None))
        if self._in_doubt is not None:  # first the call that failed, after a pause
            settle_at: float | None = self._retry_at
        else:
            settle_at = self._settling_since + self.settle_delay if self._settling else None
        closing_now = self._closing and self._in_doubt is None  # a failed call still waits its pause
        if self._waiting or (settle_at is not None and (settle_at <= now or closing_now)):
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            await self._call(batch)
            return True
        if self._closing:
            return False
        deadlines = [t for t in (settle_at, leases.next_expiry()) if t is not None]
        if deadlines:
            deadline = min(deadlines)
            if self._alarm is None or self._alarm_at > deadline:  # none pending, or one too late
                if self._alarm is not None:
                    self._alarm.cancel()
                self._alarm, self._alarm_at = loop.call_at(deadline, self._ring), deadline
        self._wake.clear()
        await self._wake.wait()
        return True

    async def _call(self, batch: list[_Request]) -> None:
        """One script call: queued settlements (or, first, those of a call that failed), then
        ``batch``'s admissions. Never raises: a failure (Redis unreachable) fails these requests;
        the settlements are kept and sent again under the same call id."""
        if self._in_doubt is not None:
            call_id, groups = self._in_doubt
        else:
            call_id, groups = f"{self.node}:{next(self._calls)}", self._settling
            self._settling = []
        try:
            verdicts = await self._run(batch, [s for group, _ in groups for s in group], call_id)
        except Exception as exc:
            self._answered(batch)
            for _, _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if groups:
                self._in_doubt = (call_id, groups)
                self._retry_at = asyncio.get_running_loop().time() + self._backoff
                self._backoff = min(2.0, self._backoff * 2)
                log.warning(
                    "redis counters: a call failed (%s); its settlements will be sent again", type(exc).__name__
                )
            return
        self._in_doubt, self._backoff = None, 0.05
        for _, done in groups:
            if done is not None and not done.done():
                done.set_result(None)
        self._answered(batch)
        abandoned: list[Settlement] = []
        now = asyncio.get_running_loop().time()
        for (buckets, quotas, _, future), verdict in zip(batch, verdicts, strict=True):
            admission, grants = _parse(verdict, buckets, quotas)
            if any(grants):
                counters = [b for b, _ in buckets] + [q for q, _ in quotas]
                for i, (counter, grant) in enumerate(zip(counters, grants, strict=True)):
                    if grant:
                        base = admission.levels[i] - grant if i < len(buckets) else 0.0
                        self.leases.grant(counter, grant, base, now)
            if not future.done():
                future.set_result(admission)
            elif admission.ok:  # the caller was cancelled meanwhile: give back what it took
                refunds = [(b, float(cost)) for b, cost in buckets if b.kind == "tokens"]
                abandoned.append(Settlement(refunds, [(q, amount, 0) for q, amount in quotas]))
        if abandoned:  # applied by the next call
            if not self._settling:
                self._settling_since = now
            self._settling.append((abandoned, None))

    def _ring(self) -> None:
        """The alarm fired. (Whether it has is tracked here, not by comparing clocks: uvloop fires
        timers on a millisecond clock, a hair before the float deadline.)"""
        self._alarm = None
        self._wake.set()

    def _answered(self, batch: list[_Request]) -> None:
        for buckets, quotas, asks, _ in batch:
            if asks:
                names = [b.name for b, _ in buckets] + [q.name for q, _ in quotas]
                for name, asked in zip(names, asks, strict=True):
                    if asked:
                        self.leases.answered(name, asked)

    async def _run(self, batch: list[_Request], settlements: list[Settlement], call_id: str) -> list[str]:
        index: dict[str, int] = {}

        def slot(name: str) -> int:
            found = index.get(name)
            if found is None:
                found = index[name] = len(index) + 1
            return found

        refunds: dict[str, list[Any]] = {}  # name → [per_minute, amount]
        quotas: dict[str, list[int]] = {}  # name → [released, spent]
        for s in settlements:
            for bucket, amount in s.refunds:
                refunds.setdefault(bucket.name, [bucket.per_minute, 0.0])[1] += amount
            for quota, reserved, actual in s.quotas:
                totals = quotas.setdefault(quota.name, [0, 0])
                totals[0] += reserved
                totals[1] += actual
        settle: list[Any] = [len(refunds)]
        for name, (per_minute, amount) in refunds.items():
            settle += (slot(name), per_minute, amount)
        settle.append(len(quotas))
        for name, (released, spent) in quotas.items():
            settle += (slot(name), released, spent)
        requests: list[list[Any]] = []
        for buckets, owed, asks, _ in batch:
            spec: list[Any] = [len(buckets), len(owed)]
            i = 0
            for bucket, cost in buckets:
                spec += (slot(bucket.name), bucket.per_minute, cost, asks[i] if asks else 0)
                i += 1
            for quota, amount in owed:
                spec += (slot(quota.name), quota.limit, amount, asks[i] if asks else 0)
                i += 1
            requests.append(spec)
        keys = [self.prefix + name for name in index] + [f"{self.prefix}call:{call_id}", self._owned]
        call = (settle, requests, self.leases.share, self.node)
        started = time.perf_counter()
        result: list[str] = await self._script(keys=keys, args=[orjson.dumps(call)])
        if self.on_latency is not None:
            self.on_latency(time.perf_counter() - started)
        return result

    async def seed(self, quota: Quota, spent: int) -> None:
        key = self.prefix + quota.name
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "s", spent)
            if quota.ttl:
                pipe.expire(key, quota.ttl)
            await pipe.execute()

    async def quota_state(self, quota: Quota) -> tuple[int, int] | None:
        spent, reserved = await self.client.hmget(self.prefix + quota.name, ["s", "r"])
        return None if spent is None else (int(spent), int(reserved or 0))
