-- After apply.lua: a heartbeat without an access check (progress.record). Returns apply()'s answer.
return apply()
