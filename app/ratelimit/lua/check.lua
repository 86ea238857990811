-- After ratelimit.lua: the limits alone. KEYS: the limits' keys; ARGV as rate_limit() reads them
-- from 1 (the member suffix, then a (limit, window ms) pair per key). Returns rate_limit()'s answer.
return rate_limit(KEYS, 1)
