-- After a committed batch: drop each content id from its user's dirty set unless a newer
-- heartbeat has marked the member dirty again meanwhile.
-- KEYS[1] = pb:dirty; ARGV: 1 app.keys.USER_DIRTY_PREFIX (.. user id is the user's dirty set),
-- then the flushed members ("{user_id}:{content_id}").
for i = 2, #ARGV do
  local m = ARGV[i]
  if redis.call('SISMEMBER', KEYS[1], m) == 0 then
    local sep = string.find(m, ':', 1, true)
    if sep then
      redis.call('SREM', ARGV[1] .. string.sub(m, 1, sep - 1), string.sub(m, sep + 1))
    end
  end
end
return 1
