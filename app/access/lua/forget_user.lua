-- After the library flushed one user's entries: only entries still at the flushed ts are marked
-- clean; a heartbeat that arrived meanwhile keeps its entry dirty.
-- KEYS: 1 pb:dirty, 2 pb:dirty:u:{user}; ARGV: 1 app.keys.PROGRESS_PREFIX, 2 user id, then
-- (content id, flushed ts) pairs. prefix .. user .. ':' .. content is the progress hash.
local prefix = ARGV[1]
local user = ARGV[2]
for i = 3, #ARGV, 2 do
  local c = ARGV[i]
  if redis.call('HGET', prefix .. user .. ':' .. c, 'ts') == ARGV[i + 1] then
    redis.call('SREM', KEYS[1], user .. ':' .. c)
    redis.call('SREM', KEYS[2], c)
  end
end
return 1
