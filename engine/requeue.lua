-- requeue.lua: hand jobs that were read but never started back to the lane.
--
-- On graceful shutdown the engine holds jobs it read but never claimed (no
-- idempotency mark, nothing written). Leaving them pending would delay them
-- until another consumer's visibility timeout; instead each is appended again
-- (same fields, new entry id) and its old entry acked, atomically.
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header (LAYOUT_VERSION, K_*, A_*, E_*) from REQUEUE_KEYS, REQUEUE_ARGS and
-- RequeueEntry in engine/scripts.py.
--
-- KEYS[K_LANE] the lane the entries came from
-- ARGV[A_GROUP]   consumer group
-- ARGV[A_LAYOUT]  LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_PAYLOAD] payload (JSON): [[entry_id, nfields] (E_*), ...]
-- ARGV[A_REST...] the entries' fields, k, v, k, v, ... (nfields values per entry, in order)
local stream, group = KEYS[K_LANE], ARGV[A_GROUP]
local entries = cjson.decode(ARGV[A_PAYLOAD])
local at = A_REST
local n = 0
for _, e in ipairs(entries) do
  local entry_id, nfields = e[E_ENTRY_ID], e[E_NFIELDS]
  local first = at
  at = at + nfields
  if redis.call('XACK', stream, group, entry_id) == 1 then
    local args = {'XADD', stream, '*'}
    for k = first, first + nfields - 1 do args[#args + 1] = ARGV[k] end
    redis.call(unpack(args))
    n = n + 1
  end
end
return n
