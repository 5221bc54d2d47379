"""Bind leases: at most ``max_binds`` binds open at one carrier across the fleet.

Why: carriers cap the binds of an account across all of its connections
(often 1-4); each engine opening its own ``binds`` gets the third engine's
binds refused, or the account suspended. So with ``[[carriers]] max_binds = B``
a bind is opened only under a lease, one of B slots in Redis:

* acquire: one script call tries the free slots in order; each slot taken
  gets the next *fencing token* (``INCR P:{lease}:fence:<carrier>``) and is
  ``SET P:{lease}:bind:<carrier>:<slot> <engine>:<token> NX PX ttl``;
* renew: every third of the TTL, compare-and-PEXPIRE (one call for all held);
* release: compare-and-DEL (a stop, or a bind revoked by the pool).

The holder's side of the safety argument: a lease is valid *locally* until
the start of its last successful renewal + TTL − margin, on the monotonic
clock; the Redis key outlives that. The pool checks the local deadline before
each write batch (connectors/pool.py), so an engine that stalls past its TTL
(SIGSTOP, a swap storm) writes nothing on waking even before its manager
runs: the slot may already be another engine's. The carrier cannot check a
token; it lives in the lease value and the ``lease_gained`` / ``lease_lost``
log lines, so an operator can order who held a slot when.

:class:`LeaseBook` is the decision logic, sans-IO (tested alone);
:class:`LeaseManager` runs it against Redis and the pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .keys import Keys

__all__ = ["ACQUIRE_SCRIPT", "RELEASE_SCRIPT", "RENEW_SCRIPT", "Lease", "LeaseBook", "LeaseManager", "LeasedPool"]

log = logging.getLogger("sendgate.engine.leases")

#: KEYS[1] the fencing counter, KEYS[2..] the slots in order; ARGV engine id,
#: ttl ms, how many wanted. Returns a flat list: slot key, token, ...
ACQUIRE_SCRIPT = """
local got = {}
local want = tonumber(ARGV[3])
for i = 2, #KEYS do
  if #got >= want * 2 then break end
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local token = redis.call('INCR', KEYS[1])
    redis.call('SET', KEYS[i], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
    got[#got + 1] = KEYS[i]
    got[#got + 1] = token
  end
end
return got
"""

#: KEYS the held slots; ARGV[1] ttl ms, ARGV[2..] their values. 1 renewed, 0 lost, each.
RENEW_SCRIPT = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

#: KEYS the slots; ARGV their values: deleted only while still ours.
RELEASE_SCRIPT = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i] then
    n = n + redis.call('DEL', KEYS[i])
  end
end
return n
"""


@dataclass(slots=True)
class Lease:
    """One bind lease held by this engine."""

    key: str
    carrier: str
    slot: int  # 0..max_binds-1
    value: str  # "<engine id>:<token>", as stored
    token: int  # the fencing token
    deadline: float  # monotonic: no write after it unless renewed


class LeaseBook:
    """The leases of one carrier held by this engine, and their local deadlines (sans-IO).

    Times are a monotonic clock's (the event loop's). A renewal counts from the
    moment it was *sent*: a reply that comes late never stretches the lease.
    """

    def __init__(self, carrier: str, ttl_s: float, margin_s: float | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.carrier = carrier
        self.ttl_s = ttl_s
        self.margin_s = max(0.2, ttl_s * 0.2) if margin_s is None else margin_s
        if not 0 <= self.margin_s < ttl_s:
            raise ValueError("margin_s must be 0..ttl_s")
        self.held: dict[str, Lease] = {}

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)

    @property
    def renew_every_s(self) -> float:
        """How often the holder renews: a third of the TTL."""
        return self.ttl_s / 3

    def deadline(self, sent_at: float) -> float:
        """The local end of a lease (re)newed by a call sent at ``sent_at``."""
        return sent_at + self.ttl_s - self.margin_s

    def granted(self, key: str, engine_id: str, token: int, sent_at: float) -> Lease:
        slot = int(key.rsplit(":", 1)[1])
        lease = Lease(key, self.carrier, slot, f"{engine_id}:{token}", token, self.deadline(sent_at))
        self.held[key] = lease
        return lease

    def renewed(self, key: str, sent_at: float) -> float | None:
        """A renewal sent at ``sent_at`` succeeded: the new deadline (None: not held)."""
        lease = self.held.get(key)
        if lease is None:
            return None
        lease.deadline = max(lease.deadline, self.deadline(sent_at))
        return lease.deadline

    def drop(self, key: str) -> Lease | None:
        return self.held.pop(key, None)

    def expired(self, now: float) -> list[Lease]:
        """Leases past their local deadline (not renewed in time): lost, whatever Redis says."""
        return [lease for lease in self.held.values() if lease.deadline <= now]

    def orphans(self, in_use: Sequence[str]) -> list[Lease]:
        """Leases held here whose bind the pool gave up (revoked it itself)."""
        used = set(in_use)
        return [lease for key, lease in self.held.items() if key not in used]


class LeasedPool(Protocol):
    """What the manager needs of a pool (``connectors.pool.BindPool`` with ``leased=True``)."""

    def leases_wanted(self) -> int: ...

    def leases(self) -> list[str]: ...

    def lease_granted(self, lease: str, deadline: float) -> None: ...

    def lease_renewed(self, lease: str, deadline: float) -> None: ...

    def lease_revoked(self, lease: str, reason: str) -> None: ...


class LeaseManager:
    """Acquires, renews and releases the bind leases of this engine's leased carriers.

    ``carriers``: name → (pool, max_binds, ttl_s). Per tick and carrier: one
    renewal call for the leases held, one acquire call when its pool wants binds.
    """

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        engine_id: str,
        carriers: Mapping[str, tuple[LeasedPool, int, float]],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.engine_id = engine_id
        self.pools = {name: pool for name, (pool, _, _) in carriers.items()}
        self.books = {name: LeaseBook(name, ttl) for name, (_, _, ttl) in carriers.items()}
        self.slots = {name: [keys.bind_lease(name, i) for i in range(b)] for name, (_, b, _) in carriers.items()}
        self._clock = clock
        self._stopping = False
        self.errors = 0  # ticks that failed (Redis unreachable)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def tick_s(self) -> float:
        return min((book.renew_every_s for book in self.books.values()), default=1.0)

    def held(self, carrier: str) -> int:
        return len(self.books[carrier].held)

    async def run(self) -> None:
        """Tick every third of the shortest TTL until cancelled or stopped."""
        while not self._stopping:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: leases run out locally; retry next tick
                self.errors += 1
                log.warning("bind leases: %s: %s", type(exc).__name__, exc, extra={"event": "lease_error"})
            await asyncio.sleep(self.tick_s)

    async def tick(self) -> None:
        """Drop what ran out, renew what is held, acquire what the pools want."""
        release: list[Lease] = []
        now = self._now()
        for name, book in self.books.items():
            pool = self.pools[name]
            for lease in book.expired(now):
                book.drop(lease.key)
                pool.lease_revoked(lease.key, "not renewed before its deadline")
                self._log_lost(lease, "not renewed before its deadline")
                release.append(lease)
            for lease in book.orphans(pool.leases()):
                book.drop(lease.key)
                self._log_lost(lease, "given up by the pool")
                release.append(lease)
        if release:
            await self._release(release)
        for name, book in self.books.items():
            held = list(book.held.values())
            if not held:
                continue
            pool = self.pools[name]
            sent_at = self._now()
            reply = await self.redis.eval(
                RENEW_SCRIPT, len(held), *(lease.key for lease in held), book.ttl_ms, *(lease.value for lease in held),
            )
            for lease, ok in zip(held, reply, strict=True):
                if int(ok):
                    deadline = book.renewed(lease.key, sent_at)
                    if deadline is not None:
                        pool.lease_renewed(lease.key, deadline)
                else:
                    book.drop(lease.key)
                    pool.lease_revoked(lease.key, "taken over or expired in Redis")
                    self._log_lost(lease, "taken over or expired in Redis")
        if self._stopping:
            return
        for name, book in self.books.items():
            pool = self.pools[name]
            want = pool.leases_wanted()
            free = [key for key in self.slots[name] if key not in book.held]
            if want <= 0 or not free:
                continue
            sent_at = self._now()
            got = await self.redis.eval(
                ACQUIRE_SCRIPT, 1 + len(free), self.keys.lease_fence(name), *free, self.engine_id, book.ttl_ms, want,
            )
            for i in range(0, len(got), 2):
                key = got[i].decode() if isinstance(got[i], bytes) else str(got[i])
                lease = book.granted(key, self.engine_id, int(got[i + 1]), sent_at)
                pool.lease_granted(key, lease.deadline)
                log.info(
                    "carrier %s: bind lease %d gained (fencing token %d)", name, lease.slot, lease.token,
                    extra={"event": "lease_gained", "carrier": name, "slot": lease.slot, "token": lease.token,
                           "engine": self.engine_id},
                )

    async def _release(self, leases: list[Lease]) -> None:
        if leases:
            await self.redis.eval(
                RELEASE_SCRIPT, len(leases), *(lease.key for lease in leases), *(lease.value for lease in leases)
            )

    def _log_lost(self, lease: Lease, reason: str) -> None:
        log.info(
            "carrier %s: bind lease %d lost (fencing token %d): %s", lease.carrier, lease.slot, lease.token, reason,
            extra={"event": "lease_lost", "carrier": lease.carrier, "slot": lease.slot, "token": lease.token,
                   "reason": reason, "engine": self.engine_id},
        )

    def stop(self) -> None:
        """No more acquiring (the engine is stopping); renewals go on until :meth:`close`."""
        self._stopping = True

    async def close(self) -> None:
        """Release every lease held (after the pools closed their binds)."""
        self._stopping = True
        held = [lease for book in self.books.values() for lease in book.held.values()]
        for book in self.books.values():
            book.held.clear()
        with contextlib.suppress(Exception):
            await self._release(held)
