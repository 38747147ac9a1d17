"""Capacity a replica holds from the shared counters, so that hot keys are admitted without a round trip.

A request that goes to Redis anyway may also ask, for each of its counters, for
a lease: a slice of the counter's headroom taken out of Redis exactly as a
request's cost or reservation is (so every replica still sees it as used).
Later requests whose every counter has a lease large enough are admitted here,
in memory, with no ``await``; the rest go to Redis and top the leases up. What
a lease still holds when it expires (``seconds`` after its last top-up, or at
shutdown) is given back by a settlement, exactly like a request's unused
reservation.

Sizing keeps the global guarantees: a lease is asked for only for a counter
with demand in the last window (the amount this replica admitted against it
then), and Redis grants at most ``share`` of the counter's headroom, and
nothing unless the grant covers at least one more request like the one asking.
So a counter is never over-admitted (leases are taken before use), and near a
limit leases shrink to nothing and every request is checked in Redis one by
one, as without leases; far from it, a replica holds at most ``share`` of what
is left, for at most ``seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass

from openmaas.limits.counters import Admission, Bucket, Quota, Settlement


@dataclass(slots=True)
class Lease:
    counter: Bucket | Quota
    amount: float  # left to hand out here
    base: float  # a bucket's level in Redis after the last grant (what the rate-limit headers add to)
    expires: float


class Leases:
    def __init__(self, seconds: float = 0.2, share: float = 0.01) -> None:
        """``seconds`` 0 turns leasing off: every admission goes to Redis."""
        self.seconds = seconds
        self.share = share
        self.held: dict[str, Lease] = {}
        self._demand: dict[str, list[float]] = {}  # name → [window start, this window, last window]
        self._asked: dict[str, float] = {}  # name → asked for by calls still in flight

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def take(
        self, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]], now: float
    ) -> Admission | None:
        """Note the request's demand; admit it from leases alone if they cover every counter, else None."""
        covered = True
        for bucket, cost in buckets:
            if not self._covers(bucket.name, cost, now):
                covered = False
        for quota, amount in quotas:
            if not self._covers(quota.name, amount, now):
                covered = False
        if not covered:
            return None
        held = self.held
        levels: list[float] = []
        for bucket, cost in buckets:
            lease = held[bucket.name]
            lease.amount -= cost
            levels.append(lease.base + lease.amount)
        for quota, amount in quotas:
            held[quota.name].amount -= amount
        return Admission(True, levels)

    def _covers(self, name: str, amount: float, now: float) -> bool:
        demand = self._demand.get(name)
        if demand is None:
            demand = self._demand[name] = [now, 0.0, 0.0]
        elif now - demand[0] >= self.seconds:
            demand[2] = demand[1] if now - demand[0] < 2 * self.seconds else 0.0
            demand[0], demand[1] = now, 0.0
        demand[1] += amount
        lease = self.held.get(name)
        return lease is not None and lease.expires > now and lease.amount >= amount

    def ask(self, name: str, now: float) -> float:
        """How much to ask Redis for on top of the request: a window's demand, less what is held or
        already asked for (concurrent requests must not each ask for the whole). Pair with ``answered``."""
        demand = self._demand.get(name)
        if demand is None or now - demand[0] >= 2 * self.seconds:
            return 0.0
        lease = self.held.get(name)
        have = (lease.amount if lease is not None else 0.0) + self._asked.get(name, 0.0)
        want = max(demand[1], demand[2]) - have
        if want <= 0:
            return 0.0
        self._asked[name] = self._asked.get(name, 0.0) + want
        return want

    def answered(self, name: str, asked: float) -> None:
        """The call that carried an ``ask`` returned (its grant, if any, came through ``grant``) or failed."""
        left = self._asked.get(name, 0.0) - asked
        if left > 0:
            self._asked[name] = left
        else:
            self._asked.pop(name, None)

    def grant(self, counter: Bucket | Quota, amount: float, base: float, now: float) -> None:
        lease = self.held.get(counter.name)
        if lease is None:
            self.held[counter.name] = Lease(counter, amount, base, now + self.seconds)
            return
        lease.amount += amount  # an expired lease's leftover is still held in Redis: it stays ours
        lease.base = base
        lease.expires = now + self.seconds

    def next_expiry(self) -> float | None:
        return min((lease.expires for lease in self.held.values()), default=None)

    def expired(self, now: float) -> list[Settlement]:
        """Remove leases past their time; the settlements that give their leftovers back."""
        gone = [name for name, lease in self.held.items() if lease.expires <= now]
        return self._release(gone)

    def release_all(self) -> list[Settlement]:
        return self._release(list(self.held))

    def _release(self, names: list[str]) -> list[Settlement]:
        returned = Settlement()
        for name in names:
            lease = self.held.pop(name)
            if lease.amount <= 0:
                continue
            if isinstance(lease.counter, Bucket):
                returned.refunds.append((lease.counter, lease.amount))
            else:
                returned.quotas.append((lease.counter, int(lease.amount), 0))
        return [returned] if returned.refunds or returned.quotas else []
