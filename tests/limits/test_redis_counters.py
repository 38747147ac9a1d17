"""Redis counters in particular: one script call per batch, a clean close, replicas that die holding reservations."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import pytest

from openmaas.limits.counters import Bucket, Settlement
from openmaas.limits.leases import Leases
from openmaas.limits.redis_counters import RedisCounters
from tests.helpers import REDIS_URL, reset_postgres_and_redis, script_calls
from tests.limits.test_counters import quota
from tests.limits.test_leases import TPM, budget, started

pytestmark = pytest.mark.anyio


async def test_redis_settlements_ride_along_with_admissions_in_one_call() -> None:
    """One script call carries the queued settlements and every queued admission; each counter is
    read and written once per call, however many requests touch it."""
    await reset_postgres_and_redis()
    counters = RedisCounters(REDIS_URL, leases=Leases(0))
    await counters.start()
    try:
        rpm, tpm = Bucket("rpm:key:k7", "requests", 1000), Bucket("tpm:key:k7", "tokens", 100_000)
        q = quota(1_000_000, "q:usd:key:k7:all")
        await counters.seed(q, 0)
        assert (await counters.admit([(rpm, 1), (tpm, 100)], [(q, 100)])).ok
        before = await script_calls(counters.client)
        results: list[Any] = await asyncio.gather(
            counters.settle([Settlement([(tpm, 60)], [(q, 100, 40)])]),
            *(counters.admit([(rpm, 1), (tpm, 100)], [(q, 100)]) for _ in range(20)),
        )
        assert await script_calls(counters.client) - before == 1
        assert all(r.ok for r in results[1:])
        levels = [r.levels[1] for r in results[1:]]
        # one call, one clock: each request takes exactly its 100 after the refund of 60
        assert [a - b for a, b in itertools.pairwise(levels)] == pytest.approx([100] * 19)
        assert levels[0] == pytest.approx(99_960 - 100, abs=50)  # + what refilled since (~1.7 per ms)
        assert await counters.quota_state(q) == (40, 20 * 100)
        assert float(await counters.client.hget("openmaas:" + tpm.name, "t")) == pytest.approx(levels[-1])
    finally:
        await counters.close()


async def test_redis_close_applies_the_settlements_still_queued() -> None:
    await reset_postgres_and_redis()
    counters = RedisCounters(REDIS_URL)
    await counters.start()
    q = quota(10_000, "q:usd:key:k8:all")
    await counters.seed(q, 0)
    assert (await counters.admit([], [(q, 500)])).ok
    pending = asyncio.ensure_future(counters.settle([Settlement(quotas=[(q, 500, 300)])]))
    await counters.close()
    assert pending.done() and pending.exception() is None
    reader = RedisCounters(REDIS_URL)
    try:
        assert await reader.quota_state(q) == (300, 0)
    finally:
        await reader.client.aclose()


async def kill(counters: RedisCounters) -> None:
    """The replica's process dies: no settlement, no release, no more heartbeats."""
    for task in (counters._keeper, counters._task):
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await counters.client.aclose()


async def test_a_dead_replicas_reservations_are_released_by_the_others() -> None:
    """A replica killed while holding reservations (requests in flight, leases) would otherwise shrink a
    budget until its period ends; the others release them once its heartbeat lapses."""
    await reset_postgres_and_redis()
    q = budget(10**9)
    alive = RedisCounters(REDIS_URL, leases=Leases(0), heartbeat=1.0)
    doomed = RedisCounters(REDIS_URL, leases=Leases(seconds=30), heartbeat=1.0)
    await alive.start()
    await doomed.start()
    try:
        await alive.seed(q, 0)
        assert (await alive.admit([], [(q, 700)])).ok
        for _ in range(10):
            assert (await doomed.admit([(TPM, 100)], [(q, 1000)])).ok
        assert (await alive.quota_state(q))[1] > 700 + 10 * 1000 - 1  # with the dead one's lease
        await kill(doomed)
        for _ in range(60):  # its heartbeat key expires after 1 s; the survivor sweeps every 1/3 s
            if await alive.quota_state(q) == (0, 700):
                break
            await asyncio.sleep(0.1)
        assert await alive.quota_state(q) == (0, 700)  # only the living replica's reservation is left
        assert doomed.node not in await alive.client.smembers("openmaas:nodes")
    finally:
        await alive.close()


async def test_a_settlement_after_its_reservations_were_swept_releases_nothing_twice() -> None:
    """A replica cut off from Redis past its heartbeat has its reservations released by the others; when
    it comes back, its settlements must not release them a second time (someone else's would go)."""
    await reset_postgres_and_redis()
    q = budget(10**9)
    a = await started(Leases(0))
    b = await started(Leases(0))
    try:
        await a.seed(q, 0)
        assert (await a.admit([], [(q, 1000)])).ok
        assert (await b.admit([], [(q, 500)])).ok
        await a.client.delete(f"openmaas:node:{a.node}")  # a's heartbeat lapsed
        await b._sweep()
        assert await b.quota_state(q) == (0, 500)
        await a.settle([Settlement(quotas=[(q, 1000, 400)])])  # a's request finishes after all
        assert await b.quota_state(q) == (400, 500)  # spend counted; b's reservation untouched
    finally:
        await a.close()
        await b.close()


class LosingReplies(RedisCounters):
    """Redis runs the first call that carries settlements, but its reply never arrives (the connection
    drops after the script ran) — or, with ``before``, the call never reaches Redis at all."""

    def __init__(self, *args: Any, before: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before = before
        self.failures = 0

    async def _run(self, batch: Any, settlements: list[Settlement], call_id: str) -> list[str]:
        if settlements and not self.failures:
            self.failures += 1
            if not self.before:
                await super()._run(batch, settlements, call_id)
            raise ConnectionError("connection lost")
        return await super()._run(batch, settlements, call_id)


@pytest.mark.parametrize("before", [False, True], ids=["reply-lost", "never-sent"])
async def test_settlements_of_a_failed_call_are_applied_exactly_once(before: bool) -> None:
    """A settlement lost to a Redis failure would hold its reservation until the period ends; sent again
    blindly, one whose reply was lost would be applied twice. Retried under the same call id: once."""
    await reset_postgres_and_redis()
    counters = LosingReplies(REDIS_URL, leases=Leases(0), before=before)
    await counters.start()
    q = quota(10_000, "q:usd:key:k9:all")
    try:
        await counters.seed(q, 0)
        for _ in range(3):
            assert (await counters.admit([], [(q, 1000)])).ok
        await counters.settle([Settlement(quotas=[(q, 1000, 300)])] * 3)  # returns once applied, after the retry
        assert counters.failures == 1
        assert await counters.quota_state(q) == (900, 0)
    finally:
        await counters.close()
