"""Counters in Redis, shared by every gateway replica: limits and budgets hold globally.

Admission is one Lua script (atomic on the server, clock from Redis ``TIME`` so
replicas agree); settlements of a whole ledger batch go in one pipeline.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from openmaas.limits.counters import Admission, Bucket, Counters, Quota, Settlement

# KEYS: buckets…, quotas…   ARGV: nb, nq, (per_minute, cost)×nb, (limit, amount, ttl)×nq
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local nb, nq = tonumber(ARGV[1]), tonumber(ARGV[2])
local levels = {}
for i = 1, nb do
  local cap, cost = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local st = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tokens, ts = tonumber(st[1]) or cap, tonumber(st[2]) or now
  tokens = math.min(cap, tokens + (now - ts) * cap / 60)
  local need = math.min(cost, cap)
  if tokens < need then return {0, i, tostring((need - tokens) * 60 / cap)} end
  levels[i] = tokens
end
local off = 2 + 2 * nb
for j = 1, nq do
  local key = KEYS[nb + j]
  local limit, amount = tonumber(ARGV[off + 3 * j - 2]), tonumber(ARGV[off + 3 * j - 1])
  local st = redis.call('HMGET', key, 's', 'r')
  if not st[1] then return {-1, nb + j, '0'} end
  if tonumber(st[1]) + (tonumber(st[2]) or 0) + amount > limit then return {0, nb + j, '-1'} end
end
local out = {1, 0, '0'}
for i = 1, nb do
  local cost = tonumber(ARGV[2 + 2 * i])
  local left = levels[i] - cost
  redis.call('HSET', KEYS[i], 't', tostring(left), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[i], 180)
  out[#out + 1] = tostring(left)
end
for j = 1, nq do
  redis.call('HINCRBY', KEYS[nb + j], 'r', ARGV[off + 3 * j - 1])
end
return out
"""

# KEYS: bucket   ARGV: per_minute, amount — give tokens back (refill capped on the next admit)
_REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local cap, amount = tonumber(ARGV[1]), tonumber(ARGV[2])
local st = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, ts = tonumber(st[1]) or cap, tonumber(st[2]) or now
tokens = math.min(cap, tokens + (now - ts) * cap / 60) + amount
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 180)
return 1
"""


class RedisCounters(Counters):
    def __init__(self, url: str, prefix: str = "openmaas:") -> None:
        self.client: redis.Redis = redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self._admit = self.client.register_script(_ADMIT)
        self._refund = self.client.register_script(_REFUND)

    async def start(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()

    async def admit(self, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]]) -> Admission:
        keys = [self.prefix + b.name for b, _ in buckets] + [self.prefix + q.name for q, _ in quotas]
        args: list[Any] = [len(buckets), len(quotas)]
        for bucket, cost in buckets:
            args += [bucket.per_minute, cost]
        for quota, amount in quotas:
            args += [quota.limit, amount, quota.ttl or 0]
        result = await self._admit(keys=keys, args=args)
        status, index = int(result[0]), int(result[1])
        if status == 1:
            admission = Admission(True)
            for (bucket, _), left in zip(buckets, result[3:], strict=True):
                level = float(left)
                admission.buckets[bucket.name] = (level, max(0.0, (bucket.per_minute - level) * 60 / bucket.per_minute))
            return admission
        names = [b.name for b, _ in buckets] + [q.name for q, _ in quotas]
        if status == -1:
            return Admission(False, unloaded=quotas[index - 1 - len(buckets)][0])
        return Admission(False, failed=names[index - 1], retry_after=float(result[2]))

    async def seed(self, quota: Quota, spent: int) -> None:
        key = self.prefix + quota.name
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "s", spent)
            if quota.ttl:
                pipe.expire(key, quota.ttl)
            await pipe.execute()

    async def settle(self, settlements: list[Settlement]) -> None:
        if not settlements:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for s in settlements:
                for bucket, amount in s.refunds:
                    await self._refund(keys=[self.prefix + bucket.name], args=[bucket.per_minute, amount], client=pipe)
                for quota, reserved, actual in s.quotas:
                    key = self.prefix + quota.name
                    pipe.hincrby(key, "r", -reserved)
                    pipe.hincrby(key, "s", actual)
            await pipe.execute()

    async def quota_state(self, quota: Quota) -> tuple[int, int] | None:
        spent, reserved = await self.client.hmget(self.prefix + quota.name, ["s", "r"])
        return None if spent is None else (int(spent), int(reserved or 0))
