-- After ratelimit.lua and a script wrapped as `local function guarded() … end`: the limits
-- first, then the script, in one call (app/ratelimit: ``guard``). The limiter's arguments follow
-- the script's own: its keys are the last n KEYS, its ARGV the last 2n + 2 (the member suffix,
-- a (limit, window ms) pair per key, then n). The script reads fixed positions, never counts.
-- Returns {rate_limit()'s answer} when refused (the script did not run), else {that answer, the
-- script's answer}. n = 0 runs the script alone: a caller calling again (after a database read)
-- passes no limits, so one request is counted once.
local rl_n = tonumber(ARGV[#ARGV])
local rl_names = {}
for i = 1, rl_n do rl_names[i] = KEYS[#KEYS - rl_n + i] end
local rl = rate_limit(rl_names, #ARGV - 2 * rl_n - 1)
if rl[1] == 0 then return {rl} end
return {rl, guarded()}
