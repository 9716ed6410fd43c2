-- A budget period new to a scope: its counter starts from the spend the ledger shows, and
-- holds the scope's calls in flight, whose records learn to release it when they settle.
--
-- KEYS[1] the counter   KEYS[2] leases zset
-- ARGV[1] scope   ARGV[2] period   ARGV[3] period start   ARGV[4] spent so far
-- ARGV[5] 1 if the budget warns or is soft   ARGV[6] the installation's key prefix
-- ARGV[7] the budget's flow (spend, or out): only the calls of that flow count toward it
-- ARGV[8] the counter's expiry in ms (as reserve.lua gives a counter it makes), or -1: none

local reserved = 0
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local id = string.sub(member, string.find(member, ' ', 1, true) + 1)
  local key = ARGV[6] .. 'r:' .. id
  local text = redis.call('HGET', key, 'rec')
  if text then
    local rec = cjson.decode(text)
    local at = tonumber(redis.call('HGET', key, 'at'))
    local mine = (rec.flow or 'spend') == ARGV[7]
    local scoped = false
    for _, scope in ipairs(rec.scopes) do
      if scope == ARGV[1] then scoped = true end
    end
    for _, hold in ipairs(rec.holds) do
      if hold[1] == KEYS[1] then mine = false end
    end
    if mine and scoped and at >= tonumber(ARGV[3]) then
      table.insert(rec.holds, {KEYS[1], tonumber(ARGV[5])})
      if ARGV[5] == '1' then
        table.insert(rec.watched, {ARGV[1], ARGV[2], tonumber(ARGV[3])})
      end
      redis.call('HSET', key, 'rec', cjson.encode(rec))
      reserved = reserved + tonumber(rec.amount)
    end
  end
end
redis.call('HSET', KEYS[1], 'spent', ARGV[4], 'reserved', string.format('%d', reserved))
if tonumber(ARGV[8]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[8]) end
return reserved
