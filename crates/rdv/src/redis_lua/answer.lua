-- GET host-answer/<id>. ARGV[13]: code, ARGV[14]: joinerId. Unknown
-- sessions and joiners look like "not yet".
local code, id = ARGV[13], ARGV[14]
local s, changed = live(code)
if not s then return {'none'} end
if changed then save(code, s) end
for _, j in ipairs(s.j) do
  if j.id == id and j.a then return {'ok', j.a} end
end
return {'none'}
