-- dlr/publish_staged.lua: the second call of stage-then-publish (custom privacy hooks;
-- dlr/store.py "Two steps"). Publishes one staged batch of receipt events -- kept by
-- correlate.lua's 'apply:stage' / 'expire:stage' in the staging hash -- with the
-- hooks' edits, and deletes it, in one call: so a batch is published once, whoever
-- (this engine, or another one recovering it) gets there first.
--
-- KEYS[1] the staging hash (P:dlr:staged), KEYS[2] the events stream (P:events).
-- ARGV[1] the batch's field, ARGV[2] the length of the staged value the hooks saw,
-- ARGV[3] the count c of field/value pairs every event gets (their deadline, when
-- they share one), ARGV[4] the count n of edited events, then the c pairs, then per
-- edited event its index (from 1, in staged order), the count k of its fields and
-- k field/value pairs (an edited field replaces the event's, a new one is added).
-- Returns the count of events published; 0: the field is gone (published already,
-- or every event erased); -1: the staged value changed since the hooks saw it
-- (an erasure dropped events of it): read it again, show it to the hooks again.
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
    return 0
end
if #v ~= tonumber(ARGV[2]) then
    return -1
end
local colon = string.find(v, ':', 1, true)
local batch = cmsgpack.unpack(string.sub(v, colon + 1))
-- see dlr/correlate_steps.lua: kinds, then the other events' callbacks, submit times and
-- field lists, then the fast-path finals' job ids, refs, message ids, and their other
-- fields per run
local kinds, events = batch[1], batch[4]
local f_id, f_ref, f_mids = batch[5], batch[6], batch[7]
local r_event, r_error, r_ts, r_carrier, r_len = batch[8], batch[9], batch[10], batch[11], batch[12]
local run, left, ev, err, ts, car = 0, 0, nil, nil, nil, nil
local c, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local edited, at = {}, 5 + 2 * c  -- event index -> where its edits start in ARGV
for _ = 1, n do
    edited[tonumber(ARGV[at])] = at + 1
    at = at + 2 + 2 * tonumber(ARGV[at + 1])
end
local stream, byte = KEYS[2], string.byte
local k, ne = 0, 0  -- 'F' events and others taken so far
for i = 1, #kinds do
    local fields
    if byte(kinds, i) == 70 then  -- 'F'
        k = k + 1
        if left == 0 then
            run = run + 1
            left, ev, err, ts, car = r_len[run], r_event[run], r_error[run], r_ts[run], r_carrier[run]
        end
        left = left - 1
        if c == 1 and not edited[i] then  -- the usual event: one shared deadline, no edit
            redis.call('XADD', stream, '*', 'id', f_id[k], 'ref', f_ref[k], 'event', ev, 'carrier', car, 'parts',
                '1', 'message_ids', f_mids[k], 'error', err, 'ts', ts, ARGV[5], ARGV[6])
        else
            fields = {'id', f_id[k], 'ref', f_ref[k], 'event', ev, 'carrier', car, 'parts', '1',
                      'message_ids', f_mids[k], 'error', err, 'ts', ts}
        end
    else
        ne = ne + 1
        fields = events[ne]
    end
    if fields then
        if c > 0 then
            local m = #fields
            for j = 1, 2 * c do
                fields[m + j] = ARGV[4 + j]
            end
        end
        local e = edited[i]
        if e then
            for j = e + 1, e + 2 * tonumber(ARGV[e]), 2 do
                local f, value, found = ARGV[j], ARGV[j + 1], false
                for p = 1, #fields, 2 do
                    if fields[p] == f then
                        fields[p + 1], found = value, true
                        break
                    end
                end
                if not found then
                    fields[#fields + 1] = f
                    fields[#fields + 1] = value
                end
            end
        end
        redis.call('XADD', stream, '*', unpack(fields))
    end
end
redis.call('HDEL', KEYS[1], ARGV[1])
return #kinds
