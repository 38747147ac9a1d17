"""The Lua scripts behind ``limits.redis_counters`` (atomic on the Redis server)."""

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
CALL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local call = cjson.decode(ARGV[1])
local share = call[3]
local mine = 'r:' .. call[4]  -- this replica's share of a quota's reservations
local owned = KEYS[#KEYS]     -- the set of quota keys this replica holds reservations in
-- KEYS[#KEYS - 1]: this call's id, remembered 5 minutes once its settlements are applied
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
local o = 2 + 3 * nb
-- Settlements once per call id: a call retried after its reply was lost applies them only once.
if (nb > 0 or s[o] > 0) and redis.call('SET', KEYS[#KEYS - 1], '1', 'NX', 'EX', 300) then
  for i = 0, nb - 1 do
    local k, cap = s[2 + 3 * i], s[3 + 3 * i]
    levels[k] = math.min(cap, level(k, cap) + s[4 + 3 * i])
    dirty[k] = true
  end
  for j = 0, s[o] - 1 do
    local k = s[o + 1 + 3 * j]
    release(k, s[o + 2 + 3 * j])
    incr(k, 's', s[o + 3 + 3 * j])
  end
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
RELEASE_DEAD = """
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if held ~= 0 then redis.call('HINCRBY', KEYS[1], 'r', string.format('%d', -held)) end
redis.call('HDEL', KEYS[1], ARGV[1])
return held
"""
