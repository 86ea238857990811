-- After fetch.lua: the fields of the given members (nothing is popped).
-- ARGV: 1 app.keys.PROGRESS_PREFIX, then the members.
local out = {}
for i = 2, #ARGV do out[i - 1] = line(ARGV[1], ARGV[i]) end
return out
