-- Settle one reservation exactly once: taking (deleting) its record is the point of no
-- return, so a late settle and a racing reaper cannot both apply. The cost is what the
-- provider billed, even above what was reserved (an overrun: then the spent of every hold is
-- returned, so that hard budgets it crossed are announced). Every key named in the record
-- shares the installation's hash tag.
--
-- KEYS[1] the reservation hash   KEYS[2] leases zset   KEYS[3] the settler's WAL stream
-- KEYS[4] meta hash
-- ARGV[1] request id   ARGV[2] settled | settled_estimate | void | unsettled | reaped
-- ARGV[3] actual cost
-- ARGV[4] actual tokens   ARGV[5] HTTP status ('' if none)   ARGV[6] model ('' if none)
-- `reaped` is the reaper's: `unsettled` (charged in full, the call may have been served),
-- but `void` for a call its worker never marked forwarded (`fwd` 0, see forward.lua): it
-- died before sending it.
-- Returns {-1} while the state is being rebuilt (settle again once it is ready), {0} when
-- already settled, else {1, cost, used tokens, stream entry id, record, row, overage,
-- tightest budget spent and cap, the settlement applied, spent of each watched hold (of
-- every hold on an overrun)…}.

-- @window.lua

if redis.call('HEXISTS', KEYS[4], 'ready') == 0 then return {-1} end
local got = redis.call('HMGET', KEYS[1], 'rec', 'row', 'ov', 'sp', 'cap', 'at', 'fwd', 'ln')
if not got[1] then return {0} end
redis.call('DEL', KEYS[1])
local rec = cjson.decode(got[1])
redis.call('ZREM', KEYS[2], rec.worker .. ' ' .. ARGV[1])
-- each figure as a number and as the integer text it came as (the record's, written by the
-- gateway, or an argument): passed on as it is, with no string.format
local amount, tokens = rec.amount + 0, rec.tokens + 0
local mode = ARGV[2]
if mode == 'reaped' then
  if got[7] == '0' then mode = 'void' else mode = 'unsettled' end
end
local cost, used, cost_text, used_text = ARGV[3] + 0, ARGV[4] + 0, ARGV[3], ARGV[4]
if mode == 'void' then
  cost, used, cost_text, used_text = 0, 0, '0', '0'
elseif amount == 0 then
  cost, cost_text = 0, '0'  -- holds nothing: moves no money, or repeats a call already charged
elseif mode == 'unsettled' then
  cost, used, cost_text, used_text = amount, tokens, rec.amount, rec.tokens
end
local over = cost > amount

local out = {1, cost_text, used_text, '', got[1], got[2], got[3], got[4], got[5], mode}
local release = '0'  -- "-0" is no integer to HINCRBY
if amount ~= 0 then release = '-' .. rec.amount end
for _, hold in ipairs(rec.holds) do
  redis.call('HINCRBY', hold[1], 'reserved', release)
  local spent = redis.call('HINCRBY', hold[1], 'spent', cost_text)
  if over or hold[2] == 1 then out[#out + 1] = spent end
end
if used ~= tokens then  -- as many tokens as counted: nothing to correct
  for _, window in ipairs(rec.tpm) do
    -- window = {key, bucket width}: correct the bucket the tokens were counted in, if kept
    window_corrected(window[1], math.floor(got[6] / window[2]), used - tokens)
  end
end
for _, key in ipairs(rec.parallel) do
  if redis.call('DECR', key) < 0 then redis.call('SET', key, 0) end
end
if mode == 'void' and rec.idem ~= '' then
  -- a refused first attempt must not turn its retries into free replays
  if redis.call('GET', rec.idem) == ARGV[1] then redis.call('DEL', rec.idem) end
end
out[4] = redis.call('XADD', KEYS[3], '*', 'k', 's', 'row', got[2], 'ov', got[3], 'sp', got[4],
  'cap', got[5], 'mode', mode, 'cost', cost_text, 'tokens', used_text, 'status', ARGV[5],
  'model', ARGV[6], 'reserved', rec.amount)
-- and, for exposure_settle.lua (a script returns only its first value), whether the call
-- may be linked to a vendor object: '0' not, '1' or nil (a reservation older than `ln`) may
return out, got[8]
