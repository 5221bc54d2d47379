-- claim.lua: the first of the two script calls a batch of jobs costs.
--
-- For every valid job: take its idempotency mark (a field of a bucket hash, taken
-- NX over the generations looked in: engine/marks_lib.lua) or learn why not.
-- For every invalid or expired job: write the dead letter (and the `expired`
-- event), then XACK. For every duplicate: XACK without sending.
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header (LAYOUT_VERSION, K_*, A_*, C_* of a claim, D_* of a dead letter) from
-- CLAIM_KEYS, CLAIM_ARGS, ClaimJob and DeadLetter in engine/scripts.py.
--
-- KEYS[K_JOBS]   jobs stream the entries came from
-- KEYS[K_EVENTS] events stream
-- KEYS[K_DEAD]   dead-letter stream
-- ARGV[A_GROUP]   consumer group
-- ARGV[A_LAYOUT]  LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_PAYLOAD] payload (JSON): {"claims": [[job_id, entry_id, suppression, to_hash, ref] (C_*), ...],
--                  "dead": [[entry_id, nfields, code, reason, job_id, ref, event, client, kind,
--                  to_hash, to_mask] (D_*), ...], "retention_until": s,
--                  "lists": [[list, count] (L_*), ...]}
-- ARGV[A_NOW]     now (unix ms)
-- ARGV[A_MARK_TTL] idempotency mark TTL (s): [engine] idempotency_hours, not the message
--         retention; the mark is the only thing Redis keeps of a finished job
-- ARGV[A_MAXLEN]  approximate MAXLEN of the dead-letter stream (the events stream is
--         trimmed by the engine's trimmer, behind the history archiver)
-- ARGV[A_RETRY]   "1" when this call repeats one whose reply was lost (Redis connection
--         dropped): a mark of our own is then ours, not a crashed consumer's
-- ARGV[A_MARKS_PREFIX] what idempotency marks' keys start with ("P:marks:", engine/keys.py);
--         ARGV[A_NOW] and ARGV[A_MARK_TTL] pick their generation (engine/marks_lib.lua)
-- ARGV[A_IDEM_PREFIX] what marks of layout 10 and before start with ("P:idem:"): read
--         for a window after the upgrade
-- ARGV[A_MARKETING], ARGV[A_MARKETING_LENS], ARGV[A_HASHES] more claims, of marketing
--   jobs: per job CLAIM_PACKED (P_*: job_id, mark, ref; mark: the value the claim's
--   idempotency mark gets, engine/scripts.py claim_mark, what mark_of below makes of
--   the entry id; the entry id is derived from it, entry_of) concatenated, their lengths
--   one byte each (engine/scripts.py Packed), and its number's keyed hash, all of one
--   width, concatenated in ARGV[A_HASHES]; the claims of one suppression list after
--   each other, as the payload's "lists" say ([[list, count] (L_*), ...]); answered
--   after the payload's claims
-- ARGV[A_PACKED], ARGV[A_PACKED_LENS] more claims, of transactional jobs (no
--   suppression check): per job CLAIM_PACKED, the same way; answered after the
--   marketing ones
-- ARGV[A_MARKS_HASHES] the marks hash (engine.keys.marks_hash: the CRC-32 of the id,
--   which picks its mark's bucket) of each packed claim, marketing then transactional,
--   4 bytes each, big-endian; a payload claim carries its own (C_MARKS_HASH)
-- ARGV[A_REST...] the dead letters' original fields, k, v, k, v, ..., nfields values
--         per dead letter in order (binary-safe: a job with malformed UTF-8 is
--         kept byte for byte)
--
-- Returns one status digit per candidate, in order, all in one string (one bulk reply:
-- ~700 instructions a call of RESP and per-element reply work less than an integer
-- each; the engine reads it with one bytes.translate, engine/scripts.py claim_statuses):
--   0 new: mark taken, send it
--   1 duplicate: this job id was sent (or is being sent) under another entry; acked here
--   2 reclaimed: this very entry was being sent by a consumer that died between
--     submit_sm and its resp; the caller resends or reports `unknown`
--   3 suppressed: a marketing job (packed, or C_SUPPRESSION set) whose number's keyed hash is
--     on its client's suppression list and that holds no mark yet: no mark taken;
--     the caller sends it back as a dead letter (code `suppressed`, event
--     `rejected`) in its next call, so the job's fields travel only then
--   4 cancelled: `sendgate cancel` took the mark first (`c`); acked, event
--     `cancelled` published, the mark turned into `done`
local jobs, events, dead = KEYS[K_JOBS], KEYS[K_EVENTS], KEYS[K_DEAD]
local group, idem_prefix = ARGV[A_GROUP], ARGV[A_IDEM_PREFIX]
local batch = cjson.decode(ARGV[A_PAYLOAD])
-- mark_ttl stays a string: Redis would format a number on every call
local now, mark_ttl, maxlen = ARGV[A_NOW], ARGV[A_MARK_TTL], ARGV[A_MAXLEN]
local retry = ARGV[A_RETRY] == '1'
local marks = marks_open(ARGV[A_MARKS_PREFIX], now, mark_ttl, idem_prefix)
if #ARGV[A_MARKS_HASHES] ~= 4 * (#ARGV[A_MARKETING_LENS] + #ARGV[A_PACKED_LENS]) / P_REF then
  return redis.error_reply('claim.lua: packed claims and their marks hashes disagree')
end

-- The payload's marketing claims (C_SUPPRESSION set: their client's list; only those
-- that do not pack, e.g. a job id of 256 bytes or more), looked up with one
-- SMISMEMBER per list and 1,000 numbers.
local listed = {}
do
  local claims, first_list, rest = batch.claims, nil, nil
  local at, n = {}, 0  -- claims of the first list seen (usually the only one), in order
  for i = 1, #claims do
    local list = claims[i][C_SUPPRESSION]
    if list ~= '' then
      if first_list == nil or list == first_list then
        first_list = list; n = n + 1; at[n] = i
      else
        rest = rest or {}
        local g = rest[list]
        if g then g[#g + 1] = i else rest[list] = {i} end
      end
    end
  end
  local function check(list, idx, count)
    for first = 1, count, 1000 do
      local last = math.min(count, first + 999)
      local hashes = {}
      for k = first, last do hashes[k - first + 1] = claims[idx[k]][C_TO_HASH] end
      local found = redis.call('SMISMEMBER', list, unpack(hashes))
      for k = first, last do
        if found[k - first + 1] == 1 then listed[idx[k]] = true end
      end
    end
  end
  if n > 0 then check(first_list, at, n) end
  if rest then for list, g in pairs(rest) do check(list, g, #g) end end
end

-- A marketing job to a number on its client's list, and not claimed before:
-- nothing is written here; the caller dead-letters it.
local function suppressed(i, job_id, h)
  return listed[i] and marks_find(marks, job_id, h) == nil
end

-- The mark's value names the entry that claimed it (so a reclaimed entry is told
-- from a duplicate). An entry id <ms>-<seq> with a 13-digit ms and seq < 10^6 is
-- written as the integer <ms><seq in 6 digits> (19 digits < 2^63): Redis keeps
-- an integer in the object header, 24 bytes less than the string `s|<entry id>`,
-- which stays the form of any other id and of marks taken before layout 7.
-- Told by bytes, not a pattern (~2.5k instructions less per job): a stream entry
-- id is always <digits>-<digits> (Redis makes or checks it), so '-' at byte 14,
-- no leading zero and 1 to 6 bytes after it are the 13-digit ms and seq < 10^6.
local PAD = {'00000', '0000', '000', '00', '0', ''}
local sbyte, ssub = string.byte, string.sub
local function mark_of(entry_id)
  local n = #entry_id
  if n >= 15 and n <= 20 and sbyte(entry_id, 14) == 45 and sbyte(entry_id, 1) ~= 48 then
    return ssub(entry_id, 1, 13) .. PAD[n - 14] .. ssub(entry_id, 15)
  end
  return 's|' .. entry_id
end
-- The entry id a packed claim's mark names (mark_of backwards): only for a claim
-- that is not new (its ack, its comparison with the mark found).
local function entry_of(mine)
  if sbyte(mine, 1) == 115 then return ssub(mine, 3) end  -- 's|<entry id>'
  return ssub(mine, 1, 13) .. '-' .. tonumber(ssub(mine, 14))
end

-- A job whose mark is taken: why (the status), and what that takes (acks, the event).
local function taken(job_id, entry_id, ref, mark, bucket, mine)
  if mark == mine or mark == 's|' .. entry_id then
    if retry then return '0' end
    return '2'
  elseif mark == 'c' then
    -- cancelled while it waited (cancel.lua): never sent; its event once
    redis.call('XACK', jobs, group, entry_id)
    marks_put(marks, bucket, job_id, 'done')
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
      'id', job_id, 'ref', ref, 'event', 'cancelled', 'carrier', '', 'parts', '0',
      'message_ids', '', 'error', '', 'ts', now)
    return '4'
  end
  redis.call('XACK', jobs, group, entry_id)
  return '1'
end

local out = {}
local n = 0
local call = redis.call
for i, c in ipairs(batch.claims) do
  local job_id, entry_id = c[C_JOB_ID], c[C_ENTRY_ID]
  local mine = mark_of(entry_id)
  local h = c[C_MARKS_HASH]
  n = i
  if suppressed(i, job_id, h) then
    out[i] = '3'
  else
    local ok, mark, bucket = marks_take(marks, job_id, mine, h)
    if ok then
      out[i] = '0'
    else
      out[i] = taken(job_id, entry_id, c[C_REF], mark, bucket, mine)
    end
  end
end
local byte, sub, unpack = string.byte, string.sub, unpack
-- the packed marketing claims, list by list, 1,000 at a time: their hashes cut
-- and looked up with one SMISMEMBER (not at all when the list is empty or absent),
-- then each claimed as a transactional one below (python -m bench.suppression_cost
-- --instructions)
local data, lens, hs = ARGV[A_MARKETING], ARGV[A_MARKETING_LENS], ARGV[A_HASHES]
local mh = ARGV[A_MARKS_HASHES]
local p, k, o, q = 1, 1, 1, 1  -- q: the next marks hash in mh
local hashes = {}
local lists = batch.lists or {}
local total = 0
for _, g in ipairs(lists) do total = total + g[L_COUNT] end
local w = total > 0 and #hs / total or 0  -- a hash's width (all have the same)
if total * P_REF ~= #lens or w ~= math.floor(w) then  -- before any mark is taken
  return redis.error_reply('claim.lua: packed marketing claims, their hashes and lists disagree')
end
local NONE = {}  -- the answers of an empty list (or none at all): no hash is cut or looked up
for _, g in ipairs(lists) do
  local list, count = g[L_LIST], g[L_COUNT]
  local empty = call('SCARD', list) == 0
  for first = 1, count, 1000 do
    local m = count - first + 1
    if m > 1000 then m = 1000 end
    local found = NONE
    if empty then
      o = o + m * w
    else
      for j = 1, m do
        hashes[j] = sub(hs, o, o + w - 1)
        o = o + w
      end
      found = call('SMISMEMBER', list, unpack(hashes, 1, m))
    end
    for j = 1, m do
      local l1, l2, l3 = byte(lens, k, k + 2)
      local e = p + l1
      local job_id = sub(data, p, e - 1)
      p = e; e = p + l2
      local mine = sub(data, p, e - 1)
      p = e; e = p + l3
      local b1, b2, b3, b4 = byte(mh, q, q + 3)
      local h = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
      q = q + 4
      n = n + 1
      if found[j] == 1 and marks_find(marks, job_id, h) == nil then
        out[n] = '3'
      else
        local ok, mark, bucket = marks_take(marks, job_id, mine, h)
        if ok then
          out[n] = '0'
        else
          out[n] = taken(job_id, entry_of(mine), sub(data, p, e - 1), mark, bucket, mine)
        end
      end
      p = e
      k = k + P_REF
    end
  end
end
if p ~= #data + 1 or k ~= #lens + 1 or o ~= #hs + 1 then
  return redis.error_reply('claim.lua: packed marketing claims and their lengths disagree')
end
-- the packed transactional claims: the same, without the suppression check
data, lens = ARGV[A_PACKED], ARGV[A_PACKED_LENS]
p = 1
for k = 1, #lens, P_REF do  -- P_REF, the last of CLAIM_PACKED: its width
  local l1, l2, l3 = byte(lens, k, k + 2)
  local e = p + l1
  local job_id = sub(data, p, e - 1)
  p = e; e = p + l2
  local mine = sub(data, p, e - 1)
  p = e; e = p + l3
  local b1, b2, b3, b4 = byte(mh, q, q + 3)
  q = q + 4
  n = n + 1
  local ok, mark, bucket = marks_take(marks, job_id, mine, ((b1 * 256 + b2) * 256 + b3) * 256 + b4)
  if ok then
    out[n] = '0'
  else
    out[n] = taken(job_id, entry_of(mine), sub(data, p, e - 1), mark, bucket, mine)
  end
  p = e
end
if p ~= #data + 1 or #lens % P_REF ~= 0 then
  return redis.error_reply('claim.lua: packed claims and their lengths disagree')
end
marks_close(marks)

local at = A_REST
local retention_until = batch.retention_until and string.format('%d', batch.retention_until) or ''
for _, d in ipairs(batch.dead) do
  local entry_id, nfields, code, reason = d[D_ENTRY_ID], d[D_NFIELDS], d[D_CODE], d[D_REASON]
  local job_id, ref, event = d[D_JOB_ID], d[D_REF], d[D_EVENT]
  local first = at
  at = at + nfields
  -- XACK first: 0 means a repeated call already wrote this dead letter.
  if redis.call('XACK', jobs, group, entry_id) == 1 then
  local args = {'XADD', dead, 'MAXLEN', '~', maxlen, '*'}
  for k = first, first + nfields - 1 do args[#args + 1] = ARGV[k] end
  args[#args + 1] = 'code'; args[#args + 1] = code
  args[#args + 1] = 'reason'; args[#args + 1] = reason
  args[#args + 1] = 'entry'; args[#args + 1] = entry_id
  redis.call(unpack(args))
  if event ~= '' and job_id ~= '' then
    -- the job's first (and only) event: it describes the job for the history archiver
    redis.call('XADD', events, '*',
      'id', job_id, 'ref', ref, 'event', event, 'carrier', '', 'parts', '0',
      'message_ids', '', 'error', code, 'ts', now,
      'client', d[D_CLIENT], 'kind', d[D_KIND], 'to_hash', d[D_TO_HASH], 'to_mask', d[D_TO_MASK],
      'encoding', '', 'retention_until', retention_until)
  end
  end
end
return table.concat(out)
