-- Shared by every script of the Redis store (prepended by redis_store.rs).
-- One script per operation, so each is atomic: Redis runs a script alone.
-- Time is the server's (ARGV[2], wall milliseconds shared by every
-- instance). Sessions carry no Redis expiry: the counters behind the caps
-- (sessions and SDP bytes per source, bytes in total) must be given back by
-- the same script that removes a session, which the sweep does; a key that
-- Redis dropped on its own would leave them counted for ever. Only the
-- guessing counters, which nothing else refers to, expire in Redis.
-- Keys are built here from the prefix: the store targets one Redis (or
-- Valkey) server, not a cluster.
local P = ARGV[1]
local now = tonumber(ARGV[2])
local TTL = tonumber(ARGV[3])
local MAX_SESSIONS = tonumber(ARGV[4])
local MAX_PER_SOURCE = tonumber(ARGV[5])
local MAX_PEERS = tonumber(ARGV[6])
local MAX_RECORDS = tonumber(ARGV[7])
local SESSION_BUDGET = tonumber(ARGV[8])
local SOURCE_BUDGET = tonumber(ARGV[9])
local TOTAL_BUDGET = tonumber(ARGV[10])
local IDLE_AFTER = tonumber(ARGV[11])
local GC_MARGIN = tonumber(ARGV[12])
-- Expired sessions one call removes at most: every script stays bounded.
local SWEEP_LIMIT = 128

local IDX = P .. 'exp'        -- zset code -> expiry
local LAST = P .. 'last'      -- zset code -> last host activity
local SRCN = P .. 'srcn'      -- zset source -> live sessions
local SRCB = P .. 'srcb'      -- hash source -> stored SDP bytes
local TOTAL = P .. 'bytes'    -- stored SDP bytes in total
local CH = P .. 'wake'        -- pub/sub channel, message = code
local function S(code) return P .. 's:' .. code end
local function SS(src) return P .. 'ss:' .. src end

local function ct_eq(a, b)
  if type(a) ~= 'string' or type(b) ~= 'string' or #a ~= #b then return false end
  local d = 0
  for i = 1, #a do d = bit.bor(d, bit.bxor(string.byte(a, i), string.byte(b, i))) end
  return d == 0
end

local function credit(src, n)
  redis.call('INCRBY', TOTAL, n)
  if src ~= '' then redis.call('HINCRBY', SRCB, src, n) end
end

local function debit(src, n)
  if n == 0 then return end
  if tonumber(redis.call('DECRBY', TOTAL, n)) < 0 then redis.call('SET', TOTAL, 0) end
  if src ~= '' then
    if tonumber(redis.call('HINCRBY', SRCB, src, -n)) <= 0 then redis.call('HDEL', SRCB, src) end
  end
end

local function source_bytes(src)
  if src == '' then return 0 end
  return tonumber(redis.call('HGET', SRCB, src) or '0')
end

local function total_bytes() return tonumber(redis.call('GET', TOTAL) or '0') end

local function load(code)
  local raw = redis.call('GET', S(code))
  if not raw then return nil end
  return cmsgpack.unpack(raw)
end

local function save(code, s)
  redis.call('SET', S(code), cmsgpack.pack(s))
end

local function drop_record_offer(j)
  if j.o then debit(j.osrc, #j.o); j.o = false end
end

local function drop_record_answer(j)
  if j.a then debit(j.asrc, #j.a); j.a = false end
end

local function remove(code, s)
  if s then
    for _, j in ipairs(s.j) do drop_record_offer(j); drop_record_answer(j) end
    if s.src ~= '' then
      if tonumber(redis.call('ZINCRBY', SRCN, -1, s.src)) <= 0 then redis.call('ZREM', SRCN, s.src) end
      redis.call('SREM', SS(s.src), code)
    end
  end
  redis.call('ZREM', IDX, code)
  redis.call('ZREM', LAST, code)
  redis.call('DEL', S(code))
end

-- Drops lapsed offers and answers and records left with neither; returns
-- whether anything changed (the caller then saves).
local function purge(s)
  local changed = false
  local kept = {}
  for _, j in ipairs(s.j) do
    if j.o and j.oexp <= now then drop_record_offer(j); changed = true end
    if j.a and j.aexp <= now then drop_record_answer(j); changed = true end
    if j.o or j.a then kept[#kept + 1] = j else changed = true end
  end
  s.j = kept
  return changed
end

-- The live session for code (expired ones removed and announced), with
-- its lapsed records purged, and whether the purge changed it.
local function live(code)
  local s = load(code)
  if not s then
    redis.call('ZREM', IDX, code)
    redis.call('ZREM', LAST, code)
    return nil, false
  end
  if s.exp <= now then
    remove(code, s)
    redis.call('INCR', P .. 'expired')
    redis.call('PUBLISH', CH, code)
    return nil, false
  end
  return s, purge(s)
end

local function is_host(s, bearer)
  return s.prot == 0 or ct_eq(bearer, s.tok)
end

local function sweep(limit)
  local dead = redis.call('ZRANGEBYSCORE', IDX, '-inf', now, 'LIMIT', 0, limit)
  for _, code in ipairs(dead) do
    remove(code, load(code))
    redis.call('INCR', P .. 'expired')
    redis.call('PUBLISH', CH, code)
  end
  return #dead
end

local function live_offers(s)
  local n = 0
  for _, j in ipairs(s.j) do if j.o then n = n + 1 end end
  return n
end

local function sdp_bytes(s)
  local n = 0
  for _, j in ipairs(s.j) do
    if j.o then n = n + #j.o end
    if j.a then n = n + #j.a end
  end
  return n
end
