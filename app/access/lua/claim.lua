-- After fetch.lua: SPOP a batch of dirty members and fetch their fields in one round trip.
-- KEYS[1] = pb:dirty; ARGV: 1 batch size, 2 app.keys.PROGRESS_PREFIX.
local out = {}
for i, m in ipairs(redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))) do out[i] = line(ARGV[2], m) end
return out
