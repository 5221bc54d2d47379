-- inbound_sweep.lua: publish the reassembly sets whose wait has passed, `partial`.
--
-- Called from the engine's maintenance tick (engine/inbound_store.py). Each
-- set whose score in P:inbound:due is at or before now is published with the
-- parts it has, in sequence order (`parts` = how many, `partial` = 1,
-- `total` = how many there should have been), then deleted. A set whose hash
-- expired first (an engine down for longer than twice the wait) is only
-- dropped from the list: its parts are gone.
--
-- KEYS[K_INBOUND]  the inbound stream
-- KEYS[K_DUE]      reassembly sets by the end of their wait
-- ARGV[A_LAYOUT]   LAYOUT_VERSION of the caller
-- ARGV[A_NOW]      unix ms
-- ARGV[A_LIMIT]    at most this many sets per call
-- ARGV[A_MAXLEN]   approximate MAXLEN of the inbound stream; '0': none (see inbound.lua)
-- ARGV[A_RETENTION_UNTIL] unix s: the message retention stamp
-- ARGV[A_WAITING_PREFIX] the per-sender index of waiting sets (see inbound.lua)
--
-- Returns what inbound.lua returns, one list per published message.
local stream, due = KEYS[K_INBOUND], KEYS[K_DUE]
local now, maxlen, retention = ARGV[A_NOW], ARGV[A_MAXLEN], ARGV[A_RETENTION_UNTIL]
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[A_LIMIT]))) do
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local h = {}
    for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
    local total = tonumber(h['total']) or 0
    local texts, n = {}, 0
    for s = 1, total do
      local t = h['p' .. s]
      if t then n = n + 1; texts[#texts + 1] = t end
    end
    local from, to, text = h['from'] or '', h['to'] or '', table.concat(texts)
    local carrier, client, from_hash = h['carrier'] or '', h['client'] or '', h['from_hash'] or ''
    local args = {'XADD', stream, 'MAXLEN', '~', maxlen, '*', 'from', from, 'to', to, 'text', text,
      'carrier', carrier, 'client', client, 'parts', n, 'partial', '1', 'total', total, 'ts', now,
      'from_hash', from_hash, 'retention_until', retention}
    if maxlen == '0' then table.remove(args, 3); table.remove(args, 3); table.remove(args, 3) end
    local id = redis.call(unpack(args))
    out[#out + 1] = {id, from, to, text, carrier, client, tostring(n), '1', now, from_hash}
    redis.call('DEL', key)
    redis.call('SREM', ARGV[A_WAITING_PREFIX] .. from_hash, key)
  end
  redis.call('ZREM', due, key)
end
return out
