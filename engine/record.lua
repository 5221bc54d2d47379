-- record.lua: the second script call of a batch: store every outcome, then ack.
--
-- Redis keeps only hot state (docs/INTERNALS.md, "Redis keeps hot state"): per
-- job one event, the first of the job, which also describes it for the history
-- archiver (to_hash, to_mask, encoding, client, kind, retention_until); the
-- correlation entries receipts will be matched by (in the carrier's bucket of the
-- batch's receipt deadline, dlr/store.py); and only for the jobs a receipt must
-- read (several parts to aggregate, or a callback to forward to) a job record,
-- whose TTL is the receipt wait plus a grace, not the message retention. The
-- idempotency mark was taken by claim.lua and is not touched. Then XACK of the
-- batch's entries: nothing is acked before its outcome is stored
-- (docs/contract.md §3, "Delivery semantics").
--
-- A repeated call (its reply lost with the connection, the caller sends it
-- again) writes nothing twice: the caller's per-call token is taken first
-- (SET NX, 2 min), and a call that finds it taken returns at once. One command
-- per call, not one per job.
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header declaring LAYOUT_VERSION, K_* (KEYS), A_* (ARGV), J_* (a job's fields)
-- and W_* (a carrier's bucket), from the one Python definition of each
-- (RECORD_KEYS, RECORD_ARGS, RecordJob, RecordWait in engine/scripts.py).
--
-- KEYS[K_JOBS]   jobs stream the entries came from
-- KEYS[K_EVENTS] events stream
-- KEYS[K_DUE]    receipt deadlines (P:dlr:due: correlation buckets scored by their end, unix ms)
-- KEYS[K_MEMO]   this call's token (P:record:<token>)
-- ARGV[A_GROUP]   consumer group
-- ARGV[A_LAYOUT]  LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_PAYLOAD] payload (JSON): {"retention_until": s (the history row's, carried by
--   the first event),
--   "waits": {carrier: [end_ms, expire_at_ms, record_ttl (s)] (W_*, strings), ...},
--   "jobs": [job, ...], "acks": [entry_id, ...], "texts": {job_id: sealed text, base64, of
--   every job of the call, JSON and packed ones; {} with [history] keep_text off}} where
--   job is the list J_*:
--   [job_id, event, carrier, parts, message_ids, error, ref, client, kind, callback,
--    to_hash, to_mask, encoding, corr, expect (receipts expected), dlr_ids (normalised
--    ids, comma-joined, "" when equal to message_ids)]
--   and corr is "" (no receipt awaited), or [[normalised message_id, part] (C_*:
--   CORR_ENTRY in dlr/store.py), ...] (a job record is written: the receipts read it),
--   or for a single-part job without callback whose ref and message_ids hold no US
--   (0x1F) just the normalised id: its entry then takes the receipt's fast form and
--   the job has no record at all (dlr/store.py).
--   The payload's jobs are the uncommon ones: the common job (corr "" or the fast
--   form, and no US or RS in any field) comes packed, below.
-- ARGV[A_PACKED], ARGV[A_PACKED_LENS] the common jobs (engine/scripts.py Packed): per
--   job the fields RECORD_PACKED (R_*: job_id, message_ids, ref, to_hash, to_mask, corr,
--   event, carrier, parts, error, client, kind, encoding, where corr is "" or the fast
--   form's normalised id) concatenated in A_PACKED, their lengths one byte each in
--   A_PACKED_LENS: one string.byte and a string.sub per field (one for the run from
--   event to encoding while it repeats), no table per job
-- ARGV[A_NOW]     now (unix ms)
-- ARGV[A_JOB_PREFIX], A_BUCKET_PREFIX, A_INDEX_PREFIX: what the per-job and
--   per-carrier keys start with (engine/keys.py: "P:job:", "P:dlr:c:",
--   "P:dlr:idx:"); this script spells no key name itself.
--
-- Cost matters here (every message passes once): optional fields are written
-- only when set, and constants of the batch travel once, not per job.
local jobs, events, due = KEYS[K_JOBS], KEYS[K_EVENTS], KEYS[K_DUE]
if R_EVENT ~= 7 or R_ENCODING ~= 13 then  -- the packed loop reads l1..l6 one by one, l7..l13 as a run
  return redis.error_reply('record.lua: RECORD_PACKED is not the layout this script reads')
end
-- a repeated call: everything was written (and acked) by the first one
if not redis.call('SET', KEYS[K_MEMO], '1', 'NX', 'PX', 120000) then
  return -1
end
local group = ARGV[A_GROUP]
local batch = cjson.decode(ARGV[A_PAYLOAD])
local now = ARGV[A_NOW]
local job_prefix = ARGV[A_JOB_PREFIX]
local bucket_prefix, index_prefix = ARGV[A_BUCKET_PREFIX], ARGV[A_INDEX_PREFIX]

-- Numbers handed to redis.call are formatted by Redis on every call (snprintf
-- "%.17g" in 6.2), which costs more than some commands: the batch's numbers
-- become strings once here, part counts through a small table.
-- ('%d': whole digits at any size, where tostring would switch to an exponent at 1e14)
local retention_until = string.format('%d', batch.retention_until)
local waits = batch.waits
local NUM_STR = {}
for i = 1, 32 do
  NUM_STR[i] = tostring(i)
end
local function num_str(n)
  return NUM_STR[n] or tostring(n)
end
local call = redis.call
local texts = batch.texts or {}
-- correlation entries, per carrier: field, value, ... for one HSET into its bucket
local corr_add, corr_n = {}, {}
for _, j in ipairs(batch.jobs) do
  local job_id, event, carrier, parts = j[J_JOB_ID], j[J_EVENT], j[J_CARRIER], j[J_PARTS]
  local message_ids, err, ref = j[J_MESSAGE_IDS], j[J_ERROR], j[J_REF]
  local corr = j[J_CORR]
  local parts_s = num_str(parts)
  if corr ~= '' then
    local c, n = corr_add[carrier], corr_n[carrier]
    if not c then
      c, n = {}, 0
      corr_add[carrier] = c
    end
    if type(corr) == 'string' then
      -- the receipt's fast path (the caller checked: one part, no callback, no US
      -- in ref or message_ids): what its event needs travels in the entry, no record
      c[n + 1] = corr
      c[n + 2] = '=' .. now .. '\31' .. message_ids .. '\31' .. ref .. '\31' .. job_id
      n = n + 2
    else
      -- the receipts of this job read its record: written here, with what they need
      local job_key = job_prefix .. job_id
      local h = {'HSET', job_key, 'parts', parts_s, 'state', event, 'carrier', carrier,
        'message_ids', message_ids, 'submitted_ms', now}
      if ref ~= '' then h[#h + 1] = 'ref'; h[#h + 1] = ref end
      local callback = j[J_CALLBACK]
      if callback ~= '' then h[#h + 1] = 'callback'; h[#h + 1] = callback end
      local expect, dlr_ids = j[J_EXPECT], j[J_DLR_IDS]
      if expect ~= parts then h[#h + 1] = 'expect'; h[#h + 1] = num_str(expect) end
      if dlr_ids ~= '' then h[#h + 1] = 'dlr_ids'; h[#h + 1] = dlr_ids end
      call(unpack(h))
      call('EXPIRE', job_key, waits[carrier][W_RECORD_TTL])
      for _, e in ipairs(corr) do
        c[n + 1] = e[C_ID]
        c[n + 2] = num_str(e[C_PART]) .. ':' .. now .. ':' .. job_id
        n = n + 2
      end
    end
    corr_n[carrier] = n
  end
  -- The job's first event: it also describes the job for the history archiver
  -- (fields in the order engine/history/record.py reads by position); with
  -- [history] keep_text also its sealed text (never the text itself).
  local text_enc = texts[job_id]
  if text_enc then
    call('XADD', events, '*',
      'id', job_id, 'ref', ref, 'event', event, 'carrier', carrier, 'parts', parts_s,
      'message_ids', message_ids, 'error', err, 'ts', now,
      'client', j[J_CLIENT], 'kind', j[J_KIND], 'to_hash', j[J_TO_HASH], 'to_mask', j[J_TO_MASK],
      'encoding', j[J_ENCODING], 'retention_until', retention_until, 'text_enc', text_enc)
  else
    call('XADD', events, '*',
      'id', job_id, 'ref', ref, 'event', event, 'carrier', carrier, 'parts', parts_s,
      'message_ids', message_ids, 'error', err, 'ts', now,
      'client', j[J_CLIENT], 'kind', j[J_KIND], 'to_hash', j[J_TO_HASH], 'to_mask', j[J_TO_MASK],
      'encoding', j[J_ENCODING], 'retention_until', retention_until)
  end
end
-- The common jobs (packed): the same as above for a job whose corr is "" or the fast form.
-- A job's fields from R_EVENT on (event, carrier, parts, error, client, kind,
-- encoding) are nearly always those of the job before: they are read as one
-- string, compared with the job before's (same string and same lengths), and
-- split only when they differ: one string.sub instead of seven.
local data, lens = ARGV[A_PACKED], ARGV[A_PACKED_LENS]
local byte, sub = string.byte, string.sub
local width = R_ENCODING  -- the last of RECORD_PACKED
local packed_n = #lens / width
local p = 1
local same, s7, s8, s9, s10, s11, s12, s13 = nil, -1, -1, -1, -1, -1, -1, -1
local event, carrier, parts_s, err, client, kind, encoding
for k = 1, #lens, width do
  local l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13 = byte(lens, k, k + 12)
  local e = p + l1
  local job_id = sub(data, p, e - 1)
  p = e; e = p + l2; local message_ids = sub(data, p, e - 1)
  p = e; e = p + l3; local ref = sub(data, p, e - 1)
  p = e; e = p + l4; local to_hash = sub(data, p, e - 1)
  p = e; e = p + l5; local to_mask = sub(data, p, e - 1)
  p = e; e = p + l6; local corr = sub(data, p, e - 1)
  p = e; e = p + l7 + l8 + l9 + l10 + l11 + l12 + l13
  local run = sub(data, p, e - 1)
  if run ~= same or l7 ~= s7 or l8 ~= s8 or l9 ~= s9 or l10 ~= s10 or l11 ~= s11 or l12 ~= s12 or l13 ~= s13 then
    same, s7, s8, s9, s10, s11, s12, s13 = run, l7, l8, l9, l10, l11, l12, l13
    local q = p
    local f = q + l7; event = sub(data, q, f - 1)
    q = f; f = q + l8; carrier = sub(data, q, f - 1)
    q = f; f = q + l9; parts_s = sub(data, q, f - 1)
    q = f; f = q + l10; err = sub(data, q, f - 1)
    q = f; f = q + l11; client = sub(data, q, f - 1)
    q = f; f = q + l12; kind = sub(data, q, f - 1)
    q = f; f = q + l13; encoding = sub(data, q, f - 1)
  end
  p = e
  if corr ~= '' then
    local c, n = corr_add[carrier], corr_n[carrier]
    if not c then
      c, n = {}, 0
      corr_add[carrier] = c
    end
    c[n + 1] = corr
    c[n + 2] = '=' .. now .. '\31' .. message_ids .. '\31' .. ref .. '\31' .. job_id
    corr_n[carrier] = n + 2
  end
  local text_enc = texts[job_id]
  if text_enc then
    call('XADD', events, '*',
      'id', job_id, 'ref', ref, 'event', event, 'carrier', carrier, 'parts', parts_s,
      'message_ids', message_ids, 'error', err, 'ts', now,
      'client', client, 'kind', kind, 'to_hash', to_hash, 'to_mask', to_mask,
      'encoding', encoding, 'retention_until', retention_until, 'text_enc', text_enc)
  else
    call('XADD', events, '*',
      'id', job_id, 'ref', ref, 'event', event, 'carrier', carrier, 'parts', parts_s,
      'message_ids', message_ids, 'error', err, 'ts', now,
      'client', client, 'kind', kind, 'to_hash', to_hash, 'to_mask', to_mask,
      'encoding', encoding, 'retention_until', retention_until)
  end
end
if p ~= #data + 1 or #lens % width ~= 0 then
  -- only a caller's bug gets here
  return redis.error_reply('record.lua: packed jobs and their lengths disagree')
end
-- One HSET per carrier into the bucket of this batch's receipt deadline; the
-- bucket is the deadline too (the sweep reads it from P:dlr:due at its end).
for carrier, c in pairs(corr_add) do
  local w = waits[carrier]
  local bucket_end = w[W_END_MS]
  local bucket = bucket_prefix .. carrier .. ':' .. bucket_end
  local n = corr_n[carrier]
  for i = 1, n, 1000 do
    call('HSET', bucket, unpack(c, i, math.min(i + 999, n)))
  end
  -- the bucket's TTL only ever comes down: it ends with the earliest job record of
  -- its entries (each batch's expire-at is capped by its own records' TTL)
  local ttl = call('PTTL', bucket)
  if ttl < 0 or tonumber(now) + ttl > tonumber(w[W_EXPIRE_AT_MS]) then
    call('PEXPIREAT', bucket, w[W_EXPIRE_AT_MS])
  end
  call('ZADD', index_prefix .. carrier, bucket_end, bucket_end)
  call('ZADD', due, bucket_end, bucket_end .. ':' .. carrier)
end
-- No trim here: the events stream is trimmed by the engine's trimmer, behind the
-- archiver (engine/stream_trim.py).
local acks = batch.acks
for i = 1, #acks, 500 do
  call('XACK', jobs, group, unpack(acks, i, math.min(i + 499, #acks)))
end
return #batch.jobs + packed_n
