"""SMSC simulator: a fast, configurable SMPP 3.4 server for demo, tests and bench.

Why it is built this way: it must never be the bottleneck of a load run
(100,000+ submit_sm+resp per second on one bind with window 256, receipts at
the same pace, in its own process). So its hot path does not decode a
submit_sm into a Struct: :meth:`SmscProtocol.data_received` walks the receive
buffer header by header (one ``unpack_from`` each), reads only the fields it
needs (``registered_delivery``, the two addresses and the first 20 bytes of
text when a receipt is wanted), and answers a whole ``data_received`` with one
write. Receipts are queued and sent in batches, at most once per loop tick
(or when their delay is due), built from precompiled structs.

Everything that is not submit_sm or deliver_sm_resp — binds, enquire_link,
unbind, unknown or malformed PDUs — goes through the SMSC side of the same
:class:`~connectors.session.Session` the engine's binds use, so the state
rules (what is legal when, generic_nack, RINVBNDSTS) are the shared ones.
submit_sm received while not bound as a transmitter is also handed to the
session, which answers ESME_RINVBNDSTS.

Knobs (see :class:`SimulatorConfig` and ``--help``): credentials, response
latency (fixed, uniform or exponential), receipts on/off with delay and a
weighted mix of final states, message ids in hex or decimal, throttling above
N submits per second (ESME_RTHROTTLED), random error injection, receipts sent
before the submit_sm_resp, window enforcement (violations counted), dropping
the connection after K PDUs, and a JSON stats line on stderr per interval.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import os
import random
import re
import signal
import ssl
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import msgspec
import orjson

from .codec import encode
from .constants import CommandId, MessageState
from .mobile_origin import Concat, Encoding, mo_parts
from .pdu import BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DataSmResp, DeliverSm
from .session import HEADER, SMSC, ProtocolViolation, Response, Session, State, Unbound
from .status import (
    ESME_RALYBND,
    ESME_RINVCMDID,
    ESME_RINVPASWD,
    ESME_RINVSYSID,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
)

__all__ = [
    "RECEIPT_STATES",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "build_parser",
    "main",
    "start_simulator",
]

C = CommandId
_RESP_BIT: Final = 0x80000000
_SUBMIT_SM: Final = C.SUBMIT_SM
_SUBMIT_SM_RESP: Final = C.SUBMIT_SM_RESP
_DELIVER_SM: Final = C.DELIVER_SM
_DELIVER_SM_RESP: Final = C.DELIVER_SM_RESP
_HEADER_UNPACK = HEADER.unpack_from
_HEADER_PACK = HEADER.pack
# receipt TLVs, SMPP 3.4 §5.3.2.12 receipted_message_id (C-string), §5.3.2.35 message_state (1 byte)
_TLV_HEAD = struct.Struct(">HH")
_MESSAGE_STATE_TLV = struct.Struct(">HHB")
_RECEIPT_ESM_CLASS: Final = 0x04  # SMPP 3.4 §5.2.12: SMSC delivery receipt

#: final receipt states (stat: text, message_state TLV value, err: code)
RECEIPT_STATES: Final[dict[str, tuple[int, bytes]]] = {
    "DELIVRD": (MessageState.DELIVERED, b"000"),
    "UNDELIV": (MessageState.UNDELIVERABLE, b"001"),
    "EXPIRED": (MessageState.EXPIRED, b"034"),
    "REJECTD": (MessageState.REJECTED, b"005"),
    "DELETED": (MessageState.DELETED, b"002"),
    "UNKNOWN": (MessageState.UNKNOWN, b"999"),
    "ACCEPTD": (MessageState.ACCEPTED, b"000"),
}

_UNSUPPORTED: Final = frozenset((C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM, C.SUBMIT_MULTI))
_BIND_RESP = {
    C.BIND_TRANSMITTER: BindTransmitterResp,
    C.BIND_RECEIVER: BindReceiverResp,
    C.BIND_TRANSCEIVER: BindTransceiverResp,
}


class SimulatorConfig(msgspec.Struct, kw_only=True, frozen=True):
    """How the simulated SMSC behaves. Every field has a ``--flag`` of the same name."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = ephemeral
    system_id: str = ""  # "" accepts any system_id
    password: str = ""  # "" accepts any password
    latency_ms: float = 0.0  # submit_sm_resp delay
    latency_dist: str = "fixed"  # "fixed", "uniform" (0..2*latency), "exponential" (mean latency)
    dlr: bool = True  # send receipts when registered_delivery asks
    dlr_delay_ms: float = 0.0
    dlr_states: dict[str, float] = msgspec.field(default_factory=lambda: {"DELIVRD": 1.0})
    dlr_window: int = 1000  # receipts in flight per bind, awaiting deliver_sm_resp
    id_format: str = "hex"  # message ids: "hex" or "dec"
    # Ids in receipts: "" = as in submit_sm_resp; "hex"/"dec" = converted, as the
    # carriers do that answer submit_sm in one base and report in the other.
    receipt_id_format: str = ""
    throttle_tps: int = 0  # above this many submit_sm per second: ESME_RTHROTTLED; 0 = never
    error_rate: float = 0.0  # fraction of submit_sm answered with error_status
    error_status: int = ESME_RSYSERR
    receipt_before_resp: bool = False  # write the receipt before the submit_sm_resp
    max_window: int = 0  # count submits beyond this many unanswered as violations; 0 = off
    drop_after: int = 0  # abort a connection after this many PDUs received; 0 = never
    drop_limit: int = 1  # how many connections to drop that way; 0 = every one
    stats_interval_s: float = 0.0  # JSON stats line on stderr every interval; 0 = off
    # inbound mode: a mobile-originated message every interval (0 = off; tests call send_inbound)
    inbound_every_s: float = 0.0
    inbound_from: str = "447700900000"  # Ofcom drama range: never a real subscriber
    inbound_to: str = "1234"
    inbound_text: str = "STOP"
    inbound_encoding: Encoding = "gsm7"
    inbound_concat: Concat = "udh8"
    seed: int | None = None
    tls_cert: str = ""  # PEM certificate (chain): listen with TLS; "" = plain TCP
    tls_key: str = ""  # its PEM private key ("" = in tls_cert)

    def __post_init__(self) -> None:
        if self.latency_dist not in ("fixed", "uniform", "exponential"):
            raise ValueError("latency_dist: must be fixed, uniform or exponential")
        if self.id_format not in ("hex", "dec"):
            raise ValueError("id_format: must be hex or dec")
        if self.receipt_id_format not in ("", "hex", "dec"):
            raise ValueError("receipt_id_format: must be hex, dec or empty")
        unknown = set(self.dlr_states) - set(RECEIPT_STATES)
        if unknown:
            raise ValueError(f"dlr_states: unknown states {sorted(unknown)}")
        if not self.dlr_states or sum(self.dlr_states.values()) <= 0:
            raise ValueError("dlr_states: weights must add up to more than 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate: must be 0..1")
        if self.tls_key and not self.tls_cert:
            raise ValueError("tls_key: needs tls_cert")


class SimulatorStats:
    """Counters across all connections of one simulator."""

    __slots__ = (
        "bind_failures",
        "binds",
        "connections",
        "dlr_resps",
        "drops",
        "enquire_link_resps",
        "enquire_links",
        "errors_injected",
        "inbound_parts",
        "max_open_binds",
        "max_outstanding",
        "max_submits_per_s",
        "open_binds",
        "protocol_errors",
        "receipts",
        "submits",
        "throttled",
        "unbinds",
        "window_violations",
    )

    def __init__(self) -> None:
        self.connections = 0
        self.binds = 0
        self.bind_failures = 0
        self.submits = 0  # submit_sm received
        self.throttled = 0  # answered ESME_RTHROTTLED
        self.errors_injected = 0
        self.receipts = 0  # deliver_sm receipts written
        self.inbound_parts = 0  # deliver_sm of mobile-originated messages written (inbound mode)
        self.dlr_resps = 0  # deliver_sm_resp received
        self.enquire_links = 0  # enquire_link received
        self.enquire_link_resps = 0  # answers to our enquire_link
        self.unbinds = 0
        self.drops = 0  # connections dropped on purpose (drop_after)
        self.protocol_errors = 0
        self.window_violations = 0
        self.max_outstanding = 0
        # The most submit_sm received within any one second (a sliding window, as a
        # carrier counting TPS would see them).
        self.max_submits_per_s = 0
        self.open_binds = 0  # connections bound now (from bind_resp OK to unbind or close)
        self.max_open_binds = 0  # the most ever bound at once (a carrier's per-account bind cap)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


# A receipt waiting to be sent: (due, deliver_sm length, body head, body tail).
# The body is head + done date + tail: everything but the done date (the send
# time's, 10 octets) and the sequence number is built when the submit_sm is
# read, and sending writes the pieces into the outgoing batch (no object, no
# copy per receipt).
_Receipt = tuple[float, int, bytes, bytes]
_DONE_DATE_LEN: Final = 10  # YYMMDDhhmm

# per final state: " sub:001 dlvrd:…", " stat:… err:… text:", message_state TLV
_STATE_PARTS: Final[dict[str, tuple[bytes, bytes, bytes]]] = {
    name: (
        b" sub:001 dlvrd:001" if name == "DELIVRD" else b" sub:001 dlvrd:000",
        b" stat:%s err:%s text:" % (name.encode(), err),
        _MESSAGE_STATE_TLV.pack(0x0427, 1, state),
    )
    for name, (state, err) in RECEIPT_STATES.items()
}
# esm_class (receipt), protocol_id, priority_flag, schedule_delivery_time "",
# validity_period "", registered_delivery, replace_if_present_flag, data_coding,
# sm_default_msg_id
_HEAD_TAIL: Final = bytes((_RECEIPT_ESM_CLASS, 0, 0, 0, 0, 0, 0, 0, 0))
# What a receipt needs of a submit_sm body (SMPP 3.4 §4.4.1), in one match:
# service_type, source ton+npi+addr+NUL (group 1), dest ton+npi+addr+NUL (2),
# esm_class, protocol_id, priority_flag, schedule_delivery_time,
# validity_period, registered_delivery (3), replace_if_present, data_coding,
# sm_default_msg_id, sm_length (4), then up to 20 octets from short_message (5:
# the receipt's text:, cut to sm_length).
_SUBMIT_HEAD: Final = re.compile(
    rb"[^\0]*\0(..[^\0]*\0)(..[^\0]*\0)...[^\0]*\0[^\0]*\0(.)...(.)(.{0,20})", re.DOTALL
)


class Simulator:
    """A running simulator (see :func:`start_simulator`)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.stats = SimulatorStats()
        self.port = 0
        self.host = config.host
        self.connections: set[SmscProtocol] = set()
        self._server: asyncio.Server | None = None
        self._stats_task: asyncio.Task[None] | None = None
        self._inbound_task: asyncio.Task[None] | None = None
        self._rng = random.Random(config.seed)
        self._next_id = 1
        self._drops_left = config.drop_limit
        self._receivers: dict[str, list[SmscProtocol]] = {}
        self._rr = 0
        self._orphans: dict[str, deque[_Receipt]] = {}
        # throttling: a one-second window counter
        self._tps_second = 0
        self._tps_count = 0
        # submit_sm of the last second: (arrival, count) per batch, and their sum
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_sum = 0
        states = list(config.dlr_states)
        self._dlr_states = states
        self._dlr_weights = [config.dlr_states[s] for s in states]
        self._single_state = states[0] if len(states) == 1 else ""
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._last_submits = 0
        self._last_receipts = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if self.config.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key or None)
        self._server = await loop.create_server(
            lambda: SmscProtocol(self), self.config.host, self.config.port, reuse_address=True, ssl=tls
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        if self.config.stats_interval_s > 0:
            self._stats_task = loop.create_task(self._stats_loop())
        if self.config.inbound_every_s > 0:
            self._inbound_task = loop.create_task(self._inbound_loop())

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        for task in (self._stats_task, self._inbound_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Simulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats_line(self, interval_s: float = 0.0) -> bytes:
        """One JSON object: every counter, ``ts``, and rates since the previous line."""
        data: dict[str, float] = dict(self.stats.as_dict())
        data["ts"] = int(time.time())
        if interval_s > 0:
            submits, receipts = self.stats.submits, self.stats.receipts
            data["submits_per_s"] = round((submits - self._last_submits) / interval_s)
            data["receipts_per_s"] = round((receipts - self._last_receipts) / interval_s)
            self._last_submits, self._last_receipts = submits, receipts
        return orjson.dumps(data)

    async def _stats_loop(self) -> None:
        interval = self.config.stats_interval_s
        while True:
            await asyncio.sleep(interval)
            sys.stderr.buffer.write(self.stats_line(interval) + b"\n")
            sys.stderr.flush()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds; checked after every batch of PDUs (tests)."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            async with asyncio.timeout(timeout):
                await future
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    def notify(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)

    async def unbind_all(self) -> None:
        """Send unbind on every bound connection (tests: SMSC-initiated unbind)."""
        for conn in list(self.connections):
            conn.send_unbind()

    def enquire_all(self) -> None:
        """Send enquire_link on every bound connection (tests: SMSC-initiated keepalive)."""
        for conn in list(self.connections):
            conn.send_enquire_link()

    # -- inbound mode: mobile-originated messages ---------------------------

    def receivers(self) -> list[SmscProtocol]:
        """Bound receiver / transceiver connections, in bind order."""
        return [c for conns in self._receivers.values() for c in conns]

    def send_inbound(
        self,
        source_addr: str,
        destination_addr: str,
        text: str,
        *,
        encoding: Encoding = "gsm7",
        concat: Concat = "udh8",
        ref: int = 1,
        order: Sequence[int] | None = None,
        skip: Sequence[int] = (),
        spread: bool = False,
    ) -> int:
        """Send ``text`` from a phone (``source_addr``) to ``destination_addr`` as
        deliver_sm parts (:func:`~connectors.mobile_origin.mo_parts`); returns the
        number of PDUs written.

        ``order``: 0-based part indexes in the order to send them (default:
        in sequence); ``skip``: indexes never sent (a part lost on the way);
        ``spread``: part *i* goes on receiver bind *i* mod binds, otherwise all
        on the first. Raises RuntimeError with no receiver bound.
        """
        conns = self.receivers()
        if not conns:
            raise RuntimeError("no receiver bind to send inbound messages on")
        parts = mo_parts(text, encoding=encoding, concat=concat, ref=ref)
        indexes = list(order) if order is not None else list(range(len(parts)))
        sent = 0
        for n, i in enumerate(i for i in indexes if i not in skip):
            part = parts[i]
            pdu = DeliverSm(
                source_addr_ton=1, source_addr_npi=1, source_addr=source_addr,
                dest_addr_ton=0 if len(destination_addr) <= 6 else 1, dest_addr_npi=1,
                destination_addr=destination_addr, esm_class=part.esm_class, data_coding=part.data_coding,
                short_message=part.short_message,
                sar_msg_ref_num=part.sar[0] if part.sar else None,
                sar_total_segments=part.sar[1] if part.sar else None,
                sar_segment_seqnum=part.sar[2] if part.sar else None,
            )
            conn = conns[n % len(conns)] if spread else conns[0]
            if conn.write_pdu(pdu):
                sent += 1
        self.stats.inbound_parts += sent
        return sent

    async def _inbound_loop(self) -> None:
        """``inbound_every_s``: one inbound message per interval on the first receiver bind."""
        cfg = self.config
        ref = 0
        while True:
            await asyncio.sleep(cfg.inbound_every_s)
            if self.receivers():
                ref = (ref + 1) & 0xFF
                self.send_inbound(cfg.inbound_from, cfg.inbound_to, cfg.inbound_text,
                                  encoding=cfg.inbound_encoding, concat=cfg.inbound_concat, ref=ref)

    # -- decisions shared by connections ----------------------------------

    def new_message_id(self) -> bytes:
        n = self._next_id
        self._next_id = n + 1
        return b"%x" % n if self.config.id_format == "hex" else b"%d" % n

    def throttled(self, now: float) -> bool:
        limit = self.config.throttle_tps
        if not limit:
            return False
        second = int(now)
        if second != self._tps_second:
            self._tps_second = second
            self._tps_count = 0
        self._tps_count += 1
        return self._tps_count > limit

    def count_submits(self, now: float, n: int) -> None:
        """``n`` submit_sm arrived at ``now``: keep the sliding one-second maximum."""
        recent = self._recent
        total = self._recent_sum + n
        edge = now - 1.0
        while recent and recent[0][0] <= edge:
            total -= recent.popleft()[1]
        recent.append((now, n))
        self._recent_sum = total
        if total > self.stats.max_submits_per_s:
            self.stats.max_submits_per_s = total

    def pick_state(self) -> str:
        if self._single_state:
            return self._single_state
        return self._rng.choices(self._dlr_states, self._dlr_weights)[0]

    def latency_s(self) -> float:
        cfg = self.config
        mean = cfg.latency_ms / 1000.0
        if cfg.latency_dist == "uniform":
            return self._rng.uniform(0.0, 2 * mean)
        if cfg.latency_dist == "exponential":
            return self._rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        return mean

    def take_drop(self) -> bool:
        if self.config.drop_limit == 0:
            return True
        if self._drops_left > 0:
            self._drops_left -= 1
            return True
        return False

    def register_receiver(self, conn: SmscProtocol) -> None:
        self._receivers.setdefault(conn.system_id, []).append(conn)
        orphans = self._orphans.pop(conn.system_id, None)
        if orphans:
            conn.queue_receipts(orphans)

    def unregister_receiver(self, conn: SmscProtocol) -> None:
        conns = self._receivers.get(conn.system_id)
        if conns and conn in conns:
            conns.remove(conn)
        leftover = conn.take_unsent_receipts()
        if leftover:
            self.route_receipts(conn.system_id, leftover)

    def route_receipts(self, system_id: str, receipts: deque[_Receipt]) -> None:
        """Receipts from a transmitter go to a receiver bind of the same system_id."""
        conns = self._receivers.get(system_id)
        if not conns:
            self._orphans.setdefault(system_id, deque()).extend(receipts)
            return
        self._rr = (self._rr + 1) % len(conns)
        conns[self._rr].queue_receipts(receipts)


class SmscProtocol(asyncio.Protocol):
    """One ESME connection to the simulator."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.cfg = sim.config
        self.stats = sim.stats
        self.session = Session(SMSC, window=1, response_timeout_s=60.0, enquire_link_interval_s=0)
        self.system_id = ""
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._buf = bytearray()
        self._pdus = 0
        self._outstanding = 0  # submits received, resp not yet written
        self.submits = 0  # submit_sm received on this connection
        self._counted_bound = False  # counted in stats.open_binds
        self._can_submit = False
        self._is_receiver = False
        self._receipts: deque[_Receipt] = deque()  # waiting to be sent
        self._dlr_in_flight = 0
        self._dlr_timer: asyncio.TimerHandle | None = None
        self._dlr_soon = False
        self._delayed: list[tuple[float, int, bytes]] = []  # heap of (due, n, resp)
        self._delayed_n = 0
        self._delay_timer: asyncio.TimerHandle | None = None
        self._seq = 0x40000000  # our deliver_sm sequence numbers
        self._paused = False
        self._closing = False  # unbound or out of step: read no more

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.sim.connections.add(self)
        self.stats.connections += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            import socket

            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _uncount_bound(self) -> None:
        if self._counted_bound:
            self._counted_bound = False
            self.stats.open_binds -= 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount_bound()
        self.sim.connections.discard(self)
        self.sim.notify()
        if self._is_receiver:
            self._is_receiver = False
            self.sim.unregister_receiver(self)
        for timer in (self._dlr_timer, self._delay_timer):
            if timer is not None:
                timer.cancel()
        self.transport = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._send_receipts()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- receiving (hot path) ---------------------------------------------

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        end = len(buf)
        off = 0
        out: list[bytes] = []
        receipts: list[_Receipt] = []
        now = self._loop.time()
        sim = self.sim
        cfg = self.cfg
        stats = self.stats
        drop_after = cfg.drop_after
        delayed = cfg.latency_ms > 0
        answered = 0  # immediate responses: they leave with this batch
        submits = stats.submits
        dlr_resps = 0
        date = b""  # receipt dates: read once per batch
        while end - off >= 16:
            length, cid, _status, seq = _HEADER_UNPACK(buf, off)
            if length < 16 or length > 65536:
                self._control(bytes(buf[off:]), out)  # the session nacks and closes
                buf.clear()
                return
            if end - off < length:
                break
            self._pdus += 1
            if cid == _SUBMIT_SM and self._can_submit:
                stats.submits += 1
                self.submits += 1
                self._outstanding += 1
                if cfg.max_window and self._outstanding > cfg.max_window:
                    stats.window_violations += 1
                if self._outstanding > stats.max_outstanding:
                    stats.max_outstanding = self._outstanding
                if sim.throttled(now):
                    stats.throttled += 1
                    resp = _HEADER_PACK(16, _SUBMIT_SM_RESP, ESME_RTHROTTLED, seq)
                elif cfg.error_rate and sim._rng.random() < cfg.error_rate:
                    stats.errors_injected += 1
                    resp = _HEADER_PACK(16, _SUBMIT_SM_RESP, cfg.error_status, seq)
                else:
                    mid = sim.new_message_id()
                    resp = _HEADER_PACK(17 + len(mid), _SUBMIT_SM_RESP, ESME_ROK, seq) + mid + b"\0"
                    if cfg.dlr:
                        if not date:
                            date = _date()
                        receipt = self._parse_for_receipt(
                            buf, off + 16, off + length, mid, now, date
                        )
                        if receipt is not None:
                            if cfg.receipt_before_resp:
                                self._seq = _write_receipts(out, (receipt,), date, self._seq)
                                stats.receipts += 1
                            else:
                                receipts.append(receipt)
                if delayed:
                    self._delay(now, resp)
                else:
                    out.append(resp)
                    answered += 1
            elif cid == _DELIVER_SM_RESP:
                dlr_resps += 1
            else:
                self._control(bytes(buf[off : off + length]), out)
                if self._closing:  # unbound or out of step: nothing more is read
                    buf.clear()
                    return
            off += length
            if drop_after and self._pdus >= drop_after and sim.take_drop():
                stats.drops += 1
                if stats.submits != submits:
                    sim.count_submits(now, stats.submits - submits)
                if out and self.transport is not None:
                    self.transport.write(b"".join(out))  # what was answered so far leaves first
                self.abort()
                return
        if off:
            del buf[:off]
        if stats.submits != submits:
            sim.count_submits(now, stats.submits - submits)
        self._outstanding -= answered
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if receipts:
            self._accept_receipts(receipts)
        if dlr_resps:
            stats.dlr_resps += dlr_resps
            self._dlr_in_flight = max(0, self._dlr_in_flight - dlr_resps)
            if self._receipts:  # the receipt window opened again
                self._schedule_receipts()
        if sim._waiters:
            sim.notify()

    def _parse_for_receipt(
        self, buf: bytearray, pos: int, end: int, mid: bytes, now: float, submit_date: bytes
    ) -> _Receipt | None:
        """Read only what a receipt needs from a submit_sm body (SMPP 3.4 §4.4.1) and
        build the receipt but for its done date and sequence number.

        A body too short or missing a NUL gets no receipt (its resp is still sent).
        """
        match = _SUBMIT_HEAD.match(buf, pos, end)
        if match is None:
            return None
        source, destination, flags, sm_length, text = match.groups()
        registered_delivery = flags[0] & 0x03
        if not registered_delivery:
            return None
        state = self.sim.pick_state()
        if registered_delivery == 2 and state == "DELIVRD":  # §5.2.17: failure only
            return None
        if sm_length[0] < len(text):
            text = text[: sm_length[0]]
        convert = self.cfg.receipt_id_format
        if convert and convert != self.cfg.id_format:
            mid = b"%d" % int(mid, 16) if convert == "dec" else b"%x" % int(mid)
        counts, stat_err, state_tlv = _STATE_PARTS[state]
        # short_message, SMPP 3.4 Appendix B; at most 254 octets (the text: part is cut)
        fixed = 3 + len(mid) + len(counts) + 13 + len(submit_date) + 11 + _DONE_DATE_LEN + len(stat_err)
        if fixed + len(text) > 254:
            text = text[: max(0, 254 - fixed)]
        # the receipt comes from the submit's destination and goes to its source
        head = b"".join(
            (b"\0", destination, source, _HEAD_TAIL, bytes((fixed + len(text),)), b"id:", mid, counts,
             b" submit date:", submit_date, b" done date:")
        )
        tail = b"".join((stat_err, text, _TLV_HEAD.pack(0x001E, len(mid) + 1), mid, b"\0", state_tlv))
        return (now + self.cfg.dlr_delay_ms / 1000.0, 16 + len(head) + _DONE_DATE_LEN + len(tail), head, tail)

    # -- control PDUs through the shared Session --------------------------

    def _control(self, pdu_bytes: bytes, out: list[bytes]) -> None:
        session = self.session
        events = session.receive_data(pdu_bytes)
        for event in events:
            cid = getattr(event, "command_id", None)
            if cid in _BIND_RESP:
                self._on_bind(event, out)
            elif type(event) is Unbound:
                self.stats.unbinds += 1
                self._uncount_bound()
            elif type(event) is ProtocolViolation:
                self.stats.protocol_errors += 1
            elif type(event) is Response and event.command_id == C.ENQUIRE_LINK:
                self.stats.enquire_link_resps += 1
            elif cid == C.DATA_SM:  # §4.7: accepted like a submit_sm, no receipt
                mid = self.sim.new_message_id()
                resp = DataSmResp(sequence_number=event.sequence_number, message_id=mid.decode())
                out.append(session.send(resp, self._loop.time()))
            elif cid in _UNSUPPORTED:  # query_sm, cancel_sm, replace_sm, submit_multi
                out.append(_HEADER_PACK(16, C.GENERIC_NACK, ESME_RINVCMDID, event.sequence_number))
        auto = session.data_to_send()
        if auto:
            if len(auto) == 16 and _HEADER_UNPACK(auto)[1] == C.ENQUIRE_LINK_RESP:
                self.stats.enquire_links += 1
            out.append(auto)
        self._can_submit = session.state in (State.BOUND_TX, State.BOUND_TRX)
        if session.state is State.CLOSED and self.transport is not None:
            self._closing = True
            if out:
                self.transport.write(b"".join(out))
                out.clear()
            self.transport.close()

    def _on_bind(self, pdu: Any, out: list[bytes]) -> None:
        cfg = self.cfg
        resp_cls = _BIND_RESP[pdu.command_id]
        if self.session.state is not State.OPEN:
            status = ESME_RALYBND
        elif cfg.system_id and pdu.system_id != cfg.system_id:
            status = ESME_RINVSYSID
        elif cfg.password and pdu.password != cfg.password:
            status = ESME_RINVPASWD
        else:
            status = ESME_ROK
        resp = resp_cls(
            sequence_number=pdu.sequence_number,
            command_status=status,
            system_id="sendgate-sim" if status == ESME_ROK else "",
        )
        out.append(self.session.send(resp, self._loop.time()))
        if status != ESME_ROK:
            self.stats.bind_failures += 1
            return
        stats = self.stats
        stats.binds += 1
        if not self._counted_bound:
            self._counted_bound = True
            stats.open_binds += 1
            stats.max_open_binds = max(stats.max_open_binds, stats.open_binds)
        self.system_id = pdu.system_id
        if self.session.state in (State.BOUND_RX, State.BOUND_TRX):
            self._is_receiver = True
            self.sim.register_receiver(self)

    def send_unbind(self) -> None:
        if self.transport is not None and self.session.is_bound():
            self.transport.write(self.session.send_unbind(self._loop.time()))
            self._can_submit = False

    def write_pdu(self, pdu: Any) -> bool:
        """Write one PDU of ours (inbound mode) with our next sequence number; False when closed."""
        if self.transport is None or self._closing or not self.session.is_bound():
            return False
        self._seq = self._seq + 1 if self._seq < 0x7FFFFFFF else 0x40000000
        pdu.sequence_number = self._seq
        self.transport.write(encode(pdu))
        return True

    def send_enquire_link(self) -> None:
        if self.transport is not None and self.session.is_bound():
            self.transport.write(self.session.send_enquire_link(self._loop.time()))

    # -- delayed responses -------------------------------------------------

    def _delay(self, now: float, resp: bytes) -> None:
        self._delayed_n += 1
        heapq.heappush(self._delayed, (now + self.sim.latency_s(), self._delayed_n, resp))
        if self._delay_timer is None:
            self._delay_timer = self._loop.call_at(self._delayed[0][0], self._flush_delayed)

    def _flush_delayed(self) -> None:
        self._delay_timer = None
        now = self._loop.time()
        heap = self._delayed
        out: list[bytes] = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        self._outstanding -= len(out)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        if heap:
            self._delay_timer = self._loop.call_at(heap[0][0], self._flush_delayed)

    # -- receipts ----------------------------------------------------------

    def _accept_receipts(self, receipts: list[_Receipt]) -> None:
        if self._is_receiver:
            self.queue_receipts(receipts)
        else:
            self.sim.route_receipts(self.system_id, deque(receipts))

    def queue_receipts(self, receipts: Sequence[_Receipt] | deque[_Receipt]) -> None:
        self._receipts.extend(receipts)
        self._schedule_receipts()

    def take_unsent_receipts(self) -> deque[_Receipt]:
        receipts, self._receipts = self._receipts, deque()
        return receipts

    def _schedule_receipts(self) -> None:
        if not self._receipts or self._dlr_soon:
            return
        due = self._receipts[0][0]
        if due <= self._loop.time():
            if self._dlr_timer is not None:
                self._dlr_timer.cancel()
                self._dlr_timer = None
            self._dlr_soon = True
            self._loop.call_soon(self._send_receipts)
        elif self._dlr_timer is None:
            self._dlr_timer = self._loop.call_at(due, self._send_receipts)

    def _send_receipts(self) -> None:
        """Write every due receipt the receipt window allows, in one write."""
        self._dlr_soon = False
        self._dlr_timer = None
        transport = self.transport
        if transport is None or self._paused or self._closing:
            return
        queue = self._receipts
        room = self.cfg.dlr_window - self._dlr_in_flight
        now = self._loop.time()
        due: list[_Receipt] = []
        while queue and room > 0 and queue[0][0] <= now:
            due.append(queue.popleft())
            room -= 1
        if due:
            out: list[bytes] = []
            self._seq = _write_receipts(out, due, _date(), self._seq)
            self.stats.receipts += len(due)
            self._dlr_in_flight += len(due)
            transport.write(b"".join(out))
        if queue and room > 0:
            self._schedule_receipts()


def _write_receipts(out: list[bytes], receipts: Sequence[_Receipt], done_date: bytes, seq: int) -> int:
    """Append each receipt's deliver_sm to ``out`` (header, body head, done date,
    body tail: joined once with the whole write); returns the last sequence number
    used (ours run from 0x40000000, apart from the ESME's)."""
    append = out.append
    for _due, length, head, tail in receipts:
        seq = seq + 1 if seq < 0x7FFFFFFF else 0x40000000
        append(_HEADER_PACK(length, _DELIVER_SM, 0, seq))
        append(head)
        append(done_date)
        append(tail)
    return seq


_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    """YYMMDDhhmm (receipt text dates), cached per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = time.strftime("%y%m%d%H%M", time.gmtime(now)).encode()
    value: bytes = _date_cache[1]
    return value


async def start_simulator(cfg: SimulatorConfig | None = None) -> Simulator:
    """Start a simulator listening on ``cfg.host:cfg.port``; ``.port`` is the bound port."""
    sim = Simulator(cfg or SimulatorConfig())
    await sim.start()
    return sim


# -- command line -------------------------------------------------------------


def _parse_states(text: str) -> dict[str, float]:
    states: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, weight = part.partition("=")
        states[name.strip().upper()] = float(weight) if weight else 1.0
    return states


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sendgate simulate",
        description="Run a fast SMPP 3.4 SMSC simulator (binds, submit_sm_resp, delivery receipts).",
    )
    d = SimulatorConfig()
    p.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    p.add_argument(
        "--port", type=int, default=2775, help="TCP port; 0 = ephemeral (default %(default)s)"
    )
    p.add_argument("--system-id", default=d.system_id, help="required system_id; empty accepts any")
    p.add_argument("--password", default=d.password, help="required password; empty accepts any")
    p.add_argument(
        "--latency-ms", type=float, default=d.latency_ms, help="submit_sm_resp delay in ms"
    )
    p.add_argument(
        "--latency-dist",
        choices=("fixed", "uniform", "exponential"),
        default=d.latency_dist,
        help="fixed, uniform in 0..2*latency, or exponential with mean latency",
    )
    p.add_argument("--no-dlr", dest="dlr", action="store_false", help="never send receipts")
    p.add_argument("--dlr-delay-ms", type=float, default=d.dlr_delay_ms, help="receipt delay in ms")
    p.add_argument(
        "--dlr-states",
        default="DELIVRD=1",
        help="weighted final states, e.g. DELIVRD=90,UNDELIV=5,EXPIRED=3,REJECTD=2",
    )
    p.add_argument(
        "--dlr-window", type=int, default=d.dlr_window, help="receipts in flight per bind"
    )
    p.add_argument(
        "--id-format", choices=("hex", "dec"), default=d.id_format, help="message id format"
    )
    p.add_argument(
        "--receipt-id-format",
        choices=("", "hex", "dec"),
        default="",
        help="message id format in receipts, when it differs from --id-format",
    )
    p.add_argument(
        "--throttle-tps",
        type=int,
        default=0,
        help="answer ESME_RTHROTTLED above N submit/s; 0 = off",
    )
    p.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="fraction of submits answered with --error-status",
    )
    p.add_argument(
        "--error-status",
        type=lambda s: int(s, 0),
        default=d.error_status,
        help="status for injected errors (e.g. 0x45)",
    )
    p.add_argument(
        "--receipt-before-resp",
        action="store_true",
        help="write each receipt before its submit_sm_resp",
    )
    p.add_argument(
        "--max-window",
        type=int,
        default=0,
        help="count submits beyond this many unanswered as violations",
    )
    p.add_argument(
        "--drop-after",
        type=int,
        default=0,
        help="abort a connection after K PDUs received; 0 = never",
    )
    p.add_argument(
        "--drop-limit", type=int, default=1, help="connections to drop that way; 0 = all"
    )
    p.add_argument(
        "--stats-interval",
        type=float,
        default=0.0,
        help="JSON stats line on stderr every N s; 0 = off",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--tls-cert", default="", help="PEM certificate: listen with TLS (SMPP over TLS)")
    p.add_argument("--tls-key", default="", help="PEM private key of --tls-cert (default: in the cert file)")
    p.add_argument(
        "--inbound-every-s",
        type=float,
        default=0.0,
        help="inbound mode: send a mobile-originated message every N s on the first receiver bind; 0 = off",
    )
    p.add_argument("--inbound-from", default="447700900000", help="inbound mode: the phone's number (default: a fictional one)")
    p.add_argument("--inbound-to", default="1234", help="inbound mode: the short code / number it is sent to")
    p.add_argument("--inbound-text", default="STOP", help="inbound mode: the text (split into parts when long)")
    p.add_argument("--inbound-encoding", choices=("gsm7", "ucs2"), default="gsm7", help="inbound mode: alphabet")
    p.add_argument(
        "--inbound-concat", choices=("udh8", "udh16", "sar"), default="udh8",
        help="inbound mode: how a long text is split (8- or 16-bit UDH reference, or SAR TLVs)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after N seconds; 0 = run until SIGINT/SIGTERM",
    )
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop (default uvloop)",
    )
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        system_id=args.system_id,
        password=args.password,
        latency_ms=args.latency_ms,
        latency_dist=args.latency_dist,
        dlr=args.dlr,
        dlr_delay_ms=args.dlr_delay_ms,
        dlr_states=_parse_states(args.dlr_states),
        dlr_window=args.dlr_window,
        id_format=args.id_format,
        receipt_id_format=args.receipt_id_format,
        throttle_tps=args.throttle_tps,
        error_rate=args.error_rate,
        error_status=args.error_status,
        receipt_before_resp=args.receipt_before_resp,
        max_window=args.max_window,
        drop_after=args.drop_after,
        drop_limit=args.drop_limit,
        stats_interval_s=args.stats_interval,
        seed=args.seed,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        inbound_every_s=args.inbound_every_s,
        inbound_from=args.inbound_from,
        inbound_to=args.inbound_to,
        inbound_text=args.inbound_text,
        inbound_encoding=args.inbound_encoding,
        inbound_concat=args.inbound_concat,
    )


async def _serve(cfg: SimulatorConfig, duration: float) -> Simulator:
    sim = await start_simulator(cfg)
    print(f"listening on {sim.host}:{sim.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if duration > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(duration):
                    await stop.wait()
        else:
            await stop.wait()
    finally:
        await sim.close()
    return sim


def main(argv: Sequence[str] | None = None) -> int:
    """``sendgate simulate`` / ``python -m connectors.simulator``."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, msgspec.ValidationError) as exc:
        print(f"sendgate simulate: {exc}", file=sys.stderr)
        return 2
    if args.loop == "uvloop":
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:
            runner = asyncio.run
    else:
        runner = asyncio.run
    try:
        sim = runner(_serve(cfg, args.duration))
    except OSError as exc:
        print(f"sendgate simulate: cannot listen: {exc}", file=sys.stderr)
        return 1
    sys.stderr.buffer.write(sim.stats_line() + b"\n")
    sys.stderr.flush()
    cpu = os.times()
    print(f"cpu user={cpu.user:.2f}s system={cpu.system:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
