-- Gauges for /metrics: sessions, SDP bytes, expired, evicted, lockouts.
return {tonumber(redis.call('ZCARD', IDX)), total_bytes(),
  tonumber(redis.call('GET', P .. 'expired') or '0'),
  tonumber(redis.call('GET', P .. 'evicted') or '0'),
  tonumber(redis.call('GET', P .. 'lockouts') or '0')}
