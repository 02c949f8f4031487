-- POST joiner-offer, after the body was validated. ARGV[13..16]: code,
-- joinerId, sdp, source. Same order of checks as table.rs. The offer's ts
-- is `now` (wall-clock milliseconds here).
local code, id, sdp, src = ARGV[13], ARGV[14], ARGV[15], ARGV[16]
local s, changed = live(code)
if not s then return {'err', 'NoSession'} end
local pos = nil
for i, j in ipairs(s.j) do if j.id == id then pos = i; break end end
local function refuse(kind)
  if changed then save(code, s) end
  return {'err', kind}
end
if pos and s.j[pos].o then return refuse('JoinerIdInUse') end
if live_offers(s) >= MAX_PEERS then return refuse('SessionFull') end
local n = #sdp
if sdp_bytes(s) + n > SESSION_BUDGET then return refuse('SessionBudget') end
if src ~= '' and source_bytes(src) + n > SOURCE_BUDGET then return refuse('SourceBudget') end
if total_bytes() + n > TOTAL_BUDGET then return refuse('ServerBudget') end
credit(src, n)
local j
if pos then
  j = table.remove(s.j, pos)
else
  j = {id = id, o = false, a = false, osrc = '', asrc = '', oexp = 0, aexp = 0, ots = 0}
end
j.o = sdp; j.oexp = now + TTL; j.ots = now; j.osrc = src
local max_records = math.max(MAX_RECORDS, MAX_PEERS)
if #s.j >= max_records then
  for i, r in ipairs(s.j) do
    if not r.o then drop_record_answer(r); table.remove(s.j, i); break end
  end
end
s.j[#s.j + 1] = j
save(code, s)
redis.call('PUBLISH', CH, code)
return {'ok'}
