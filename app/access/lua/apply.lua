-- A fragment: defines apply(), which write.lua and checked_write.lua call. It applies one
-- heartbeat to the progress hash: newest client_ts wins, completed is sticky, the entry is marked
-- dirty and the day's watch counters are bumped.
-- KEYS: 1 pb:p:{user}:{content} (the hash), 2 pb:dirty, 3 pb:dirty:u:{user},
--       4 pb:seen:{day}:{content}:{user}, 5 pb:stats:{day}:{content}, 6 pb:stats:dirty
-- ARGV: 1 pos, 2 dur, 3 completed (0|1), 4 ts ms, 5 org, 6 now ms, 7 member, 8 content id,
--       9 stats member, 10 hash ttl, 11 seen ttl,
--       12 init: "need" (ask the caller) | "none" (no row) | "row", then 13 pos, 14 dur,
--       15 completed, 16 completed_at ms or "", 17 ts ms (the Postgres row)
-- Field "max" is the furthest position (playback_progress.max_position_seconds): never lowered,
-- clamped to dur, raised even by a heartbeat too old to replace the position. A hash initialised
-- from Postgres starts at the row's position, a lower bound: the flush keeps the greater of the
-- row's furthest position and the hash's, so the row's own never needs to come to Redis.
-- A hash without "ts" is taken as missing: every write sets it (this script, the row it starts
-- from), and one HMGET then tells both whether the hash exists and what it holds.
-- Returns -1 (initialise from Postgres and call again), 0 (older than stored: ignored), 1 (applied).
local function apply()
local h = KEYS[1]
local stored = redis.call('HMGET', h, 'ts', 'pos', 'completed', 'completed_at', 'max')
if not stored[1] then
  if ARGV[12] == 'need' then return -1 end
  if ARGV[12] == 'row' then
    redis.call('HSET', h, 'pos', ARGV[13], 'dur', ARGV[14], 'completed', ARGV[15],
               'completed_at', ARGV[16], 'ts', ARGV[17], 'org', ARGV[5], 'max', ARGV[13])
    stored = {ARGV[17], ARGV[13], ARGV[15], ARGV[16], ARGV[13]}  -- (what HMGET reads back now)
  end
end
local pos = tonumber(ARGV[1])
local dur = tonumber(ARGV[2])
local ts = tonumber(ARGV[4])
local stored_ts = tonumber(stored[1])
-- furthest position: an out-of-order heartbeat still proves the viewer got that far
local stored_max = tonumber(stored[5]) or 0
local max = math.max(stored_max, math.min(pos, dur))
if stored_ts and ts < stored_ts then
  if max > stored_max then
    redis.call('HSET', h, 'max', max)
    redis.call('SADD', KEYS[2], ARGV[7])
    redis.call('SADD', KEYS[3], ARGV[8])
    redis.call('EXPIRE', KEYS[3], ARGV[10])
  end
  return 0
end
local stored_pos = tonumber(stored[2])
local was_completed = stored[3] == '1'
local completed = was_completed or ARGV[3] == '1' or pos >= 0.95 * dur
local completed_at = stored[4] or ''
if completed and not was_completed then completed_at = ARGV[6] end
local delta = 0
if stored_pos and stored_ts then
  local d = pos - stored_pos
  if d > 0 and d <= (ts - stored_ts) / 1000 + 10 then delta = d end
end
redis.call('HSET', h, 'pos', pos, 'dur', dur, 'completed', completed and '1' or '0',
           'completed_at', completed_at, 'ts', ARGV[4], 'org', ARGV[5], 'upd', ARGV[6], 'max', max)
redis.call('EXPIRE', h, ARGV[10])
redis.call('SADD', KEYS[2], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[10])
local counted = false
if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[11]) then
  redis.call('HINCRBY', KEYS[5], 'views_started', 1)
  counted = true
end
if delta > 0 then
  redis.call('HINCRBY', KEYS[5], 'seconds_watched', delta)
  counted = true
end
if completed and not was_completed then
  redis.call('HINCRBY', KEYS[5], 'completions', 1)
  counted = true
end
if counted then
  redis.call('HSET', KEYS[5], 'org', ARGV[5])
  redis.call('SADD', KEYS[6], ARGV[9])
end
return 1
end
