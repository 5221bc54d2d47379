-- dlr/correlate.lua: receipt correlation, multipart aggregation and DLR expiry,
-- one script call per batch (see dlr/store.py for the why and the contract).
--
-- Layout (dlr/store.py has the whole contract):
--   P:dlr:c:<carrier>:<end_ms>       hash, a correlation bucket: normalised id -> entry, one of
--       "<part>:<submitted_ms>:<job id>"                      (any job; job id last, may hold ':')
--       "=<submitted_ms>US<message_ids>US<ref>US<job id>"     (single part, no callback: the
--                                                             fast path: no job record at all;
--                                                             US = 0x1F; after an intermediate
--                                                             receipt "=<submitted_ms>:<state>US...")
--                                    for the entries whose receipt deadline falls in the
--                                    bucket's span (a 64th of the wait), ending at end_ms
--   P:dlr:idx:<carrier>              zset: the carrier's buckets (end_ms, scored by it)
--   P:dlr:due                        zset: every bucket as "<end_ms>:<carrier>", scored by
--                                    end_ms (the expiry sweep's work list)
--   P:job:<job id>                   hash, only for jobs in the general form (several parts, or
--                                    a callback): parts, done, s:<n>, e:<n>, state, ref, carrier,
--                                    message_ids, callback, submitted_ms, dlr_ids (optional),
--                                    expect (optional: receipts awaited when fewer than parts);
--                                    its TTL drops to the grace (A_GRACE) with its final event
--   P:dlr:dup:<carrier>:<n>          set: the normalised ids of the carrier's entries retired
--                                    (a part's final receipt came) during the n-th span of
--                                    window/10 of Redis time; a receipt without entry whose
--                                    id is in a span of the last window is a duplicate (SMSCs
--                                    resend a deliver_sm whose resp they missed). (Layout 6;
--                                    layout 6's P:dlr:dup:<n> held "<carrier>US<id>" of every
--                                    carrier: still read for the receipts found in no new
--                                    span while such a set lives, see "legacy" below)
--   P:events                         stream of status events
--
-- Positions are named: the loader (dlr/store.py) prepends the generated header
-- (LAYOUT_VERSION, K_*, A_*, AP_*, EX_*, G_*) from KEYS_, ARGS, APPLY_ARGS,
-- EXPIRE_ARGS and GROUP in dlr/store.py. This script spells no key name: it
-- gets full keys in KEYS and what the others start with in ARGV (engine/keys.py).
--
-- KEYS[K_EVENTS] = P:events, KEYS[K_DUE] = P:dlr:due (declared so Cluster routes the
-- call; every key built below shares P's hash tag, so it lives in the same slot).
--
-- Both modes: ARGV[A_MODE] "apply" or "expire", ARGV[A_LAYOUT] LAYOUT_VERSION of the
--   caller (a mismatch is refused), then what keys start with: ARGV[A_JOB_PREFIX]
--   "P:job:", A_BUCKET_PREFIX "P:dlr:c:", A_INDEX_PREFIX "P:dlr:idx:", A_DUP_PREFIX
--   "P:dlr:dup:", A_CALL_PREFIX "P:dlr:call:"; A_GRACE: seconds a job record stays
--   after its final event ([engine] record_grace_s).
-- "apply":  ARGV[AP_CARRIER] carrier,
--           AP_WINDOW duplicate window ms (0 = none), AP_GROUPS group count g,
--           AP_NOW the call's time (unix ms, the engine's clock, as record.lua's
--           A_NOW): the `ts` of every event the call writes (the time it is written),
--           or the job's submit time when that is later (see event_ts),
--           AP_TOKEN call token ('' = none: the reply of a call with callback events is
--           kept 2 min under P:dlr:call:<token> and returned as is to a repeated call;
--           it does not cover AP_NOW, so a call sent again is the same call),
--           then from AP_REST per group (receipts sharing final flag, event and error),
--           at offsets G_*: final ("1"/"0"), event, error, count m, then m normalised ids.
--   returns { statuses, fast, event... } where statuses holds one letter per receipt,
--   in argument order:
--     a applied, f applied on the fast path (its job's final event is in `fast`),
--     u unmatched (no correlation entry), d duplicate (part already final, or
--       its entry retired within the duplicate window),
--     l late (intermediate after the part or job was final; ignored),
--     o orphan (a general-form entry but no job record; retried like unmatched),
--     x corrupt correlation entry (left alone)
--   fast = { job id, submitted_ms, ... } for each 'f', in order, NUL-joined in one
--   string (the event is the receipt's own, or unknown for a state that is not final;
--   the caller has it), and each
--   other event is { kind ("f" final / "i" intermediate), callback, submitted_ms,
--   field, value, ... } with the exact fields written to P:events (or only id, event
--   and carrier when the job has no callback).
-- "expire": ARGV[EX_NOW] now_ms, EX_LIMIT limit
--           (entries per call), EX_WINDOW duplicate window ms (layout 6's spans past it
--           are UNLINKed here: freed off the main thread, before their TTL would free
--           them; a carrier's layout-7 spans are, by its apply calls)
--   returns { more ("1": due buckets are left, call again; "0": none), event... } (final
--   events only).
--
-- Cost: every message passes here once, so the commands that can serve a whole
-- batch do (HMGET of the entries, HDEL and SADD of the retired ones), and the fast
-- path costs one command per receipt: the XADD of the event (its job has no record).
-- The buckets are the receipt deadlines too: no sorted-set entry per job. The
-- events stream is not trimmed here: the engine's trimmer does it behind the
-- history archiver (engine/stream_trim.py).

local SEVERITY = {delivered = 1, unknown = 2, deleted = 3, expired = 4, undeliverable = 5, rejected = 6}

-- Same rule as dlr/aggregate.py: delivered only if all delivered, else the worst.
local function aggregate(states)
    local worst, rank = 'unknown', 0
    for i = 1, #states do
        local s = states[i]
        local r = SEVERITY[s]
        if not r then
            s, r = 'unknown', 2
        end
        if r > rank then
            worst, rank = s, r
        end
    end
    return worst
end

-- Same rule as dlr/aggregate.py aggregate_error.
local function aggregate_error(states, errors, final)
    local fallback = ''
    for i = 1, #states do
        local e = errors[i]
        if e ~= '' then
            local s = states[i]
            if not SEVERITY[s] then
                s = 'unknown'
            end
            if s == final then
                return e
            end
            if fallback == '' then
                fallback = e
            end
        end
    end
    return fallback
end

-- (Numbers handed to redis.call are formatted by Redis on every call, snprintf
-- "%.17g" in 6.2, so arguments travel as the strings they came in as.)
-- Every command below goes through `call`: redis.call, or in a stage mode its stand-in
-- (`stage_call`, dlr/correlate_steps.lua: keeps the fast path's XADD); `xadd` and
-- `reply` likewise (a no-op and `stage_reply`: keep the event).
local call = redis.call
local xadd = function(stream, fields)
    call('XADD', stream, '*', unpack(fields))
end

-- The job fields every event needs, read with the part's own fields (one HMGET).
local INFO_FIELDS = {'ref', 'carrier', 'message_ids', 'callback', 'submitted_ms'}

-- How many final receipts complete the job: `expect` when the submit side
-- awaits receipts for fewer parts than it sent (0/absent: all parts).
local function awaited(parts, expect)
    local e = tonumber(expect)
    if e and e > 0 and e < parts then
        return e
    end
    return parts
end

-- A part count as a string, without formatting a number per event.
local NUM_STR = {}
for i = 1, 32 do
    NUM_STR[i] = tostring(i)
end
local function num_str(n)
    return NUM_STR[n] or tostring(n)
end

-- The `ts` of a receipt's event: `now` (the call's time, AP_NOW), unless the job's
-- submit time (its submitted event's ts, in its correlation entry) is later: another
-- engine's clock ahead of this one, or a call whose time was taken before the record
-- call's. So no event of a job is dated before its submitted event. Both are strings
-- of digits: compared as such (no number per receipt). The fast path has it inline.
local function event_ts(now, submitted)
    local n = #submitted
    if n > #now or (n == #now and submitted > now) then
        return submitted
    end
    return now
end

local function event_fields(job_id, info, event, carrier, parts, error, ts)
    return {
        'id', job_id, 'ref', info[1] or '', 'event', event, 'carrier', info[2] or carrier,
        'parts', num_str(parts), 'message_ids', info[3] or '', 'error', error, 'ts', ts,
    }
end

-- What the caller gets back per event: the whole event only when the job has a
-- callback to forward it to; else just id, event and carrier (for metrics and
-- receipt latency), which keeps the reply small on the hot path.
local function reply(kind, info, fallback_submitted, fields)
    local callback = info[4] or ''
    local out = {kind, callback, info[5] or fallback_submitted}
    if callback == '' then
        out[4], out[5], out[6], out[7], out[8], out[9] = 'id', fields[2], 'event', fields[6], 'carrier', fields[8]
        return out
    end
    for i = 1, #fields do
        out[#out + 1] = fields[i]
    end
    return out
end

-- Every awaited part has a final state: aggregate, store the job state, publish
-- the final event. states/errors: the awaited parts' final events and errors, or
-- nil to read parts first..parts from the job (first > 1 when only the last parts
-- asked for a receipt, `expect`). info: the INFO_FIELDS values. state_written:
-- the caller already stored 'state'. The caller retires the job's entries.
local function finish(jk, job_id, parts, first, carrier, ts, info, states, errors, state_written,
                      fallback_submitted, timeout_error, events)
    if not states then
        local names, count = {}, parts - first + 1
        for i = 1, count do
            names[i] = 's:' .. (first + i - 1)
            names[count + i] = 'e:' .. (first + i - 1)
        end
        local vals = call('HMGET', jk, unpack(names))
        states, errors = {}, {}
        for i = 1, count do
            states[i] = vals[i] or 'unknown'
            errors[i] = vals[count + i] or ''
        end
    end
    local final = aggregate(states)
    local err = aggregate_error(states, errors, final)
    if err == '' and final == 'unknown' then
        err = timeout_error
    end
    if not state_written then
        call('HSET', jk, 'state', final)
    end
    -- the record's work is done: it stays a grace longer (status, a late duplicate)
    call('EXPIRE', jk, ARGV[A_GRACE])
    local fields = event_fields(job_id, info, final, carrier, parts, err, ts)
    if parts > 1 and final ~= 'delivered' then
        fields[#fields + 1] = 'part_states'
        fields[#fields + 1] = table.concat(states, ',')
    end
    xadd(events, fields)
    return reply('f', info, fallback_submitted, fields)
end

-- A reply kept for a repeated call (see "memo" below): length-prefixed strings,
-- 's<len>:<bytes>' for a string, 't<count>:' then '<len>:<bytes>' per element
-- for a list of strings (job ids and refs may hold any byte).
local function pack_reply(t)
    local parts, n = {}, 0
    for i = 1, #t do
        local v = t[i]
        if type(v) == 'table' then
            n = n + 1
            parts[n] = 't' .. #v .. ':'
            for j = 1, #v do
                n = n + 1
                parts[n] = #v[j] .. ':' .. v[j]
            end
        else
            n = n + 1
            parts[n] = 's' .. #v .. ':' .. v
        end
    end
    return table.concat(parts)
end

local function unpack_reply(s)
    local out, pos = {}, 1
    local function item()
        local c = string.find(s, ':', pos, true)
        local len = tonumber(string.sub(s, pos, c - 1))
        local v = string.sub(s, c + 1, c + len)
        pos = c + len + 1
        return v
    end
    while pos <= #s do
        local kind = string.sub(s, pos, pos)
        pos = pos + 1
        if kind == 't' then
            local c = string.find(s, ':', pos, true)
            local count = tonumber(string.sub(s, pos, c - 1))
            pos = c + 1
            local t = {}
            for j = 1, count do
                t[j] = item()
            end
            out[#out + 1] = t
        else
            out[#out + 1] = item()
        end
    end
    return out
end

-- Positions of the three separators (US) of a fast-form correlation entry
-- "=<submitted_ms>US<message_ids>US<ref>US<job id>"; s3 is nil when malformed.
local function fast_separators(v)
    local s1 = string.find(v, '\31', 2, true)
    local s2 = s1 and string.find(v, '\31', s1 + 1, true)
    local s3 = s2 and string.find(v, '\31', s2 + 1, true)
    return s1, s2, s3
end

-- The head of a fast-form entry (between '=' and the first US): the submit time,
-- and the state of its last intermediate receipt (nil: none yet).
local function fast_head(v, s1)
    local head = string.sub(v, 2, s1 - 1)
    local c = string.find(head, ':', 1, true)
    if c then
        return string.sub(head, 1, c - 1), string.sub(head, c + 1)
    end
    return head, nil
end

-- A general-form correlation entry's part, submitted_ms and job id; nil when it
-- is malformed.
local function parse_entry(v)
    local c1 = string.find(v, ':', 1, true)
    local c2 = c1 and string.find(v, ':', c1 + 1, true)
    local part = c1 and tonumber(string.sub(v, 1, c1 - 1))
    if c2 and part and part == math.floor(part) then
        return part, string.sub(v, c1 + 1, c2 - 1), string.sub(v, c2 + 1)
    end
    return nil
end

-- Run a command over a list of arguments in slices (Lua's unpack has a limit).
local function each_slice(cmd, key, list)
    for i = 1, #list, 1000 do
        call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
    end
end

-- Duplicate detection spans: window/10 of Redis time each (one clock for every
-- engine). Returns the span (ms) and Redis's now (ms).
local function dup_span(window)
    local t = call('TIME')
    return math.max(1, math.ceil(window / 10)), tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A span's set: `base` .. n, base = "P:dlr:dup:<carrier>:" (layout 7), or "P:dlr:dup:"
-- for layout 6's sets of every carrier (read and unlinked, never written now)
local function dup_key(base, n)
    return base .. string.format('%d', n)
end

-- Locals for the globals the loops below read per receipt (a global is a table lookup).
local ARGV, redis = ARGV, redis
if ARGV[A_LAYOUT] ~= LAYOUT_VERSION then
    return redis.error_reply('correlate.lua: argument layout ' .. tostring(ARGV[A_LAYOUT]) .. ', this script reads '
        .. LAYOUT_VERSION .. ' (caller and script from different versions)')
end
local events, due = KEYS[K_EVENTS], KEYS[K_DUE]
local mode = ARGV[A_MODE]
-- the stage modes ('apply:stage', 'expire:stage'): step 'stage' (nil: one call) and the
-- stage's reply, from dlr/correlate_steps.lua
local step, finish_step = nil, nil
-- @steps (the stage modes: dlr/correlate_steps.lua, inserted here by the loader in the
-- script the privacy hooks' path runs; the one-call path runs this script without it)
local job_prefix, buckets_prefix, index_prefix = ARGV[A_JOB_PREFIX], ARGV[A_BUCKET_PREFIX], ARGV[A_INDEX_PREFIX]
local dup_prefix = ARGV[A_DUP_PREFIX]
local out = {'', {}}

if mode == 'apply' then
    local carrier = ARGV[AP_CARRIER]
    local window = tonumber(ARGV[AP_WINDOW])  -- duplicate window (ms; 0 = none)
    local groups = tonumber(ARGV[AP_GROUPS])
    local now, now_len = ARGV[AP_NOW], #ARGV[AP_NOW]  -- the events' ts (event_ts)
    -- memo: a call repeated after its reply was lost (same token) gets the first
    -- reply again, so the events it published still reach their webhooks.
    local memo = ARGV[AP_TOKEN] ~= '' and (ARGV[A_CALL_PREFIX] .. ARGV[AP_TOKEN]) or nil
    if memo then
        local kept = redis.call('GET', memo)
        if kept then
            local r = unpack_reply(kept)
            return r
        end
    end
    local bucket_prefix = buckets_prefix .. carrier .. ':'
    local dup_base = dup_prefix .. carrier .. ':'  -- the carrier's span sets: dup_base .. n
    -- Hot loop: locals for library functions, counters instead of '#' (a search in Lua 5.1).
    local sub, byte, find = string.sub, string.byte, string.find
    local statuses, fast = {}, out[2]
    local ns, nf = 0, 0
    local buckets, nb = nil, 0      -- the carrier's live buckets, newest first (read once)
    local gone, ng = {}, 0          -- ids of retired entries (one SADD per call)
    local drop = {}                 -- per bucket: ids whose entry goes (one HDEL per bucket)
    local finished = {}             -- ids whose final receipt this call applied
    local miss_at, miss_key, nm = {}, {}, 0  -- statuses index and id of each receipt without entry
    -- A part's final receipt retires its entry: deleted from its bucket, and its
    -- token kept in the current span's set for the duplicate window.
    local ndrop = {}                -- per bucket: how many ids in drop[b]
    local function retire(b, id)
        local d = drop[b]
        if not d then
            d, ndrop[b] = {}, 0
            drop[b] = d
        end
        local k = ndrop[b] + 1
        d[k], ndrop[b] = id, k
        ng = ng + 1
        gone[ng] = id
    end
    -- The entries of ids ARGV[id0+1 .. id0+m]: vals[i] (false or nil when none) and
    -- the bucket (its index in `buckets`) it was found in, at[i] (nil: the first).
    -- Buckets are probed newest first, each with one HMGET of the ids not found
    -- yet: a receipt usually finds its entry in the newest (its submit was
    -- recent), so a batch costs one HMGET, whose reply serves as vals as it is.
    local function lookup(id0, m)
        if not buckets then
            buckets = call('ZREVRANGE', index_prefix .. carrier, 0, -1)
            nb = #buckets
            for b = 1, nb do
                buckets[b] = bucket_prefix .. buckets[b]
            end
        end
        if nb == 1 and m <= 1000 then
            return call('HMGET', buckets[1], unpack(ARGV, id0 + 1, id0 + m)), {}
        end
        local vals, at = {}, {}
        local want, nw = nil, m  -- positions still missing (nil: all of 1..m)
        for b = 1, nb do
            if nw == 0 then
                break
            end
            local names
            if want then
                names = {}
                for j = 1, nw do
                    names[j] = ARGV[id0 + want[j]]
                end
            end
            local got = {}
            for i = 1, nw, 1000 do
                local part
                if want then
                    part = call('HMGET', buckets[b], unpack(names, i, math.min(i + 999, nw)))
                else
                    part = call('HMGET', buckets[b], unpack(ARGV, id0 + i, id0 + math.min(i + 999, nw)))
                end
                for j = 1, #part do
                    got[i + j - 1] = part[j]
                end
            end
            local kept, still = 0, {}
            for j = 1, nw do
                local i = want and want[j] or j
                local v = got[j]
                if v then
                    vals[i], at[i] = v, b
                else
                    kept = kept + 1
                    still[kept] = i
                end
            end
            want, nw = still, kept
        end
        return vals, at
    end
    local pos = AP_REST
    for _ = 1, groups do
        local final, event, err = ARGV[pos + G_FINAL] == '1', ARGV[pos + G_EVENT], ARGV[pos + G_ERROR]
        local m = tonumber(ARGV[pos + G_COUNT])
        local id0 = pos + G_IDS - 1  -- the ids are ARGV[id0 + 1 .. id0 + m]
        pos = id0 + m + 1
        local vals, at = lookup(id0, m)
        -- the final state of a single part is the receipt's own (unknown if not a final one)
        local state = SEVERITY[event] and event or 'unknown'
        for i = 1, m do
            local v, id = vals[i], ARGV[id0 + i]
            local status = 'a'
            if not v then
                status = 'u'
                nm = nm + 1
                miss_at[nm], miss_key[nm] = ns + 1, id
            elseif finished[id] then
                status = 'd'
            elseif byte(v, 1) == 61 then
                -- fast form ('='): a single-part job without callback and without a job
                -- record; what its events need is in the entry
                -- (fast_separators inline: the bulk of the receipts passes here)
                local s1 = find(v, '\31', 2, true)
                local s2 = s1 and find(v, '\31', s1 + 1, true)
                local s3 = s2 and find(v, '\31', s2 + 1, true)
                if not s3 then
                    status = 'x'
                elseif final then
                    local job_id = sub(v, s3 + 1)
                    -- the submit time: the whole head unless an intermediate receipt left
                    -- ':<state>' in it (a state is a word: the head then ends in a letter)
                    local last, submitted = byte(v, s1 - 1), nil
                    if last >= 48 and last <= 57 then
                        submitted = sub(v, 2, s1 - 1)
                    else
                        submitted = fast_head(v, s1)
                    end
                    -- event_ts() inline, the common case first: one string compare (unix
                    -- ms have 13 digits from 2001 to 2286, and digit strings of one length
                    -- compare as their numbers), the length only when it says later
                    local ts = now
                    if submitted > now and #submitted >= now_len then
                        ts = submitted
                    end
                    call('XADD', events, '*', 'id', job_id,
                        'ref', sub(v, s2 + 1, s3 - 1), 'event', state, 'carrier', carrier,
                        'parts', '1', 'message_ids', sub(v, s1 + 1, s2 - 1), 'error', err, 'ts', ts)
                    status = 'f'
                    finished[id] = true
                    -- retire() inline
                    local b = at[i] or 1
                    local d = drop[b]
                    if not d then
                        d, ndrop[b] = {}, 0
                        drop[b] = d
                    end
                    local k = ndrop[b] + 1
                    d[k], ndrop[b] = id, k
                    ng = ng + 1
                    gone[ng] = id
                    fast[nf + 1] = job_id
                    fast[nf + 2] = submitted
                    nf = nf + 2
                else
                    local job_id = sub(v, s3 + 1)
                    local submitted, seen = fast_head(v, s1)
                    if seen ~= event then
                        -- one intermediate event per change of state: the state is kept in
                        -- the entry itself
                        call('HSET', buckets[at[i] or 1], id, '=' .. submitted .. ':' .. event .. sub(v, s1))
                        local ref, mids = sub(v, s2 + 1, s3 - 1), sub(v, s1 + 1, s2 - 1)
                        local fields = {'id', job_id, 'ref', ref, 'event', event, 'carrier', carrier,
                                        'parts', '1', 'message_ids', mids, 'error', err,
                                        'ts', event_ts(now, submitted)}
                        xadd(events, fields)
                        out[#out + 1] = reply('i', {ref, carrier, mids, '', submitted}, submitted, fields)
                    end
                end
            else
                -- the general form: the job record holds the parts' states
                local part, submitted, job_id = parse_entry(v)
                if not job_id then
                    status = 'x'
                else
                    local jk = job_prefix .. job_id
                    local ts = event_ts(now, submitted)
                    -- 1 parts, 2 done, 3 s:<part>, 4 state, 5 expect, 6.. INFO_FIELDS
                    local head = call('HMGET', jk, 'parts', 'done', 's:' .. part, 'state', 'expect',
                                            unpack(INFO_FIELDS))
                    local info = {head[6], head[7], head[8], head[9], head[10]}
                    local parts = tonumber(head[1])
                    if not parts then
                        -- no job record (yet?): the caller retries like an unmatched receipt
                        status = 'o'
                    elseif part < 1 or part > parts then
                        status = 'x'
                    elseif final then
                        finished[id] = true
                        retire(at[i] or 1, id)
                        if head[3] then
                            status = 'd'
                        elseif parts == 1 then
                            call('HSET', jk, 's:1', event, 'e:1', err, 'done', '1', 'state', state)
                            out[#out + 1] = finish(jk, job_id, 1, 1, carrier, ts, info, {event}, {err}, true,
                                                   submitted, '', events)
                        else
                            call('HSET', jk, 's:' .. part, event, 'e:' .. part, err)
                            local done = call('HINCRBY', jk, 'done', '1')
                            local expect = awaited(parts, head[5])
                            if done == expect then
                                out[#out + 1] = finish(jk, job_id, parts, parts - expect + 1, carrier, ts, info,
                                                       nil, nil, false, submitted, '', events)
                            end
                        end
                    elseif head[3] or (tonumber(head[2]) or 0) >= awaited(parts, head[5]) then
                        status = 'l'
                    elseif head[4] ~= event then
                        -- one intermediate event per change of state, not one per part
                        call('HSET', jk, 'state', event)
                        local fields = event_fields(job_id, info, event, carrier, parts, err, ts)
                        xadd(events, fields)
                        out[#out + 1] = reply('i', info, submitted, fields)
                    end
                end
            end
            ns = ns + 1
            statuses[ns] = status
        end
    end
    if window > 0 and (nm > 0 or ng > 0) then
        local span, now = dup_span(window)
        local last = math.floor(now / span)
        local oldest = math.floor((now - window) / span)
        -- A receipt without entry whose id was retired within the window is a
        -- resent one (retired by an earlier call: this call's repeats are `finished`).
        -- A span's members are plain ids (no string made per receipt): the set is the
        -- carrier's.
        -- (keys: the ids still missing, or their layout-6 tokens with the ids in `other`;
        -- both compacted to the receipts still not found)
        local function seen_in(key, keys, other)
            local seen = call('SMISMEMBER', key, unpack(keys, 1, nm))
            local kept = 0
            for j = 1, nm do
                if seen[j] == 1 then
                    statuses[miss_at[j]] = 'd'
                else
                    kept = kept + 1
                    if kept ~= j then
                        miss_at[kept], keys[kept] = miss_at[j], keys[j]
                        if other then
                            other[kept] = other[j]
                        end
                    end
                end
            end
            nm = kept
        end
        for n = last, oldest, -1 do
            if nm == 0 then
                break
            end
            seen_in(dup_key(dup_base, n), miss_key, nil)
        end
        if nm > 0 then
            -- legacy: layout 6's spans ("P:dlr:dup:<n>", every carrier's "<carrier>US<id>")
            -- live a window and three spans after the last layout-6 call; while one of
            -- the window does, the ids still missing are looked up there too (one
            -- EXISTS per call with such receipts once they are gone)
            local names = {}
            for n = last, oldest, -1 do
                names[#names + 1] = dup_key(dup_prefix, n)
            end
            if call('EXISTS', unpack(names)) > 0 then
                local tokens = {}
                for j = 1, nm do
                    tokens[j] = carrier .. '\31' .. miss_key[j]
                end
                for n = last, oldest, -1 do
                    if nm == 0 then
                        break
                    end
                    seen_in(dup_key(dup_prefix, n), tokens, miss_key)
                end
            end
        end
        if ng > 0 then
            local set = dup_key(dup_base, last)
            each_slice('SADD', set, gone)
            -- needed until the span's end + window; this carrier's spans past that are
            -- UNLINKed (freed off the main thread) a span before their TTL would free
            -- them, by the carrier's next call that retires an entry
            call('PEXPIREAT', set, string.format('%d', (last + 3) * span + window))
            call('UNLINK', dup_key(dup_base, oldest - 2), dup_key(dup_base, oldest - 3),
                 dup_key(dup_base, oldest - 4))
        end
    end
    for b, ids in pairs(drop) do
        each_slice('HDEL', buckets[b], ids)
    end
    out[1] = table.concat(statuses)
    -- the fast-path finals as one string, NUL between values (a job id holds no NUL:
    -- engine/job.py; a submit time is digits): one bulk reply, not two per receipt
    -- (~2k instructions less per receipt in Redis; split in C by the caller)
    out[2] = table.concat(fast, '\0')
    if step then
        local r = finish_step({out[1]}, out)
        if r then
            return r
        end
    end
    if memo then
        -- kept only when something is to be forwarded (an event of a job with a
        -- callback): otherwise a repeated call just counts its receipts as duplicates
        for i = 3, #out do
            if out[i][2] ~= '' then
                redis.call('SET', memo, pack_reply(out), 'PX', 120000)
                break
            end
        end
    end
    return out
end

if mode == 'expire' then
    local now = ARGV[EX_NOW]
    local limit = tonumber(ARGV[EX_LIMIT])
    local window = tonumber(ARGV[EX_WINDOW]) or 0
    if window > 0 then
        -- layout 6's duplicate spans (of every carrier) past their use (span end +
        -- window) go here, UNLINKed (freed off the main thread), one span before their
        -- TTL would free them on it (a carrier's own spans: its apply calls)
        local span, t = dup_span(window)
        local n = math.floor((t - window) / span) - 2
        call('UNLINK', dup_key(dup_prefix, n), dup_key(dup_prefix, n - 1))
    end
    -- Buckets whose end passed: what is left in them are parts whose final receipt
    -- never came. Their jobs get the final event, the bucket goes. At most `limit`
    -- entries per call: a bucket left unfinished keeps its place in P:dlr:due and
    -- is scanned again (what was handled is deleted as it goes).
    local handled, more = 0, '0'
    local done_jobs = {}  -- jobs settled by this call (their other parts may follow)
    local due_buckets = call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, 100)
    for _, member in ipairs(due_buckets) do
        local c = string.find(member, ':', 1, true)
        local end_ms, bucket_carrier = string.sub(member, 1, c - 1), string.sub(member, c + 1)
        local bucket = buckets_prefix .. bucket_carrier .. ':' .. end_ms
        local cursor, finished_bucket = '0', false
        repeat
            local page = call('HSCAN', bucket, cursor, 'COUNT', limit)
            cursor = page[1]
            local kv = page[2]
            local names, jobs, order = {}, {}, {}
            for i = 1, #kv, 2 do
                names[#names + 1] = kv[i]
                local v = kv[i + 1]
                if string.byte(v, 1) == 61 then
                    -- a fast-form entry: its job has no record; the event comes from the entry
                    local s1, s2, s3 = fast_separators(v)
                    if s3 then
                        local submitted = fast_head(v, s1)
                        local ref, mids = string.sub(v, s2 + 1, s3 - 1), string.sub(v, s1 + 1, s2 - 1)
                        local fields = {'id', string.sub(v, s3 + 1), 'ref', ref, 'event', 'unknown',
                                        'carrier', bucket_carrier, 'parts', '1', 'message_ids', mids,
                                        'error', 'dlr_timeout', 'ts', now}
                        xadd(events, fields)
                        out[#out + 1] = reply('f', {ref, bucket_carrier, mids, '', submitted}, submitted, fields)
                    end
                else
                    local _, _, job_id = parse_entry(v)
                    if job_id and not jobs[job_id] and not done_jobs[job_id] then
                        jobs[job_id] = true
                        order[#order + 1] = job_id
                    end
                end
            end
            for _, job_id in ipairs(order) do
                done_jobs[job_id] = true
                local jk = job_prefix .. job_id
                local head = call('HMGET', jk, 'parts', 'done', 'carrier', 'expect')
                local parts = tonumber(head[1])
                local expect = parts and awaited(parts, head[4])
                if parts and parts > 0 and (tonumber(head[2]) or 0) < expect then
                    local first = parts - expect + 1
                    for p = first, parts do
                        local name = 's:' .. p
                        if call('HEXISTS', jk, name) == 0 then
                            call('HSET', jk, name, 'unknown')
                        end
                    end
                    call('HSET', jk, 'done', num_str(expect))
                    local info = call('HMGET', jk, unpack(INFO_FIELDS))
                    out[#out + 1] = finish(jk, job_id, parts, first, head[3] or bucket_carrier, now, info, nil, nil,
                                           false, '', 'dlr_timeout', events)
                end
            end
            if #names > 0 then
                each_slice('HDEL', bucket, names)
            end
            handled = handled + #names
            finished_bucket = cursor == '0'
        until finished_bucket or handled >= limit
        if not finished_bucket then
            more = '1'
            break
        end
        call('ZREM', due, member)
        call('ZREM', index_prefix .. bucket_carrier, end_ms)
    end
    if more == '0' and #due_buckets == 100 then
        more = '1'
    end
    out[1] = more
    table.remove(out, 2)
    if step then
        local r = finish_step({more}, out)
        if r then
            return r
        end
    end
    return out
end

return redis.error_reply('correlate.lua: unknown mode')
