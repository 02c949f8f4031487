-- GET joiner-offers. ARGV[13]: code, ARGV[14]: bearer ('' for none). A
-- host's poll renews the session. Returns 'ok', has-unanswered (0/1), then
-- joinerId, sdp, ts per live offer in arrival order.
local code, bearer = ARGV[13], ARGV[14]
local s, changed = live(code)
if not s then return {'none'} end
if is_host(s, bearer) then
  s.exp = now + TTL
  s.last = now
  redis.call('ZADD', IDX, s.exp, code)
  redis.call('ZADD', LAST, now, code)
  changed = true
end
if changed then save(code, s) end
local out = {'ok', 0}
for _, j in ipairs(s.j) do
  if j.o then
    if not j.a then out[2] = 1 end
    out[#out + 1] = j.id
    out[#out + 1] = j.o
    out[#out + 1] = j.ots
  end
end
return out
