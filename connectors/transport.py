"""asyncio edge of SMPP: a Protocol that moves bytes, and one self-healing bind.

Why an ``asyncio.Protocol`` and not streams: streams cost a task, a future
and a buffer copy per read; a Protocol gets ``data_received`` straight from
the loop, feeds the sans-IO :class:`~connectors.session.Session` and hands the
events on, all in one synchronous call. Writes made during a loop iteration
are collected and flushed once (joined, one ``write``) from a ``call_soon``,
so a window of 256 submit_sm leaves in one syscall. ``pause_writing`` /
``resume_writing`` are honoured: a paused bind offers no free window.

:class:`SmppProtocol` knows nothing about SMPP beyond "give bytes to the
session, write what it returns". :class:`SmppBind` owns the lifecycle of one
bind: connect, bind with a timeout, keepalive and timeouts through one
periodic ``Session.sweep``, reconnect with exponential backoff and jitter, a
slow retry after a bind refused for credentials (0x0D/0x0E/0x0F: a hot loop
would only lock the account), graceful unbind on close after draining the
window within a bound. OS errors are mapped once, in
:func:`map_connection_error`, to :class:`~connectors.errors.ConnectionLostError`.

TLS (``tls = true``): the stdlib's default client context (certificate and
host name verified, TLS 1.2 or later) with the carrier's ``ca_file``, built
once per bind; the name checked is ``server_name`` or the host. A handshake
that fails is an ordinary connection failure — reconnect with backoff — and
its reason (``TLS certificate not trusted: …``) is the bind's ``last_error``
and the log line's.

Callbacks go to a :class:`BindListener` (the pool): plain calls from the
event loop, no task or future per message. The only tasks are one
connection loop per bind.

Throttle replies are the pool's business (adaptive rate and window, see
``throttling.flow``): the bind only offers ``set_window`` to shrink its window
below the configured one. Every retry of the connection loop is counted in
``reconnects`` by a cause from :data:`RECONNECT_CAUSES` (``last_cause``: the
last lost connection's); a failed attempt is logged with ``extra`` fields
``event="bind_failed"``, ``carrier``, ``bind``, ``cause`` (the engine logs
the ``bind_up`` / ``bind_down`` events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any, Final, Protocol, cast

# The one lower-layer import of connectors (pyproject.toml, contract "layers"):
# the engine's single backoff, pure stdlib, for reconnects.
from throttling.backoff import Backoff

from .config import BindConfig, ConfigError
from .constants import CommandId
from .errors import BindError, ConnectionLostError, SmppError
from .pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
)
from .session import (
    ESME,
    WINDOWED,
    ClaimedDelivers,
    ProtocolViolation,
    Response,
    Session,
    StrayResponse,
    SubmitResponses,
    Unbound,
)
from .status import ESME_RINVBNDSTS, ESME_RINVCMDLEN, ESME_ROK, status_info

__all__ = [
    "RECONNECT_CAUSES",
    "BindListener",
    "SmppBind",
    "SmppProtocol",
    "map_connection_error",
    "tls_context",
]

log = logging.getLogger("sendgate.connectors.transport")

_FIRST = itemgetter(0)  # the sequence number of a claimed (sequence_number, value)

C = CommandId
_BIND_PDU: Final[dict[str, Any]] = {
    "transceiver": BindTransceiver,
    "transmitter": BindTransmitter,
    "receiver": BindReceiver,
}


#: Why a bind reconnects (``SmppBind.reconnects``, metric ``sendgate_reconnects_total``):
#: a fixed set, so that a metric label never grows.
RECONNECT_CAUSES: Final = (
    "refused",  # the TCP connection was refused
    "timeout",  # connect or bind_resp took longer than bind_timeout_s
    "network",  # another OS error (unreachable, reset while connecting, ...)
    "bind_failed",  # the SMSC answered the bind with an error status
    "closed_by_peer",  # the SMSC closed the connection
    "reset",  # the connection was reset or broke
    "enquire_timeout",  # enquire_link unanswered: we closed it
    "unbound",  # the SMSC sent unbind
    "protocol_error",  # the peer broke SMPP, or answered that our session is out of step
    "aborted",  # closed on our side (kill)
)


def connection_cause(exc: BaseException | None) -> str:
    """The reconnect cause of a failed connection attempt or a lost connection."""
    if exc is None:
        return "closed_by_peer"
    if isinstance(exc, BindError):
        return "bind_failed"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, OSError):
        return "network"
    if isinstance(exc, SmppError):
        return "protocol_error"
    return "network"


def tls_context(config: BindConfig) -> ssl.SSLContext | None:
    """The client TLS context of a carrier with ``tls = true`` (else ``None``)."""
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=config.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"ca_file: cannot load {config.ca_file}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def map_connection_error(exc: BaseException | None, where: str) -> ConnectionLostError:
    """The one place where OS-level failures become our error type."""
    if exc is None:
        return ConnectionLostError(f"{where}: connection closed by peer")
    if isinstance(exc, ConnectionLostError):
        return exc
    if isinstance(exc, TimeoutError):
        return ConnectionLostError(f"{where}: timed out")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectionLostError(f"{where}: TLS certificate not trusted: {exc.verify_message or exc.reason}")
    if isinstance(exc, ssl.SSLError):
        return ConnectionLostError(f"{where}: TLS handshake failed: {exc.reason or type(exc).__name__}")
    if isinstance(exc, OSError):
        name = exc.__class__.__name__
        return ConnectionLostError(f"{where}: {name} (errno {exc.errno})")
    return ConnectionLostError(f"{where}: {exc.__class__.__name__}")


class SmppProtocol(asyncio.Protocol):
    """Moves bytes between a socket and a Session; nothing else."""

    __slots__ = ("_buffer", "_flush_scheduled", "_loop", "owner", "paused", "session", "transport")

    def __init__(self, session: Session, owner: ProtocolOwner) -> None:
        self.session = session
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self._buffer: list[bytes] = []
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        events = self.session.receive_data(data)
        auto = self.session.data_to_send()
        if auto:
            self.write(auto)
        if events:
            self.owner.handle_events(events)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._buffer.clear()
        self.transport = None
        self.owner.handle_connection_lost(exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.owner.handle_writable()

    # -- writing -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes; all writes of this loop iteration leave in one write."""
        self._buffer.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def write_many(self, chunks: list[bytes]) -> None:
        self._buffer.extend(chunks)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        buffer = self._buffer
        if not buffer:
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # One write of the joined bytes, not writelines: uvloop's writelines
            # handles each chunk on its own (~2x the cost of this join for a
            # window of 256 submit_sm); stock asyncio 3.11 joins anyway.
            transport.write(b"".join(buffer))
        buffer.clear()

    def close(self) -> None:
        """Flush what is queued, then close (the transport sends the rest first)."""
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._buffer.clear()
        if self.transport is not None:
            self.transport.abort()


class ProtocolOwner(Protocol):
    def handle_events(self, events: list[Any]) -> None: ...
    def handle_connection_lost(self, exc: Exception | None) -> None: ...
    def handle_writable(self) -> None: ...


class BindListener(Protocol):
    """What a :class:`SmppBind` reports to (the pool). Plain calls, no awaiting."""

    def bind_up(self, bind: SmppBind) -> None: ...
    def bind_down(self, bind: SmppBind, lost: list[Any], reason: str) -> None:
        """``lost``: contexts of requests written but unanswered."""

    def bind_response(self, bind: SmppBind, response: Response) -> None: ...
    # Optional: a listener with ``bind_responses(bind, items)`` gets the accepted
    # submit_sm_resp in runs, ``(context, message_id)`` each (status 0; see
    # ``Session``'s ``submit_runs``); one without it gets a ``bind_response`` each.
    def bind_timeout(self, bind: SmppBind, context: Any) -> None: ...
    def bind_deliver(self, bind: SmppBind, pdu: DeliverSm | DataSm) -> None: ...
    def bind_claimed(self, bind: SmppBind, items: list[tuple[int, Any]]) -> None:
        """deliver_sm read by the bind's ``claim_deliver`` hook: ``(sequence_number,
        value)`` each; answer them with :meth:`SmppBind.respond_sequences`."""

    def bind_ready(self, bind: SmppBind) -> None:
        """Responses were processed or writing resumed: window may be free."""


# A response saying our session is out of step (ESME_RINVCMDLEN, ESME_RINVBNDSTS):
# the status is still data for the pool, and the bind starts over.
_REBIND_STATUSES: Final = frozenset((ESME_RINVCMDLEN, ESME_RINVBNDSTS))


class SmppBind:
    """One SMPP bind (ESME side) that keeps itself connected.

    ``mode`` is ``"transceiver"``, ``"transmitter"`` or ``"receiver"``.
    ``submit(pdu, context)`` writes a request at once (the caller checked
    ``free_window()``); ``respond(pdu, status)`` answers a deliver_sm/data_sm.
    """

    def __init__(
        self,
        config: BindConfig,
        listener: BindListener,
        *,
        mode: str = "transceiver",
        name: str | None = None,
        rng: random.Random | None = None,
        claim_deliver: Callable[[bytes], Any] | None = None,
    ) -> None:
        """``claim_deliver``: the sessions' hook for deliver_sm bodies (see
        :class:`connectors.session.Session`); what it claims is reported with
        ``listener.bind_claimed``, the rest with ``listener.bind_deliver``."""
        if mode not in _BIND_PDU:
            raise ValueError(f"mode must be one of {sorted(_BIND_PDU)}")
        self.config = config
        self.listener = listener
        self.mode = mode
        self.claim_deliver = claim_deliver
        self.name = name or f"{config.name}-{mode}"
        self._tls = tls_context(config)
        self.session: Session | None = None
        self.protocol: SmppProtocol | None = None
        self.up = False
        self.generation = 0  # bumped on every successful bind
        self.connects = 0
        self.written = 0  # requests written (all connections)
        self.auth_failures = 0
        self.last_error = ""
        self.retry_in_s = 0.0  # the wait before the next connection attempt
        #: Requests in flight allowed now: the configured window, or less after throttling.
        self.window = config.window
        #: Connection retries by cause (RECONNECT_CAUSES).
        self.reconnects: dict[str, int] = {}
        self._close_cause = ""  # set when we close the link on purpose
        #: Why the last connection was lost (one of RECONNECT_CAUSES; "" before any).
        self.last_cause = ""
        rng = rng or random.Random()
        # Delays between half and all of a curve doubling from min_s to max_s.
        self._reconnect = Backoff(config.reconnect_min_s, config.reconnect_max_s, jitter=0.5, rng=rng)
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._runner: asyncio.Task[None] | None = None
        # accepted submit_sm_resp in runs, when the listener takes them (the pool does)
        self._responses: Callable[[SmppBind, list[tuple[Any, str]]], None] | None = getattr(
            listener, "bind_responses", None
        )
        self._first_try = self._loop.create_future()
        self._bind_waiter: asyncio.Future[Any] | None = None
        self._lost_waiter: asyncio.Future[str] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._unbind_waiter: asyncio.Future[None] | None = None
        self._wake = asyncio.Event()
        self._sweep_handle: asyncio.TimerHandle | None = None
        # sequence numbers of deliver_sm/data_sm on this connection still to be answered
        self._awaiting: set[int] = set()

    def __repr__(self) -> str:
        return f"<SmppBind {self.name} up={self.up}>"

    # -- public ------------------------------------------------------------

    async def start(self) -> None:
        """Start the connection loop; return once the first attempt is over (up or not)."""
        if self._runner is None:
            self._runner = self._loop.create_task(self._run(), name=f"smpp-bind-{self.name}")
        await asyncio.shield(self._first_try)

    def is_closing(self) -> bool:
        return self._closing

    def is_up(self) -> bool:
        return self.up

    def can_submit(self) -> bool:
        return self.free_window() > 0

    def free_window(self) -> int:
        """How many more requests may be written now (0 when down or paused)."""
        session = self.session
        if not self.up or session is None or self._closing:
            return 0
        protocol = self.protocol
        if protocol is None or protocol.paused:
            return 0
        return session.free_window()

    def set_window(self, window: int) -> None:
        """Allow ``window`` requests in flight (1..configured) from now on, and on
        later connections; requests already in flight above it finish normally."""
        self.window = max(1, min(window, self.config.window))
        if self.session is not None:
            self.session.window = self.window

    @property
    def in_flight(self) -> int:
        return self.session.windowed if self.session is not None else 0

    def submit(self, pdu: Any, context: Any) -> None:
        """Write one request now; ``context`` comes back in the response or loss report."""
        session = self.session
        protocol = self.protocol
        if session is None or protocol is None:
            raise ConnectionLostError(f"bind {self.name} is down")
        protocol.write(session.send(pdu, self._loop.time(), context))
        self.written += 1

    def submit_from(self, queue: deque[Any], n: int) -> None:
        """Pop ``n`` ``(pdu, token)`` items off the left of ``queue`` and write them.

        The item tuple itself is the context, so a throttled or lost PDU can be
        put back or reported without another allocation.
        """
        session = self.session
        protocol = self.protocol
        if session is None or protocol is None:
            raise ConnectionLostError(f"bind {self.name} is down")
        protocol.write_many(session.send_submits(queue, n, self._loop.time()))
        self.written += n

    def respond(self, pdu: DeliverSm | DataSm, command_status: int = ESME_ROK) -> None:
        """Answer a deliver_sm / data_sm from the SMSC (SMPP 3.4 §4.6.2, §4.7.2).

        A no-op if the connection that carried it is gone (the SMSC redelivers),
        or if it was answered already.
        """
        self.respond_many([pdu], command_status)

    def respond_many(self, pdus: list[DeliverSm | DataSm], command_status: int = ESME_ROK) -> None:
        """`respond` to several deliver_sm / data_sm in one write (the receipt
        worker answers a stored batch at once). Stale ones (from a connection
        that is gone: the SMSC redelivers) and already answered ones are skipped."""
        deliver: list[int] = []
        data: list[int] = []
        for pdu in pdus:
            (data if pdu.command_id == C.DATA_SM else deliver).append(pdu.sequence_number)
        self.respond_sequences(deliver, data, command_status)

    def respond_sequences(self, deliver: list[int], data: list[int], command_status: int = ESME_ROK) -> None:
        """`respond_many` by sequence number: deliver_sm_resp to ``deliver``,
        data_sm_resp to ``data``, in one write each. Same skipping rules."""
        session = self.session
        protocol = self.protocol
        if session is None or protocol is None or session.is_closed():
            log.debug("bind %s: %d stale deliver_sm response(s) dropped", self.name, len(deliver) + len(data))
            return
        awaiting = self._awaiting
        # SMPP 3.4 §4.6.2 / §4.7.2: the body of each answer is an empty message_id
        for command_id, seqs in ((DeliverSmResp.command_id, deliver), (DataSmResp.command_id, data)):
            if not seqs:
                continue
            if awaiting.issuperset(seqs):  # the usual case: all of them, in C
                before = len(awaiting)
                awaiting.difference_update(seqs)
                # (a number twice in seqs is answered once, as by the loop below)
                due = seqs if before - len(awaiting) == len(seqs) else list(dict.fromkeys(seqs))
            else:
                due = []
                for seq in seqs:
                    if seq in awaiting:
                        awaiting.remove(seq)
                        due.append(seq)
            if len(due) != len(seqs):
                log.debug("bind %s: %d deliver_sm answered already or stale: dropped", self.name, len(seqs) - len(due))
            if due:
                protocol.write(session.send_empty_responses(command_id, command_status, due))

    def kill(self) -> None:
        """Drop the connection at once (tests, fatal errors); the loop reconnects."""
        if self.protocol is not None:
            self._close_cause = "aborted"
            self.protocol.abort()

    async def close(self, drain_timeout_s: float | None = None) -> None:
        """Stop; wait up to ``drain_timeout_s`` for in-flight responses, unbind, disconnect.

        Anything still unanswered goes to ``listener.bind_down`` as lost.
        """
        timeout = self.config.drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        self._closing = True
        self._close_cause = "aborted"  # closed on our side
        self._wake.set()
        session = self.session
        if self.up and session is not None and session.windowed and timeout > 0:
            self._drained = self._loop.create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._drained)
            self._drained = None
        await self._unbind(min(max(timeout, 0.1), 2.0))
        if self.protocol is not None:
            self.protocol.abort()
        runner = self._runner
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        if not self._first_try.done():
            self._first_try.set_result(None)

    # -- connection loop ---------------------------------------------------

    async def _run(self) -> None:
        cfg = self.config
        while not self._closing:
            delay: float
            cause: str
            try:
                await self._connect_and_bind()
            except BindError as exc:
                cause = "bind_failed"
                info = status_info(exc.command_status)
                self.last_error = info.name
                if info.auth_failure:  # SMPP 3.4 §5.1.3: refused for credentials; retry slowly
                    self.auth_failures += 1
                    delay = cfg.auth_retry_s
                    log.error(
                        "bind %s refused for credentials: %s (0x%08X) for system_id %r at "
                        "%s:%s; not retrying for %.0fs",
                        self.name,
                        info.name,
                        exc.command_status,
                        cfg.system_id,
                        cfg.host,
                        cfg.port,
                        delay,
                        extra={"event": "bind_failed", "carrier": cfg.name, "bind": self.name, "cause": cause},
                    )
                else:
                    delay = self._reconnect.next_delay()
                    log.warning(
                        "bind %s refused: %s (0x%08X); retry in %.2fs",
                        self.name,
                        info.name,
                        exc.command_status,
                        delay,
                        extra={"event": "bind_failed", "carrier": cfg.name, "bind": self.name, "cause": cause},
                    )
            except (TimeoutError, OSError, SmppError) as exc:
                cause = connection_cause(exc)
                err = map_connection_error(exc, f"bind {self.name}")
                self.last_error = str(err)
                delay = self._reconnect.next_delay()
                log.warning(
                    "%s; retry in %.2fs", err, delay,
                    extra={"event": "bind_failed", "carrier": cfg.name, "bind": self.name, "cause": cause},
                )
            else:
                if not self._first_try.done():
                    self._first_try.set_result(None)
                assert self._lost_waiter is not None
                if self.is_closing():
                    # close() began while this bind was being made, and its cancel
                    # did not stop it: Python 3.11's wait_for returns the result
                    # instead of raising when the bind_resp lands in the same tick as
                    # the cancel. Nobody would close this link: drop it here, or
                    # close() waits for this task forever.
                    if self.protocol is not None:
                        self.protocol.abort()
                    break
                bound_at = self._loop.time()
                reason = await self._lost_waiter
                if self.is_closing():
                    break
                # A link that dies right after binding must not become a hot loop:
                # only a bind that lived a while starts the backoff over.
                if self._loop.time() - bound_at >= cfg.reconnect_max_s:
                    self._reconnect.reset()
                delay = self._reconnect.next_delay()
                cause = self.last_cause or "closed_by_peer"
                log.warning(
                    "bind %s lost: %s; reconnect in %.2fs", self.name, reason, delay,
                    extra={"carrier": cfg.name, "bind": self.name, "cause": cause},
                )
            if not self._first_try.done():
                self._first_try.set_result(None)
            if self.is_closing():
                break
            self.reconnects[cause] = self.reconnects.get(cause, 0) + 1
            self._wake.clear()
            self.retry_in_s = delay
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _connect_and_bind(self) -> None:
        cfg = self.config
        loop = self._loop
        deadline = loop.time() + cfg.bind_timeout_s
        session = Session(
            ESME,
            self.window,
            cfg.response_timeout_s,
            cfg.enquire_link_s,
            now=loop.time(),
            claim_deliver=self.claim_deliver,
            submit_runs=self._responses is not None,
        )
        self.session = session
        self._awaiting = set()
        self._lost_waiter = loop.create_future()
        self._close_cause = ""
        self.connects += 1
        if self._tls is None:
            connecting = loop.create_connection(lambda: SmppProtocol(session, self), cfg.host, cfg.port)
        else:
            connecting = loop.create_connection(
                lambda: SmppProtocol(session, self), cfg.host, cfg.port,
                ssl=self._tls, server_hostname=cfg.server_name or cfg.host,
                ssl_handshake_timeout=cfg.bind_timeout_s,
            )
        async with asyncio.timeout(cfg.bind_timeout_s):
            _, protocol = await connecting
        self.protocol = protocol
        bind_cls = _BIND_PDU[self.mode]
        request = bind_cls(
            system_id=cfg.system_id,
            password=cfg.password,
            system_type=cfg.system_type,
            interface_version=cfg.interface_version,
            addr_ton=cfg.addr_ton,
            addr_npi=cfg.addr_npi,
            address_range=cfg.address_range,
        )
        waiter: asyncio.Future[Any] = loop.create_future()
        self._bind_waiter = waiter
        protocol.write(session.send(request, loop.time()))
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                resp = await waiter
        except BaseException:
            protocol.abort()
            raise
        finally:
            self._bind_waiter = None
        if resp.command_status != ESME_ROK:
            protocol.abort()
            raise BindError(resp.command_status)
        self.up = True
        self.generation += 1
        self.last_error = ""
        self._schedule_sweep()
        log.info(
            "bind %s up (%s:%s, %s%s)", self.name, cfg.host, cfg.port, self.mode, ", tls" if self._tls else "",
            extra={"carrier": cfg.name, "bind": self.name},
        )
        self.listener.bind_up(self)

    async def _unbind(self, timeout: float) -> None:
        session, protocol = self.session, self.protocol
        if not self.up or session is None or protocol is None or not session.is_bound():
            return
        self._unbind_waiter = self._loop.create_future()
        protocol.write(session.send_unbind(self._loop.time()))
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._unbind_waiter)
        self._unbind_waiter = None

    # -- periodic sweep ----------------------------------------------------

    def _schedule_sweep(self) -> None:
        self._sweep_handle = self._loop.call_later(self.config.sweep_interval_s, self._sweep)

    def _sweep(self) -> None:
        self._sweep_handle = None
        session, protocol = self.session, self.protocol
        if session is None or protocol is None or protocol.transport is None:
            return
        events = session.sweep(self._loop.time())
        auto = session.data_to_send()
        if auto:
            protocol.write(auto)
        link_dead = False
        for event in events:
            if event.command_id in WINDOWED:
                self.listener.bind_timeout(self, event.context)
            elif event.command_id == C.ENQUIRE_LINK:
                link_dead = True
        if link_dead:
            log.warning("bind %s: enquire_link unanswered, closing", self.name)
            self._close_cause = "enquire_timeout"
            protocol.abort()
            return
        if events:
            self._after_progress()
        self._schedule_sweep()

    # -- ProtocolOwner -----------------------------------------------------

    def handle_events(self, events: list[Any]) -> None:
        listener = self.listener
        progress = False
        close = False
        for event in events:
            kind = type(event)
            if kind is SubmitResponses:  # accepted submit_sm (status 0: no rebind to consider)
                progress = True
                self._responses(self, event.items)  # type: ignore[misc]  # set: the session batches
            elif kind is Response:
                cid = event.command_id
                if cid in WINDOWED:
                    progress = True
                    listener.bind_response(self, event)
                    if event.pdu.command_status in _REBIND_STATUSES:
                        log.warning(
                            "bind %s: SMSC answered %s; rebinding",
                            self.name,
                            status_info(event.pdu.command_status).name,
                        )
                        close = True
                        self._close_cause = "protocol_error"
                elif cid in (C.BIND_TRANSCEIVER, C.BIND_TRANSMITTER, C.BIND_RECEIVER):
                    if self._bind_waiter is not None and not self._bind_waiter.done():
                        self._bind_waiter.set_result(event.pdu)
                elif cid == C.UNBIND:
                    if self._unbind_waiter is not None and not self._unbind_waiter.done():
                        self._unbind_waiter.set_result(None)
                    close = True
            elif kind is ClaimedDelivers:
                items = event.items
                self._awaiting.update(map(_FIRST, items))
                listener.bind_claimed(self, items)
            elif kind is DeliverSm or kind is DataSm:
                self._awaiting.add(event.sequence_number)
                listener.bind_deliver(self, event)
            elif kind is Unbound:
                log.info("bind %s: SMSC unbound", self.name)
                close = True
                self._close_cause = self._close_cause or "unbound"
            elif kind is ProtocolViolation:
                log.warning("bind %s: peer protocol error: %s", self.name, event.reason)
                if event.fatal:
                    close = True
                    self._close_cause = "protocol_error"
            elif kind is StrayResponse:
                log.debug("bind %s: response for nothing in flight", self.name)
            else:
                log.debug("bind %s: ignored %s", self.name, kind.__name__)
        if close and self.protocol is not None:
            self.protocol.close()
        if progress:
            self._after_progress()

    def _after_progress(self) -> None:
        session = self.session
        drained = self._drained
        if (
            drained is not None
            and session is not None
            and not session.windowed
            and not drained.done()
        ):
            drained.set_result(None)
        self.listener.bind_ready(self)

    def handle_writable(self) -> None:
        self.listener.bind_ready(self)

    def handle_connection_lost(self, exc: Exception | None) -> None:
        err = map_connection_error(exc, f"bind {self.name}")
        self.last_cause = self._close_cause or connection_cause(exc)
        was_up = self.up
        self.up = False
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        session = self.session
        lost = session.connection_lost() if session is not None else []
        contexts = [entry[2] for _, entry in lost if entry[0] in WINDOWED]
        self.protocol = None
        self._awaiting = set()
        if self._bind_waiter is not None and not self._bind_waiter.done():
            self._bind_waiter.set_exception(err)
        if self._unbind_waiter is not None and not self._unbind_waiter.done():
            self._unbind_waiter.set_result(None)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._lost_waiter is not None and not self._lost_waiter.done():
            self._lost_waiter.set_result(str(err))
        if was_up:
            reason = (
                "bind closed before the response (drain timeout)" if self._closing else str(err)
            )
            self.last_error = str(err)  # why the link went down, for the listener and /status
            self.listener.bind_down(self, contexts, reason)
