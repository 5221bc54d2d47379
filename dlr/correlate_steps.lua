-- dlr/correlate_steps.lua: correlate.lua's stage modes, for privacy hooks.
-- The loader (dlr/store.py script_source(steps=True)) inserts this text at the
-- '-- @steps' line of dlr/correlate.lua, after `mode` is read: the script the
-- engine runs with custom privacy hooks. The one-call path's script goes without
-- it, so its cost is today's.
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
local concat = table.concat

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

-- The stage's reply (correlate.lua calls it at the end of a mode, with `step` set).
finish_step = stage_finish

local colon = string.find(mode, ':', 1, true)
if colon then
    mode, step = string.sub(mode, 1, colon - 1), string.sub(mode, colon + 1)
    if step ~= 'stage' then
        return redis.error_reply('correlate.lua: unknown step')
    end
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
end
