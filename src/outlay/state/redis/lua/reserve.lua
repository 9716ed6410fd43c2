-- Decide and reserve one call, all or nothing: every check of every scope, then (only if
-- none that blocks is breached) every write. Money is integer micro-USD throughout.
--
-- KEYS[1] meta hash (version, ready, skew)   KEYS[2] leases zset   KEYS[3] the reservation hash
-- KEYS[4] this worker's WAL stream      KEYS[5] idempotency key (or the meta hash: unused)
-- KEYS[6] workers zset   KEYS[6+i] the state key of check i
-- ARGV[1] now in ms, or '' for the server's clock (TIME)
-- ARGV[2] the policy version the caller decided with   ARGV[3] lease in ms
-- ARGV[4] request id   ARGV[5] 1 if KEYS[5] is an idempotency key to claim
-- ARGV[6] the reservation record (JSON: amount, tokens, holds, tpm, parallel, …)
-- ARGV[7] the ledger row (JSON)   ARGV[8] number of checks   ARGV[9] this worker's name
-- ARGV[10] the checks, five space-separated values each: kind a b c block, where block
--   says what a breach does: 1 refuses the call, 0 lets it through (on_breach alert), 2 lets
--   it through as the call's approval says, 3 lets it through and reports it (shadow)
--   window   'w', bucket width ms, limit, weight  (60 buckets of width ms: see window.lua)
--   parallel 'p', max in flight, 0, 0
--   pause    'z', 0, 0, 0: an endpoint paused (an upstream 429) until the key's value in ms
--   budget   'b', cap (-1: a soft budget, never breached), amount, and whether this check
--            holds the counter (once per counter, whatever number of budgets share it):
--            0 no, -1 yes, n > 0 yes and the counter, when this call makes it, expires n ms
--            from now
--   loop guard 'l', bucket width ms, max_repeats, window ms: a request's admissions
--            (bucket -> count); a bucket counts while its start + the window is after now
--   tag values 't', max_values, the value's index in the record's `tv` list, and the set's
--            expiry in ms (n > 0) or -1: a value of a `tag:<name>=*` policy, tracked in the
--            set KEYS[5+i]; a new one past max_values refuses at once ('too_many_values')
-- A window's snapshot is one string (window.lua): now's bucket, the sum of the 59 buckets
-- before it, its count, then those 59 counts, newest first.
-- Returns {status, now, …}: 'ok' with the WAL entry id, overage (0 none, 1 let through by
-- alert, 2 by the approval, which the call then uses, 3 only reported: shadow), tightest hard budget
-- (remaining, cap) and the snapshot; 'refused' with the snapshot; 'stale' with the
-- version; 'not_ready'; 'replay' with the first request id; 'taken' when this request id
-- holds a reservation already or was voided (its first attempt's answer was lost).

-- @window.lua

local meta = redis.call('HMGET', KEYS[1], 'ready', 'version', 'skew')
if not meta[1] then return {'not_ready'} end
if meta[2] ~= ARGV[2] then return {'stale', meta[2]} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'taken'} end

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end

if ARGV[5] == '1' then
  local first = redis.call('GET', KEYS[5])
  if first then return {'replay', now, first} end
end

local n = tonumber(ARGV[8])
local spec = {}
-- each value as a number and as sent (a string to pass on costs no string.format); numbers
-- by arithmetic (`+ 0`), which converts once where tonumber converts twice
for kind, a, b, c, block in string.gmatch(ARGV[10], '(%a) (%-?%d+) (%-?%d+) (%-?%d+) (%d)') do
  spec[#spec + 1] = {kind, a + 0, b + 0, c + 0, block, a, b, c}
end
local snapshot = {}
local blocked, overage = false, 0
local tight_rem, tight_cap, tight_text = nil, nil, nil
local state, fresh = {}, {}
local tagvals = nil
for i = 1, n do
  local kind, a, b, c, block = unpack(spec[i])
  local key = KEYS[6 + i]
  local breached = false
  if kind == 'w' then
    local seen, used, write, turned = window_seen(key, math.floor(now / a), c)
    breached = used + c > b
    state[i], fresh[i] = write, turned
    snapshot[i] = {seen}
  elseif kind == 't' then
    if tagvals == nil then tagvals = cjson.decode(ARGV[6]).tv end
    state[i] = false
    if redis.call('SISMEMBER', key, tagvals[b]) == 0 then
      if redis.call('SCARD', key) >= a then return {'too_many_values', now, b} end
      state[i] = true
    end
    snapshot[i] = {}
  elseif kind == 'l' then
    local fields = redis.call('HGETALL', key)
    local used, seen, stale = 0, {}, {}
    local bucket = math.floor(now / a)
    local field = nil  -- now's bucket's field, if the hash has it
    for j = 1, #fields, 2 do
      local at = fields[j] + 0
      if at * a + c <= now then
        stale[#stale + 1] = fields[j]
      else
        used = used + fields[j + 1]
        seen[#seen + 1] = fields[j]
        seen[#seen + 1] = fields[j + 1]
        if at == bucket then field = fields[j] end
      end
    end
    if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
    breached = used + 1 > b
    -- as a window's: the expiry set when now's bucket was first counted outlasts it
    state[i] = field or string.format('%d', bucket)
    fresh[i] = field == nil
    snapshot[i] = seen
  elseif kind == 'z' then
    local untl = tonumber(redis.call('GET', key) or '0')
    breached = untl > now
    snapshot[i] = {string.format('%d', untl)}
  elseif kind == 'p' then
    local inflight = tonumber(redis.call('GET', key) or '0')
    breached = inflight + 1 > a
    snapshot[i] = {string.format('%d', inflight)}
  else
    local counter = redis.call('HMGET', key, 'spent', 'reserved')
    local spent, reserved = (counter[1] or 0) + 0, (counter[2] or 0) + 0
    if a >= 0 then
      breached = spent + reserved + b > a
      local rem = a - spent - reserved - b
      if rem < 0 then rem = 0 end
      if block ~= '3' and (tight_rem == nil or rem < tight_rem
          or (rem == tight_rem and a < tight_cap)) then
        tight_rem, tight_cap, tight_text = rem, a, spec[i][6]
      end
    end
    -- as stored (integers, written by HINCRBY or the rebuild)
    snapshot[i] = {counter[1] or '0', counter[2] or '0'}
    -- a counter is given its expiry when it is made (here, by adopt.lua or the rebuild):
    -- one that holds a period outlives it by a day, however late in it the first call
    fresh[i] = not counter[1] and not counter[2]
  end
  if breached then
    if block == '1' then
      blocked = true
    elseif block == '2' then
      overage = 2
    elseif block == '3' then
      if overage == 0 then overage = 3 end
    elseif overage ~= 2 then
      overage = 1
    end
  end
end
if blocked then return {'refused', now, snapshot} end

for i = 1, n do
  local kind, a, b, c, _, _, b_text, c_text = unpack(spec[i])
  local key = KEYS[6 + i]
  if kind == 'w' then
    if c > 0 then
      if state[i] == true then
        redis.call('HINCRBY', key, 'c', c_text)
      else
        if fresh[i] == 'hash' then redis.call('DEL', key) end
        redis.call('HSET', key, unpack(state[i]))
        -- a new bucket: the window expires 62 buckets from now, past the last moment that
        -- bucket counts (a bucket already counted keeps the expiry it set)
        if fresh[i] then redis.call('PEXPIRE', key, a * 62) end
      end
    end
  elseif kind == 'p' then
    redis.call('INCR', key)
  elseif kind == 'l' then
    redis.call('HINCRBY', key, state[i], 1)
    if fresh[i] then redis.call('PEXPIRE', key, c + a) end
  elseif kind == 't' then
    if state[i] then
      redis.call('SADD', key, tagvals[b])
      if c > 0 then redis.call('PEXPIRE', key, c) end
    end
  elseif c ~= 0 then
    redis.call('HINCRBY', key, 'reserved', b_text)
    if c > 0 and fresh[i] then redis.call('PEXPIRE', key, c) end
  end
end

local id = ARGV[4]
-- on the store's clock of time it was alive (beat.lua), as the reaper reads it
local lease = now - tonumber(meta[3] or '0') + tonumber(ARGV[3])
local sp, cap = '', ''
if tight_cap then
  sp, cap = string.format('%d', tight_cap - tight_rem), tight_text
end
-- fwd 0: not yet forwarded (forward.lua marks it just before the call is sent); ln 1 for a
-- call linked to a vendor object (exposure_reserve.lua, whose last argument is the link),
-- 0 for any other, whose settlement then looks for no link
local ln = '0'
if ARGV[13] then ln = '1' end
redis.call('HSET', KEYS[3], 'rec', ARGV[6], 'row', ARGV[7], 'ov', overage, 'sp', sp,
  'cap', cap, 'at', string.format('%d', now), 'fwd', '0', 'ln', ln)
redis.call('ZADD', KEYS[2], lease, ARGV[9] .. ' ' .. id)
-- a worker that holds a lease is alive now: known to the reaper from its first reservation
-- on a state rebuilt since its last heartbeat, not only from its next heartbeat
redis.call('ZADD', KEYS[6], 'NX', now - tonumber(meta[3] or '0'), ARGV[9])
if ARGV[5] == '1' then redis.call('SET', KEYS[5], id, 'PX', 604800000) end
local entry = redis.call('XADD', KEYS[4], '*', 'k', 'r', 'row', ARGV[7], 'ov', overage,
  'sp', sp, 'cap', cap)
return {'ok', now, entry, overage, sp, cap, snapshot}
