"""What admission checks, and the in-process implementation.

One ``admit`` call checks every bucket and quota of a request and applies them
all or none, atomically (in-process: no ``await`` between check and apply;
Redis: one Lua script). Buckets refill continuously (capacity per minute).
Quotas hold ``spent`` and ``reserved``; admission reserves the request's
maximum, settlement swaps the reservation for the actual amount. A quota whose
``spent`` is not known yet (first use in this period) asks to be loaded from
the ledger first.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Bucket:
    name: str  # e.g. "rpm:key:key_ab12"
    kind: Literal["requests", "tokens"]
    per_minute: int


@dataclass(frozen=True)
class Quota:
    name: str  # e.g. "q:usd:tenant:ten_ab12:m2026-11"
    unit: Literal["nanos", "tokens"]
    limit: int
    owner_column: Literal["key_id", "tenant_id"]
    owner: str
    since: float  # period start (epoch); the ledger sum since then seeds ``spent``
    ttl: int | None  # seconds until the counter may be forgotten (period end + margin)


@dataclass(slots=True)
class Admission:
    ok: bool
    # what each of the request's buckets holds after admission, in the request's order (x-ratelimit-*)
    levels: list[float] = field(default_factory=list)
    failed: str | None = None  # name of the bucket or quota that refused
    retry_after: float = 0.0
    unloaded: Quota | None = None  # a quota whose spent must be seeded first


@dataclass(slots=True)
class Settlement:
    refunds: list[tuple[Bucket, float]] = field(default_factory=list)  # bucket, amount given back
    quotas: list[tuple[Quota, int, int]] = field(default_factory=list)  # quota, reserved to release, actual spent


class Counters(ABC):
    @abstractmethod
    async def admit(self, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]]) -> Admission: ...

    @abstractmethod
    async def seed(self, quota: Quota, spent: int) -> None:
        """Set ``spent`` for a quota unless another replica already has."""

    @abstractmethod
    async def settle(self, settlements: list[Settlement]) -> None: ...

    @abstractmethod
    async def quota_state(self, quota: Quota) -> tuple[int, int] | None:
        """(spent, reserved), or None when not loaded."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def refill(tokens: float, last: float, now: float, per_minute: int) -> float:
    return min(float(per_minute), tokens + (now - last) * per_minute / 60.0)


def seconds_to_full(tokens: float, per_minute: int) -> float:
    return max(0.0, (per_minute - tokens) * 60.0 / per_minute)


class LocalCounters(Counters):
    """Counters for one gateway process (the embedded default)."""

    def __init__(self) -> None:
        self.buckets: dict[str, list[float]] = {}  # name → [tokens, last refill]
        self.quotas: dict[str, list[int]] = {}  # name → [spent, reserved]

    async def admit(self, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]]) -> Admission:
        now = time.monotonic()
        table = self.buckets
        levels: list[float] = []
        for bucket, cost in buckets:  # check every bucket first (``refill`` inlined: this runs per request)
            cap = bucket.per_minute
            state = table.get(bucket.name)
            if state is None:
                state = table[bucket.name] = [float(cap), now]
            tokens = state[0] + (now - state[1]) * cap / 60.0
            if tokens > cap:
                tokens = float(cap)
            need = cost if cost < cap else cap
            if tokens < need:
                return Admission(False, failed=bucket.name, retry_after=(need - tokens) * 60.0 / cap)
            levels.append(tokens - cost)
        held = self.quotas
        for quota, amount in quotas:
            spent_reserved = held.get(quota.name)
            if spent_reserved is None:
                return Admission(False, unloaded=quota)
            if spent_reserved[0] + spent_reserved[1] + amount > quota.limit:
                return Admission(False, failed=quota.name, retry_after=-1)
        for (bucket, _), left in zip(buckets, levels, strict=True):  # then apply all of them
            state = table[bucket.name]
            state[0] = left
            state[1] = now
        for quota, amount in quotas:
            held[quota.name][1] += amount
        return Admission(True, levels)

    async def seed(self, quota: Quota, spent: int) -> None:
        self.quotas.setdefault(quota.name, [spent, 0])

    async def settle(self, settlements: list[Settlement]) -> None:
        now = time.monotonic()
        table, held = self.buckets, self.quotas
        for settlement in settlements:
            for bucket, amount in settlement.refunds:
                state = table.get(bucket.name)
                if state is None:
                    state = table[bucket.name] = [float(bucket.per_minute), now]
                state[0] = min(float(bucket.per_minute), refill(state[0], state[1], now, bucket.per_minute) + amount)
                state[1] = now
            for quota, reserved, actual in settlement.quotas:
                totals = held.get(quota.name)
                if totals is None:
                    totals = held[quota.name] = [0, 0]
                left = totals[1] - reserved
                totals[1] = left if left > 0 else 0
                totals[0] += actual

    async def quota_state(self, quota: Quota) -> tuple[int, int] | None:
        state = self.quotas.get(quota.name)
        return None if state is None else (state[0], state[1])
