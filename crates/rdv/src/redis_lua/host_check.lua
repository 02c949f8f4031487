-- Whether the bearer may act as host (POST host-answer's first checks),
-- and whether it holds the token at all (the guessing-lockout exemption).
-- ARGV[13]: code, ARGV[14]: bearer ('' for none).
local code = ARGV[13]
local bearer = ARGV[14]
local s, changed = live(code)
if not s then return {'none'} end
if changed then save(code, s) end
local holder = 0
if bearer ~= '' and ct_eq(bearer, s.tok) then holder = 1 end
local host = 0
if s.prot == 0 or holder == 1 then host = 1 end
return {'ok', host, holder}
