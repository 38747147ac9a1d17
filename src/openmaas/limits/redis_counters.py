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
import logging
import os
import socket
from typing import Any

import orjson
import redis.asyncio as redis

from openmaas.errors import ServiceUnavailable
from openmaas.limits.counters import Admission, Bucket, Counters, Quota, Settlement
from openmaas.limits.leases import Leases

log = logging.getLogger("openmaas.limits")

# KEYS: every counter the call touches.  ARGV[1]: the call as JSON (decoded by Redis, not encoded
# argument by argument in the gateway): [settlements, requests] where
#   settlements = [nb, (key index, per_minute, refund)×nb, nq, (key index, released, spent)×nq]
#   requests    = one array per request:
#                 [nb, nq, (key index, per_minute, cost, ask)×nb, (key index, limit, amount, ask)×nq]
#   share       = the largest part of a counter's headroom one lease may take (limits.leases)
#   node        = this replica's id: a quota's reservations are also kept per replica (field
#                 "r:<node>", keys listed in the set KEYS[#KEYS]), so that a replica that dies holding
#                 some can have them released by the others (``_sweep``)
# Returns one string per request: "1 left×nb grant×(nb+nq)" admitted (each bucket's level after the
# request, before its lease grant), "0 i wait" refused by counter i (wait -1: a quota), "-1 i"
# quota i not loaded yet (i: 1-based within the request). A grant is the lease taken on top of the
# request (0 unless it covers at least one more request like this one).
# Buckets are cached in ``levels`` (refilled to ``now`` on first use) and written back once; quota
# reservations are summed in ``reserved`` and applied with one HINCRBY each. Numbers are stored
# with full precision (Lua's tostring keeps 14 digits: an epoch rounded up by a few microseconds
# would make the next refill negative). Integers go to HINCRBY formatted with %d, and zero
# increments are skipped: never "-0", which HINCRBY refuses.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local call = cjson.decode(ARGV[1])
local share = call[3]
local mine = 'r:' .. call[4]  -- this replica's share of a quota's reservations
local owned = KEYS[#KEYS]     -- the set of quota keys this replica holds reservations in
local levels, dirty, sums, reserved = {}, {}, {}, {}
local function level(k, cap)
  local v = levels[k]
  if v == nil then
    local st = redis.call('HMGET', KEYS[k], 't', 'ts')
    local tokens, ts = tonumber(st[1]) or cap, tonumber(st[2]) or now
    v = math.min(cap, tokens + math.max(0, now - ts) * cap / 60)
    levels[k] = v
  end
  return v
end
local function incr(k, field, amount)
  if amount ~= 0 then redis.call('HINCRBY', KEYS[k], field, string.format('%d', amount)) end
end
local function release(k, amount)  -- never more than this replica holds (a sweep may have taken it)
  local held = tonumber(redis.call('HGET', KEYS[k], mine)) or 0
  if amount > held then amount = held end
  if amount > 0 then
    incr(k, 'r', -amount)
    incr(k, mine, -amount)
  end
end
local s = call[1]
local nb = s[1]
for i = 0, nb - 1 do
  local k, cap = s[2 + 3 * i], s[3 + 3 * i]
  levels[k] = math.min(cap, level(k, cap) + s[4 + 3 * i])
  dirty[k] = true
end
local o = 2 + 3 * nb
for j = 0, s[o] - 1 do
  local k = s[o + 1 + 3 * j]
  release(k, s[o + 2 + 3 * j])
  incr(k, 's', s[o + 3 + 3 * j])
end
local out = {}
for r, a in ipairs(call[2]) do
  local nb, nq = a[1], a[2]
  local b0, q0 = 3, 3 + 4 * nb
  local found, verdict = {}, nil
  for i = 1, nb do
    local o = b0 + 4 * (i - 1)
    local k, cap, cost = a[o], a[o + 1], a[o + 2]
    local tokens = level(k, cap)
    local need = math.min(cost, cap)
    if tokens < need then verdict = '0 ' .. i .. ' ' .. tostring((need - tokens) * 60 / cap) break end
    found[i] = tokens
  end
  if not verdict then
    for j = 1, nq do
      local o = q0 + 4 * (j - 1)
      local k, limit, amount = a[o], a[o + 1], a[o + 2]
      local sum = sums[k]
      if sum == nil then
        local st = redis.call('HMGET', KEYS[k], 's', 'r')
        sum = st[1] and (tonumber(st[1]) + (tonumber(st[2]) or 0)) or false
        sums[k] = sum
      end
      if not sum then verdict = '-1 ' .. (nb + j) .. ' 0' break end
      if sum + amount > limit then verdict = '0 ' .. (nb + j) .. ' -1' break end
    end
  end
  if not verdict then
    local parts, grants = {'1'}, {}
    for i = 1, nb do
      local o = b0 + 4 * (i - 1)
      local k, cost, ask = a[o], a[o + 2], a[o + 3]
      local left = found[i] - cost
      local grant = 0
      if ask > 0 then grant = math.floor(math.min(ask, left * share)) end
      if grant < cost then grant = 0 end
      levels[k] = left - grant
      dirty[k] = true
      parts[#parts + 1] = string.format('%.17g', left)
      grants[i] = grant
    end
    for j = 1, nq do
      local o = q0 + 4 * (j - 1)
      local k, limit, amount, ask = a[o], a[o + 1], a[o + 2], a[o + 3]
      local sum = sums[k] + amount
      local grant = 0
      if ask > 0 then grant = math.floor(math.min(ask, (limit - sum) * share)) end
      if grant < amount or grant < 1 then grant = 0 end
      sums[k] = sum + grant
      reserved[k] = (reserved[k] or 0) + amount + grant
      grants[nb + j] = grant
    end
    for g = 1, nb + nq do parts[#parts + 1] = string.format('%d', grants[g]) end
    verdict = table.concat(parts, ' ')
  end
  out[r] = verdict
end
for k in pairs(dirty) do
  redis.call('HSET', KEYS[k], 't', string.format('%.17g', levels[k]), 'ts', string.format('%.6f', now))
  redis.call('EXPIRE', KEYS[k], 180)
end
for k, amount in pairs(reserved) do
  if amount ~= 0 then
    incr(k, 'r', amount)
    incr(k, mine, amount)
    redis.call('SADD', owned, KEYS[k])
  end
end
return out
"""

# KEYS[1]: a quota hash.  ARGV[1]: a dead replica's field. Gives its reservations back.
_RELEASE_DEAD = """
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if held ~= 0 then redis.call('HINCRBY', KEYS[1], 'r', string.format('%d', -held)) end
redis.call('HDEL', KEYS[1], ARGV[1])
return held
"""

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
    ) -> None:
        """``leases``: how this replica leases capacity of hot counters (``Leases(0)``: never).
        ``settle_delay``: how long settlements may wait for an admission call to ride along with.
        ``heartbeat``: a replica silent this long is dead, and the reservations it held are released."""
        self.client: redis.Redis = redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.max_batch = max_batch
        self._script = self.client.register_script(_SCRIPT)
        self._release_dead = self.client.register_script(_RELEASE_DEAD)
        self.node = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(4).hex()}"
        self._owned = f"{prefix}owned:{self.node}"
        self.heartbeat = heartbeat
        self._keeper: asyncio.Task[None] | None = None
        self.leases = leases if leases is not None else Leases()
        self.settle_delay = settle_delay
        self._settling_since = 0.0
        self._alarm: asyncio.Handle | None = None  # wakes the caller at the next deadline
        self._alarm_at = 0.0
        self._waiting: list[_Request] = []
        self._settling: list[tuple[list[Settlement], asyncio.Future[None] | None]] = []
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
        when none comes (leased keys rarely need one) — and return once applied."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._settling:
            self._settling_since = loop.time()
        self._settling.append((settlements, future))
        if self._task is None:  # not started, or closed: apply now
            await self._call([])
        else:
            self._wake.set()
        await future

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
        settle_at = self._settling_since + self.settle_delay if self._settling else None
        if self._waiting or (settle_at is not None and (settle_at <= now or self._closing)):
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
        """One script call: every queued settlement, then ``batch``'s admissions. Never raises: a
        failure (Redis unreachable) fails these requests and settlements; later ones try again."""
        settling, self._settling = self._settling, []
        try:
            verdicts = await self._run(batch, [s for group, _ in settling for s in group])
        except Exception as exc:
            self._answered(batch)
            for _, _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            for _, done in settling:
                if done is not None and not done.done():
                    done.set_exception(exc)
            return
        for _, done in settling:
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

    async def _run(self, batch: list[_Request], settlements: list[Settlement]) -> list[str]:
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
        keys = [self.prefix + name for name in index] + [self._owned]
        call = (settle, requests, self.leases.share, self.node)
        result: list[str] = await self._script(keys=keys, args=[orjson.dumps(call)])
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
