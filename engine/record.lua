-- record.lua: the second script call of a batch: store every outcome, then ack.
--
-- Per job: the job record (hash, TTL = message retention), the correlation
-- entries receipts will be matched by (in the carrier's bucket of the batch's
-- receipt deadline, dlr/store.py), the subject index used by erasure, the
-- idempotency mark turned to "done", one event; then XACK of the batch's
-- entries. Nothing is acked before its outcome is stored (docs/contract.md
-- §3, "Delivery semantics").
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header declaring LAYOUT_VERSION, K_* (KEYS), A_* (ARGV), J_* (a job's fields)
-- and W_* (a carrier's bucket), from the one Python definition of each
-- (RECORD_KEYS, RECORD_ARGS, RecordJob, RecordWait in engine/scripts.py).
--
-- KEYS[K_JOBS]   jobs stream the entries came from
-- KEYS[K_EVENTS] events stream
-- KEYS[K_DUE]    receipt deadlines (P:dlr:due: correlation buckets scored by their end, unix ms)
-- ARGV[A_GROUP]   consumer group
-- ARGV[A_LAYOUT]  LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_PAYLOAD] payload (JSON): {"retention_until": s, "job_ttl": s,
--   "waits": {carrier: [end_ms, expire_at_ms] (W_*, strings), ...},
--   "jobs": [job, ...], "acks": [entry_id, ...]} where job is the list J_*:
--   [job_id, event, carrier, parts, message_ids, error, ref, client, callback,
--    dlr ("1"/"0"), to_hash, corr, expect (receipts
--    expected), dlr_ids (normalised ids, comma-joined, "" when equal to message_ids),
--    entry_id (the job's entry in KEYS[K_JOBS]: erasure deletes the raw payload by it)]
--   and corr is [[normalised message_id, part] (C_*: CORR_ENTRY in dlr/store.py), ...], or for a single-part job without
--   callback whose ref and message_ids hold no US (0x1F) just the normalised id: its
--   entry then takes the receipt's fast form (dlr/store.py).
-- ARGV[A_NOW]     now (unix ms)
-- ARGV[A_MAXLEN]  approximate MAXLEN of the events stream
-- ARGV[A_JOB_PREFIX], A_IDEM_PREFIX, A_SUBJECT_PREFIX, A_SUBJECT_CLIENT_PREFIX,
-- A_BUCKET_PREFIX, A_INDEX_PREFIX: what the per-job and per-carrier keys start
--   with (engine/keys.py: "P:job:", "P:idem:", "P:subject:", "P:subject:client:",
--   "P:dlr:c:", "P:dlr:idx:"); this script spells no key name itself.
--
-- Cost matters here (every message passes once): optional fields are written
-- only when set, and constants of the batch travel once, not per job.
if ARGV[A_LAYOUT] ~= LAYOUT_VERSION then
  return redis.error_reply('record.lua: argument layout ' .. tostring(ARGV[A_LAYOUT]) .. ', this script reads '
    .. LAYOUT_VERSION .. ' (caller and script from different versions)')
end
local jobs, events, due = KEYS[K_JOBS], KEYS[K_EVENTS], KEYS[K_DUE]
local group = ARGV[A_GROUP]
local batch = cjson.decode(ARGV[A_PAYLOAD])
local now, maxlen = ARGV[A_NOW], ARGV[A_MAXLEN]
local job_prefix, idem_prefix = ARGV[A_JOB_PREFIX], ARGV[A_IDEM_PREFIX]
local subject_prefix, subject_client_prefix = ARGV[A_SUBJECT_PREFIX], ARGV[A_SUBJECT_CLIENT_PREFIX]
local bucket_prefix, index_prefix = ARGV[A_BUCKET_PREFIX], ARGV[A_INDEX_PREFIX]

-- Numbers handed to redis.call are formatted by Redis on every call (snprintf
-- "%.17g" in 6.2), which costs more than some commands: the batch's numbers
-- become strings once here, part counts through a small table.
-- ('%d': whole digits at any size, where tostring would switch to an exponent at 1e14)
local retention_until, job_ttl = string.format('%d', batch.retention_until), string.format('%d', batch.job_ttl)
local waits = batch.waits
local NUM_STR = {}
for i = 1, 32 do
  NUM_STR[i] = tostring(i)
end
local function num_str(n)
  return NUM_STR[n] or tostring(n)
end
-- correlation entries, per carrier: field, value, ... for one HSET into its bucket
local corr_add, corr_n = {}, {}
for _, j in ipairs(batch.jobs) do
  local job_id, event, carrier, parts = j[J_JOB_ID], j[J_EVENT], j[J_CARRIER], j[J_PARTS]
  local message_ids, err, ref, client = j[J_MESSAGE_IDS], j[J_ERROR], j[J_REF], j[J_CLIENT]
  local callback, dlr, to_hash, corr = j[J_CALLBACK], j[J_DLR], j[J_TO_HASH], j[J_CORR]
  local expect, dlr_ids, entry_id = j[J_EXPECT], j[J_DLR_IDS], j[J_ENTRY_ID]
  local job_key = job_prefix .. job_id
  local parts_s = num_str(parts)
  -- Mark the job done and learn what the mark was (SET … GET, one command):
  -- "done" already means a repeated call (reply lost); write nothing twice.
  if redis.call('SET', idem_prefix .. job_id, 'done', 'EX', job_ttl, 'GET') ~= 'done' then
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
          c[n + 1] = e[C_ID]
          c[n + 2] = num_str(e[C_PART]) .. ':' .. now .. ':' .. job_id
          n = n + 2
        end
      end
      corr_n[carrier] = n
    end
    -- Subject indexes for erasure (privacy_hooks.erasure): by number, by client.
    if to_hash ~= '' then
      local subject = subject_prefix .. to_hash
      redis.call('SADD', subject, job_id)
      redis.call('EXPIRE', subject, job_ttl)
    end
    if client ~= '' then
      local subject = subject_client_prefix .. client
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
  local bucket_end = w[W_END_MS]
  local bucket = bucket_prefix .. carrier .. ':' .. bucket_end
  local n = corr_n[carrier]
  for i = 1, n, 1000 do
    redis.call('HSET', bucket, unpack(c, i, math.min(i + 999, n)))
  end
  -- the bucket's TTL only ever comes down: it ends with the earliest job record of
  -- its entries (each batch's expire-at is capped by its own records' retention)
  local ttl = redis.call('PTTL', bucket)
  if ttl < 0 or tonumber(now) + ttl > tonumber(w[W_EXPIRE_AT_MS]) then
    redis.call('PEXPIREAT', bucket, w[W_EXPIRE_AT_MS])
  end
  redis.call('ZADD', index_prefix .. carrier, bucket_end, bucket_end)
  redis.call('ZADD', due, bucket_end, bucket_end .. ':' .. carrier)
end
-- The events stream is trimmed once per call, not per XADD: `XADD … MAXLEN ~`
-- rewrites its arguments for propagation every time; one approximate XTRIM
-- after the batch leaves the same whole nodes.
if #batch.jobs > 0 then
  redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)
end
local acks = batch.acks
for i = 1, #acks, 500 do
  redis.call('XACK', jobs, group, unpack(acks, i, math.min(i + 499, #acks)))
end
return #batch.jobs
