-- cancel.lua: `sendgate cancel ID` (and Producer.cancel): take a waiting job's
-- idempotency mark so that it is never sent.
--
-- The job's mark (engine/marks_lib.lua) is set to `c` (taken NX). If it
-- was free, the job has not been handed to a bind: wherever it waits (a lane,
-- a park stream) claim.lua meets the `c`, acks the entry without sending and
-- publishes event `cancelled` once. A job held for its send_at is removed
-- from the scheduled set now and its `cancelled` event published here. If the
-- mark was taken already (`s|<entry>`: handed to a bind; `done`: recorded),
-- nothing changes. Cancelling an id that was never pushed blocks that id for
-- the idempotency window.
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header (LAYOUT_VERSION, K_*, A_*) from CANCEL_KEYS and CANCEL_ARGS.
--
-- KEYS[K_HELD]      P:scheduled:id:<job id> (the entry id of a held job)
-- KEYS[K_SCHEDULED] the scheduled sorted set
-- KEYS[K_EVENTS]    events stream
-- ARGV[A_LAYOUT]  LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_JOB_ID]  the job id
-- ARGV[A_MARK_TTL] the idempotency window (s): with A_NOW it picks the marks' generation
-- ARGV[A_NOW]     now (unix ms)
-- ARGV[A_MAXLEN]  approximate MAXLEN of the events stream
-- ARGV[A_JOB_PREFIX] what a held job's key starts with ("P:scheduled:", engine/keys.py)
-- ARGV[A_MARKS_PREFIX] what idempotency marks' keys start with ("P:marks:", engine/keys.py)
-- ARGV[A_IDEM_PREFIX] what marks of layout 10 and before start with ("P:idem:")
-- ARGV[A_MARKS_HASH] the job id's marks hash (engine.keys.marks_hash: its CRC-32)
--
-- Returns {code, detail}: {1, ''} cancelled while waiting in a lane or park
-- stream (its event follows when an engine meets it); {2, ''} cancelled while
-- held for its send_at (event published now); {0, mark} not cancellable, the
-- mark that is there (`c` = cancelled before).
local job_id = ARGV[A_JOB_ID]
local marks = marks_open(ARGV[A_MARKS_PREFIX], ARGV[A_NOW], ARGV[A_MARK_TTL], ARGV[A_IDEM_PREFIX])
local ok, mark, bucket = marks_take(marks, job_id, 'c', tonumber(ARGV[A_MARKS_HASH]))
marks_close(marks)
if not ok then
  return {0, mark}
end
local entry_id = redis.call('GET', KEYS[K_HELD])
if not entry_id then
  return {1, ''}
end
local held = ARGV[A_JOB_PREFIX] .. entry_id
local ref = redis.call('HGET', held, 'ref') or ''
redis.call('DEL', held, KEYS[K_HELD])
redis.call('ZREM', KEYS[K_SCHEDULED], entry_id)
redis.call('HSET', bucket, job_id, 'done')
redis.call('XADD', KEYS[K_EVENTS], 'MAXLEN', '~', ARGV[A_MAXLEN], '*',
  'id', job_id, 'ref', ref, 'event', 'cancelled', 'carrier', '', 'parts', '0',
  'message_ids', '', 'error', '', 'ts', ARGV[A_NOW])
return {2, ''}
