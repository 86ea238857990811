-- Cache an access entry read from Postgres just now, and list it in the user's index, unless a
-- writer buried the entry (its tombstone, app.identity.access_entries.TOMBSTONE) or the user's staff status
-- changed (KEYS[3] present) since: the answer read may be the old one (app.access.service).
-- KEYS: 1 access:{user}:{content}, 2 access:u:{user} (the index), 3 access:x:{user}
-- ARGV: 1 the entry ("{reason}@{read at, ms}"), 2 its TTL s, 3 the content id, 4 the index TTL s,
--       5 the tombstone value
-- Returns 1 (cached) or 0 (not cached: a change is recent).
if redis.call('GET', KEYS[1]) == ARGV[5] or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
