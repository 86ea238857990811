-- A fragment: defines refresh_access(key, raw, now, pttl), the access entry's sliding TTL
-- (app.access.service). Preceded by the constants ACCESS_TTL_MS, ACCESS_REFRESH_BELOW_MS and
-- ACCESS_MAX_AGE_MS (``service.ACCESS_LUA_CONSTANTS``). An entry a hot path has just used (raw:
-- its value, "{reason}@{read at, ms}") with less than ACCESS_REFRESH_BELOW_MS of its TTL left is
-- extended to ACCESS_TTL_MS, never past ACCESS_MAX_AGE_MS after its database read; an entry
-- without a read time is left as it is. Extending only when little is left keeps the writes
-- (and the invalidation messages every process's near cache receives for them) to one per
-- entry every ACCESS_TTL_MS - ACCESS_REFRESH_BELOW_MS at most. now: the caller's clock in ms;
-- pttl: the key's PTTL when the caller has it (else read here). Returns the key's PTTL afterwards
-- (nil when the entry has no read time and pttl was not given).
local function refresh_access(key, raw, now, pttl)
  local born = tonumber(string.match(raw, '@(%d+)$'))
  if not born then return pttl end
  pttl = pttl or redis.call('PTTL', key)
  if pttl >= 0 and pttl < ACCESS_REFRESH_BELOW_MS then
    local ttl = math.min(ACCESS_TTL_MS, born + ACCESS_MAX_AGE_MS - now)
    if ttl > pttl then
      redis.call('PEXPIRE', key, ttl)
      return ttl
    end
  end
  return pttl
end
