"""Counters in Redis, shared by every gateway replica: limits and budgets hold globally.

Admission is a Lua script (atomic on the server, clock from Redis ``TIME`` so
replicas agree). Requests that arrive while a script call is in flight are
admitted together by the next call — each one still all-or-nothing, in arrival
order — so a busy replica sends one command per round-trip, not one per
request. Settlements of a ledger batch are summed per counter and applied by
one script call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import redis.asyncio as redis

from openmaas.limits.counters import Admission, Bucket, Counters, Quota, Settlement

# KEYS: every counter the batch touches.  ARGV[1]: the batch as JSON (decoded by Redis, not
# encoded argument by argument in the gateway): one array per request,
#   [nb, nq, (key index, per_minute, cost)×nb, (key index, limit, amount)×nq]
# Returns one string per request: "1 left…" admitted, "0 i wait" refused by
# counter i (wait -1: a quota), "-1 i" quota i not loaded yet (i: 1-based within the request).
# Numbers are stored with full precision (Lua's tostring keeps 14 digits: an epoch rounded
# up by a few microseconds would make the next refill negative). Integers go to HINCRBY
# formatted with %d: never "-0", which HINCRBY refuses.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local out = {}
for r, a in ipairs(cjson.decode(ARGV[1])) do
  local nb, nq = a[1], a[2]
  local b0, q0 = 3, 3 + 3 * nb
  local levels, verdict = {}, nil
  for i = 1, nb do
    local o = b0 + 3 * (i - 1)
    local key, cap, cost = KEYS[a[o]], a[o + 1], a[o + 2]
    local st = redis.call('HMGET', key, 't', 'ts')
    local tokens, ts = tonumber(st[1]) or cap, tonumber(st[2]) or now
    tokens = math.min(cap, tokens + math.max(0, now - ts) * cap / 60)
    local need = math.min(cost, cap)
    if tokens < need then verdict = '0 ' .. i .. ' ' .. tostring((need - tokens) * 60 / cap) break end
    levels[i] = tokens
  end
  if not verdict then
    for j = 1, nq do
      local o = q0 + 3 * (j - 1)
      local key, limit, amount = KEYS[a[o]], a[o + 1], a[o + 2]
      local st = redis.call('HMGET', key, 's', 'r')
      if not st[1] then verdict = '-1 ' .. (nb + j) .. ' 0' break end
      if tonumber(st[1]) + (tonumber(st[2]) or 0) + amount > limit then verdict = '0 ' .. (nb + j) .. ' -1' break end
    end
  end
  if not verdict then
    local parts = {'1'}
    for i = 1, nb do
      local o = b0 + 3 * (i - 1)
      local key, left = KEYS[a[o]], levels[i] - a[o + 2]
      redis.call('HSET', key, 't', string.format('%.17g', left), 'ts', string.format('%.6f', now))
      redis.call('EXPIRE', key, 180)
      parts[#parts + 1] = string.format('%.17g', left)
    end
    for j = 1, nq do
      local o = q0 + 3 * (j - 1)
      redis.call('HINCRBY', KEYS[a[o]], 'r', string.format('%d', a[o + 2]))
    end
    verdict = table.concat(parts, ' ')
  end
  out[r] = verdict
end
return out
"""

# KEYS: buckets (nb), then quotas.  ARGV[1]: JSON [nb, (per_minute, refund)×nb, (released, spent)×nq]
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local a = cjson.decode(ARGV[1])
local nb = a[1]
for i = 1, nb do
  local cap, amount = a[2 * i], a[2 * i + 1]
  local st = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tokens, ts = tonumber(st[1]) or cap, tonumber(st[2]) or now
  tokens = math.min(cap, tokens + math.max(0, now - ts) * cap / 60) + amount
  redis.call('HSET', KEYS[i], 't', string.format('%.17g', tokens), 'ts', string.format('%.6f', now))
  redis.call('EXPIRE', KEYS[i], 180)
end
local off = 2 + 2 * nb
for j = 1, #KEYS - nb do
  redis.call('HINCRBY', KEYS[nb + j], 'r', string.format('%d', -a[off + 2 * j - 2]))
  redis.call('HINCRBY', KEYS[nb + j], 's', string.format('%d', a[off + 2 * j - 1]))
end
return 1
"""

_Request = tuple[list[tuple[Bucket, float]], list[tuple[Quota, int]], "asyncio.Future[Admission]"]


def _parse(verdict: str, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]]) -> Admission:
    parts = verdict.split(" ")
    status = int(parts[0])
    if status == 1:
        return Admission(True, [float(left) for left in parts[1:]])
    index = int(parts[1]) - 1
    if status == -1:
        return Admission(False, unloaded=quotas[index - len(buckets)][0])
    name = buckets[index][0].name if index < len(buckets) else quotas[index - len(buckets)][0].name
    return Admission(False, failed=name, retry_after=float(parts[2]))


class RedisCounters(Counters):
    def __init__(self, url: str, prefix: str = "openmaas:", max_batch: int = 256) -> None:
        self.client: redis.Redis = redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.max_batch = max_batch
        self._admit = self.client.register_script(_ADMIT)
        self._settle = self.client.register_script(_SETTLE)
        self._waiting: list[_Request] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.ping()
        self._task = asyncio.create_task(self._admitter(), name="openmaas-redis-admission")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def admit(self, buckets: list[tuple[Bucket, float]], quotas: list[tuple[Quota, int]]) -> Admission:
        future: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._waiting.append((buckets, quotas, future))
        self._wake.set()
        return await future

    async def _admitter(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            try:
                verdicts = await self._run(batch)
            except Exception as exc:  # Redis unreachable: these requests fail, later ones try again
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            abandoned: list[Settlement] = []
            for (buckets, quotas, future), verdict in zip(batch, verdicts, strict=True):
                admission = _parse(verdict, buckets, quotas)
                if not future.done():
                    future.set_result(admission)
                elif admission.ok:  # the caller was cancelled meanwhile: give back what it took
                    refunds = [(b, float(cost)) for b, cost in buckets if b.kind == "tokens"]
                    abandoned.append(Settlement(refunds, [(q, amount, 0) for q, amount in quotas]))
            if abandoned:
                with contextlib.suppress(Exception):
                    await self.settle(abandoned)

    async def _run(self, batch: list[_Request]) -> list[str]:
        index: dict[str, int] = {}
        requests: list[list[Any]] = []

        def slot(name: str) -> int:
            found = index.get(name)
            if found is None:
                found = index[name] = len(index) + 1
            return found

        for buckets, quotas, _ in batch:
            spec: list[Any] = [len(buckets), len(quotas)]
            for bucket, cost in buckets:
                spec += (slot(bucket.name), bucket.per_minute, cost)
            for quota, amount in quotas:
                spec += (slot(quota.name), quota.limit, amount)
            requests.append(spec)
        keys = [self.prefix + name for name in index]
        result: list[str] = await self._admit(keys=keys, args=[orjson.dumps(requests)])
        return result

    async def seed(self, quota: Quota, spent: int) -> None:
        key = self.prefix + quota.name
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "s", spent)
            if quota.ttl:
                pipe.expire(key, quota.ttl)
            await pipe.execute()

    async def settle(self, settlements: list[Settlement]) -> None:
        refunds: dict[str, list[Any]] = {}  # name → [bucket, amount]
        quotas: dict[str, list[int]] = {}  # name → [released, spent]
        for s in settlements:
            for bucket, amount in s.refunds:
                refunds.setdefault(bucket.name, [bucket, 0.0])[1] += amount
            for quota, reserved, actual in s.quotas:
                totals = quotas.setdefault(quota.name, [0, 0])
                totals[0] += reserved
                totals[1] += actual
        if not refunds and not quotas:
            return
        args: list[Any] = [len(refunds)]
        for bucket, amount in refunds.values():
            args += (bucket.per_minute, amount)
        for released, spent in quotas.values():
            args += (released, spent)
        keys = [self.prefix + name for name in (*refunds, *quotas)]
        await self._settle(keys=keys, args=[orjson.dumps(args)])

    async def quota_state(self, quota: Quota) -> tuple[int, int] | None:
        spent, reserved = await self.client.hmget(self.prefix + quota.name, ["s", "r"])
        return None if spent is None else (int(spent), int(reserved or 0))
