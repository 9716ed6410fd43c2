-- settle.lua, then, for a call on a vendor object counted by exposure (state/exposure.py),
-- what its answer shows of the object, in the same atomic step: the object's record is
-- found through the call's link (written by exposure_reserve.lua), and what no answer says
-- could still move is given back to every counter of the charges it came from.
--
-- Keys and arguments are settle.lua's, and after them: ARGV[7] the micro-USD the answer
-- shows the object holds ('' when it does not show), ARGV[8] the object's state as the
-- answer shows it ('' if none), ARGV[9] the record of the object a create's answer names
-- ('' if none). A plain settle (the reaper's) passes none of them: the money stays held.
-- Returns what settle.lua returns, followed, when the call was on an object, by '__x', the
-- stream entry of the give-backs' ledger rows ('' if none), those rows, and their total.

local out, ln = (function()
-- @settle.lua
end)()

-- a call reserved with no link (plain reserve.lua) has no object: no link to look for
if out[1] ~= 1 or ln == '0' then return out end
local link_key = string.sub(KEYS[4], 1, -5) .. 'ol:' .. ARGV[1]
local link = redis.call('GET', link_key)
if not link then return out end
redis.call('DEL', link_key)
local linked = string.sub(link, 1, 2) == 'o:'
local record = string.sub(link, 3)
if not linked then
  if (ARGV[9] or '') == '' then return out end  -- the create's answer named no object
  record = record .. ARGV[9]
end

local mode, shown, state = out[10], ARGV[7] or '', ARGV[8] or ''  -- as settle.lua applied it
local f = redis.call('HMGET', record, 'version', 'held', 'inflight', 'seen', 'charges')
local held, inflight = tonumber(f[2] or '0'), tonumber(f[3] or '0')
local seen = f[4] or ''
local charges = {}
if f[5] then charges = cjson.decode(f[5]) end
local rec, row = cjson.decode(out[5]), cjson.decode(out[6])
local cost, amount = tonumber(out[2]), tonumber(rec.amount)

if linked then
  held = held - (amount - cost)
  inflight = inflight - 1
  if inflight < 0 then inflight = 0 end
else
  held = held + cost
end
if cost > 0 then
  local holds = {}
  for _, hold in ipairs(rec.holds) do holds[#holds + 1] = hold[1] end
  charges[#charges + 1] = {ARGV[1], string.format('%d', cost), holds,
    {row.key_id, row.agent, row.grp, row.labels, row.vendor, row.ts_ms}}
end
if mode ~= 'void' then
  if mode == 'unsettled' or shown == '' then
    seen = '-1'
  elseif seen == '' then
    seen = shown
  elseif seen ~= '-1' and tonumber(shown) > tonumber(seen) then
    seen = shown
  end
  if mode == 'settled' and state ~= '' then redis.call('HSET', record, 'state', state) end
end

local rows, given = {}, 0
if inflight == 0 then
  if seen ~= '' and seen ~= '-1' and tonumber(seen) < held then
    local over = held - tonumber(seen)
    while over > 0 and #charges > 0 do
      local charge = charges[#charges]
      local left = tonumber(charge[2])
      local take = math.min(over, left)
      for _, key in ipairs(charge[3]) do
        if redis.call('EXISTS', key) == 1 then
          redis.call('HINCRBY', key, 'spent', string.format('%d', -take))
        end
      end
      local who = charge[4]
      rows[#rows + 1] = {t = 'row', row = {
        request_id = ARGV[1] .. '.' .. (#rows + 1), ts_ms = who[6], key_id = who[1],
        agent = who[2], grp = who[3], labels = who[4], vendor = who[5], model = cjson.null,
        route = 'vendor.' .. tostring(who[5]), decision = 'credit', code = cjson.null,
        scope = cjson.null, status = cjson.null, reserved = 0, cost = -take,
        settlement = 'settled', spent = cjson.null, cap = cjson.null, tokens = 0,
        worker = cjson.null, idem = cjson.null}}
      if take == left then
        charges[#charges] = nil
      else
        charge[2] = string.format('%d', left - take)
      end
      over, held, given = over - take, held - take, given + take
    end
  end
  seen = ''
end

if held == 0 and inflight == 0 and #charges == 0
    and redis.call('HEXISTS', record, 'state') == 0 then
  redis.call('DEL', record)  -- an object the vendor did not know: nothing left to count
else
  local version = tonumber(f[1] or '0') + 1
  local kept = '[]'
  if #charges > 0 then kept = cjson.encode(charges) end
  redis.call('HSET', record, 'version', string.format('%d', version),
    'held', string.format('%d', held), 'inflight', string.format('%d', inflight),
    'seen', seen, 'charges', kept)
end
local entry, text = '', ''
if #rows > 0 then
  text = cjson.encode(rows)
  entry = redis.call('XADD', KEYS[3], '*', 'k', 'j', 'e', text)
end
out[#out + 1] = '__x'
out[#out + 1] = entry
out[#out + 1] = text
out[#out + 1] = string.format('%d', given)
return out
