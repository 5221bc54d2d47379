-- marks_lib.lua: idempotency marks as fields of small bucketed hashes. Not a
-- script of its own: the loader (engine/scripts.py) puts it before the scripts
-- that read or write marks (claim.lua, cancel.lua, marks.lua).
--
-- Why: a mark as a string key of its own costs ~165 B of used_memory with a
-- 36-character id (dict entry, key, object, expiry entry); as a field of a
-- listpack-encoded hash ~50-80 B (docs/INTERNALS.md, "Idempotency marks").
--
-- Layout (prefix "P:marks:", engine/keys.py; W = the window in s, [engine]
-- idempotency_hours; s = floor(now / W) * W, the generation's start):
--   P:marks:<s>           hash  k = the generation's bucket count, n = marks written,
--                               b = buckets made (each with its EXPIRE)
--   P:marks:<s>:<b>       hash  job id -> mark; b = the top log2(k) bits of h, in lower-case
--                               hex zero-padded to the digits of k - 1; h = the CRC-32 of the
--                               job id, passed by the caller (engine.keys.marks_hash; the shard
--                               is h mod N: the low bits)
--   P:marks:<s>:made      string, a bitmap (SETBIT order): bit b set once bucket b is made
--                               and has its EXPIRE ('m' is no hex digit: no bucket's name)
--   P:marks:legacy        string, while marks of layout 10 and before (string keys
--                         P:idem:<job id>, prefix "P:idem:") may still live: a new
--                         claim then also checks that key (GET), for one window
--                         after a generation was made without a predecessor (an
--                         upgrade, a fresh start, an idle window) when such marks may
--                         exist (marks_legacy_may_exist: on a small keyspace, a SCAN)
-- Every mark is written into the generation of the writer's `now`; a lookup reads
-- the current and the previous generation (and, within MARKS_MARGIN of a
-- boundary, the one beyond it, for writers whose clocks disagree by up to that),
-- so a mark is seen for at least W and at most 2W + margin. Every key of a
-- generation expires at s + 2W + margin by the writer's clock (an EXPIRE of that
-- minus now, set once when the key is made: a clock given by a test stays
-- consistent, and so does a Redis whose clock differs from the engines').
-- A bucket gets its EXPIRE when a call makes it: the call reads the bitmap once
-- (one GET, not at all once every bucket is made: b = k) and, after its marks,
-- sets the bits of the buckets it made (one BITFIELD) -- no HLEN per mark. A
-- bucket is only ever made while its generation is current (a write to an older
-- one goes to a bucket just found), long before it and its bit expire.
-- k is fixed when the generation's first mark is written: enough buckets for
-- MARKS_FILL marks each at the previous generation's count (a power of two, at
-- least MARKS_MIN, at most MARKS_MAX), or MARKS_FIRST when there is none; buckets
-- then stay under hash-max-listpack-entries (128 by default) unless the rate grows
-- well past the last window's (a fuller bucket turns into a hashtable: ~125 B per
-- mark, still correct). Fill 8, not 128: each lookup scans its bucket (~250
-- instructions per mark scanned; fill 16: -10 to -14 B per mark, +2.4k instructions
-- per new claim, bench/RESULTS.md "marks").
local MARKS_FILL, MARKS_MIN, MARKS_MAX, MARKS_FIRST = 8, 64, 2 ^ 31, 2048
local tonumber, floor, tohex, band = tonumber, math.floor, bit.tohex, bit.band
local MARKS_BIT = {[0] = 128, 64, 32, 16, 8, 4, 2, 1}  -- bit b % 8 of a byte, SETBIT's order

-- A generation's view for one call: its keys, k (nil: none yet), its buckets' hex
-- digits, and whether every bucket is made.
local function marks_gen(prefix, start)
  local meta = prefix .. string.format('%d', start)
  local kb = redis.call('HMGET', meta, 'k', 'b')
  local k = tonumber(kb[1])
  local g = {meta = meta, base = meta .. ':', made = meta .. ':made', k = k}
  if k then
    local d = 1
    while 16 ^ d < k do d = d + 1 end
    g.d, g.div = d, 4294967296 / k
    g.full = (tonumber(kb[2]) or 0) >= k
  end
  return g
end

-- Open the marks for one call: `now_ms` the caller's clock (unix ms, a string or
-- number), `window_s` W. Reads one hash per generation it may look in.
local function marks_open(prefix, now_ms, window_s, legacy_prefix)
  local w = tonumber(window_s)
  local now = floor(tonumber(now_ms) / 1000)
  local start = floor(now / w) * w
  local margin = math.min(300, floor(w / 4))
  -- ttl a string: Redis formats a number argument on every call (snprintf '%.17g': ~4k
  -- instructions on 7.0, per EXPIRE of a new bucket)
  local m = {prefix = prefix, w = w, added = 0, ttl = string.format('%d', start + 2 * w + margin - now), margin = margin,
             legacy_prefix = legacy_prefix, legacy = redis.call('EXISTS', prefix .. 'legacy') == 1,
             new = {}, nnew = 0}
  m.cur = marks_gen(prefix, start)
  m.prev = marks_gen(prefix, start - w)
  -- where to look besides the current generation: those with marks
  local checks = {}
  if m.prev.k then checks[#checks + 1] = m.prev end
  if now < start + margin then
    local g = marks_gen(prefix, start - 2 * w)
    if g.k then checks[#checks + 1] = g end
  elseif now >= start + w - margin then
    local g = marks_gen(prefix, start + w)
    if g.k then checks[#checks + 1] = g end
  end
  m.checks = checks
  return m
end

-- A mark of layout 10 or before (a string key), while they may live: the mark and its key.
local function marks_legacy(m, job_id)
  if m.legacy then
    local key = m.legacy_prefix .. job_id
    local v = redis.call('GET', key)
    if v then return v, key end
  end
  return nil
end

-- Write `value` where a mark was found (a bucket, or a legacy key: its TTL kept).
local function marks_put(m, where, job_id, value)
  if m.legacy and where == m.legacy_prefix .. job_id then
    redis.call('SET', where, value, 'KEEPTTL')
  else
    redis.call('HSET', where, job_id, value)  -- the bucket keeps its expiry
  end
end

-- The mark of a job id (`h` its marks hash, a number < 2^32) and the bucket holding it, or nil.
local function marks_find(m, job_id, h)
  for i = 1, #m.checks do
    local g = m.checks[i]
    local b = g.base .. tohex(floor(h / g.div), g.d)
    local v = redis.call('HGET', b, job_id)
    if v then return v, b end
  end
  local g = m.cur
  if g.k then
    local b = g.base .. tohex(floor(h / g.div), g.d)
    local v = redis.call('HGET', b, job_id)
    if v then return v, b end
  end
  return marks_legacy(m, job_id)
end

-- Whether marks of layout 10 and before (string keys legacy_prefix .. job id) may
-- exist, asked when a generation is made without a predecessor: on a keyspace of at
-- most MARKS_LEGACY_SCAN keys (a fresh start; a small deployment after an idle window)
-- by a SCAN of it for that prefix (~1.2k instructions per key: ~6M at the most, a
-- few ms, once per such generation; what ~1,200 claims' GETs cost), else
-- yes. When none exists no flag is set, and the window's claims make no GET each for
-- them (~1.3k instructions per new claim; bench/RESULTS.md "rediscpu").
local MARKS_LEGACY_SCAN = 5000
local function marks_legacy_may_exist(m)
  if redis.call('DBSIZE') > MARKS_LEGACY_SCAN then return true end
  local pattern = string.gsub(m.legacy_prefix, '[%*%?%[%]\\]', '\\%0') .. '*'
  local cursor = '0'
  repeat
    local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    if #page[2] > 0 then return true end
    cursor = page[1]
  until cursor == '0'
  return false
end

-- The current generation's bucket count, fixed at its first mark.
local function marks_make_current(m)
  local n = tonumber(redis.call('HGET', m.prev.meta, 'n'))
  local k = MARKS_FIRST
  if n then
    k = MARKS_MIN
    while k * MARKS_FILL < n and k < MARKS_MAX do k = k * 2 end
  elseif m.legacy or marks_legacy_may_exist(m) then
    -- no predecessor: marks of an older layout may be about, for up to a window
    redis.call('SET', m.prefix .. 'legacy', '1', 'EX', m.w + m.margin)
    m.legacy = true
  end
  local g = m.cur
  redis.call('HSET', g.meta, 'k', string.format('%d', k))
  redis.call('EXPIRE', g.meta, m.ttl)
  redis.call('SETBIT', g.made, string.format('%d', k - 1), '0')  -- the bitmap at its full length, no bit set
  redis.call('EXPIRE', g.made, m.ttl)
  local d = 1
  while 16 ^ d < k do d = d + 1 end
  g.k, g.d, g.div, g.full, g.bits = k, d, 4294967296 / k, false, ''
end

-- Whether bucket `b` (a number) of the current generation is made (has its EXPIRE).
local function marks_made(m, b)
  local g = m.cur
  if g.full or m.new[b] then return true end
  local bits = g.bits
  if not bits then
    bits = redis.call('GET', g.made)
    if not bits then  -- gone (a flush): made again below, with its EXPIRE
      bits = ''
      g.made_lost = true
    end
    g.bits = bits
  end
  local c = bits:byte(floor(b / 8) + 1)
  return c ~= nil and band(c, MARKS_BIT[b % 8]) ~= 0
end

-- Take a job id's mark (NX over every generation looked in; `h` its marks hash):
-- true and the bucket, or false, the mark there and its bucket. (The bucket's
-- number in hex is formatted once when the generations have the same k.)
local function marks_take(m, job_id, value, h)
  local checks, g = m.checks, m.cur
  local bn, hex
  if g.k then
    bn = floor(h / g.div)
    hex = tohex(bn, g.d)
  end
  for i = 1, #checks do
    local c = checks[i]
    local b = c.base .. (c.k == g.k and hex or tohex(floor(h / c.div), c.d))
    local v = redis.call('HGET', b, job_id)
    if v then return false, v, b end
  end
  if not bn then
    marks_make_current(m)
    bn = floor(h / g.div)
    hex = tohex(bn, g.d)
  end
  if m.legacy then
    local v, key = marks_legacy(m, job_id)
    if v then return false, v, key end
  end
  local b = g.base .. hex
  if redis.call('HSETNX', b, job_id, value) == 1 then
    if not (g.full or marks_made(m, bn)) then
      redis.call('EXPIRE', b, m.ttl)
      m.new[bn] = true
      m.nnew = m.nnew + 1
    end
    m.added = m.added + 1
    return true, nil, b
  end
  return false, redis.call('HGET', b, job_id), b
end

-- Once per call, after the marks: the current generation's count (its successor's
-- k), and the bits of the buckets made.
local function marks_close(m)
  local g = m.cur
  if m.added > 0 then redis.call('HINCRBY', g.meta, 'n', string.format('%d', m.added)) end
  m.added = 0
  if m.nnew > 0 then
    local args, i = {'BITFIELD', g.made}, 2
    for bn in pairs(m.new) do
      args[i + 1] = 'SET'; args[i + 2] = 'u1'; args[i + 3] = string.format('%d', bn); args[i + 4] = '1'
      i = i + 4
      if i >= 2000 then redis.call(unpack(args)); args, i = {'BITFIELD', g.made}, 2 end
    end
    if i > 2 then redis.call(unpack(args)) end
    if g.made_lost then  -- made again: its expiry, and b recounted (not one bucket counted twice)
      redis.call('EXPIRE', g.made, m.ttl)
      redis.call('HSET', g.meta, 'b', redis.call('BITCOUNT', g.made))
    else
      redis.call('HINCRBY', g.meta, 'b', string.format('%d', m.nnew))
    end
    m.new, m.nnew = {}, 0
  end
end
