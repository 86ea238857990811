-- A fragment: defines rate_limit(names, a0), the limiter of every request (app/ratelimit).
-- names: the keys of the limits that apply (rl:{scope}:{who}, sorted sets), in the caller's order;
-- ARGV[a0]: a member suffix unique to this request, then one (limit, window ms) pair per key.
-- Each key logs the admitted requests of the last window (score = admission time, Redis TIME in
-- ms, so every web process shares one clock). A request is admitted when every limit has fewer
-- than `limit` entries in (now - window, now]; then, and only then, it is logged under every key:
-- a refused attempt consumes no budget, and no window of any length `window` ever holds more than
-- `limit` admissions (tests/ratelimit/test_algorithm.py).
-- Returns {1, limit, remaining, reset ms, 0, now ms} for the binding limit (the least remaining,
-- first on ties) when admitted, {0, limit, 0, reset ms, retry ms, now ms} for the exceeded limit
-- that frees last when refused, {1} when there is no limit.
local function rate_limit(names, a0)
  if #names == 0 then return {1} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local counts = {}
  local refused = nil
  for i, key in ipairs(names) do
    local limit, window = tonumber(ARGV[a0 + 2 * i - 1]), tonumber(ARGV[a0 + 2 * i])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local count = redis.call('ZCARD', key)
    counts[i] = count
    if count >= limit then
      -- admitted again once the entry `limit` places from the newest leaves the window
      local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
      local retry = tonumber(entry[2]) + window - now
      if not refused or retry > refused[5] then refused = {0, limit, 0, now + retry, retry, now} end
    end
  end
  if refused then return refused end
  local binding = nil
  local member = now .. ':' .. ARGV[a0]
  for i, key in ipairs(names) do
    local limit, window = tonumber(ARGV[a0 + 2 * i - 1]), tonumber(ARGV[a0 + 2 * i])
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, window)
    local remaining = limit - counts[i] - 1
    if not binding or remaining < binding[3] then
      -- the window frees its first place when its oldest entry leaves: this one, if it was empty
      local oldest = now
      if counts[i] > 0 then oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) end
      binding = {1, limit, remaining, oldest + window, 0, now}
    end
  end
  return binding
end
