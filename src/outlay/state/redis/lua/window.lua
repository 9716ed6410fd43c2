-- A rate window is a hash of four fields:
--   b  its newest bucket          c  that bucket's count
--   s  the sum of the counts of the 59 buckets before it
--   t  those 59 counts, newest first, separated by spaces
-- (integers; those in `t` and `s` exact up to 2^53, as money is). A call in a bucket already
-- counted reads the four fields and adds its weight to `c` (HINCRBY); a settlement that
-- corrects that bucket reads `b` and `c` and adds to `c`. Only a call in a new bucket (or a
-- correction of an older one) rewrites `t`, a string it changes at its start. No call turns
-- 60 values into Lua's and back (state/redis/windows.py reads and writes the same hash).
-- A hash of bucket -> count at a window's key is a window an earlier version wrote: it is
-- read as that version counted it, and written anew.

local WINDOW_ZEROS = string.rep('0 ', 58) .. '0'  -- the 59 counts of buckets never counted

-- the start of count j (1 = the newest) in `t`, and the position just past it (no count
-- holds a space: each is found with a plain search)
local function window_field(counts, j)
  local at = 1
  for _ = 2, j do at = string.find(counts, ' ', at, true) + 1 end
  local stop = string.find(counts, ' ', at, true) or #counts + 1
  return at, stop
end

-- the fields of a window of an earlier version (its bucket -> count, flat) seen from
-- `bucket`: its buckets that count then (the 60 up to `bucket`)
local function window_of_hash(flat, bucket)
  local counts, sum = {}, 0
  for k = 1, 60 do counts[k] = '0' end
  for j = 1, #flat, 2 do
    local at = flat[j] + 0
    if at <= bucket and at > bucket - 60 then
      counts[bucket - at + 1] = string.format('%d', flat[j + 1] + 0)
      if at < bucket then sum = sum + flat[j + 1] end
    end
  end
  local newest = counts[1]
  table.remove(counts, 1)
  return newest, sum, table.concat(counts, ' ')
end

-- The window at `key` seen from `bucket`, before a call adds `weight` to it. Returns its
-- snapshot (a string: the bucket, the sum of the 59 buckets before it, the bucket's count,
-- then those 59 counts newest first), what it holds (the sum of the counts that count at
-- `bucket`), and how to add the weight: true to add it to `c`, else the fields to write
-- (HSET); and whether they start a new bucket (the key's expiry then set again), 'hash'
-- when they replace a hash of an earlier version (deleted first), else false.
local function window_seen(key, bucket, weight)
  local got = redis.call('HMGET', key, 'b', 'c', 's', 't')
  local b, c, s, t = got[1], got[2], got[3], got[4]
  if b and b + 0 == bucket then  -- the usual call: in a bucket already counted
    return b .. ' ' .. s .. ' ' .. c .. ' ' .. t, c + s, true, false
  end
  local newest, sum, counts, turned = nil, nil, nil, true
  if not b then
    if redis.call('EXISTS', key) == 1 then  -- a hash of an earlier version
      newest, sum, counts = window_of_hash(redis.call('HGETALL', key), bucket)
      turned = 'hash'
    else
      newest, sum, counts = '0', 0, WINDOW_ZEROS
    end
  else
    local gap = bucket - b
    if gap >= 60 or gap <= -60 then
      -- every bucket it holds left the window; or, the clock having gone back, every one is
      -- newer: the window starts again from `bucket`
      newest, sum, counts = '0', 0, WINDOW_ZEROS
    elseif gap > 0 then  -- buckets have begun since: the gap's new buckets are empty
      local kept, gone
      if gap == 1 then  -- the usual turn of a bucket: the oldest count leaves
        kept, gone = string.match(t, '^(.*) (%d+)$')
        sum = s - gone
      else
        kept, gone, sum = '', t, s + 0
        if gap < 59 then
          local _, past = window_field(t, 59 - gap)
          kept, gone = string.sub(t, 1, past - 1), string.sub(t, past + 1)
        end
        for count in string.gmatch(gone, '%d+') do sum = sum - count end
      end
      counts = string.rep('0 ', gap - 1) .. c
      if kept ~= '' then counts = counts .. ' ' .. kept end
      newest, sum = '0', sum + c
    else
      -- the clock went back: counts newer than `bucket` do not count now, and the window
      -- keeps them; `bucket`'s count is added to where it is
      gap = -gap
      local from, past = window_field(t, gap)
      local own = string.sub(t, from, past - 1)
      local newer = 0
      if gap > 1 then
        for count in string.gmatch(string.sub(t, 1, from - 2), '%d+') do newer = newer + count end
      end
      local rest = string.sub(t, past + 1)
      if rest ~= '' then rest = rest .. ' ' end
      local older = s - newer - own
      local seen = string.format('%d %d %s %s', bucket, older, own, rest) ..
        string.rep('0 ', gap - 1) .. '0'
      return seen, older + own, {'s', string.format('%d', s + weight),
        't', string.sub(t, 1, from - 1) .. string.format('%d', own + weight) ..
        string.sub(t, past)}, false
    end
  end
  return string.format('%d %d %s %s', bucket, sum, newest, counts), sum + newest,
    {'b', string.format('%d', bucket), 'c', string.format('%d', newest + weight),
     's', string.format('%d', sum), 't', counts}, turned
end

-- Correct bucket `bucket`'s count of the window at `key` by `delta` (not below 0), if the
-- window still holds that bucket (a settlement: the tokens the provider reported rather
-- than the estimate counted at admission). The key's expiry stands.
local function window_corrected(key, bucket, delta)
  local got = redis.call('HMGET', key, 'b', 'c')
  local b, c = got[1], got[2]
  if not b then  -- none; or a hash of an earlier version: corrected as it did
    local field = string.format('%d', bucket)
    local count = redis.call('HGET', key, field)
    if count then
      local fixed = count + delta
      if fixed < 0 then fixed = 0 end
      redis.call('HSET', key, field, string.format('%d', fixed))
    end
    return
  end
  local gap = b - bucket
  if gap == 0 then
    if c + delta >= 0 then
      redis.call('HINCRBY', key, 'c', string.format('%d', delta))
    else
      redis.call('HSET', key, 'c', '0')
    end
  elseif gap > 0 and gap < 60 then
    local older = redis.call('HMGET', key, 's', 't')
    local t = older[2]
    local from, past = window_field(t, gap)
    local count = string.sub(t, from, past - 1) + 0
    local fixed = count + delta
    if fixed < 0 then fixed = 0 end
    redis.call('HSET', key, 's', string.format('%d', older[1] + fixed - count),
      't', string.sub(t, 1, from - 1) .. string.format('%d', fixed) .. string.sub(t, past))
  end
end
