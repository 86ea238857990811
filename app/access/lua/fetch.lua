-- A fragment: defines line(prefix, m), which claim.lua and read.lua call. One string per member,
-- "user:content|pos|dur|completed|completed_at|ts|max" ("" for a missing field): a few hundred short
-- replies parse far faster than eight bulk strings per entry. prefix .. m is the member's progress
-- hash (prefix: app.keys.PROGRESS_PREFIX, passed by the caller as an ARGV).
local function line(prefix, m)
  local v = redis.call('HMGET', prefix .. m, 'pos', 'dur', 'completed', 'completed_at', 'ts', 'max')
  return m .. '|' .. (v[1] or '') .. '|' .. (v[2] or '') .. '|' .. (v[3] or '') .. '|' .. (v[4] or '') .. '|' ..
         (v[5] or '') .. '|' .. (v[6] or '')
end
