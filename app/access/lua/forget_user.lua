-- After the library flushed one user's entries: only entries that still hold what was flushed are
-- marked clean; a heartbeat that arrived meanwhile keeps its entry dirty. "What was flushed" is
-- every field a heartbeat can change, not only ts: a heartbeat older than the stored one still
-- raises the furthest position ("max"), and one with the same ts may move the position.
-- KEYS: 1 pb:dirty, 2 pb:dirty:u:{user}; ARGV: 1 app.keys.PROGRESS_PREFIX, 2 user id, then per
-- entry five values: content id, ts, pos, completed (0|1), furthest position as flushed.
-- prefix .. user .. ':' .. content is the progress hash.
local prefix = ARGV[1]
local user = ARGV[2]
for i = 3, #ARGV, 5 do
  local c = ARGV[i]
  local v = redis.call('HMGET', prefix .. user .. ':' .. c, 'ts', 'pos', 'completed', 'max')
  if v[1] == ARGV[i + 1] and tonumber(v[2]) == tonumber(ARGV[i + 2]) and (v[3] or '0') == ARGV[i + 3]
     and math.max(tonumber(v[2]) or 0, tonumber(v[4]) or 0) <= tonumber(ARGV[i + 4]) then
    redis.call('SREM', KEYS[1], user .. ':' .. c)
    redis.call('SREM', KEYS[2], c)
  end
end
return 1
