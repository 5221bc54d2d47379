-- claim.lua: the first of the two script calls a batch of jobs costs.
--
-- For every valid job: take its idempotency mark (SET NX) or learn why not.
-- For every invalid or expired job: write the dead letter (and the `expired`
-- event), then XACK. For every duplicate: XACK without sending.
--
-- KEYS[1] jobs stream the entries came from
-- KEYS[2] events stream
-- KEYS[3] dead-letter stream
-- ARGV[1] consumer group
-- ARGV[2] key prefix
-- ARGV[3] payload (JSON): {"c": [[job_id, entry_id], ...],
--                          "d": [[entry_id, nfields, code, reason, job_id, ref, event], ...]}
-- ARGV[4] now (unix ms)
-- ARGV[5] idempotency mark TTL (s)
-- ARGV[6] approximate MAXLEN of the events and dead-letter streams
-- ARGV[7] "1" when this call repeats one whose reply was lost (Redis connection
--         dropped): a mark of our own is then ours, not a crashed consumer's
-- ARGV[8...] the dead letters' original fields, k, v, k, v, ..., nfields values
--         per dead letter in order (binary-safe: a job with malformed UTF-8 is
--         kept byte for byte)
--
-- Returns one integer per candidate, in order:
--   0 new: mark taken, send it
--   1 duplicate: this job id was sent (or is being sent) under another entry; acked here
--   2 reclaimed: this very entry was being sent by a consumer that died between
--     submit_sm and its resp; the caller resends or reports `unknown`
local jobs, events, dead = KEYS[1], KEYS[2], KEYS[3]
local group, prefix = ARGV[1], ARGV[2]
local batch = cjson.decode(ARGV[3])
-- mark_ttl stays a string: Redis would format a number on every call
local now, mark_ttl, maxlen = ARGV[4], ARGV[5], ARGV[6]
local retry = ARGV[7] == '1'

local out = {}
for i, c in ipairs(batch.c) do
  local job_id, entry_id = c[1], c[2]
  local idem = prefix .. ':idem:' .. job_id
  local mine = 's|' .. entry_id
  if redis.call('SET', idem, mine, 'NX', 'EX', mark_ttl) then
    out[i] = 0
  else
    local mark = redis.call('GET', idem)
    if mark == mine then
      if retry then out[i] = 0 else out[i] = 2 end
    else
      redis.call('XACK', jobs, group, entry_id)
      out[i] = 1
    end
  end
end

local at = 8
for _, d in ipairs(batch.d) do
  local entry_id, nfields, code, reason, job_id, ref, event = d[1], d[2], d[3], d[4], d[5], d[6], d[7]
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
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*',
      'id', job_id, 'ref', ref, 'event', event, 'carrier', '', 'parts', '0',
      'message_ids', '', 'error', code, 'ts', now)
  end
  end
end
return out
