-- GET /code/<c> (and the existence check before a body is read).
-- ARGV[13]: code. Does not extend the session.
local code = ARGV[13]
local s, changed = live(code)
if not s then return {'none'} end
if changed then save(code, s) end
return {'ok', s.sid, s.name}
