-- dlr/receipts.lua: receipt correlation, multipart aggregation and DLR expiry,
-- one script call per batch (see dlr/store.py for the why and the contract).
--
-- Layout (dlr/store.py has the whole contract):
--   P:dlr:<carrier>:<normalised id>  correlation entry, one of
--       "<part>:<submitted_ms>:<job id>"                      (any job; job id last, may hold ':')
--       "=<submitted_ms>US<message_ids>US<ref>US<job id>"     (single part, no callback: the
--                                                             fast path, no job read; US = 0x1F)
--   P:job:<job id>                   hash: parts, done, s:<n>, e:<n>, state, ref, carrier,
--                                    message_ids, callback, submitted_ms, dlr_ids (optional),
--                                    expect (optional: receipts awaited when fewer than parts)
--   P:dlr:due                        zset: job id scored by receipt deadline (unix ms)
--   P:dlr:dup:<n>                    set: the correlation keys retired (a part's final
--                                    receipt came) during the n-th span of window/10 of
--                                    Redis time; a receipt without entry whose key is in
--                                    a span of the last window is a duplicate (SMSCs
--                                    resend a deliver_sm whose resp they missed)
--   P:events                         stream of status events
--
-- KEYS[1] = P:events, KEYS[2] = P:dlr:due (declared so Cluster routes the call;
-- every key built below shares P's hash tag, so it lives in the same slot).
--
-- ARGV[1] = "apply":  ARGV[2] prefix, ARGV[3] carrier, ARGV[4] stream maxlen (0 = none),
--           ARGV[5] duplicate window ms (0 = none), ARGV[6] group count g,
--           ARGV[7] call token ('' = none: the reply of a call with callback events is
--           kept 2 min under P:dlr:call:<token> and returned as is to a repeated call),
--           then per group (receipts sharing final flag, event, error and ts_ms, the
--           time they were received): final ("1"/"0"), event, error, ts_ms, count m,
--           then m normalised ids.
--   returns { statuses, fast, event... } where statuses holds one letter per receipt,
--   in argument order:
--     a applied, f applied on the fast path (its job's final event is in `fast`),
--     u unmatched (no correlation entry), d duplicate (part already final, or
--       its entry retired within the duplicate window),
--     l late (intermediate after the part or job was final; ignored),
--     o orphan (correlation entry but no job record (yet); retried like unmatched),
--     x corrupt correlation entry (left alone)
--   fast = { job id, submitted_ms, ... } for each 'f', in order (the event is the
--   receipt's own, or unknown for a state that is not final; the caller has it), and each
--   other event is { kind ("f" final / "i" intermediate), callback, submitted_ms,
--   field, value, ... } with the exact fields written to P:events (or only id, event
--   and carrier when the job has no callback).
-- ARGV[1] = "expire": ARGV[2] prefix, ARGV[3] now_ms, ARGV[4] stream maxlen, ARGV[5] limit,
--           ARGV[6] duplicate window ms (the spans past it are UNLINKed here: freed
--           off the main thread, before their own TTL would free them on it)
--   returns { number of due entries handled (as a string), event... } (final events only).
--
-- Cost: every message passes here once, so the commands that can serve a whole
-- batch do (MGET of the entries, DEL and SADD of the retired ones, ZREM of the
-- deadlines), and the fast path costs two commands per receipt: HSET of the job
-- and XADD of the event.

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

-- Numbers handed to redis.call are formatted by Redis on every call (snprintf
-- "%.17g" in 6.2), which costs more than many commands: arguments travel as
-- the strings they came in as. maxlen: the MAXLEN string, or nil for none.
local function xadd(stream, maxlen, fields)
    if maxlen then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
    else
        redis.call('XADD', stream, '*', unpack(fields))
    end
end

local function split_commas(s)
    local out, start = {}, 1
    while true do
        local c = string.find(s, ',', start, true)
        if not c then
            out[#out + 1] = string.sub(s, start)
            return out
        end
        out[#out + 1] = string.sub(s, start, c - 1)
        start = c + 1
    end
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
-- the caller already stored 'state'. The caller removes the job from P:dlr:due.
local function finish(jk, job_id, parts, first, carrier, ts, info, states, errors, state_written,
                      fallback_submitted, timeout_error, events, maxlen)
    if not states then
        local names, count = {}, parts - first + 1
        for i = 1, count do
            names[i] = 's:' .. (first + i - 1)
            names[count + i] = 'e:' .. (first + i - 1)
        end
        local vals = redis.call('HMGET', jk, unpack(names))
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
        redis.call('HSET', jk, 'state', final)
    end
    local fields = event_fields(job_id, info, final, carrier, parts, err, ts)
    if parts > 1 and final ~= 'delivered' then
        fields[#fields + 1] = 'part_states'
        fields[#fields + 1] = table.concat(states, ',')
    end
    xadd(events, maxlen, fields)
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

-- Run a command over a list of arguments in slices (Lua's unpack has a limit).
local function each_slice(cmd, key, list)
    for i = 1, #list, 1000 do
        redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
    end
end

-- Duplicate detection spans: window/10 of Redis time each (one clock for every
-- engine). Returns the span (ms) and Redis's now (ms).
local function dup_span(window)
    local t = redis.call('TIME')
    return math.max(1, math.ceil(window / 10)), tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function dup_key(prefix, n)
    return prefix .. ':dlr:dup:' .. string.format('%d', n)
end

local events, due = KEYS[1], KEYS[2]
local mode = ARGV[1]
local prefix = ARGV[2]
local out = {'', {}}

if mode == 'apply' then
    local carrier = ARGV[3]
    local maxlen = tonumber(ARGV[4]) > 0 and ARGV[4] or nil
    local window = tonumber(ARGV[5])  -- duplicate window (ms; 0 = none)
    local groups = tonumber(ARGV[6])
    -- memo: a call repeated after its reply was lost (same token) gets the first
    -- reply again, so the events it published still reach their webhooks.
    local memo = ARGV[7] ~= '' and (prefix .. ':dlr:call:' .. ARGV[7]) or nil
    if memo then
        local kept = redis.call('GET', memo)
        if kept then
            return unpack_reply(kept)
        end
    end
    local ck_prefix = prefix .. ':dlr:' .. carrier .. ':'
    -- Hot loop: locals for library functions, counters instead of '#' (a search in Lua 5.1).
    local sub, byte, call = string.sub, string.byte, redis.call
    local statuses, fast = {}, out[2]
    local ns, nf = 0, 0
    local gone, done_jobs = {}, {}  -- batched: DEL of entries, ZREM of deadlines
    local ng, nd = 0, 0
    local finished = {}             -- ids whose final receipt this call applied
    local miss_at, miss_key, nm = {}, {}, 0  -- statuses index and key of each receipt without entry
    -- A part's final receipt retires its entry: deleted, and its key kept in the
    -- current span's set for the duplicate window (one DEL and one SADD per call).
    local function retire(key)
        ng = ng + 1
        gone[ng] = key
    end
    local pos = 8
    for _ = 1, groups do
        local final, event, err, ts = ARGV[pos] == '1', ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3]
        local m = tonumber(ARGV[pos + 4])
        local id0 = pos + 4
        pos = id0 + m + 1
        local keys = {}
        for i = 1, m do
            keys[i] = ck_prefix .. ARGV[id0 + i]
        end
        local vals
        if m <= 1000 then
            vals = call('MGET', unpack(keys))
        else
            vals = {}
            for i = 1, m, 1000 do
                local part = call('MGET', unpack(keys, i, math.min(i + 999, m)))
                for j = 1, #part do
                    vals[i + j - 1] = part[j]
                end
            end
        end
        -- the final state of a single part is the receipt's own (unknown if not a final one)
        local state = SEVERITY[event] and event or 'unknown'
        for i = 1, m do
            local v, id = vals[i], ARGV[id0 + i]
            local status = 'a'
            if not v then
                status = 'u'
                nm = nm + 1
                miss_at[nm], miss_key[nm] = ns + 1, keys[i]
            elseif v == '~' or finished[id] then
                -- '~': a tombstone, the form a retired entry took before the span sets
                status = 'd'
            elseif final and byte(v, 1) == 61 then
                -- fast path ('='): a single-part job without callback, fields in the entry
                local s1, s2, s3 = fast_separators(v)
                if not s3 then
                    status = 'x'
                else
                    local job_id = sub(v, s3 + 1)
                    local jk = prefix .. ':job:' .. job_id
                    -- 'state' is in every live record, 'e:1' not yet (its entry is live, so the
                    -- part is not final): 2 new fields means there was no record. Per-part
                    -- fields ('s:1', 'done') serve multipart aggregation and the sweep, which
                    -- a single part no longer needs once final (its entry retires below and
                    -- its deadline is dropped).
                    if call('HSET', jk, 'e:1', err, 'state', state) == 2 and call('HLEN', jk) == 2 then
                        call('DEL', jk)
                        status = 'o'
                    else
                        if maxlen then
                            call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'id', job_id,
                                'ref', sub(v, s2 + 1, s3 - 1), 'event', state, 'carrier', carrier,
                                'parts', '1', 'message_ids', sub(v, s1 + 1, s2 - 1), 'error', err, 'ts', ts)
                        else
                            call('XADD', events, '*', 'id', job_id,
                                'ref', sub(v, s2 + 1, s3 - 1), 'event', state, 'carrier', carrier,
                                'parts', '1', 'message_ids', sub(v, s1 + 1, s2 - 1), 'error', err, 'ts', ts)
                        end
                        status = 'f'
                        finished[id] = true
                        retire(keys[i])
                        nd = nd + 1
                        done_jobs[nd] = job_id
                        fast[nf + 1] = job_id
                        fast[nf + 2] = sub(v, 2, s1 - 1)
                        nf = nf + 2
                    end
                end
            else
                local part, submitted, job_id
                if string.byte(v, 1) == 61 then
                    -- an intermediate receipt of a fast-path entry
                    local s1, _, s3 = fast_separators(v)
                    if s3 then
                        part, submitted, job_id = 1, string.sub(v, 2, s1 - 1), string.sub(v, s3 + 1)
                    end
                else
                    local c1 = string.find(v, ':', 1, true)
                    local c2 = c1 and string.find(v, ':', c1 + 1, true)
                    part = c1 and tonumber(string.sub(v, 1, c1 - 1))
                    if c2 and part and part == math.floor(part) then
                        submitted, job_id = string.sub(v, c1 + 1, c2 - 1), string.sub(v, c2 + 1)
                    end
                end
                if not job_id then
                    status = 'x'
                else
                    local jk = prefix .. ':job:' .. job_id
                    -- 1 parts, 2 done, 3 s:<part>, 4 state, 5 expect, 6.. INFO_FIELDS
                    local head = redis.call('HMGET', jk, 'parts', 'done', 's:' .. part, 'state', 'expect',
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
                        if head[3] then
                            status = 'd'
                            ng = ng + 1
                            gone[ng] = keys[i]
                        else
                            retire(keys[i])
                            if parts == 1 then
                                redis.call('HSET', jk, 's:1', event, 'e:1', err, 'done', '1', 'state', state)
                                out[#out + 1] = finish(jk, job_id, 1, 1, carrier, ts, info, {event}, {err}, true,
                                                       submitted, '', events, maxlen)
                                nd = nd + 1
                                done_jobs[nd] = job_id
                            else
                                redis.call('HSET', jk, 's:' .. part, event, 'e:' .. part, err)
                                local done = redis.call('HINCRBY', jk, 'done', '1')
                                local expect = awaited(parts, head[5])
                                if done == expect then
                                    out[#out + 1] = finish(jk, job_id, parts, parts - expect + 1, carrier, ts, info,
                                                           nil, nil, false, submitted, '', events, maxlen)
                                    nd = nd + 1
                                    done_jobs[nd] = job_id
                                end
                            end
                        end
                    elseif head[3] or (tonumber(head[2]) or 0) >= awaited(parts, head[5]) then
                        status = 'l'
                    elseif head[4] ~= event then
                        -- one intermediate event per change of state, not one per part
                        redis.call('HSET', jk, 'state', event)
                        local fields = event_fields(job_id, info, event, carrier, parts, err, ts)
                        xadd(events, maxlen, fields)
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
        -- A receipt without entry whose key was retired within the window is a
        -- resent one (retired by an earlier call: this call's repeats are `finished`).
        for n = last, math.floor((now - window) / span), -1 do
            if nm == 0 then
                break
            end
            local seen = redis.call('SMISMEMBER', dup_key(prefix, n), unpack(miss_key, 1, nm))
            local kept = 0
            for j = 1, nm do
                if seen[j] == 1 then
                    statuses[miss_at[j]] = 'd'
                else
                    kept = kept + 1
                    miss_at[kept], miss_key[kept] = miss_at[j], miss_key[j]
                end
            end
            nm = kept
        end
        if ng > 0 then
            local set = dup_key(prefix, last)
            each_slice('SADD', set, gone)
            -- needed until the span's end + window; the sweep UNLINKs it a span after
            -- that (expire mode), so its TTL frees it only when no sweep ran
            redis.call('PEXPIREAT', set, string.format('%d', (last + 3) * span + window))
        end
    end
    for i = 1, ng, 1000 do
        call('DEL', unpack(gone, i, math.min(i + 999, ng)))
    end
    if nd > 0 then
        each_slice('ZREM', due, done_jobs)
    end
    out[1] = table.concat(statuses)
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
    local now = ARGV[3]
    local maxlen = tonumber(ARGV[4]) > 0 and ARGV[4] or nil
    local limit = tonumber(ARGV[5])
    local window = tonumber(ARGV[6]) or 0
    if window > 0 then
        -- duplicate spans past their use (span end + window) go here, UNLINKed (freed
        -- off the main thread), one span before their TTL would free them on it
        local span, t = dup_span(window)
        local n = math.floor((t - window) / span) - 2
        redis.call('UNLINK', dup_key(prefix, n), dup_key(prefix, n - 1))
    end
    local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)
    for _, job_id in ipairs(ids) do
        redis.call('ZREM', due, job_id)
        local jk = prefix .. ':job:' .. job_id
        local head = redis.call('HMGET', jk, 'parts', 'done', 'carrier', 'dlr_ids', 'message_ids', 'expect')
        local parts = tonumber(head[1])
        local expect = parts and awaited(parts, head[6])
        if parts and parts > 0 and (tonumber(head[2]) or 0) < expect then
            local first = parts - expect + 1
            local carrier = head[3] or ''
            local ids_field = head[4] or head[5] or ''
            local msg_ids = split_commas(ids_field)
            for p = first, parts do
                local name = 's:' .. p
                if redis.call('HEXISTS', jk, name) == 0 then
                    redis.call('HSET', jk, name, 'unknown')
                    local mid = msg_ids[p]
                    if mid and mid ~= '' then
                        redis.call('DEL', prefix .. ':dlr:' .. carrier .. ':' .. mid)
                    end
                end
            end
            redis.call('HSET', jk, 'done', num_str(expect))
            local info = redis.call('HMGET', jk, unpack(INFO_FIELDS))
            out[#out + 1] = finish(jk, job_id, parts, first, carrier, now, info, nil, nil, false,
                                   '', 'dlr_timeout', events, maxlen)
        end
    end
    out[1] = tostring(#ids)
    table.remove(out, 2)
    return out
end

return redis.error_reply('receipts.lua: unknown mode')
