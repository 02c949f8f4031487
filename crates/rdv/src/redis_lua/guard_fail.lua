-- One failed lookup from ARGV[13] (source); ARGV[14..16]: max failures,
-- window, lockout (ms). The guessing guard of guard.rs, shared by every
-- instance. Returns 1 when this failure started a lockout.
local key = P .. 'g:' .. ARGV[13]
local maxf, window, lockout = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
local e = redis.call('HMGET', key, 'ws', 'f', 'lu')
local ws, f, lu = tonumber(e[1] or now), tonumber(e[2] or '0'), tonumber(e[3] or '0')
if lu > 0 and now >= lu then lu = 0; f = 0; ws = now end
if now >= ws + window then ws = now; f = 0 end
f = f + 1
local started = 0
if lu == 0 and f > maxf then
  lu = now + lockout
  started = 1
  redis.call('INCR', P .. 'lockouts')
end
redis.call('HSET', key, 'ws', ws, 'f', f, 'lu', lu)
redis.call('PEXPIRE', key, window + lockout + GC_MARGIN)
return started
