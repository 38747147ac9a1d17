"""Leases of shared counters (Redis): hot keys admitted in memory, nothing over-admitted, leftovers given back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from openmaas.limits.counters import Bucket, Quota, Settlement
from openmaas.limits.leases import Leases
from openmaas.limits.redis_counters import RedisCounters
from tests.helpers import REDIS_URL, reset_postgres_and_redis, script_calls

pytestmark = pytest.mark.anyio

RPM = Bucket("rpm:key:hot", "requests", 1_000_000)
TPM = Bucket("tpm:key:hot", "tokens", 100_000_000)


def budget(limit: int) -> Quota:
    return Quota("q:usd:key:hot:all", "nanos", limit, "key_id", "hot", 0.0, None)


async def seeded(leases: Leases, limit: int) -> tuple[RedisCounters, Quota]:
    """On a clean Redis: a started replica, and a budget of ``limit`` whose spend is loaded (0)."""
    await reset_postgres_and_redis()
    counters = await started(leases)
    q = budget(limit)
    await counters.seed(q, 0)
    return counters, q


async def started(leases: Leases) -> RedisCounters:
    counters = RedisCounters(REDIS_URL, leases=leases)
    await counters.start()
    return counters


async def test_a_hot_key_is_admitted_from_leases_without_a_round_trip() -> None:
    counters, q = await seeded(Leases(seconds=30), 10**12)
    try:
        for _ in range(5):  # demand builds up; these go to Redis and take leases on top
            assert (await counters.admit([(RPM, 1), (TPM, 100)], [(q, 1000)])).ok
        assert set(counters.leases.held) == {RPM.name, TPM.name, q.name}
        before = await script_calls(counters.client)
        results = [await counters.admit([(RPM, 1), (TPM, 100)], [(q, 1000)]) for _ in range(100)]
        assert all(r.ok for r in results)
        assert await script_calls(counters.client) - before < 10  # top-ups only, not one call per request
        # Redis counts the leases as reserved: what was admitted plus what this replica still holds.
        held = counters.leases.held[q.name].amount
        assert await counters.quota_state(q) == (0, 105 * 1000 + held)
        # The rate-limit headers' level: Redis's level plus this replica's lease, falling by each request.
        assert results[-2].levels[1] - results[-1].levels[1] == pytest.approx(100)
    finally:
        await counters.close()
    # A clean stop holds nothing: the leases went back, and so did these unsettled test reservations.
    assert await RedisCounters(REDIS_URL).quota_state(q) == (0, 0)


async def test_expired_leases_are_given_back() -> None:
    counters, q = await seeded(Leases(seconds=0.05), 10**12)
    try:
        for _ in range(20):
            assert (await counters.admit([(TPM, 100)], [(q, 1000)])).ok
        for _ in range(100):  # the caller wakes up to give back what expired, without any traffic
            if not counters.leases.held:
                break
            await asyncio.sleep(0.02)
        assert not counters.leases.held
        await counters.settle([])  # returns once what was queued before it is applied
        assert await counters.quota_state(q) == (0, 20 * 1000)
        await counters.settle([Settlement([(TPM, 100)] * 20, [(q, 1000, 0)] * 20)])
        assert await counters.quota_state(q) == (0, 0)
        level = float(await counters.client.hget("openmaas:" + TPM.name, "t"))
        assert level == TPM.per_minute  # refunds and returned leases never lift a bucket above its capacity
    finally:
        await counters.close()


async def test_near_its_limit_a_counter_is_checked_in_redis_request_by_request() -> None:
    """A lease is at most 1 % of the headroom and at least one request: a budget of 100 requests'
    reservations admits exactly 100 from one replica, leases or not."""
    counters, q = await seeded(Leases(seconds=30), 100 * 1000)
    try:
        admitted = 0
        while (await counters.admit([], [(q, 1000)])).ok:
            admitted += 1
        assert admitted == 100
        assert await counters.quota_state(q) == (0, 100 * 1000)
    finally:
        await counters.close()


async def test_two_replicas_with_leases_never_over_admit_and_under_admit_by_little() -> None:
    await reset_postgres_and_redis()
    replicas = [await started(Leases(seconds=30)), await started(Leases(seconds=30))]
    amount, limit = 100, 2_000_000  # room for 20,000 requests
    q = budget(limit)
    try:
        await replicas[0].seed(q, 0)

        async def hammer(counters: RedisCounters) -> int:
            admitted = 0
            while True:
                results: list[Any] = await asyncio.gather(*(counters.admit([], [(q, amount)]) for _ in range(16)))
                admitted += sum(r.ok for r in results)
                if not all(r.ok for r in results):
                    return admitted

        counts = await asyncio.gather(*(hammer(c) for c in replicas))
        assert sum(counts) * amount <= limit  # never over-admitted
        assert sum(counts) * amount >= limit * 0.98 - 16 * amount  # a lease held by the other: ≤ 1 % of the headroom
        assert all(c > 0 for c in counts)
        # Before they stop, Redis holds exactly what they admitted plus the leases they still hold.
        held = sum(c.leases.held[q.name].amount for c in replicas if q.name in c.leases.held)
        assert await replicas[0].quota_state(q) == (0, sum(counts) * amount + held)
    finally:
        for c in replicas:
            await c.close()


async def test_settlements_without_admissions_are_sent_together() -> None:
    """With leases, admissions rarely call Redis: the ledger's settlements then wait up to
    ``settle_delay`` for company instead of costing a call per ledger batch."""
    counters, q = await seeded(Leases(seconds=30), 10**9)
    try:
        for _ in range(10):
            assert (await counters.admit([], [(q, 1000)])).ok
        before = await script_calls(counters.client)
        pending = []
        for _ in range(10):  # ten ledger batches a millisecond apart
            pending.append(asyncio.ensure_future(counters.settle([Settlement(quotas=[(q, 1000, 400)])])))
            await asyncio.sleep(0.001)
        await asyncio.gather(*pending)
        assert await script_calls(counters.client) - before < 10
        assert (await counters.quota_state(q))[0] == 10 * 400
    finally:
        await counters.close()


async def test_concurrent_requests_do_not_each_lease_the_whole_demand() -> None:
    counters, q = await seeded(Leases(seconds=30), 10**12)
    try:
        for _ in range(10):
            results: list[Any] = await asyncio.gather(*(counters.admit([(TPM, 100)], [(q, 1000)]) for _ in range(16)))
            assert all(r.ok for r in results)
        # Each lease tops up to the demand seen (160 requests here), not once per request in flight.
        assert counters.leases.held[q.name].amount <= 160 * 1000
        assert counters.leases.held[TPM.name].amount <= 160 * 100
    finally:
        await counters.close()


def test_the_caller_runs_on_uvloop_with_deadlines_already_past() -> None:
    """The gateway's loop is uvloop, whose ``call_at`` for a past deadline returns a plain Handle
    (no ``when()``): settlements and lease expiries must still go through."""
    import uvloop

    async def scenario() -> tuple[int, int] | None:
        counters, q = await seeded(Leases(seconds=0.01), 10**12)
        try:
            for _ in range(30):
                assert (await asyncio.wait_for(counters.admit([(TPM, 100)], [(q, 1000)]), 5)).ok
                await asyncio.wait_for(counters.settle([Settlement([(TPM, 100)], [(q, 1000, 10)])]), 5)
            await asyncio.sleep(0.05)  # leases expire and go back
            await asyncio.wait_for(counters.settle([]), 5)
            return await counters.quota_state(q)
        finally:
            await counters.close()

    assert uvloop.run(scenario()) == (300, 0)
