-- inbound.lua: store a batch of received inbound parts, publish what is whole.
--
-- One call per batch of parts (engine/inbound_store.py). A part of one
-- (ref "") is published at once. A part of a concatenated message is kept in
-- its set's hash (P:inbound:parts:<carrier>:<sender hash>:<ref>, built here
-- from the prefix in ARGV) until the set is complete; then the text is joined
-- in sequence order, published, and the set deleted. The set's hash lives
-- twice the reassembly wait; inbound_sweep.lua publishes it `partial` once the
-- wait (its score in P:inbound:due) has passed. A part that arrives twice is
-- stored once (HSETNX), so an SMSC that resends a part whose deliver_sm_resp
-- it missed does not complete a set early; and a published set leaves its key
-- as a tombstone (`done`, same TTL), so such a part arriving after the set was
-- published is not published again as a `partial` one.
--
-- Positions are named: the loader (engine/scripts.py) prepends K_*, A_* and
-- P_* (engine.inbound.InboundPart) from INBOUND_KEYS / INBOUND_ARGS.
--
-- KEYS[K_INBOUND]  the inbound stream
-- KEYS[K_DUE]      reassembly sets by the end of their wait
-- ARGV[A_LAYOUT]   LAYOUT_VERSION of the caller
-- ARGV[A_PAYLOAD]  JSON list of parts (P_*)
-- ARGV[A_WAIT_MS]  reassembly wait (ms)
-- ARGV[A_TTL_S]    TTL of a set's hash (s)
-- ARGV[A_MAXLEN]   approximate MAXLEN of the inbound stream; '0': none (the history archiver's
--                  group bounds the trim instead: engine/stream_trim.py)
-- ARGV[A_RETENTION_UNTIL] unix s: the message retention stamp of every entry
-- ARGV[A_PARTS_PREFIX] what a set's key starts with ("P:inbound:parts:")
-- ARGV[A_WAITING_PREFIX] the per-sender index of waiting sets ("P:inbound:waiting:"
--                  + sender hash: erasure and export find a subject's parts by key)
--
-- Returns one list per published message: {entry id, from, to, text, carrier,
-- client, parts, partial, ts, from_hash}.
local stream, due = KEYS[K_INBOUND], KEYS[K_DUE]
local parts = cjson.decode(ARGV[A_PAYLOAD])
local wait_ms, ttl, maxlen = tonumber(ARGV[A_WAIT_MS]), ARGV[A_TTL_S], ARGV[A_MAXLEN]
local retention, prefix, wprefix = ARGV[A_RETENTION_UNTIL], ARGV[A_PARTS_PREFIX], ARGV[A_WAITING_PREFIX]

local out = {}
local function publish(from, to, text, carrier, client, n, partial, ts, from_hash, data)
  local args = {'XADD', stream, 'MAXLEN', '~', maxlen, '*', 'from', from, 'to', to, 'text', text,
    'carrier', carrier, 'client', client, 'parts', n, 'partial', partial, 'ts', ts,
    'from_hash', from_hash, 'retention_until', retention}
  if maxlen == '0' then table.remove(args, 3); table.remove(args, 3); table.remove(args, 3) end
  if data ~= '' then args[#args + 1] = 'data'; args[#args + 1] = data end
  local id = redis.call(unpack(args))
  out[#out + 1] = {id, from, to, text, carrier, client, tostring(n), partial, ts, from_hash}
end

for _, p in ipairs(parts) do
  if p[P_REF] == '' then
    publish(p[P_SENDER], p[P_TO], p[P_TEXT], p[P_CARRIER], p[P_CLIENT], 1, '0', p[P_TS], p[P_FROM_HASH], p[P_DATA])
  else
    local key = prefix .. p[P_CARRIER] .. ':' .. p[P_FROM_HASH] .. ':' .. p[P_REF]
    local total = p[P_TOTAL]
    -- `done`: the set was published whole; a part sent again (its deliver_sm_resp
    -- was lost) is answered and dropped rather than starting a new set
    if redis.call('HEXISTS', key, 'done') == 0 and redis.call('HSETNX', key, 'p' .. p[P_SEQ], p[P_TEXT]) == 1 then
      local n = redis.call('HINCRBY', key, 'n', 1)
      if n == 1 then
        redis.call('HSET', key, 'total', total, 'from', p[P_SENDER], 'to', p[P_TO], 'carrier', p[P_CARRIER],
          'client', p[P_CLIENT], 'from_hash', p[P_FROM_HASH])
        redis.call('EXPIRE', key, ttl)
        redis.call('ZADD', due, tonumber(p[P_TS]) + wait_ms, key)
        local waiting = wprefix .. p[P_FROM_HASH]
        redis.call('SADD', waiting, key)
        redis.call('EXPIRE', waiting, ttl)
      end
      if n >= total then
        local texts = {}
        for s = 1, total do texts[s] = redis.call('HGET', key, 'p' .. s) or '' end
        redis.call('DEL', key)
        redis.call('HSET', key, 'done', '1')
        redis.call('EXPIRE', key, ttl)
        redis.call('ZREM', due, key)
        redis.call('SREM', wprefix .. p[P_FROM_HASH], key)
        publish(p[P_SENDER], p[P_TO], table.concat(texts), p[P_CARRIER], p[P_CLIENT], total, '0', p[P_TS],
          p[P_FROM_HASH], '')
      end
    end
  end
end
return out
