-- dlr/correlate_steps.lua: correlate.lua's two-step modes, for privacy hooks.
-- The loader (dlr/store.py script_source(steps=True)) inserts this text at the
-- '-- @steps' line of dlr/correlate.lua, after `mode` is read: the script the
-- engine runs with custom privacy hooks. The one-call path's script goes without
-- it, so its cost is today's.
--
-- Modes 'apply:plan' and 'expire:plan' run 'apply' / 'expire' as a dry run: every
-- command goes to `dry_call`, which reads as usual but keeps each write in `journal`
-- (and what it set in `overlay`, which later reads of the same call see), and each
-- event in `planned`. The reply: the planned events and the `check`, a hash of the
-- writes (the events as composed, the job records' and buckets' changes; not the
-- duplicate spans, which follow Redis time). Nothing is written.
-- 'apply:commit' / 'expire:commit' (the same arguments, then COMMIT_ARGS: the plan's
-- check, the receipts it found no entry for, the hooks' edits) run the same dry run,
-- those receipts left unmatched (their entries may have been recorded since: they
-- are retried like any unmatched receipt, not written unseen by the hooks) and the
-- edits applied to the events; then refuse ({'!'}) when the writes differ from the
-- plan's (an entry or job record changed in between: the caller plans again), or
-- replay the journal.
--
-- Mode 'apply:stage' / 'expire:stage' (stage-then-publish, what the engine runs with
-- custom privacy hooks): the mode as one call does it -- entries consumed, job
-- records and buckets written, the duplicate window -- except that each event,
-- instead of its XADD, is kept: all of the call's together in one field of the
-- staging hash (STAGE_ARGS: its key, P:dlr:staged, and the field, the call's
-- token) as '<Redis time ms>:' then cmsgpack of {kinds, callbacks, submit times,
-- events, id, ref, message_ids, event, error, ts, carrier, run} (kinds: one letter per
-- event, 'F' a fast-path final, 'f' final, 'i' intermediate; callbacks, submit times
-- and events (each its field/value list as it would be written) for the events not
-- 'F'; then the 'F' events' job ids, refs and message ids, a list each, and their
-- other fields per run of events sharing them: the receipt's group). The reply:
-- {'S', statuses, fast, staged} (apply) or {'S', more, staged} (expire); staged ''
-- when the call composed no event (nothing kept). A field of that name already
-- there (the same call sent again after its reply was lost) is answered {'R',
-- staged} and nothing runs. dlr/publish_staged.lua then XADDs the events, with
-- the hooks' edits, and deletes the field, in one call.
local planned, np = {}, 0       -- the events, in order (their field lists)
local planned_text = {}         -- the same, each as the plan's reply gives it
local planned_count = 0         -- their fields and values, all together
local journal, nj = {}, 0       -- the writes, in order: {command, key, args...}; XADD: {'X', stream, fields}
local overlay = {}              -- key -> field -> value the journal set (false: deleted)
local seen, nseen = {}, 0       -- the writes, serialised (the check)
local edits = nil               -- commit: event index -> {field, value, ...}
local skip = nil                -- commit: the ids the plan found no entry for (set)
local common = nil              -- commit: {field, value, ...} added to every event (its deadline)
local bucket_head = ARGV[A_BUCKET_PREFIX]

-- Add a write to the check (one string per write: its command, key and arguments
-- joined by US; a value holding US could only make two different writes look alike,
-- never the same write look different).
local concat = table.concat
local function note(cmd, key, args, from)
    nseen = nseen + 1
    seen[nseen] = cmd .. '\31' .. key .. '\31' .. concat(args, '\31', from)
end

local function plan_xadd(stream, fields)
    np = np + 1
    -- as composed, before the hooks' edits (the stream is always the events stream);
    -- the plan's reply reuses the string
    local text = concat(fields, '\31')
    nseen = nseen + 1
    seen[nseen] = text
    planned_text[np] = text
    planned_count = planned_count + #fields
    if common then
        for i = 1, #common, 2 do
            fields[#fields + 1] = common[i]
            fields[#fields + 1] = common[i + 1]
        end
    end
    local e = edits and edits[np]
    if e then
        for i = 1, #e, 2 do
            local f, v, found = e[i], e[i + 1], false
            for j = 1, #fields, 2 do
                if fields[j] == f then
                    fields[j + 1], found = v, true
                    break
                end
            end
            if not found then
                fields[#fields + 1] = f
                fields[#fields + 1] = v
            end
        end
    end
    planned[np] = fields
    nj = nj + 1
    journal[nj] = {'X', stream, fields}
end

-- Writes left out of the check: the duplicate spans (their set and expiry follow
-- Redis time, not the batch).
local UNCHECKED = {SADD = true, PEXPIREAT = true, UNLINK = true}

local function dry_call(cmd, key, ...)
    if cmd == 'TIME' then
        return redis.call('TIME')
    end
    if cmd == 'XADD' then
        plan_xadd(key, {select(2, ...)})  -- the fields, after the '*'
        return ''
    end
    local o = overlay[key]
    if cmd == 'HMGET' then
        local vals = redis.call('HMGET', key, ...)
        local n = select('#', ...)
        if skip and string.sub(key, 1, #bucket_head) == bucket_head then
            for i = 1, n do
                if skip[(select(i, ...))] then
                    vals[i] = false
                end
            end
        end
        if o then
            for i = 1, n do
                local v = o[(select(i, ...))]
                if v ~= nil then
                    vals[i] = v
                end
            end
        end
        return vals
    elseif cmd == 'HINCRBY' or cmd == 'HEXISTS' then
        local field, by = ...
        local cur = o and o[field]
        if cur == nil then
            cur = redis.call('HGET', key, field)
        end
        if cmd == 'HEXISTS' then
            return cur and 1 or 0
        end
        local v = (tonumber(cur) or 0) + tonumber(by)
        if not o then
            o = {}
            overlay[key] = o
        end
        o[field] = tostring(v)
        nj = nj + 1
        journal[nj] = {cmd, key, field, by}
        note(cmd, key, journal[nj], 3)
        return v
    elseif cmd == 'SMISMEMBER' or cmd == 'GET' or cmd == 'ZREVRANGE' or cmd == 'ZRANGEBYSCORE'
        or cmd == 'HSCAN' then
        return redis.call(cmd, key, ...)
    end
    -- a write: HSET, HDEL, EXPIRE, SADD, PEXPIREAT, ZREM, UNLINK
    if cmd == 'HSET' or cmd == 'HDEL' then
        if not o then
            o = {}
            overlay[key] = o
        end
        local args, n = {...}, select('#', ...)
        if cmd == 'HSET' then
            for i = 1, n, 2 do
                o[args[i]] = args[i + 1]
            end
        else
            for i = 1, n do
                o[args[i]] = false
            end
        end
    end
    local w = {cmd, key, ...}
    nj = nj + 1
    journal[nj] = w
    if not UNCHECKED[cmd] then
        note(cmd, key, w, 3)
    end
    return 0
end


-- stage: the events kept instead of written (see the head of this file). A fast-path
-- final (the bulk) is kept as columns of its variable values, no table per event:
-- its XADD rebuilt by the publish call costs what the one call's does.
local st_kinds, st_callbacks, st_submitted, st_events, nst, ne = {}, {}, {}, {}, 0, 0
local f_id, f_ref, f_mids, nfe = {}, {}, {}, 0
-- the fields the receipt's group gives ('F' events in a row share them): one entry per run
local r_event, r_error, r_ts, r_carrier, r_len, nrun = {}, {}, {}, {}, {}, 0
local stage_key, stage_field = nil, nil

-- `call` in a stage: the fast path's own XADD (a final; its job id and submit time
-- go in `fast` as usual) is kept, any other command runs
local function stage_call(cmd, key, ...)
    if cmd == 'XADD' then
        local _, a1, id, a2, ref, a3, ev, a4, car, a5, parts, a6, mids, a7, err, a8, ts = ...
        if a1 ~= 'id' or a2 ~= 'ref' or a3 ~= 'event' or a4 ~= 'carrier' or a5 ~= 'parts' or parts ~= '1'
            or a6 ~= 'message_ids' or a7 ~= 'error' or a8 ~= 'ts' or select('#', ...) ~= 17 then
            error('correlate_steps.lua: the fast path\'s XADD is not the one stage_call knows')
        end
        nst, nfe = nst + 1, nfe + 1
        st_kinds[nst] = 'F'
        f_id[nfe], f_ref[nfe], f_mids[nfe] = id, ref, mids
        if nrun > 0 and r_ts[nrun] == ts and r_event[nrun] == ev and r_error[nrun] == err and r_carrier[nrun] == car then
            r_len[nrun] = r_len[nrun] + 1
        else
            nrun = nrun + 1
            r_event[nrun], r_error[nrun], r_ts[nrun], r_carrier[nrun], r_len[nrun] = ev, err, ts, car, 1
        end
        return ''
    elseif key == nil then  -- TIME
        return redis.call(cmd)
    end
    return redis.call(cmd, key, ...)
end

-- `reply` in a stage: every other event passes here (after its `xadd`, a no-op)
local NO_REPLY = {}
local function stage_reply(kind, info, fallback_submitted, fields)
    nst, ne = nst + 1, ne + 1
    st_kinds[nst] = kind
    st_callbacks[ne], st_submitted[ne], st_events[ne] = info[4] or '', info[5] or fallback_submitted, fields
    return NO_REPLY
end

local function stage_finish(head, out)
    local staged = ''
    if nst > 0 then
        local t = redis.call('TIME')
        staged = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)) .. ':'
            .. cmsgpack.pack({concat(st_kinds), st_callbacks, st_submitted, st_events,
                              f_id, f_ref, f_mids, r_event, r_error, r_ts, r_carrier, r_len})
        redis.call('HSET', stage_key, stage_field, staged)
    end
    if mode == 'apply' then
        return {'S', head[1], out[2], staged}
    end
    return {'S', head[1], staged}
end

-- The step's reply, or nil after a commit replayed its journal; `head`: what the
-- mode returns besides the events. plan: {'P', check, journal size, count, head..., planned
-- events...}, each event one string: its fields and values joined by US, after the
-- count of fields and values of all events (the caller splits them: more separators
-- than that count allows, a value holding US, make it ask 'plan_wide', whose events
-- are lists); a commit whose check differs: {'!'} (refused, nothing written).
finish_step = function(step, check_arg, head, out)
    if step == 'stage' then
        return stage_finish(head, out)
    end
    local check = redis.sha1hex(concat(seen, '\30'))
    if step ~= 'commit' then
        local r = {'P', check, tostring(nj), tostring(planned_count)}
        for i = 1, #head do
            r[#r + 1] = head[i]
        end
        local n = #r
        if step == 'plan' then
            for i = 1, np do
                r[n + i] = planned_text[i]
            end
        else
            for i = 1, np do
                r[n + i] = planned[i]
            end
        end
        return r
    end
    if check ~= check_arg then
        return {'!'}
    end
    for i = 1, nj do
        local w = journal[i]
        if w[1] == 'X' then
            redis.call('XADD', w[2], '*', unpack(w[3]))
        else
            redis.call(unpack(w))
        end
    end
    return nil
end

-- commit: COMMIT_ARGS from `pos` (after the mode's arguments): the plan's check, the
-- count s of ids to leave unmatched, the count c of field/value pairs added to every
-- event, the count n of edited events, then the s ids, the c pairs, then per edited
-- event its index (in plan order), the count k of fields and k field/value pairs.
read_commit = function(pos)
    local s, c, n = tonumber(ARGV[pos + CM_SKIPS]), tonumber(ARGV[pos + CM_COMMON]), tonumber(ARGV[pos + CM_EDITS])
    local at = pos + CM_LIST
    if s > 0 then
        skip = {}
        for i = at, at + s - 1 do
            skip[ARGV[i]] = true
        end
        at = at + s
    end
    if c > 0 then
        common = {unpack(ARGV, at, at + 2 * c - 1)}
        at = at + 2 * c
    end
    edits = {}
    for _ = 1, n do
        local index, k = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
        local e = {}
        for j = 1, 2 * k do
            e[j] = ARGV[at + 1 + j]
        end
        edits[index] = e
        at = at + 2 + 2 * k
    end
    return ARGV[pos + CM_CHECK]
end

local colon = string.find(mode, ':', 1, true)
if colon then
    mode, step = string.sub(mode, 1, colon - 1), string.sub(mode, colon + 1)
    if step == 'stage' then
        local pos = EX_WINDOW + 1
        if mode == 'apply' then
            pos = AP_REST
            for _ = 1, tonumber(ARGV[AP_GROUPS]) do
                pos = pos + G_IDS + tonumber(ARGV[pos + G_COUNT])
            end
        end
        stage_key, stage_field = ARGV[pos + SG_KEY], ARGV[pos + SG_FIELD]
        local kept = redis.call('HGET', stage_key, stage_field)
        if kept then
            return {'R', kept}
        end
        call, xadd, reply = stage_call, function() end, stage_reply
    elseif step ~= 'plan' and step ~= 'plan_wide' and step ~= 'commit' then
        return redis.error_reply('correlate.lua: unknown step')
    else
        call, xadd = dry_call, plan_xadd
    end
end
