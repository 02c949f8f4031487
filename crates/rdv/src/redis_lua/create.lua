-- POST /session. ARGV[13..17]: sessionId, displayName, protect (0/1),
-- source ('' for none), host token; ARGV[18..]: candidate codes drawn by
-- the server, the first one not live is taken.
local src = ARGV[16]
if tonumber(redis.call('ZCARD', IDX)) >= MAX_SESSIONS then
  sweep(SWEEP_LIMIT)
  if tonumber(redis.call('ZCARD', IDX)) >= MAX_SESSIONS then
    -- First choice: the longest idle session; else the least recently
    -- polled session of the biggest holder, if it holds two more than src.
    local victim = nil
    local oldest = redis.call('ZRANGE', LAST, 0, 0, 'WITHSCORES')
    if oldest[1] and tonumber(oldest[2]) <= now - IDLE_AFTER then victim = oldest[1] end
    if not victim then
      local mine = 0
      if src ~= '' then mine = tonumber(redis.call('ZSCORE', SRCN, src) or '0') end
      local big = redis.call('ZREVRANGE', SRCN, 0, 0, 'WITHSCORES')
      if not big[1] or tonumber(big[2]) < mine + 2 then return {'err', 'ServerFull'} end
      local best = nil
      for _, c in ipairs(redis.call('SMEMBERS', SS(big[1]))) do
        local t = tonumber(redis.call('ZSCORE', LAST, c) or '0')
        if not best or t < best then best = t; victim = c end
      end
      if not victim then return {'err', 'ServerFull'} end
    end
    remove(victim, load(victim))
    redis.call('INCR', P .. 'evicted')
    redis.call('PUBLISH', CH, victim)
  end
end
if src ~= '' and tonumber(redis.call('ZSCORE', SRCN, src) or '0') >= MAX_PER_SOURCE then
  sweep(SWEEP_LIMIT)
  if tonumber(redis.call('ZSCORE', SRCN, src) or '0') >= MAX_PER_SOURCE then
    return {'err', 'SourceFull'}
  end
end
local code = nil
for i = 18, #ARGV do
  if not live(ARGV[i]) then code = ARGV[i]; break end
end
if not code then return {'err', 'NoFreeCode'} end
local s = {sid = ARGV[13], name = ARGV[14], prot = tonumber(ARGV[15]), src = src,
  tok = ARGV[17], exp = now + TTL, last = now, j = {}}
save(code, s)
redis.call('ZADD', IDX, s.exp, code)
redis.call('ZADD', LAST, now, code)
if src ~= '' then
  redis.call('ZINCRBY', SRCN, 1, src)
  redis.call('SADD', SS(src), code)
end
return {'ok', code}
