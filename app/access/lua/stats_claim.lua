-- A rollup run claims a batch: each popped member's live counters are renamed to the run's
-- inflight key, so new heartbeats start a fresh live hash and nothing is counted twice.
-- KEYS[1] = pb:stats:dirty; ARGV: 1 count, 2 run id, 3 app.keys.DAILY_STATS_PREFIX (.. member is
-- the live hash), 4 app.keys.STATS_INFLIGHT_PREFIX (.. run id .. ':' .. member is the inflight hash).
-- Returns {number popped, claimed members…} (a popped member whose counters are gone is dropped,
-- so "none claimed" is not "set empty").
local members = redis.call('SPOP', KEYS[1], tonumber(ARGV[1]))
local claimed = {}
for _, m in ipairs(members) do
  local live = ARGV[3] .. m
  if redis.call('EXISTS', live) == 1 then
    redis.call('RENAME', live, ARGV[4] .. ARGV[2] .. ':' .. m)
    table.insert(claimed, m)
  end
end
table.insert(claimed, 1, #members)
return claimed
