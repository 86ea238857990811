-- After apply.lua and refresh.lua: the heartbeat endpoint's write, the access check and the write
-- in one round trip.
-- KEYS 7 access:{user}:{content}, 8 content:gen:{content}; ARGV 13-17 always present ("" unless
-- ARGV[12] is "row"), 18 the generation token of the caller's snapshot ("" for none), 19 the cached
-- reasons that permit the write given that snapshot (",purchased,staff,"), 20 a reason the caller
-- read from Postgres (used only when the access entry is missing, e.g. Redis could not keep it).
-- The access entry is "{reason}@{read at, ms}" (or a bare reason); one that permits the write is
-- extended when little of its TTL is left (refresh_access: the sliding TTL). A writer's tombstone
-- (ACCESS_TOMBSTONE, from ``service.ACCESS_LUA_CONSTANTS``) counts as missing.
-- Returns {-4} (snapshot stale: reload it), {-2} (access entry missing: ask Postgres), {-3, entry}
-- (not permitted), or {apply(), reason}.
if (redis.call('GET', KEYS[8]) or '') ~= ARGV[18] then return {-4} end
local raw = redis.call('GET', KEYS[7])
if raw == ACCESS_TOMBSTONE then raw = false end
local reason = ARGV[20]
if raw then reason = string.match(raw, '^[^@]*') end
if reason == '' then return {-2} end
if not string.find(ARGV[19], ',' .. reason .. ',', 1, true) then return {-3, raw or reason} end
local applied = apply()
if raw then refresh_access(KEYS[7], raw, tonumber(ARGV[6]), nil) end
return {applied, reason}
