-- Adds each inflight hash back into the live one, marks the member dirty, deletes the inflight key.
-- KEYS[1] = pb:stats:dirty; ARGV: 1 app.keys.DAILY_STATS_PREFIX (.. member is the live hash), then
-- pairs (inflight key, member).
for i = 2, #ARGV, 2 do
  local src = ARGV[i]
  local live = ARGV[1] .. ARGV[i + 1]
  local data = redis.call('HGETALL', src)
  if #data > 0 then
    for j = 1, #data, 2 do
      if data[j] == 'org' then
        redis.call('HSET', live, 'org', data[j + 1])
      else
        redis.call('HINCRBY', live, data[j], tonumber(data[j + 1]))
      end
    end
    redis.call('SADD', KEYS[1], ARGV[i + 1])
  end
  redis.call('DEL', src)
end
return 1
