-- requeue.lua: hand jobs that were read but never started back to the lane.
--
-- On graceful shutdown the engine holds jobs it read but never claimed (no
-- idempotency mark, nothing written). Leaving them pending would delay them
-- until another consumer's visibility timeout; instead each is appended again
-- (same fields, new entry id) and its old entry acked, atomically.
--
-- KEYS[1] the lane the entries came from
-- ARGV[1] consumer group
-- ARGV[2] payload (JSON): [[entry_id, nfields], ...]
-- ARGV[3...] the entries' fields, k, v, k, v, ... (nfields values per entry, in order)
local stream, group = KEYS[1], ARGV[1]
local entries = cjson.decode(ARGV[2])
local at = 3
local n = 0
for _, e in ipairs(entries) do
  local entry_id, nfields = e[1], e[2]
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
