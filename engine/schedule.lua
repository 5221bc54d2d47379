-- schedule.lua: push jobs whose send_at has come back onto their lane.
--
-- Jobs with a future send_at are stored as hashes `<scheduled>:<entry id>`
-- (their original fields plus `lane`) and indexed in the sorted set
-- `<scheduled>` by due time (unix ms).
--
-- KEYS[1] the scheduled sorted set
-- ARGV[1] now (unix ms)
-- ARGV[2] most jobs to release in this call
local zset = KEYS[1]
local due = redis.call('ZRANGEBYSCORE', zset, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry_id in ipairs(due) do
  local key = zset .. ':' .. entry_id
  local flat = redis.call('HGETALL', key)
  local lane = nil
  -- No MAXLEN: trimming a lane by length could drop jobs nobody has read yet.
  local args = {'XADD', '', '*'}
  for i = 1, #flat, 2 do
    if flat[i] == 'lane' then
      lane = flat[i + 1]
    else
      args[#args + 1] = flat[i]
      args[#args + 1] = flat[i + 1]
    end
  end
  if lane and #args > 3 then
    args[2] = lane
    redis.call(unpack(args))
  end
  redis.call('DEL', key)
  redis.call('ZREM', zset, entry_id)
end
return #due
