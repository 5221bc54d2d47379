-- record.lua: the second script call of a batch: store every outcome, then ack.
--
-- Per job: the job record (hash, TTL = message retention), the correlation
-- entries receipts will be matched by (in the carrier's bucket of the batch's
-- receipt deadline, dlr/store.py), the subject index used by erasure, the
-- idempotency mark turned to "done", one event; then XACK of the batch's
-- entries. Nothing is acked before its outcome is stored (DESIGN.md,
-- "Delivery semantics").
--
-- KEYS[1] jobs stream the entries came from
-- KEYS[2] events stream
-- KEYS[3] receipt deadlines (P:dlr:due: correlation buckets scored by their end, unix ms)
-- ARGV[1] consumer group
-- ARGV[2] key prefix
-- ARGV[3] payload (JSON): {"t": [retention_until (s), job_ttl (s)],
--   "w": {carrier: [bucket end (ms), bucket expire-at (ms)], ...} (strings),
--   "j": [job, ...], "a": [entry_id, ...]} where job is
--   [job_id, event, carrier, parts, message_ids, error, ref, client, callback,
--    dlr ("1"/"0"), to_hash, corr, expect (receipts
--    expected), dlr_ids (normalised ids, comma-joined, "" when equal to message_ids),
--    entry_id (the job's entry in KEYS[1]: erasure deletes the raw payload by it)]
--   and corr is [[normalised message_id, part], ...], or for a single-part job without
--   callback whose ref and message_ids hold no US (0x1F) just the normalised id: its
--   entry then takes the receipt's fast form (dlr/store.py).
-- ARGV[4] now (unix ms)
-- ARGV[5] approximate MAXLEN of the events stream
--
-- Cost matters here (every message passes once): optional fields are written
-- only when set, and constants of the batch travel once, not per job.
local jobs, events, due = KEYS[1], KEYS[2], KEYS[3]
local group, prefix = ARGV[1], ARGV[2]
local batch = cjson.decode(ARGV[3])
local now, maxlen = ARGV[4], ARGV[5]

-- Numbers handed to redis.call are formatted by Redis on every call (snprintf
-- "%.17g" in 6.2), which costs more than some commands: the batch's numbers
-- become strings once here, part counts through a small table.
-- ('%d': whole digits at any size, where tostring would switch to an exponent at 1e14)
local retention_until, job_ttl = string.format('%d', batch.t[1]), string.format('%d', batch.t[2])
local waits = batch.w
local NUM_STR = {}
for i = 1, 32 do
  NUM_STR[i] = tostring(i)
end
local function num_str(n)
  return NUM_STR[n] or tostring(n)
end
-- correlation entries, per carrier: field, value, ... for one HSET into its bucket
local corr_add, corr_n = {}, {}
for _, j in ipairs(batch.j) do
  local job_id, event, carrier, parts, message_ids, err = j[1], j[2], j[3], j[4], j[5], j[6]
  local ref, client, callback, dlr, to_hash = j[7], j[8], j[9], j[10], j[11]
  local corr, expect, dlr_ids, entry_id = j[12], j[13], j[14], j[15]
  local job_key = prefix .. ':job:' .. job_id
  local parts_s = num_str(parts)
  -- Mark the job done and learn what the mark was (SET … GET, one command):
  -- "done" already means a repeated call (reply lost); write nothing twice.
  if redis.call('SET', prefix .. ':idem:' .. job_id, 'done', 'EX', job_ttl, 'GET') ~= 'done' then
    local h = {'HSET', job_key, 'carrier', carrier, 'parts', parts_s, 'message_ids', message_ids,
      'submitted_ms', now, 'state', event, 'dlr', dlr, 'retention_until', retention_until,
      'to_hash', to_hash, 'src_key', jobs, 'src_id', entry_id}
    if ref ~= '' then h[#h + 1] = 'ref'; h[#h + 1] = ref end
    if client ~= '' then h[#h + 1] = 'client'; h[#h + 1] = client end
    if callback ~= '' then h[#h + 1] = 'callback'; h[#h + 1] = callback end
    if err ~= '' then h[#h + 1] = 'error'; h[#h + 1] = err end
    if expect ~= parts then h[#h + 1] = 'expect'; h[#h + 1] = num_str(expect) end
    if dlr_ids ~= '' then h[#h + 1] = 'dlr_ids'; h[#h + 1] = dlr_ids end
    redis.call(unpack(h))
    redis.call('EXPIRE', job_key, job_ttl)
    if event == 'submitted' and dlr == '1' then
      local c, n = corr_add[carrier], corr_n[carrier]
      if not c then
        c, n = {}, 0
        corr_add[carrier] = c
      end
      if type(corr) == 'string' then
        -- the receipt's fast path (the caller checked: one part, no callback, no US
        -- in ref or message_ids): what its event needs travels in the entry
        c[n + 1] = corr
        c[n + 2] = '=' .. now .. '\31' .. message_ids .. '\31' .. ref .. '\31' .. job_id
        n = n + 2
      else
        for _, e in ipairs(corr) do
          c[n + 1] = e[1]
          c[n + 2] = num_str(e[2]) .. ':' .. now .. ':' .. job_id
          n = n + 2
        end
      end
      corr_n[carrier] = n
    end
    -- Subject indexes for erasure (privacy_hooks.erasure): by number, by client.
    if to_hash ~= '' then
      local subject = prefix .. ':subject:' .. to_hash
      redis.call('SADD', subject, job_id)
      redis.call('EXPIRE', subject, job_ttl)
    end
    if client ~= '' then
      local subject = prefix .. ':subject:client:' .. client
      redis.call('SADD', subject, job_id)
      redis.call('EXPIRE', subject, job_ttl)
    end
    redis.call('XADD', events, '*',
      'id', job_id, 'ref', ref, 'event', event, 'carrier', carrier, 'parts', parts_s,
      'message_ids', message_ids, 'error', err, 'ts', now)
  end
end
-- One HSET per carrier into the bucket of this batch's receipt deadline; the
-- bucket is the deadline too (the sweep reads it from P:dlr:due at its end).
for carrier, c in pairs(corr_add) do
  local w = waits[carrier]
  local bucket_end = w[1]
  local bucket = prefix .. ':dlr:c:' .. carrier .. ':' .. bucket_end
  local n = corr_n[carrier]
  for i = 1, n, 1000 do
    redis.call('HSET', bucket, unpack(c, i, math.min(i + 999, n)))
  end
  -- the bucket's TTL only ever comes down: it ends with the earliest job record of
  -- its entries (each batch's expire-at is capped by its own records' retention)
  local ttl = redis.call('PTTL', bucket)
  if ttl < 0 or tonumber(now) + ttl > tonumber(w[2]) then
    redis.call('PEXPIREAT', bucket, w[2])
  end
  redis.call('ZADD', prefix .. ':dlr:idx:' .. carrier, bucket_end, bucket_end)
  redis.call('ZADD', due, bucket_end, bucket_end .. ':' .. carrier)
end
-- The events stream is trimmed once per call, not per XADD: `XADD … MAXLEN ~`
-- rewrites its arguments for propagation every time; one approximate XTRIM
-- after the batch leaves the same whole nodes.
if #batch.j > 0 then
  redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)
end
local acks = batch.a
for i = 1, #acks, 500 do
  redis.call('XACK', jobs, group, unpack(acks, i, math.min(i + 499, #acks)))
end
return #batch.j
