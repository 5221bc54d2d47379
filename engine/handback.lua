-- handback.lua: hand the jobs an engine holds for a carrier it lost every bind
-- lease of back to that carrier's park streams, so a lease holder sends them.
--
-- An engine fenced off a carrier (its leases ran out: a SIGSTOP, a swap storm,
-- Redis unreachable past the TTL) may hold jobs of that carrier: read and queued
-- for admission (no idempotency mark yet), or claimed (mark taken by claim.lua)
-- and queued in its pool, never written. Each is appended to its class's park
-- stream `P:park:<carrier>:<lane>[:<client>]` (same fields, new entry id) and
-- its entry acked where it was read; a claimed job's mark is deleted with it, so
-- the engine that reads it from the park stream claims it anew. All in one call
-- per stream, atomically: the job is in exactly one place at every moment.
--
-- Only entries still pending *for this consumer* are moved: an entry another
-- engine took over meanwhile (XAUTOCLAIM after the visibility timeout, while
-- this one was stopped) is that engine's now and is left alone (answer 0), as is
-- a mark that is no longer this entry's (a cancel, an erasure, another entry of
-- the same job id): the entry is moved, the mark kept. A repeated call (its
-- reply lost) moves nothing twice: the entry is acked already.
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header (LAYOUT_VERSION, K_*, A_*, E_*) from HANDBACK_KEYS, HANDBACK_ARGS and
-- HandbackEntry in engine/scripts.py.
--
-- KEYS[K_SOURCE]   the stream the entries were read from (a lane or a park stream)
-- KEYS[K_SOURCE+1...] the park streams, by the index each entry names
-- ARGV[A_GROUP]    consumer group
-- ARGV[A_LAYOUT]   LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_CONSUMER] this engine's consumer name in the group
-- ARGV[A_MARKS_PREFIX] what idempotency marks' keys start with ("P:marks:", engine/keys.py)
-- ARGV[A_IDEM_PREFIX] what marks of layout 10 and before start with ("P:idem:")
-- ARGV[A_NOW], ARGV[A_WINDOW] unix ms and the idempotency window (s): the marks'
--                  generations looked in (engine/marks_lib.lua, put before this)
-- ARGV[A_PAYLOAD]  payload (JSON): [[entry_id, nfields, dest, job_id, mark, marks_hash] (E_*), ...];
--                  job_id "" when the job was never claimed (no mark to give back),
--                  else the mark its claim took (engine/scripts.py claim_mark) and
--                  its id's marks hash
-- ARGV[A_REST...]  the entries' fields, k, v, k, v, ... (nfields values per entry, in order)
--
-- Returns one integer per entry: 1 moved, 0 not ours any more (left alone).
local source, group, consumer = KEYS[K_SOURCE], ARGV[A_GROUP], ARGV[A_CONSUMER]
local entries = cjson.decode(ARGV[A_PAYLOAD])
local call = redis.call
local marks = marks_open(ARGV[A_MARKS_PREFIX], ARGV[A_NOW], ARGV[A_WINDOW], ARGV[A_IDEM_PREFIX])

local out = {}
local at = A_REST
for i, e in ipairs(entries) do
  local entry_id, nfields, dest, job_id = e[E_ENTRY_ID], e[E_NFIELDS], e[E_DEST], e[E_JOB_ID]
  local first = at
  at = at + nfields
  out[i] = 0
  local p = call('XPENDING', source, group, entry_id, entry_id, 1)
  if p[1] and p[1][2] == consumer then
    call('XACK', source, group, entry_id)
    if job_id ~= '' then
      local mark, where = marks_find(marks, job_id, e[E_MARKS_HASH])
      if mark == e[E_MARK] then
        if where == ARGV[A_IDEM_PREFIX] .. job_id then call('DEL', where) else call('HDEL', where, job_id) end
      end
    end
    -- No MAXLEN: a park stream holds jobs nobody has sent yet.
    local args = {'XADD', KEYS[K_SOURCE + dest], '*'}
    for k = first, first + nfields - 1 do args[#args + 1] = ARGV[k] end
    call(unpack(args))
    out[i] = 1
  end
end
return out
