"""The same admission semantics in-process and in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openmaas.limits.counters import Bucket, Counters, LocalCounters, Quota, Settlement
from openmaas.limits.leases import Leases
from openmaas.limits.redis_counters import RedisCounters
from tests.helpers import REDIS_URL, reset_postgres_and_redis

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["local", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    if request.param == "local":
        yield LocalCounters()
        return
    await reset_postgres_and_redis()
    c = RedisCounters(REDIS_URL, leases=Leases(0))  # every admission in Redis (leases: tests/limits/test_leases.py)
    await c.start()
    try:
        yield c
    finally:
        await c.close()


def quota(limit: int, name: str = "q:usd:key:k1:all") -> Quota:
    return Quota(name, "nanos", limit, "key_id", "k1", 0.0, None)


async def test_rpm_bucket_refuses_the_request_over_the_limit_with_a_wait(counters: Counters) -> None:
    rpm = Bucket("rpm:key:k1", "requests", 3)
    results = [await counters.admit([(rpm, 1)], []) for _ in range(4)]
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[3].failed == "rpm:key:k1"
    assert 0 < results[3].retry_after <= 20.5  # one request refills in 60/3 s
    assert results[2].levels[0] == pytest.approx(0, abs=0.01)


async def test_all_or_nothing_when_one_check_fails(counters: Counters) -> None:
    rpm = Bucket("rpm:key:k1", "requests", 100)
    tpm = Bucket("tpm:key:k1", "tokens", 10)
    assert (await counters.admit([(rpm, 1), (tpm, 10)], [])).ok
    refused = await counters.admit([(rpm, 1), (tpm, 10)], [])
    assert not refused.ok and refused.failed == "tpm:key:k1"
    # the refused request took nothing from the RPM bucket
    after = await counters.admit([(rpm, 1)], [])
    assert after.levels[0] == pytest.approx(98, abs=0.1)


async def test_quota_must_be_seeded_then_reserves_and_settles(counters: Counters) -> None:
    q = quota(1000)
    first = await counters.admit([], [(q, 300)])
    assert not first.ok and first.unloaded == q
    await counters.seed(q, 500)
    await counters.seed(q, 0)  # a second seed (another replica) does not overwrite
    assert (await counters.admit([], [(q, 300)])).ok
    assert await counters.quota_state(q) == (500, 300)
    refused = await counters.admit([], [(q, 300)])  # 500 + 300 + 300 > 1000
    assert not refused.ok and refused.failed == q.name
    await counters.settle([Settlement(quotas=[(q, 300, 120)])])
    assert await counters.quota_state(q) == (620, 0)


async def test_a_free_request_settles_with_the_rest_of_its_batch(counters: Counters) -> None:
    """A zero reservation (a deployment priced at 0) settles like any other, and does not stop
    the settlements after it in the same batch (Redis once refused the "-0" it produced)."""
    free, paid = quota(1000, "q:usd:key:free:all"), quota(1000, "q:usd:key:paid:all")
    for q in (free, paid):
        await counters.seed(q, 0)
    assert (await counters.admit([], [(free, 0)])).ok
    assert (await counters.admit([], [(paid, 400)])).ok
    await counters.settle([Settlement(quotas=[(free, 0, 0)]), Settlement(quotas=[(paid, 400, 250)])])
    assert await counters.quota_state(free) == (0, 0)
    assert await counters.quota_state(paid) == (250, 0)


async def test_token_refunds_return_to_the_bucket(counters: Counters) -> None:
    tpm = Bucket("tpm:key:k2", "tokens", 1000)
    assert (await counters.admit([(tpm, 900)], [])).ok
    assert not (await counters.admit([(tpm, 500)], [])).ok
    await counters.settle([Settlement(refunds=[(tpm, 800)])])  # it used 100 of its 900
    assert (await counters.admit([(tpm, 500)], [])).ok


async def test_a_refund_never_lifts_a_bucket_above_its_capacity(counters: Counters) -> None:
    tpm = Bucket("tpm:key:k9", "tokens", 1000)
    assert (await counters.admit([(tpm, 100)], [])).ok
    await counters.settle([Settlement(refunds=[(tpm, 100)] * 5)])  # more than it took: a bug elsewhere
    assert (await counters.admit([(tpm, 1)], [])).levels == [pytest.approx(999)]


async def test_concurrent_reservations_never_overshoot(counters: Counters) -> None:
    q = quota(10_000, "q:usd:key:k3:all")
    await counters.seed(q, 0)
    results: list[Any] = await asyncio.gather(*(counters.admit([], [(q, 700)]) for _ in range(50)))
    admitted = sum(r.ok for r in results)
    assert admitted == 14  # floor(10000 / 700)
    state = await counters.quota_state(q)
    assert state == (0, admitted * 700)


async def test_requests_admitted_together_are_checked_one_after_another(counters: Counters) -> None:
    """Concurrent admissions (one Redis script call for many) still apply each request all-or-nothing in turn."""
    rpm = Bucket("rpm:key:k4", "requests", 5)
    tpm = Bucket("tpm:key:k4", "tokens", 1100)
    q = quota(10_000, "q:usd:key:k4:all")
    await counters.seed(q, 0)
    costs = [400, 400, 400, 100, 100, 100, 100]  # the third 400 overflows TPM; the 7th finds RPM spent
    results: list[Any] = await asyncio.gather(*(counters.admit([(rpm, 1), (tpm, c)], [(q, c)]) for c in costs))
    assert [r.ok for r in results] == [True, True, False, True, True, True, False]
    assert results[2].failed == "tpm:key:k4" and results[6].failed == "rpm:key:k4"
    assert await counters.quota_state(q) == (0, 400 + 400 + 100 + 100 + 100)


async def test_settling_a_batch_sums_per_counter(counters: Counters) -> None:
    tpm = Bucket("tpm:key:k5", "tokens", 1000)
    q = quota(10_000, "q:usd:key:k5:all")
    await counters.seed(q, 0)
    for _ in range(3):
        assert (await counters.admit([(tpm, 300)], [(q, 300)])).ok
    await counters.settle([Settlement([(tpm, 200)], [(q, 300, 100)]) for _ in range(3)])
    assert await counters.quota_state(q) == (300, 0)
    after = await counters.admit([(tpm, 1)], [])
    assert after.levels[0] == pytest.approx(1000 - 300 - 1, abs=5)  # 600 back, capped by refill


async def test_a_settlement_applies_before_admissions_queued_with_it(counters: Counters) -> None:
    """Settlements queued together with admissions are applied first (in Redis: the same script call)."""
    tpm = Bucket("tpm:key:k6", "tokens", 1000)
    assert (await counters.admit([(tpm, 900)], [])).ok
    _, admitted = await asyncio.gather(
        counters.settle([Settlement(refunds=[(tpm, 800)])]),  # it used 100 of its 900
        counters.admit([(tpm, 500)], []),
    )
    assert admitted.ok
