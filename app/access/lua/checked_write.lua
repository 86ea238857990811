-- After apply.lua: the heartbeat endpoint's write, the access check and the write in one round trip.
-- KEYS 7 access:{user}:{content}, 8 content:gen:{content}; ARGV 13-17 always present ("" unless
-- ARGV[12] is "row"), 18 the generation token of the caller's snapshot ("" for none), 19 the cached
-- reasons that permit the write given that snapshot (",purchased,staff,"), 20 a reason the caller
-- read from Postgres (used only when the access entry is missing, e.g. Redis could not keep it).
-- Returns {-4} (snapshot stale: reload it), {-2} (access entry missing: ask Postgres), {-3, reason}
-- (not permitted), or {apply(), reason}.
if (redis.call('GET', KEYS[8]) or '') ~= ARGV[18] then return {-4} end
local reason = redis.call('GET', KEYS[7]) or ARGV[20]
if reason == '' then return {-2} end
if not string.find(ARGV[19], ',' .. reason .. ',', 1, true) then return {-3, reason} end
return {apply(), reason}
