-- POST host-answer, after the body was validated. ARGV[13..17]: code,
-- bearer ('' for none), joinerId, sdp, source. Never overwrites (409);
-- renews the session like a host poll.
local code, bearer, id, sdp, src = ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17]
local s, changed = live(code)
if not s then return {'err', 'NoSession'} end
local function refuse(kind)
  if changed then save(code, s) end
  return {'err', kind}
end
if not is_host(s, bearer) then return refuse('TokenRequired') end
local n = #sdp
local rec = nil
for _, j in ipairs(s.j) do if j.id == id then rec = j; break end end
local over = sdp_bytes(s) + n > SESSION_BUDGET
  or (src ~= '' and source_bytes(src) + n > SOURCE_BUDGET)
  or total_bytes() + n > TOTAL_BUDGET
if over and not (rec and rec.a) then return refuse('OverBudget') end
if rec and rec.a then return refuse('AlreadyPosted') end
if not rec then
  if #s.j >= math.max(MAX_RECORDS, MAX_PEERS) then return refuse('TooManyRecords') end
  rec = {id = id, o = false, a = false, osrc = '', asrc = '', oexp = 0, aexp = 0, ots = 0}
  s.j[#s.j + 1] = rec
end
credit(src, n)
rec.a = sdp; rec.aexp = now + TTL; rec.asrc = src
s.exp = now + TTL
s.last = now
redis.call('ZADD', IDX, s.exp, code)
redis.call('ZADD', LAST, now, code)
save(code, s)
redis.call('PUBLISH', CH, code)
return {'ok'}
