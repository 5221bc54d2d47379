-- marks_lib.lua: idempotency marks as fields of small bucketed hashes. Not a
-- script of its own: the loader (engine/scripts.py) puts it before the scripts
-- that read or write marks (claim.lua, cancel.lua, marks.lua).
--
-- Why: a mark as a string key of its own costs ~165 B of used_memory with a
-- 36-character id (dict entry, key, object, expiry entry); as a field of a
-- listpack-encoded hash ~50 B (docs/INTERNALS.md, "Idempotency marks").
--
-- Layout (prefix "P:marks:", engine/keys.py; W = the window in s, [engine]
-- idempotency_hours; s = floor(now / W) * W, the generation's start):
--   P:marks:<s>           hash  k = the generation's bucket count, n = marks written
--   P:marks:<s>:<b>       hash  job id -> mark, b = (first 32 bits of sha1(job id)) mod k
--   P:marks:legacy        string, while marks of layout 10 and before (string keys
--                         P:idem:<job id>, prefix "P:idem:") may still live: a new
--                         claim then also checks that key (EXISTS), for one window
--                         after a generation was made without a predecessor (an
--                         upgrade, a fresh start, an idle window)
-- Every mark is written into the generation of the writer's `now`; a lookup reads
-- the current and the previous generation (and, within MARKS_MARGIN of a
-- boundary, the one beyond it, for writers whose clocks disagree by up to that),
-- so a mark is seen for at least W and at most 2W + margin. Every key of a
-- generation expires at s + 2W + margin by the writer's clock (an EXPIRE of that
-- minus now, set once when the key is made: a clock given by a test stays
-- consistent, and so does a Redis whose clock differs from the engines').
-- k is fixed when the generation's first mark is written: enough buckets for
-- MARKS_FILL marks each at the previous generation's count (a power of two, at
-- least MARKS_MIN), or MARKS_FIRST when there is none; buckets then stay under
-- hash-max-listpack-entries (128 by default) unless the rate grows eightfold (a
-- fuller bucket turns into a hashtable: ~125 B per mark, still correct). Fill 16,
-- not 128: each lookup scans its bucket (~250 instructions per mark scanned).
local MARKS_FILL, MARKS_MIN, MARKS_FIRST = 16, 64, 2048
local sha1hex, tonumber, sub, floor = redis.sha1hex, tonumber, string.sub, math.floor

-- The bucket number of a job id (the same in Python: engine/marks.py bucket_hash).
local function marks_hash(job_id)
  return tonumber(sub(sha1hex(job_id), 1, 8), 16)
end

-- A generation's view for one call: its meta key, its bucket prefix, its k (nil: none yet).
local function marks_gen(prefix, start)
  local meta = prefix .. string.format('%d', start)
  return {meta = meta, base = meta .. ':', k = tonumber(redis.call('HGET', meta, 'k'))}
end

-- Open the marks for one call: `now_ms` the caller's clock (unix ms, a string or
-- number), `window_s` W. Reads one field per generation it may look in.
local function marks_open(prefix, now_ms, window_s, legacy_prefix)
  local w = tonumber(window_s)
  local now = floor(tonumber(now_ms) / 1000)
  local start = floor(now / w) * w
  local margin = math.min(300, floor(w / 4))
  local m = {prefix = prefix, w = w, added = 0, ttl = start + 2 * w + margin - now, margin = margin,
             legacy_prefix = legacy_prefix, legacy = redis.call('EXISTS', prefix .. 'legacy') == 1}
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

-- The mark of a job id and the bucket holding it, or nil.
local function marks_find(m, job_id, h)
  h = h or marks_hash(job_id)
  for i = 1, #m.checks do
    local g = m.checks[i]
    local b = g.base .. (h % g.k)
    local v = redis.call('HGET', b, job_id)
    if v then return v, b end
  end
  local g = m.cur
  if g.k then
    local b = g.base .. (h % g.k)
    local v = redis.call('HGET', b, job_id)
    if v then return v, b end
  end
  return marks_legacy(m, job_id)
end

-- The current generation's bucket count, fixed at its first mark.
local function marks_make_current(m)
  local n = tonumber(redis.call('HGET', m.prev.meta, 'n'))
  local k = MARKS_FIRST
  if n then
    k = MARKS_MIN
    while k * MARKS_FILL < n do k = k * 2 end
  else  -- no predecessor: marks of an older layout may be about, for up to a window
    redis.call('SET', m.prefix .. 'legacy', '1', 'EX', m.w + m.margin)
    m.legacy = true
  end
  redis.call('HSET', m.cur.meta, 'k', k)
  redis.call('EXPIRE', m.cur.meta, m.ttl)
  m.cur.k = k
end

-- Take a job id's mark (NX over every generation looked in): true and the bucket,
-- or false, the mark there and its bucket.
local function marks_take(m, job_id, value)
  local h = marks_hash(job_id)
  local checks = m.checks
  for i = 1, #checks do
    local g = checks[i]
    local b = g.base .. (h % g.k)
    local v = redis.call('HGET', b, job_id)
    if v then return false, v, b end
  end
  local g = m.cur
  if not g.k then marks_make_current(m) end
  if m.legacy then
    local v, key = marks_legacy(m, job_id)
    if v then return false, v, key end
  end
  local b = g.base .. (h % g.k)
  if redis.call('HSETNX', b, job_id, value) == 1 then
    if redis.call('HLEN', b) == 1 then redis.call('EXPIRE', b, m.ttl) end
    m.added = m.added + 1
    return true, nil, b
  end
  return false, redis.call('HGET', b, job_id), b
end

-- Once per call, after the marks: the current generation's count (its successor's k).
local function marks_close(m)
  if m.added > 0 then redis.call('HINCRBY', m.cur.meta, 'n', m.added) end
  m.added = 0
end
