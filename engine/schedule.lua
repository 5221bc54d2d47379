-- schedule.lua: push jobs whose send_at has come back onto their lane.
--
-- Jobs with a future send_at are stored as hashes `P:scheduled:<entry id>`
-- (their original fields plus `lane`) and indexed in the sorted set
-- `P:scheduled` by due time (unix ms); `P:scheduled:id:<job id>` names the
-- entry of a held job (cancel.lua). Each due job is released once: the script
-- runs alone, and removes what it releases.
--
-- Positions are named: the loader (engine/scripts.py) prepends the generated
-- header (LAYOUT_VERSION, K_*, A_*) from SCHEDULE_KEYS and SCHEDULE_ARGS.
--
-- KEYS[K_SCHEDULED] the scheduled sorted set
-- ARGV[A_NOW]    now (unix ms)
-- ARGV[A_LIMIT]  most jobs to release in this call
-- ARGV[A_LAYOUT] LAYOUT_VERSION of the caller (a mismatch is refused)
-- ARGV[A_JOB_PREFIX] what a held job's key starts with ("P:scheduled:", engine/keys.py)
-- ARGV[A_ID_PREFIX] what the job id -> entry id index starts with ("P:scheduled:id:"; for cancel.lua)
local zset, job_prefix = KEYS[K_SCHEDULED], ARGV[A_JOB_PREFIX]
local due = redis.call('ZRANGEBYSCORE', zset, '-inf', ARGV[A_NOW], 'LIMIT', 0, tonumber(ARGV[A_LIMIT]))
for _, entry_id in ipairs(due) do
  local key = job_prefix .. entry_id
  local flat = redis.call('HGETALL', key)
  local lane, job_id = nil, nil
  -- No MAXLEN: trimming a lane by length could drop jobs nobody has read yet.
  local args = {'XADD', '', '*'}
  for i = 1, #flat, 2 do
    if flat[i] == 'lane' then
      lane = flat[i + 1]
    else
      if flat[i] == 'id' then job_id = flat[i + 1] end
      args[#args + 1] = flat[i]
      args[#args + 1] = flat[i + 1]
    end
  end
  if lane and #args > 3 then
    args[2] = lane
    redis.call(unpack(args))
  end
  redis.call('DEL', key)
  if job_id and redis.call('GET', ARGV[A_ID_PREFIX] .. job_id) == entry_id then
    redis.call('DEL', ARGV[A_ID_PREFIX] .. job_id)
  end
  redis.call('ZREM', zset, entry_id)
end
return #due
