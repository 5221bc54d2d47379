"""A carrier's TPS limit across every engine process that shares one Redis.

Why: several engine processes (consumer-group members) may send to the same
carrier, and the carrier's contract limits the *sum*. So the bucket lives in
Redis, as a Lua script that refills from Redis' own clock (``TIME``): the
processes' clocks never have to agree, and one script call is atomic.

Why leases: a script call per PDU would cost ~12 µs of Python and a round
trip per message (see docs/INTERNALS.md, "Where the time goes"). Instead each process
*leases* tokens in chunks (default 50 ms of traffic, i.e. ``rate/20``) and
serves them locally; at 1,000 TPS that is ~20 calls per second in total, not
1,000.

Theory of operation:

* Redis key ``<prefix>:tps:<carrier>`` is a hash ``{t: tokens, ts: time}``.
  The script refills ``(now - ts) * rate`` up to the capacity and grants
  ``min(want, whole tokens)`` — but nothing unless at least ``least`` (one
  chunk) is there, so that competing processes do not poll Redis for single
  tokens. It answers ``{granted, wait_ms}``, ``wait_ms`` being the time until
  a chunk is there when it could not grant all. The key expires once a full
  bucket would have refilled anyway, so idle carriers leave nothing behind.
  Called with EVALSHA; on NOSCRIPT (a restarted or flushed server) it falls
  back to EVAL, which also caches it again. One key per carrier, so the
  script runs unchanged on Redis Cluster.
* Leased tokens a process has not used yet expire ``hold_s`` after the lease
  was *requested* (default: the time one chunk represents). A token is thus
  served at most ``hold_s`` after it left the Redis bucket, and the Redis
  bucket's capacity is the configured ``burst`` minus ``rate * hold_s``.
  Together: over any interval ``T``, the tokens served by all processes
  together are at most ``rate * T + burst`` — the same promise as the local
  ``TokenBucket``. (At very low rates, where ``burst`` is smaller than one
  chunk plus one token, the reserve cannot be taken from the capacity and
  the bound may be exceeded by less than ``rate * hold_s`` tokens.)
* Two ways to use it:

  - ``await take(n)`` (simple callers): serves local stock first, else one
    script call for a chunk (or ``n`` if larger); if the shared bucket is dry
    it sleeps the ``wait_ms`` the script named and asks again; returns 1..n.
  - ``try_take(n, now)`` / ``wait_s(n, now)`` (the bind pool's sans-IO
    ``RateLimiter`` protocol): purely local and never blocks. A shortfall —
    or the stock falling below half a chunk — wakes the background refill
    task (``start()`` / ``close()``), which leases the next chunk. Idle
    processes lease nothing, so they never take capacity from busy ones.

* ``now`` for ``try_take`` / ``wait_s`` must come from the same clock as
  ``clock`` (default ``time.monotonic``, as the pool uses).
* Redis errors in the refill task are logged (no numbers, no text) and
  retried with backoff; while Redis is unreachable no tokens are granted —
  the limit fails closed, sending pauses rather than exceeding it.

Per second (``GlobalTokenBucket.per_second``, what the engine uses for a
carrier's ``tps``): a carrier counts submit_sm per second, and the bound
above, ``rate * T + burst``, lets ``tps + burst`` through in a second at
``rate = tps``. :func:`per_second_limits` sizes the bucket so that no window
of one second, as the carrier counts, holds more than ``tps``:

* whole sends over any ``T`` are at most ``burst + floor(rate * T)`` (the
  lease argument above, in integers);
* a window of one second at the carrier is at most ``1 + ARRIVAL_JITTER_S``
  seconds at the sender (sends that left further apart may arrive closer
  together: event-loop and socket delays), 40 ms allowed for;
* so ``rate * (1 + ARRIVAL_JITTER_S) < tps - burst + 1`` is enough; the
  rate is ``(tps - burst + 0.5) / 1.04`` with ``chunk`` 20 ms of traffic
  and ``burst`` two chunks: at 50 TPS a refill of 46.6/s and a burst of 2,
  at 1,000 TPS 924/s and 40 — about 7 % below ``tps`` on average, the price
  of never exceeding it. (Below 3 TPS there is no room for a burst of two:
  half the rate; the first second may hold two.)
* The pool's write coalescing changes nothing: it writes what was granted,
  in the same loop iteration; it never holds tokens back to send them later
  together (leased tokens expire ``hold_s`` after they were leased).

Adaptive limit (``aimd`` and ``ceiling_per_s``, the configured tps): the
same hash holds ``ar``, the rate of the last cut, and ``ac``, its Redis time.
The limit in force is ``recovered_rate(ar, now - ac, ...)``
(``throttling.adaptive``): the cut rate for ``hold_s``, then ``+step`` at
once and every ``interval_s`` up to the ceiling — so it recovers with time,
without any engine pushing increases, and every engine computes the same
value. :meth:`GlobalTokenBucket.note_throttled` (a throttle reply) makes the
refill task run :data:`CUT_SCRIPT`: ``ar`` = ``decrease`` x the limit in
force (never below ``floor``), unless a cut happened within ``cooldown_s`` —
the throttle replies of one window, from one engine or several, cut once.
The lease script refills at ``min(rate, sized(limit))`` — the limit sized like
``tps`` above, so that the carrier sees no more than the limit in force in
any second either — and returns ``ar`` and the
time since ``ac``, so every engine knows the limit at its next lease
(``limit_per_s``, the gauge ``sendgate_carrier_rate_per_s``). The key lives
until the limit is back at the ceiling; the fields go once it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from engine.keys import Keys

from .adaptive import AimdSettings, recovered_rate
from .backoff import Backoff
from .bucket import check_rate, default_burst

__all__ = ["ARRIVAL_JITTER_S", "CUT_SCRIPT", "TAKE_SCRIPT", "GlobalTokenBucket", "per_second_limits", "tps_key"]

_log = logging.getLogger(__name__)

# The adaptive limit in the bucket's hash (fields ``ar``: the rate of the last
# cut, ``ac``: its Redis time): unchanged for hold seconds after the cut, then
# +step at once and every interval, up to the ceiling (adaptive.recovered_rate).
_LIMIT_AT = """
local function limit_at(ar, ac, now, ceil, step, hold, interval)
  if ar == nil or ac == nil then return ceil end
  local since = now - ac
  local r = ar
  if since >= hold then r = ar + (1 + math.floor((since - hold) / interval)) * step end
  if r > ceil then r = ceil end
  return r
end
"""

#: KEYS[1] bucket hash; ARGV[1] rate per second, ARGV[2] capacity, ARGV[3] tokens wanted,
#: ARGV[4] the least worth granting (fewer are not granted at all); optional, for an
#: adaptive limit: ARGV[5] ceiling (the configured tps), ARGV[6] step per interval,
#: ARGV[7] hold seconds, ARGV[8] interval seconds, ARGV[9] burst, ARGV[10] 1 + the
#: arrival jitter. Below the ceiling the refill rate is the smaller of ARGV[1] and the
#: limit sized like per_second_limits: max(limit - burst + 0.5, limit / 2) / ARGV[10].
#: Returns {granted, wait_ms, cut_rate, since_cut}: granted is 0 or between the least and
#: the wanted; wait_ms is 0 when all were granted, else milliseconds until the least is
#: there; cut_rate and since_cut (strings, "" when the limit is not reduced) describe the
#: adaptive limit.
TAKE_SCRIPT = _LIMIT_AT + """
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local ceil = tonumber(ARGV[5])
if need > want then need = want end
if need > cap then need = cap end
if need < 1 then need = 1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 't', 'ts', 'ar', 'ac')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
local ar = tonumber(state[3])
local ac = tonumber(state[4])
local ttl_s = cap / rate
local cut, since = '', ''
if ceil ~= nil and ar ~= nil and ac ~= nil then
  local step, hold, interval = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local limit = limit_at(ar, ac, now, ceil, step, hold, interval)
  if limit >= ceil then
    redis.call('HDEL', KEYS[1], 'ar', 'ac')
  else
    local sized = limit - tonumber(ARGV[9]) + 0.5
    if sized < limit / 2 then sized = limit / 2 end
    sized = sized / tonumber(ARGV[10])
    if sized < rate then rate = sized end
    cut, since = string.format('%.6f', ar), string.format('%.6f', now - ac)
    local rest = hold + math.ceil((ceil - ar) / step) * interval - (now - ac)
    if rest > ttl_s then ttl_s = rest end
  end
end
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
elseif now > ts then
  tokens = tokens + (now - ts) * rate
  ts = now
end
if tokens > cap then tokens = cap end
local whole = math.floor(tokens + 1e-9)
local granted = 0
if whole >= need then
  granted = whole
  if granted > want then granted = want end
end
tokens = tokens - granted
if tokens < 0 then tokens = 0 end
redis.call('HSET', KEYS[1], 't', string.format('%.9f', tokens), 'ts', string.format('%.6f', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl_s * 1000) + 1000)
local wait_ms = 0
if granted < want then
  wait_ms = math.ceil((need - tokens) / rate * 1000)
  if wait_ms < 1 then wait_ms = 1 end
end
return {granted, wait_ms, cut, since}
"""

#: KEYS[1] bucket hash; ARGV[1] ceiling, ARGV[2] step, ARGV[3] hold seconds, ARGV[4]
#: interval seconds, ARGV[5] floor, ARGV[6] decrease factor, ARGV[7] cooldown seconds.
#: A throttle reply seen by some engine: the adaptive limit becomes decrease x its
#: current value (never below the floor), unless another cut happened within the
#: cooldown (a window of throttle replies, from one engine or several, cuts once).
#: Returns {cut_rate, changed (0/1), since_cut}.
CUT_SCRIPT = _LIMIT_AT + """
local ceil, step = tonumber(ARGV[1]), tonumber(ARGV[2])
local hold, interval = tonumber(ARGV[3]), tonumber(ARGV[4])
local floor, decrease, cooldown = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'ar', 'ac')
local ar = tonumber(state[1])
local ac = tonumber(state[2])
local changed = 0
if ar == nil or ac == nil or now - ac >= cooldown then
  local new = limit_at(ar, ac, now, ceil, step, hold, interval) * decrease
  if new < floor then new = floor end
  if new > ceil then new = ceil end
  ar, ac, changed = new, now, 1
  redis.call('HSET', KEYS[1], 'ar', string.format('%.6f', ar), 'ac', string.format('%.6f', ac))
  local ttl_ms = math.ceil((hold + math.ceil((ceil - ar) / step) * interval + 1) * 1000)
  if redis.call('PTTL', KEYS[1]) < ttl_ms then redis.call('PEXPIRE', KEYS[1], ttl_ms) end
end
return {string.format('%.6f', ar), changed, string.format('%.6f', now - ac)}
"""

_TAKE_SHA = hashlib.sha1(TAKE_SCRIPT.encode()).hexdigest()
_CUT_SHA = hashlib.sha1(CUT_SCRIPT.encode()).hexdigest()

#: How much closer together sends may reach the carrier than they left (event-loop
#: and socket jitter): :func:`per_second_limits` keeps the promise over windows of
#: ``1 + ARRIVAL_JITTER_S`` seconds at the sender.
ARRIVAL_JITTER_S = 0.04


def per_second_limits(tps: float) -> tuple[float, int, int]:
    """``(rate_per_s, burst, chunk)`` of a bucket that lets at most ``tps`` out in any
    window of one second, as the carrier counts (module doc, "Per second").

    ``chunk`` is 20 ms of traffic, ``burst`` two chunks; the refill rate is what is
    left of ``tps`` over ``1 + ARRIVAL_JITTER_S`` seconds once the burst is taken.
    """
    tps = check_rate(tps)
    if tps == 0.0:
        return 0.0, 1, 1
    chunk = max(1, math.ceil(tps / 50.0))
    burst = 2 * chunk
    # Whole sends over T are at most burst + floor(rate * T): keep rate * (1 + J)
    # below tps - burst + 1, with half a token to spare. Below 3/s there is no
    # room for a burst of 2: half the rate, and a first second that may hold 2.
    rate = max(tps - burst + 0.5, tps / 2.0) / (1.0 + ARRIVAL_JITTER_S)
    return rate, burst, chunk


def tps_key(prefix: str, carrier: str) -> str:
    """The Redis key of a carrier's global bucket: ``<prefix>:tps:<carrier>``
    (``engine.keys.Keys.tps``: fleet-global, one for every shard)."""
    return Keys(prefix).tps(carrier)


class GlobalTokenBucket:
    """Token bucket shared through Redis by every process sending to one carrier (see module doc).

    ``rate_per_s=0`` is unlimited and never touches Redis.
    """

    def __init__(
        self,
        redis: Redis,
        key: str,
        rate_per_s: float,
        burst: int | None = None,
        *,
        chunk: int | None = None,
        hold_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        ceiling_per_s: float = 0.0,
        aimd: AimdSettings | None = None,
    ) -> None:
        """``aimd`` with ``ceiling_per_s`` (the configured tps): an adaptive limit,
        shared in the same Redis hash, that :meth:`note_throttled` cuts and time
        restores (module doc, "Adaptive limit"); the refill rate is the smaller of
        ``rate_per_s`` and that limit."""
        if aimd is not None and not ceiling_per_s > 0:
            raise ValueError("an adaptive limit needs ceiling_per_s > 0")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk!r}")
        self._redis = redis
        self.key = key
        self._clock = clock
        self._burst_arg = burst
        self._chunk_arg = chunk
        self._hold_arg = hold_s
        # Leases not used up yet: [expires_at, remaining] oldest first.
        self._leases: deque[list[float]] = deque()
        self._stock = 0
        self._shortfall = 0
        self._retry_at = 0.0
        self._demand = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._errors = Backoff(0.05, 2.0)
        self.ceiling_per_s = float(ceiling_per_s)
        self.aimd = aimd
        self._aimd_args: tuple[str, ...] = ()
        # The shared adaptive limit as last seen: the rate of the last cut and when
        # (this process's clock), None while not reduced.
        self._cut_rate: float | None = None
        self._cut_at = 0.0
        self._cut_wanted = False
        self._cut_asked_at = -math.inf
        #: Cut script calls made, and how many of them cut (the rest fell in a cooldown).
        self.cut_calls = 0
        self.cuts = 0
        #: Script calls made (for metrics and tests).
        self.lease_calls = 0
        #: Tokens leased from Redis in total, and those that expired unused.
        self.leased = 0
        self.expired = 0
        self._configure(check_rate(rate_per_s))

    @classmethod
    def per_second(
        cls, redis: Redis, prefix: str, carrier: str, tps: float, aimd: AimdSettings | None = None
    ) -> GlobalTokenBucket:
        """``carrier``'s bucket that never lets more than ``tps`` out in any second
        (:func:`per_second_limits`), with an adaptive limit below ``tps`` if ``aimd``."""
        rate, burst, chunk = per_second_limits(tps)
        return cls(
            redis, tps_key(prefix, carrier), rate, burst, chunk=chunk,
            ceiling_per_s=tps, aimd=aimd if tps else None,
        )

    def _configure(self, rate: float) -> None:
        self._configure_sizes(rate)
        aimd = self.aimd
        if aimd is not None:  # the lease script's arguments for the adaptive limit
            self._aimd_args = (
                repr(self.ceiling_per_s), repr(aimd.step), repr(aimd.hold_s), repr(aimd.interval_s),
                repr(self.burst), repr(1.0 + ARRIVAL_JITTER_S),
            )

    def _configure_sizes(self, rate: float) -> None:
        self._rate = rate
        burst = self._burst_arg if self._burst_arg is not None else default_burst(rate)
        if rate == 0.0:
            self.burst = burst
            self.chunk = 1
            self.hold_s = 0.0
            self.capacity = burst
            return
        chunk = self._chunk_arg if self._chunk_arg is not None else max(1, math.ceil(rate / 20.0))
        self.chunk = min(chunk, burst)
        self.hold_s = self._hold_arg if self._hold_arg is not None else self.chunk / rate
        reserve = min(burst - 1, math.ceil(rate * self.hold_s - 1e-9))
        self.burst = burst
        #: Capacity of the Redis-side bucket: burst minus what may sit in leases.
        self.capacity = burst - max(0, reserve)
        self.chunk = min(self.chunk, self.capacity)

    @property
    def rate_per_s(self) -> float:
        """Configured rate across all processes; 0 = unlimited."""
        return self._rate

    @property
    def stock(self) -> int:
        """Leased tokens held locally (some may have expired since the last call)."""
        return self._stock

    # -- adaptive limit ----------------------------------------------------
    def limit_per_s(self, now: float) -> float:
        """The carrier's rate limit in force at ``now`` (this clock): the configured
        ceiling, or less after throttle replies (as last seen in Redis); without an
        adaptive limit, the configured rate. 0 = unlimited."""
        cut = self._cut_rate
        if cut is None:
            return self.ceiling_per_s or self._rate
        a = self.aimd
        assert a is not None
        limit = recovered_rate(cut, now - self._cut_at, self.ceiling_per_s, a.step, a.hold_s, a.interval_s)
        if limit >= self.ceiling_per_s:
            self._cut_rate = None
        return limit

    def is_reduced(self) -> bool:
        """True while the adaptive limit may be below the ceiling (cheap: no clock)."""
        return self._cut_rate is not None

    def note_success(self, now: float) -> None:
        """Nothing to do: the shared limit recovers with time, in the scripts."""

    def note_throttled(self, now: float | None = None) -> None:
        """The carrier answered ESME_RTHROTTLED / ESME_RMSGQFUL: cut the shared limit
        (done by the refill task; asked at most once per cooldown from here).
        ``now`` is accepted for the flow controller's protocol; the bucket's clock is used."""
        a = self.aimd
        if a is None or self._rate == 0.0:
            return
        now = self._clock()
        if now - self._cut_asked_at < a.cooldown_s:
            return
        self._cut_asked_at = now
        self._cut_wanted = True
        self._demand.set()

    def _observe(self, cut: Any, since: Any, now: float) -> None:
        if cut:
            self._cut_rate = float(cut)
            self._cut_at = now - float(since)
        else:
            self._cut_rate = None

    async def _cut(self) -> None:
        a = self.aimd
        assert a is not None
        args = (self.key, *self._aimd_args[:4], repr(a.floor), repr(a.decrease), repr(a.cooldown_s))
        now = self._clock()
        self.cut_calls += 1
        try:
            reply: Any = await self._redis.evalsha(_CUT_SHA, 1, *args)
        except NoScriptError:
            reply = await self._redis.eval(CUT_SCRIPT, 1, *args)
        self.cuts += int(reply[1])
        self._observe(reply[0], reply[2], now)

    # -- Redis side --------------------------------------------------------
    async def _lease(self, want: int, least: int = 1) -> tuple[int, int]:
        """One script call: lease ``least..want`` tokens or none; returns (granted, wait_ms)."""
        args: tuple[str | int, ...] = (self.key, repr(self._rate), self.capacity, want, least, *self._aimd_args)
        now = self._clock()
        self.lease_calls += 1
        try:
            reply: Any = await self._redis.evalsha(_TAKE_SHA, 1, *args)
        except NoScriptError:
            reply = await self._redis.eval(TAKE_SCRIPT, 1, *args)
        granted, wait_ms = int(reply[0]), int(reply[1])
        self.leased += granted
        if self._aimd_args:
            self._observe(reply[2], reply[3], now)
        return granted, wait_ms

    def _add_lease(self, tokens: int, requested_at: float) -> None:
        if tokens > 0:
            self._leases.append([requested_at + self.hold_s, float(tokens)])
            self._stock += tokens

    def _expire(self, now: float) -> None:
        leases = self._leases
        while leases and leases[0][0] <= now:
            left = int(leases.popleft()[1])
            self._stock -= left
            self.expired += left

    def _serve(self, n: int) -> int:
        granted = 0
        leases = self._leases
        while leases and granted < n:
            head = leases[0]
            take = min(n - granted, int(head[1]))
            head[1] -= take
            granted += take
            if head[1] <= 0:
                leases.popleft()
        self._stock -= granted
        return granted

    # -- async API ---------------------------------------------------------
    async def take(self, n: int) -> int:
        """Wait until at least one token is available, take up to ``n``; return how many (1..n)."""
        if n <= 0:
            return 0
        if self._rate == 0.0:
            return n
        while True:
            now = self._clock()
            self._expire(now)
            got = self._serve(n)
            if got:
                return got
            want = min(max(n, self.chunk), self.capacity)
            granted, wait_ms = await self._lease(want, self.chunk)
            if granted:
                got = min(n, granted)
                # The surplus was taken at `now` at the latest: it expires from there.
                self._add_lease(granted - got, now)
                return got
            await asyncio.sleep(wait_ms / 1000.0)

    # -- sans-IO API (the pool's RateLimiter protocol) -----------------------
    def try_take(self, n: int, now: float) -> int:
        """Take up to ``n`` tokens from the local stock (no I/O); wakes the refill task when short."""
        if n <= 0:
            return 0
        if self._rate == 0.0:
            return n
        if self._leases and self._leases[0][0] <= now:
            self._expire(now)
        got = self._serve(n) if self._stock else 0
        if got < n:
            self._shortfall = max(self._shortfall, n - got)
            self._demand.set()
        elif self._stock * 2 < self.chunk:
            self._demand.set()
        return got

    def wait_s(self, n: int, now: float) -> float:
        """Estimated seconds until ``n`` tokens can be served locally; wakes the refill task if needed."""
        if n <= 0 or self._rate == 0.0:
            return 0.0
        self._expire(now)
        missing = min(n, self.chunk) - self._stock
        if missing <= 0:
            return 0.0
        self._shortfall = max(self._shortfall, missing)
        self._demand.set()
        return max(self._retry_at - now, missing / self._refill_rate(now))

    def _refill_rate(self, now: float) -> float:
        """The rate the lease script refills at now (as last seen)."""
        if self._cut_rate is None:
            return self._rate
        limit = self.limit_per_s(now)
        if limit >= self.ceiling_per_s:
            return self._rate
        sized = max(limit - self.burst + 0.5, limit / 2.0) / (1.0 + ARRIVAL_JITTER_S)
        return min(self._rate, sized)

    # -- background refill -------------------------------------------------
    def start(self) -> None:
        """Start the refill task feeding ``try_take`` (call from the running event loop)."""
        if self._task is None or self._task.done():
            self._closed = False
            self._task = asyncio.get_running_loop().create_task(
                self._refill_loop(), name=f"sendgate-tps-refill:{self.key}"
            )

    async def close(self) -> None:
        """Stop the refill task. Unused leased tokens are simply dropped (they expire)."""
        task, self._task = self._task, None
        self._closed = True
        if task is not None:
            task.cancel()
            # Should a library swallow the cancellation (seen with redis-py on a
            # cancel during a command), the flag and a wake-up end the loop anyway.
            self._demand.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _stopping(self) -> bool:
        # A method, not the attribute: the flag changes across awaits.
        task = asyncio.current_task()
        return self._closed or (task is not None and task.cancelling() > 0)

    async def _refill_loop(self) -> None:
        while True:
            await self._demand.wait()
            self._demand.clear()
            if self._stopping():
                return
            if self._rate == 0.0:
                continue
            if self._cut_wanted:
                self._cut_wanted = False
                try:
                    await self._cut()
                except RedisError as exc:
                    if self._stopping():
                        return
                    # The next throttle reply asks again; leasing goes on meanwhile.
                    _log.warning("tps cut failed for %s (%s)", self.key, type(exc).__name__)
            now = self._clock()
            self._expire(now)
            shortfall = self._shortfall
            if shortfall == 0 and self._stock * 2 >= self.chunk:
                continue
            want = min(max(self.chunk, shortfall + self._stock) - self._stock, self.capacity)
            want = max(want, 1)
            self._shortfall = 0
            try:
                granted, wait_ms = await self._lease(want, min(want, self.chunk))
            except RedisError as exc:
                if self._stopping():
                    return
                delay = self._errors.next_delay()
                _log.warning(
                    "tps lease failed for %s (%s); retrying in %.2fs",
                    self.key,
                    type(exc).__name__,
                    delay,
                )
                self._shortfall = max(self._shortfall, shortfall)
                await asyncio.sleep(delay)
                self._demand.set()
                continue
            self._errors.reset()
            self._add_lease(granted, now)
            # Requests that came short while the lease was in flight are served
            # by it too; only what is left of the demand counts.
            self._shortfall = max(0, max(self._shortfall, shortfall) - granted)
            if granted < want:
                # The shared bucket ran dry: come back when a chunk is due,
                # if anyone still wants more by then.
                self._retry_at = now + wait_ms / 1000.0
                await asyncio.sleep(wait_ms / 1000.0)
            if self._shortfall:
                self._demand.set()

    def __repr__(self) -> str:
        return (
            f"GlobalTokenBucket(key={self.key!r}, rate_per_s={self._rate!r}, burst={self.burst}, "
            f"chunk={self.chunk}, capacity={self.capacity})"
        )
