-- park.lua: move jobs the engine read but cannot take now to park streams.
--
-- A job read from a lane (or a park stream) whose carrier has no bind up, or
-- whose jobs in hand are at their budget, or whose older jobs are parked
-- already, is appended to its park stream `P:park:<carrier>:<lane>[:<client>]`
-- (same fields, new entry id) and its entry acked where it was read, in one
-- call for the whole batch. The engines' group reads the park streams again
-- when the carrier has room (engine/pipeline.py). A repeated call (its reply
-- lost) does nothing twice: an entry already acked is skipped.
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header (LAYOUT_VERSION, K_*, A_*, E_*) from PARK_KEYS, PARK_ARGS and
-- ParkEntry in engine/scripts.py.
--
-- KEYS[K_SOURCE]   the stream the entries were read from
-- KEYS[K_SOURCE+1...] the park streams, by the index each entry names
-- ARGV[A_GROUP]   consumer group
-- ARGV[A_LAYOUT]  LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_PAYLOAD] payload (JSON): [[entry_id, nfields, dest] (E_*), ...]; dest 1 = KEYS[K_SOURCE+1]
-- ARGV[A_REST...] the entries' fields, k, v, k, v, ... (nfields values per entry, in order)
--
-- Returns how many entries were moved.
local source, group = KEYS[K_SOURCE], ARGV[A_GROUP]
local entries = cjson.decode(ARGV[A_PAYLOAD])
local at = A_REST
local n = 0
for _, e in ipairs(entries) do
  local entry_id, nfields, dest = e[E_ENTRY_ID], e[E_NFIELDS], e[E_DEST]
  local first = at
  at = at + nfields
  if redis.call('XACK', source, group, entry_id) == 1 then
    -- No MAXLEN: a park stream holds jobs nobody has sent yet.
    local args = {'XADD', KEYS[K_SOURCE + dest], '*'}
    for k = first, first + nfields - 1 do args[#args + 1] = ARGV[k] end
    redis.call(unpack(args))
    n = n + 1
  end
end
return n
