"""BindPool: one carrier's binds behind one queue.

Why this shape (httpcore's connection pool, asyncpg's pool): ``submit`` only
appends ``(pdu, token)`` to a queue and schedules one synchronous *assign*
step per loop iteration. Assign decides — which bind has free window, how
many tokens the rate limiter grants — and then writes; it never awaits. It
runs again whenever a bind reports progress (responses processed, writing
resumed, bind up, throttle pause over, rate tokens due), so the window refills
inside the same ``data_received`` that emptied it.

Accounting rules (docs/INTERNALS.md, "BindPool"):

* a PDU never written stays in the queue and goes out on whichever bind
  has room; a bind going down takes nothing from the queue;
* a PDU written whose bind drops, or whose response times out, is reported
  once with ``on_submit_lost`` (the engine decides: resend or ``unknown``);
* a status the registry marks throttling (ESME_RTHROTTLED 0x58,
  ESME_RMSGQFUL 0x14) puts the PDU back at the front of the queue — the
  throttled ones of one batch in the order they were written — and tells the
  carrier's flow control (``throttling.flow.CarrierFlow``), which cuts the
  rate and the window of every bind; they show up only in
  :attr:`BindPool.stats`;
* every other status is data for ``on_submit_resp``.

Flow control runs once per batch of responses (``bind_ready``), and only
when the batch held a throttle reply or something is still backed off: the
quiet path costs one attribute test per batch. While backed off, a timer also
runs a step a second, so that an idle carrier recovers too. Each change of window or rate
is logged once (JSON ``extra``: ``event="backoff"``, ``carrier``,
``rate_per_s``, ``window``, ``reason``).

A multipart message (``submit_parts``) is a *chain*: only its first part is
queued; the next one goes to the front of the queue when the previous part
got its answer (or was lost), so a later part never overtakes an earlier
one, throttled or not, and the carrier sees the parts in order.

Each queued item is the tuple ``(pdu, token)`` — ``(pdu, token, rest)`` for a
chain, ``rest`` being the parts still held; ``pdu`` is a ``SubmitSm`` or a
submit_sm's encoded body (``bytes``, ``codec.PlainSubmitTemplate``: the session
writes it under a numbered header); that same tuple travels as the
session's in-flight context, so a throttled PDU is re-queued and a lost one
reported without another allocation. No task or future per message.

Bind leases (``leased=True``; docs/INTERNALS.md, "Bind leases"): a carrier
capping an account's binds across the fleet. The pool then opens a bind only
for a lease it was granted (``lease_granted``, by the engine's lease
manager, which renews them); each lease carries a local deadline (monotonic
loop time: the last successful renewal's start + TTL − margin). Before each
write batch the assign step checks the deadlines: a bind whose lease is past
it, or revoked (``lease_revoked``), gets no more submit_sm at once — answers
already in flight are still read — and is unbound; its queued work goes out
on the binds still leased. So a process stalled past its TTL (SIGSTOP, a long
GC pause) writes nothing on waking: its deadline has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

# A sideways import (pyproject.toml, contract "layers"): the pool's default flow
# control, pure (sans-IO) AIMD of throttling.flow.
from throttling.flow import CarrierFlow, LocalAdaptiveLimiter

from .config import BindConfig
from .pdu import DataSm, DeliverSm, SubmitSm
from .session import Response
from .status import is_throttled
from .transport import SmppBind

__all__ = ["BindPool", "FlowControl", "PoolHandler", "PoolStats", "RateLimiter"]

log = logging.getLogger("sendgate.connectors.pool")



class PoolHandler(Protocol):
    """What the engine implements; called from the event loop, never awaited."""

    def on_submit_resp(self, token: object, command_status: int, message_id: str) -> None: ...

    # Optional: ``on_submit_resps(items)``, the accepted responses of a batch at
    # once: ``on_submit_resp(item[1], 0, message_id)`` for each ``(item,
    # message_id)``, in order (``item``: the queued tuple, its token second).

    def on_submit_lost(self, token: object, reason: str) -> None:
        """Written on a bind but unanswered (bind dropped, response timeout)."""

    def on_deliver(self, bind: SmppBind, pdu: DeliverSm | DataSm) -> None:
        """deliver_sm / data_sm from the SMSC; answer with ``bind.respond(pdu, status)``
        (or ``bind.respond_many(pdus, status)`` for several at once)."""

    def on_claimed(self, bind: SmppBind, items: list[tuple[int, Any]]) -> None:
        """deliver_sm whose bodies the pool's ``claim_deliver`` hook read (only
        called when the pool has one): ``(sequence_number, value)`` each, in
        arrival order; answer with ``bind.respond_sequences(seqs, [], status)``."""

    def on_bind_state(self, bind_name: str, up: bool) -> None: ...


class RateLimiter(Protocol):
    """``throttling.TokenBucket`` satisfies it."""

    def try_take(self, n: int, now: float) -> int: ...

    def wait_s(self, n: int, now: float) -> float: ...


class FlowControl(Protocol):
    """A carrier's adaptive window and rate; ``throttling.flow.CarrierFlow`` satisfies it."""

    window: int

    @property
    def limiter(self) -> Any: ...

    def rate_per_s(self, now: float) -> float: ...

    def reduced(self) -> bool: ...

    def on_batch(self, now: float, throttled: bool) -> str | None: ...


class PoolStats:
    """Counters of one pool (plain ints; the engine exports them as metrics)."""

    __slots__ = (
        "delivers",
        "lost",
        "rate_limited",
        "responses",
        "throttled",
        "timeouts",
        "written",
    )

    def __init__(self) -> None:
        self.written = 0  # requests written on a bind (resends included)
        self.responses = 0  # submit responses passed to on_submit_resp
        self.throttled = 0  # 0x58 / 0x14 replies, re-queued
        self.lost = 0  # on_submit_lost reports (drops and timeouts)
        self.timeouts = 0  # of which response timeouts
        self.delivers = 0  # deliver_sm / data_sm received
        self.rate_limited = 0  # assign steps cut short by the rate limiter

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class BindPool:
    """N binds to one carrier; see the module docstring for the rules."""

    def __init__(
        self,
        config: BindConfig,
        handler: PoolHandler,
        limiter: RateLimiter | None = None,
        *,
        claim_deliver: Callable[[bytes], Any] | None = None,
        flow: FlowControl | None = None,
        leased: bool = False,
    ) -> None:
        """``claim_deliver``: a pure function of a deliver_sm body given to every
        bind's session (see :class:`connectors.session.Session`); the deliver_sm
        it claims reach ``handler.on_claimed``, the others ``handler.on_deliver``.

        ``flow``: the carrier's flow control; its ``limiter`` is the pool's rate
        limiter unless ``limiter`` is given. Without one, the pool makes its own
        (``make_flow``): the window backs off, and the rate too when no
        ``limiter`` is given (unlimited until the first throttle reply)."""
        self.config = config
        self.handler = handler
        self.claim_deliver = claim_deliver
        if flow is None:
            flow = make_flow(config.window, limiter is None)
        self.flow: FlowControl = flow
        if limiter is None:
            limiter = flow.limiter
        self.limiter = limiter
        self.stats = PoolStats()
        self.binds: list[SmppBind] = []
        self._submitters: list[SmppBind] = []
        self._queue: deque[Any] = deque()  # (pdu, token) or (pdu, token, rest)
        # the handler's batched on_submit_resp, if it has one
        self._on_resps: Callable[[list[tuple[Any, str]]], None] | None = getattr(handler, "on_submit_resps", None)
        self._held = 0  # later parts of chains, not queued yet
        self._front = 0  # items put at the front in this batch (they keep their order)
        self._flow_tick: asyncio.TimerHandle | None = None  # recovery step while idle
        self._throttled = False  # this batch held a throttle reply
        self._loop: asyncio.AbstractEventLoop | None = None
        self._assign_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._closing = False
        self._started = False
        self.leased = leased
        self._modes: list[tuple[str, str]] = []  # (mode, name) of each bind this pool may hold
        self._lease_of: dict[str, tuple[SmppBind, int]] = {}  # lease -> (bind, index in _modes)
        self._deadline: dict[SmppBind, float] = {}  # leased bind -> its lease's local deadline
        self._next_deadline = float("inf")  # the earliest of them
        self._retiring: set[asyncio.Task[None]] = set()
        self._retiring_leases: dict[str, int] = {}  # lease -> index in _modes, until its bind closed

    # -- public API --------------------------------------------------------

    async def start(self) -> None:
        """Create and start every bind; returns once each tried once."""
        if self._started:
            return
        self._started = True
        self._loop = asyncio.get_running_loop()
        cfg = self.config
        modes: list[str]
        if cfg.bind_mode == "transmitter+receiver":
            modes = ["transmitter"] * cfg.binds + ["receiver"] * cfg.binds
        else:
            modes = [cfg.bind_mode] * cfg.binds
        counters: dict[str, int] = {}
        for mode in modes:
            counters[mode] = counters.get(mode, 0) + 1
            self._modes.append((mode, f"{cfg.name}-{_SHORT[mode]}{counters[mode]}"))
        if self.leased:
            return  # binds open as leases are granted
        for mode, name in self._modes:
            bind = SmppBind(cfg, self, mode=mode, name=name, claim_deliver=self.claim_deliver)
            self.binds.append(bind)
            if mode != "receiver":
                self._submitters.append(bind)
        await asyncio.gather(*(bind.start() for bind in self.binds))

    # -- bind leases (leased=True) -----------------------------------------

    def leases_wanted(self) -> int:
        """How many more leases this pool could use (binds it may open and holds none for)."""
        if not self.leased or self._closing or not self._started:
            return 0
        return len(self._modes) - len(self._lease_of) - len(self._retiring_leases)

    def leases(self) -> list[str]:
        """The leases this pool holds now: its binds', those being closed included
        (so that a slot goes free only once its bind is closed at the carrier)."""
        return [*self._lease_of, *self._retiring_leases]

    def lease_granted(self, lease: str, deadline: float) -> None:
        """Open a bind under ``lease``, valid until ``deadline`` (loop time) unless renewed."""
        if self._closing or lease in self._lease_of or self.leases_wanted() <= 0:
            raise ValueError(f"pool {self.config.name} cannot take lease {lease!r}")
        used = {index for _, index in self._lease_of.values()} | set(self._retiring_leases.values())
        index = next(i for i in range(len(self._modes)) if i not in used)
        mode, name = self._modes[index]
        bind = SmppBind(self.config, self, mode=mode, name=name, claim_deliver=self.claim_deliver)
        self._lease_of[lease] = (bind, index)
        self.binds.append(bind)
        if mode != "receiver":
            self._submitters.append(bind)
        self._deadline[bind] = deadline
        self._next_deadline = min(self._deadline.values())
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(bind.start(), name=f"smpp-bind-start-{name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def has_lease(self) -> bool:
        """A live lease on a bind that submits (open or opening, its local deadline
        not passed): False for a leased pool fenced off its carrier (every lease
        lost or run out) or never granted one; always True without leases."""
        if not self.leased:
            return True
        now = (self._loop or asyncio.get_running_loop()).time()
        deadline = self._deadline
        return any(deadline.get(bind, 0.0) > now for bind in self._submitters)

    def lease_renewed(self, lease: str, deadline: float) -> None:
        """The lease was renewed: its bind may write until ``deadline``."""
        held = self._lease_of.get(lease)
        if held is not None:
            self._deadline[held[0]] = deadline
            self._next_deadline = min(self._deadline.values())

    def lease_revoked(self, lease: str, reason: str) -> None:
        """Stop writing on the lease's bind at once; read what is in flight; unbind."""
        held = self._lease_of.pop(lease, None)
        if held is None:
            return
        bind = held[0]
        self._retiring_leases[lease] = held[1]
        self._deadline.pop(bind, None)
        self._next_deadline = min(self._deadline.values(), default=float("inf"))
        if bind in self._submitters:
            self._submitters.remove(bind)
        log.info(
            "bind %s: lease %s lost (%s): no more writes; unbinding", bind.name, lease, reason,
            extra={"event": "bind_fenced", "carrier": self.config.name, "bind": bind.name, "reason": reason},
        )
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self._retire(bind, lease), name=f"smpp-bind-retire-{bind.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, bind: SmppBind, lease: str) -> None:
        try:
            await bind.close(min(self.config.drain_timeout_s, self.config.response_timeout_s))
        finally:
            if bind in self.binds:
                self.binds.remove(bind)
            self._retiring_leases.pop(lease, None)
            if self._queue and not self._assign_scheduled and self._loop is not None:
                self._assign_scheduled = True
                self._loop.call_soon(self._assign)

    async def wait_retired(self) -> None:
        """Wait until the binds being opened or closed for a lease got there."""
        while self._retiring:
            await asyncio.wait(set(self._retiring))

    def _check_leases(self, now: float) -> None:
        """Revoke every lease whose deadline has passed (called before a write batch)."""
        for lease, (bind, _) in list(self._lease_of.items()):
            if self._deadline.get(bind, 0.0) <= now:
                self.lease_revoked(lease, "not renewed before its deadline")

    def submit(self, pdu: SubmitSm | bytes, token: object) -> None:
        """Queue a submit_sm; it is written as window and rate allow. Never blocks.

        After :meth:`close` began, the token is reported lost (soon, not from
        inside this call) with reason "pool closed before it was written".
        """
        if self._closing:  # not load: report it, never raise into a callback chain
            loop = self._loop or asyncio.get_running_loop()
            self.stats.lost += 1
            loop.call_soon(self.handler.on_submit_lost, token, "pool closed before it was written")
            return
        self._enqueue((pdu, token))

    def submit_many(self, items: list[tuple[SubmitSm | bytes, object]]) -> None:
        """:meth:`submit` of each ``(pdu, token)`` item, in order (one call per
        batch: the engine's admitter hands over a chunk of single-part messages)."""
        if self._closing:
            for pdu, token in items:
                self.submit(pdu, token)
            return
        self._queue.extend(items)
        if not self._assign_scheduled:
            self._assign_scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._assign)

    def _enqueue(self, item: Any) -> None:
        self._queue.append(item)
        if not self._assign_scheduled:
            self._assign_scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._assign)

    def submit_parts(self, items: list[tuple[SubmitSm | bytes, object]]) -> None:
        """Queue the parts of one multipart message, ``(pdu, token)`` each, in order:
        each part is written once the one before it was answered (module doc)."""
        if len(items) < 2 or self._closing:
            for pdu, token in items:
                self.submit(pdu, token)
            return
        pdu, token = items[0]
        self._held += len(items) - 1
        self._enqueue((pdu, token, items[1:]))

    def _release(self, item: Any) -> None:
        """``item`` of a chain got its outcome: its next part goes to the front of the queue."""
        rest = item[2]
        self._held -= 1
        pdu, token = rest[0]
        self._queue.insert(self._front, (pdu, token, rest[1:]) if len(rest) > 1 else (pdu, token))
        self._front += 1
        if not self._assign_scheduled:
            self._assign_scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._assign)

    def pending(self) -> int:
        """Queued (later parts of multipart messages included) plus in flight."""
        return len(self._queue) + self._held + sum(bind.in_flight for bind in self.binds)

    def queued(self) -> int:
        return len(self._queue) + self._held

    @property
    def window(self) -> int:
        """The window of each bind now (the configured one, or less after throttling)."""
        return self.flow.window

    def rate_per_s(self) -> float:
        """The rate limit in force now (0 = none)."""
        loop = self._loop
        return self.flow.rate_per_s(loop.time() if loop is not None else 0.0)

    def reconnects(self) -> dict[str, int]:
        """Connection retries of all binds, by cause (``transport.RECONNECT_CAUSES``)."""
        total: dict[str, int] = {}
        for bind in self.binds:
            for cause, n in bind.reconnects.items():
                total[cause] = total.get(cause, 0) + n
        return total

    async def wait_pending_below(self, n: int) -> None:
        """Wait until ``pending() < n`` (back-pressure for the engine)."""
        if self.pending() < n:
            return
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append((n, future))
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def take_queued(self) -> list[tuple[SubmitSm | bytes, object]]:
        """Remove and return the submit_sm queued and never written (for a
        carrier in outage: the engine hands them to a fallback or fails them)."""
        items: list[tuple[SubmitSm | bytes, object]] = []
        for item in self._queue:
            items.append((item[0], item[1]))
            if len(item) > 2:  # a multipart chain: its later parts were held, never queued
                items.extend(item[2])
                self._held -= len(item[2])
        self._queue.clear()
        self._front = 0
        if self._waiters:
            self._release_waiters()
        return items

    def take_unwritten(self, unwritten: Callable[[object], bool]) -> list[object]:
        """Remove the queued submit_sm whose token ``unwritten`` accepts (a chain with
        its held later parts) and return those tokens, in order; the rest stay queued
        in their order. For a leased pool fenced off its carrier: the engine hands
        the jobs of the tokens back to Redis for a lease holder."""
        taken: list[object] = []
        kept: deque[Any] = deque()
        for item in self._queue:
            if unwritten(item[1]):
                taken.append(item[1])
                if len(item) > 2:
                    self._held -= len(item[2])
            else:
                kept.append(item)
        if taken:
            self._queue = kept
            self._front = 0
            if self._waiters:
                self._release_waiters()
        return taken

    def binds_up(self) -> int:
        return sum(1 for bind in self.binds if bind.up)

    async def close(self, drain_timeout_s: float | None = None) -> None:
        """Stop taking; drain queue and window within the bound; unbind.

        Whatever is still queued or unanswered afterwards is reported with
        ``on_submit_lost`` (queued ones with a reason saying they were never
        written).
        """
        timeout = self.config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        self._closing = True
        loop = self._loop or asyncio.get_running_loop()
        if self.pending() and self.binds_up() and timeout > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.wait_pending_below(1)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flow_tick is not None:
            self._flow_tick.cancel()
            self._flow_tick = None
        self._drop_queue()
        deadline = loop.time() + timeout
        await asyncio.gather(*(bind.close(max(deadline - loop.time(), 0.0)) for bind in list(self.binds)))
        if self._retiring:
            await asyncio.wait(set(self._retiring), timeout=max(deadline - loop.time(), 0.1))
        # Only now, the binds closed: the leases may go (the manager releases them).
        self._lease_of.clear()
        self._deadline.clear()
        self._retiring_leases.clear()
        self._drop_queue()  # later parts released by the last answers
        for _, future in self._waiters:
            if not future.done():
                future.set_result(None)

    def _drop_queue(self) -> None:
        queue = self._queue
        while queue:
            item = queue.popleft()
            tokens = [item[1]]
            if len(item) > 2:
                tokens += [token for _, token in item[2]]
                self._held -= len(item[2])
            for token in tokens:
                self.stats.lost += 1
                self.handler.on_submit_lost(token, "pool closed before it was written")

    # -- assign step -------------------------------------------------------

    def _assign(self) -> None:
        self._assign_scheduled = False
        self._front = 0  # a batch of answers is over: the next one starts at the front
        queue = self._queue
        if queue:
            limiter = self.limiter
            loop = self._loop
            assert loop is not None
            if self._next_deadline <= loop.time():  # fencing: a lease past its deadline writes nothing
                self._check_leases(loop.time())
            submitters = self._submitters
            while queue:
                best: SmppBind | None = None
                best_free = 0
                for bind in submitters:
                    free = bind.free_window()
                    if free > best_free:
                        best, best_free = bind, free
                if best is None:
                    break
                n = min(best_free, len(queue))
                if limiter is not None:
                    now = loop.time()
                    granted = limiter.try_take(n, now)
                    if granted < n:
                        self.stats.rate_limited += 1
                        self._wake_at(now + max(limiter.wait_s(1, now), 0.001))
                    if granted <= 0:
                        break
                    n = granted
                best.submit_from(queue, n)
                self.stats.written += n
        if self._waiters:
            self._release_waiters()

    def _wake_at(self, when: float) -> None:
        loop = self._loop
        assert loop is not None
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._assign()

    def _release_waiters(self) -> None:
        pending = self.pending()
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for n, future in self._waiters:
            if future.done():
                continue
            if pending < n:
                future.set_result(None)
            else:
                keep.append((n, future))
        self._waiters = keep

    # -- BindListener ------------------------------------------------------

    def bind_up(self, bind: SmppBind) -> None:
        bind.set_window(self.flow.window)
        self.handler.on_bind_state(bind.name, True)
        self._assign()

    def bind_down(self, bind: SmppBind, lost: list[Any], reason: str) -> None:
        handler = self.handler
        self.stats.lost += len(lost)
        for item in lost:
            handler.on_submit_lost(item[1], reason)
            if len(item) > 2:
                self._release(item)
        handler.on_bind_state(bind.name, False)
        self._assign()

    def bind_response(self, bind: SmppBind, response: Response) -> None:
        item: tuple[Any, ...] = response.context  # type: ignore[assignment]  # (no cast(): a call per message)
        resp = response.pdu
        status = resp.command_status
        if status and is_throttled(status):
            # Back at the front, after the ones of this batch put back before it.
            self.stats.throttled += 1
            self._queue.insert(self._front, item)
            self._front += 1
            self._throttled = True
            return
        self.stats.responses += 1
        self.handler.on_submit_resp(item[1], status, getattr(resp, "message_id", None) or "")
        if len(item) > 2:
            self._release(item)

    def bind_responses(self, bind: SmppBind, items: list[tuple[Any, str]]) -> None:
        """Accepted submit_sm_resp (status 0), ``(item, message_id)`` each, in order:
        what :meth:`bind_response` does for each, with one handler call for all
        when the handler has ``on_submit_resps``."""
        self.stats.responses += len(items)
        many = self._on_resps
        if many is not None:
            many(items)
        else:
            on_submit_resp = self.handler.on_submit_resp
            for item, message_id in items:
                on_submit_resp(item[1], 0, message_id)
        if self._held:  # chains in flight: the next part of each answered one
            for item, _ in items:
                if len(item) > 2:
                    self._release(item)

    def bind_timeout(self, bind: SmppBind, context: Any) -> None:
        self.stats.lost += 1
        self.stats.timeouts += 1
        self.handler.on_submit_lost(context[1], "response timeout")
        if len(context) > 2:
            self._release(context)

    def bind_deliver(self, bind: SmppBind, pdu: DeliverSm | DataSm) -> None:
        self.stats.delivers += 1
        self.handler.on_deliver(bind, pdu)

    def bind_claimed(self, bind: SmppBind, items: list[tuple[int, Any]]) -> None:
        self.stats.delivers += len(items)
        self.handler.on_claimed(bind, items)

    def bind_ready(self, bind: SmppBind) -> None:
        throttled = self._throttled
        if throttled or self.flow.reduced():
            self._flow_step(throttled)
        self._throttled = False
        self._assign()

    def _flow_step(self, throttled: bool) -> None:
        """Once per batch: back off or recover; apply and log a change."""
        flow = self.flow
        loop = self._loop
        assert loop is not None
        reason = flow.on_batch(loop.time(), throttled)
        if self._flow_tick is None and not self._closing and flow.reduced():
            # Recovery goes on when no answers come (an idle carrier): a step a second.
            self._flow_tick = loop.call_later(1.0, self._on_flow_tick)
        if reason is None:
            return
        window = flow.window
        for bind in self._submitters:
            bind.set_window(window)
        rate = flow.rate_per_s(loop.time())
        log.info(
            "carrier %s %s: rate %s, window %d per bind",
            self.config.name, reason, f"{rate:.1f}/s" if rate else "unlimited", window,
            extra={
                "event": "backoff", "carrier": self.config.name, "reason": reason,
                "rate_per_s": round(rate, 3), "window": window,
            },
        )


    def _on_flow_tick(self) -> None:
        self._flow_tick = None
        if self.flow.reduced():
            self._flow_step(False)
            self._assign()


def make_flow(window: int, rate: bool) -> FlowControl:
    """A pool's default flow control: the window backs off, and with ``rate`` the
    rate too (unlimited until the first throttle reply)."""
    return CarrierFlow(window, 1, LocalAdaptiveLimiter() if rate else None)


_SHORT = {"transceiver": "trx", "transmitter": "tx", "receiver": "rx"}
