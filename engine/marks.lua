-- marks.lua: read or take idempotency marks outside the claims (erasure, tools,
-- tests): the same code as claim.lua's (engine/marks_lib.lua, put before this).
--
-- KEYS[1]        the current generation's meta key (only for the call's slot)
-- ARGV[A_LAYOUT] LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_MODE]   `get`: each id's mark ('' for none); `take`: ARGV[A_VALUE] as the
--                mark of each id that has none (1 taken, 0 it had one)
-- ARGV[A_PREFIX] what idempotency marks' keys start with ("P:marks:", engine/keys.py)
-- ARGV[A_LEGACY_PREFIX] what marks of layout 10 and before start with ("P:idem:")
-- ARGV[A_NOW]    unix ms; ARGV[A_WINDOW] the idempotency window (s)
-- ARGV[A_HASHES] each id's marks hash (engine.keys.marks_hash), decimal, space-separated
-- ARGV[A_IDS...] the job ids
local marks = marks_open(ARGV[A_PREFIX], ARGV[A_NOW], ARGV[A_WINDOW], ARGV[A_LEGACY_PREFIX])
local hashes = {}
for h in string.gmatch(ARGV[A_HASHES], '%d+') do hashes[#hashes + 1] = tonumber(h) end
if #hashes ~= #ARGV - A_IDS + 1 then
  return redis.error_reply('marks.lua: one marks hash per id')
end
local out = {}
if ARGV[A_MODE] == 'get' then
  for i = A_IDS, #ARGV do out[#out + 1] = marks_find(marks, ARGV[i], hashes[i - A_IDS + 1]) or '' end
elseif ARGV[A_MODE] == 'take' then
  local value = ARGV[A_VALUE]
  for i = A_IDS, #ARGV do out[#out + 1] = marks_take(marks, ARGV[i], value, hashes[i - A_IDS + 1]) and 1 or 0 end
  marks_close(marks)
else
  return redis.error_reply('marks.lua: mode get or take')
end
return out
