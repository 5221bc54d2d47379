"""SMPP 3.4 session state machine, sans-IO: bytes in, events out, bytes to send.

Why sans-IO: the same object drives the ESME side (our binds to carriers)
and the SMSC side (the simulator, the misbehaving test servers), and it can
be tested by wiring two of them together in memory. It never touches a
socket, the event loop or the clock: whoever drives it passes ``now`` in
(any monotonic clock, in seconds) and moves the bytes.

Rules / Theory of operation
===========================

A session is one TCP connection seen from one side, ``role`` ``"esme"`` or
``"smsc"``. Its ``state`` moves along::

    OPEN ──bind_*_resp(ok)──► BOUND_TX | BOUND_RX | BOUND_TRX
      │                            │ unbind (either side)
      │                            ▼
      │                         UNBOUND ──unbind_resp──► CLOSED
      └──────────────── connection_lost() / fatal error ──► CLOSED

* Requests are tabled: ``_MAY_SEND[state][command_id]`` says which role may
  send that request in that state (SMPP 3.4 §2.3, table 2-1). A request
  received in a state where the peer may not send it is answered with its
  own ``*_resp`` carrying ESME_RINVBNDSTS (§5.1.3); an unknown command_id is
  answered with generic_nack ESME_RINVCMDID (§4.3). Sending an illegal
  request raises :class:`LocalProtocolError` (we broke it).
* Responses are matched, not tabled: a received ``*_resp`` (or generic_nack)
  must answer one of our requests still in flight, looked up by
  sequence_number in ``in_flight`` (responses may come in any order, §2.6).
  An answer for nothing in flight (typically after its timeout) becomes a
  :class:`StrayResponse` event. Sending a response is legal in every state
  before CLOSED. A non-zero command_status in a response is data, reported in
  the :class:`Response` event, never an exception.
* The state changes on bind responses with status 0 (either direction), on
  unbind (either direction: OPEN/BOUND_* → UNBOUND) and on unbind_resp
  (UNBOUND → CLOSED). A failed bind response leaves the session OPEN; the
  driver closes the connection.
* Sequence numbers of our requests run 1..0x7FFFFFFF and wrap to 1 (§3.2,
  "sequence_number"); a number still in flight is skipped.
* Window: at most ``window`` message requests (submit_sm, data_sm,
  deliver_sm, …; not enquire_link, bind or unbind) in flight; ``can_submit()``
  says whether one more may be sent, ``send`` refuses beyond it.
* Time: ``sweep(now)`` is called periodically by the driver (one call per
  session, not a timer per PDU). It reports each request whose response is
  older than ``response_timeout_s`` as a :class:`ResponseTimeout` (removing
  it from the window), and queues an enquire_link when nothing was received
  for ``enquire_link_interval_s`` and none is in flight (§4.11). A timed out
  enquire_link means the link is dead; the driver closes it.
* Automatic answers — enquire_link_resp, unbind_resp, generic_nack, the
  RINVBNDSTS replies — are queued in an outbox and taken with
  ``data_to_send()``; ``send`` returns its bytes directly. The driver writes
  both (order between them does not matter in SMPP).
* Claimed deliver_sm: a session may be given a ``claim_deliver`` hook, a
  pure function of a deliver_sm body that returns a value for the bodies it
  reads (the engine's is :func:`dlr.receipt_scan.scan_receipt`, for receipts
  in the common layout) and ``None`` for the rest. A deliver_sm the peer may
  send in this state whose body the hook claims is not decoded: its
  ``(sequence_number, value)`` joins a :class:`ClaimedDelivers` event, one
  per run of consecutive claimed PDUs, in order with the other events. It
  still needs its deliver_sm_resp. Everything else about it (the state
  table, the answer) is as for any deliver_sm; a body the hook does not
  claim is decoded and reported as a ``DeliverSm`` as usual, and so is one
  whose hook call raised (counted in ``claim_errors``: a bug in the hook
  must not cost the connection).
* Accepted submit_sm_resp in runs (``submit_runs=True``, the engine's binds):
  a submit_sm_resp with command_status 0 and a plain ``message_id\0`` body
  that answers a submit_sm in flight is not made a ``SubmitSmResp`` and a
  :class:`Response`: its ``(context, message_id)`` joins a
  :class:`SubmitResponses` event, one per run of consecutive ones, in order
  with the other events (the in-flight entry and the window as for a
  ``Response``). Every other response — an error or throttle status, a body
  with TLVs, an answer for nothing in flight — is a ``Response`` (or
  ``StrayResponse``, ``ProtocolViolation``) as without the flag.
* A submit_sm may be sent as its encoded body (``bytes``, from
  :class:`connectors.codec.PlainSubmitTemplate`): ``send`` and
  ``send_submits`` number it and pack its header only.
* A bad command_length loses the framing: generic_nack ESME_RINVCMDLEN is
  queued, a fatal :class:`ProtocolViolation` is returned and the session is
  CLOSED. A malformed body of a known request is answered with generic_nack
  ESME_RINVMSGLEN and the session goes on (the framing is intact).
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from .codec import HEADER, decode_body, encode, encode_submit_sm
from .constants import CommandId
from .errors import LocalProtocolError, RemoteProtocolError
from .framer import Frame, Framer
from .pdu import SubmitSm, SubmitSmResp
from .status import (
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVMSGLEN,
    ESME_ROK,
)

__all__ = [
    "ESME",
    "HEADER",
    "SMSC",
    "ClaimedDelivers",
    "Event",
    "ProtocolViolation",
    "Response",
    "ResponseTimeout",
    "Session",
    "State",
    "StrayResponse",
    "SubmitResponses",
    "Unbound",
]

ESME: Final = "esme"
SMSC: Final = "smsc"
_BOTH: Final = frozenset((ESME, SMSC))
_E: Final = frozenset((ESME,))
_S: Final = frozenset((SMSC,))

RESP_BIT: Final = 0x80000000
MAX_SEQUENCE: Final = 0x7FFFFFFF


class State(enum.Enum):
    """Session states (SMPP 3.4 §2.2); see the module docstring for the transitions."""

    OPEN = "OPEN"
    BOUND_TX = "BOUND_TX"
    BOUND_RX = "BOUND_RX"
    BOUND_TRX = "BOUND_TRX"
    UNBOUND = "UNBOUND"
    CLOSED = "CLOSED"


# The states the per-PDU paths test, as module constants: on Python 3.11 an
# enum member read through its class (``State.CLOSED``) costs ~150 ns, a
# global ~20.
_OPEN: Final[State] = State.OPEN
_CLOSED: Final[State] = State.CLOSED
_BOUND: Final[frozenset[State]] = frozenset((State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX))

C = CommandId
_DELIVER_SM: Final = C.DELIVER_SM
_SUBMIT_SM: Final = C.SUBMIT_SM
_SUBMIT_SM_RESP: Final = C.SUBMIT_SM_RESP

# Which role may send which request in which state (SMPP 3.4 §2.3 table 2-1).
_COMMON: Final[dict[int, frozenset[str]]] = {C.ENQUIRE_LINK: _BOTH, C.UNBIND: _BOTH}
_TX: Final[dict[int, frozenset[str]]] = {
    C.SUBMIT_SM: _E,
    C.SUBMIT_MULTI: _E,
    C.DATA_SM: _E,
    C.QUERY_SM: _E,
    C.CANCEL_SM: _E,
    C.REPLACE_SM: _E,
}
_RX: Final[dict[int, frozenset[str]]] = {
    C.DELIVER_SM: _S,
    C.DATA_SM: _S,
    C.ALERT_NOTIFICATION: _S,
}
_MAY_SEND: Final[dict[State, dict[int, frozenset[str]]]] = {
    State.OPEN: {
        C.BIND_TRANSMITTER: _E,
        C.BIND_RECEIVER: _E,
        C.BIND_TRANSCEIVER: _E,
        C.OUTBIND: _S,
        C.ENQUIRE_LINK: _BOTH,
    },
    State.BOUND_TX: {**_COMMON, **_TX},
    State.BOUND_RX: {**_COMMON, **_RX},
    State.BOUND_TRX: {**_COMMON, **_TX, **_RX, C.DATA_SM: _BOTH},
    State.UNBOUND: {C.UNBIND: _BOTH},  # crossing unbinds
    State.CLOSED: {},
}

# Successful responses that move the state (either direction).
_BIND_RESULT: Final[dict[int, State]] = {
    C.BIND_TRANSMITTER_RESP: State.BOUND_TX,
    C.BIND_RECEIVER_RESP: State.BOUND_RX,
    C.BIND_TRANSCEIVER_RESP: State.BOUND_TRX,
}

# Requests that take a slot of the window.
WINDOWED: Final[frozenset[int]] = frozenset(
    (
        C.SUBMIT_SM,
        C.SUBMIT_MULTI,
        C.DATA_SM,
        C.QUERY_SM,
        C.CANCEL_SM,
        C.REPLACE_SM,
        C.DELIVER_SM,
        C.ALERT_NOTIFICATION,
    )
)

# Requests that never get a response (§4.1.7 outbind, §4.12 alert_notification).
_NO_RESPONSE: Final[frozenset[int]] = frozenset((C.OUTBIND, C.ALERT_NOTIFICATION))

KNOWN_REQUESTS: Final[frozenset[int]] = frozenset(
    cid for table in _MAY_SEND.values() for cid in table
)


# A response whose body is an empty message_id (one NUL): deliver_sm_resp and
# data_sm_resp, SMPP 3.4 §4.6.2 / §4.7.2. The "x" pad byte is that NUL.
_EMPTY_RESPONSE: Final = struct.Struct(">IIIIx")
_HEADER_PACK: Final = HEADER.pack
_EMPTY_BODY_RESPONSES: Final = frozenset({C.DELIVER_SM_RESP, C.DATA_SM_RESP})
# From this many responses on, send_empty_responses writes their sequence numbers
# into copies of one response instead of packing each (the same octets).
_BULK_MIN: Final = 8


def header_only(command_id: int, command_status: int, sequence_number: int) -> bytes:
    """Encode a PDU that has no body (enquire_link, unbind, generic_nack, error responses)."""
    return HEADER.pack(16, command_id, command_status, sequence_number)


class Event:
    """Base of the events the session returns besides decoded PDUs."""

    __slots__ = ()


class Response(Event):
    """A response (or generic_nack) answering one of our requests."""

    __slots__ = ("command_id", "context", "pdu", "sent_at")

    def __init__(self, pdu: Any, command_id: int, context: object, sent_at: float) -> None:
        self.pdu = pdu  # the decoded *_resp or GenericNack
        self.command_id = command_id  # of our request
        self.context = context  # what the caller passed to send()
        self.sent_at = sent_at

    def __repr__(self) -> str:
        return f"Response({self.pdu!r}, command_id={self.command_id:#x})"


class StrayResponse(Event):
    """A response for nothing in flight (e.g. it came after its timeout)."""

    __slots__ = ("pdu",)

    def __init__(self, pdu: Any) -> None:
        self.pdu = pdu

    def __repr__(self) -> str:
        return f"StrayResponse({self.pdu!r})"


class ResponseTimeout(Event):
    """No response within ``response_timeout_s``; the request left ``in_flight``."""

    __slots__ = ("command_id", "context", "sent_at", "sequence_number")

    def __init__(
        self, sequence_number: int, command_id: int, context: object, sent_at: float
    ) -> None:
        self.sequence_number = sequence_number
        self.command_id = command_id
        self.context = context
        self.sent_at = sent_at

    def __repr__(self) -> str:
        return f"ResponseTimeout(seq={self.sequence_number}, command_id={self.command_id:#x})"


class ProtocolViolation(Event):
    """The peer broke the protocol; we answered it. ``fatal``: the connection must close."""

    __slots__ = ("command_id", "fatal", "reason", "sequence_number")

    def __init__(self, reason: str, command_id: int, sequence_number: int, fatal: bool) -> None:
        self.reason = reason
        self.command_id = command_id
        self.sequence_number = sequence_number
        self.fatal = fatal

    def __repr__(self) -> str:
        return f"ProtocolViolation({self.reason!r}, fatal={self.fatal})"


class ClaimedDelivers(Event):
    """A run of consecutive deliver_sm whose bodies the ``claim_deliver`` hook read.

    ``items``: ``(sequence_number, value)`` per PDU, in arrival order; each
    still needs its deliver_sm_resp.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[int, Any]]) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"ClaimedDelivers({len(self.items)})"


class SubmitResponses(Event):
    """A run of consecutive accepted submit_sm_resp (sessions made with
    ``submit_runs=True``): each one with command_status 0 and a plain
    ``message_id\0`` body, answering a submit_sm in flight.

    ``items``: ``(context, message_id)`` per response, in arrival order; the
    requests left ``in_flight`` and the window as for a :class:`Response`.
    """

    __slots__ = ("items",)

    def __init__(self, items: list[tuple[Any, str]]) -> None:
        self.items = items

    def __repr__(self) -> str:
        return f"SubmitResponses({len(self.items)})"


class Unbound(Event):
    """The peer sent unbind; unbind_resp is queued and the session is CLOSED."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Unbound()"


InFlight = tuple[int, float, object]  # (command_id, sent_at, context)


class Session:
    """One side of one SMPP connection. See the module docstring for the rules."""

    __slots__ = (
        "_claim_deliver",
        "_enquire_seq",
        "_framer",
        "_may_send",
        "_next_seq",
        "_outbox",
        "_peer_may_send",
        "_rx_seen",
        "claim_errors",
        "enquire_link_interval_s",
        "in_flight",
        "last_rx",
        "response_timeout_s",
        "role",
        "state",
        "submit_runs",
        "window",
        "windowed",
    )

    def __init__(
        self,
        role: str = ESME,
        window: int = 10,
        response_timeout_s: float = 30.0,
        enquire_link_interval_s: float = 30.0,
        *,
        max_command_length: int = 65536,
        now: float = 0.0,
        claim_deliver: Callable[[bytes], Any] | None = None,
        submit_runs: bool = False,
    ) -> None:
        if role not in _BOTH:
            raise ValueError(f"role must be {ESME!r} or {SMSC!r}, not {role!r}")
        if window < 1:
            raise ValueError("window must be >= 1")
        self.role = role
        self.window = window
        self.response_timeout_s = response_timeout_s
        self.enquire_link_interval_s = enquire_link_interval_s
        self.state = State.OPEN
        self.in_flight: dict[int, InFlight] = {}
        self.windowed = 0  # message requests in flight
        self.last_rx = now  # time of the last sweep that saw received data
        self._rx_seen = False
        self._next_seq = 1
        self._enquire_seq = 0
        self._outbox: list[bytes] = []
        self._framer = Framer(max_command_length, plain=True)  # frames as plain tuples
        self._may_send: frozenset[int] = frozenset()
        self._peer_may_send: frozenset[int] = frozenset()
        self._claim_deliver = claim_deliver
        self.claim_errors = 0  # calls of claim_deliver that raised (their PDU was decoded instead)
        self.submit_runs = submit_runs  # accepted submit_sm_resp as SubmitResponses runs
        self._set_state(State.OPEN)

    # -- state -------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        self.state = state
        peer = SMSC if self.role == ESME else ESME
        table = _MAY_SEND[state]
        self._may_send = frozenset(c for c, who in table.items() if self.role in who)
        self._peer_may_send = frozenset(c for c, who in table.items() if peer in who)

    def is_closed(self) -> bool:
        return self.state is _CLOSED

    def is_bound(self) -> bool:
        return self.state in _BOUND

    def can_submit(self) -> bool:
        """One more message request fits the window and the state allows submit_sm/deliver_sm."""
        return self.windowed < self.window and (
            C.SUBMIT_SM in self._may_send or C.DELIVER_SM in self._may_send
        )

    def free_window(self) -> int:
        return self.window - self.windowed if self.can_submit() else 0

    # -- sending -----------------------------------------------------------

    def next_sequence_number(self) -> int:
        seq = self._next_seq
        in_flight = self.in_flight
        while seq in in_flight:  # only after a full wrap with a stuck request
            seq = seq + 1 if seq < MAX_SEQUENCE else 1
        self._next_seq = seq + 1 if seq < MAX_SEQUENCE else 1
        return seq

    def send(self, pdu: Any, now: float, context: object = None) -> bytes:
        """Encode ``pdu`` for the wire.

        Requests get the next sequence_number (written into ``pdu``) and enter
        ``in_flight`` with ``context``; responses keep the sequence_number the
        caller set (the request's). Raises :class:`LocalProtocolError` if the
        state or the window does not allow it.

        ``pdu`` may also be a submit_sm's body as ``bytes`` (what
        :class:`connectors.codec.PlainSubmitTemplate` makes: everything after the
        header): it is sent as that submit_sm, with a header numbered as above.
        """
        if type(pdu) is bytes:  # a submit_sm body (PlainSubmitTemplate.body)
            return self._send_submit_body(pdu, now, context)
        cid: int = pdu.command_id
        if cid & RESP_BIT:
            if self.state is _CLOSED:
                raise LocalProtocolError("session is closed")
            data = encode(pdu)
            if pdu.command_status == ESME_ROK:
                new_state = _BIND_RESULT.get(cid)
                if new_state is not None and self.state is _OPEN:
                    self._set_state(new_state)
            return data
        if cid not in self._may_send:
            raise LocalProtocolError(
                f"{self.role} may not send command_id {cid:#x} in state {self.state.name}"
            )
        windowed = cid in WINDOWED
        if windowed and self.windowed >= self.window:
            raise LocalProtocolError(f"window of {self.window} is full")
        seq = self.next_sequence_number()
        pdu.sequence_number = seq
        data = encode(pdu)
        if cid not in _NO_RESPONSE:
            self.in_flight[seq] = (cid, now, context)
            if windowed:
                self.windowed += 1
        if cid == C.UNBIND:
            self._set_state(State.UNBOUND)
        return data

    def _send_submit_body(self, body: bytes, now: float, context: object) -> bytes:
        """:meth:`send` of a submit_sm given as its encoded body: the same checks,
        numbering and in-flight entry as for the ``SubmitSm`` it encodes."""
        if _SUBMIT_SM not in self._may_send:
            raise LocalProtocolError(
                f"{self.role} may not send command_id {_SUBMIT_SM:#x} in state {self.state.name}"
            )
        if self.windowed >= self.window:
            raise LocalProtocolError(f"window of {self.window} is full")
        seq = self.next_sequence_number()
        self.in_flight[seq] = (_SUBMIT_SM, now, context)
        self.windowed += 1
        return _HEADER_PACK(16 + len(body), _SUBMIT_SM, ESME_ROK, seq) + body

    def send_submits(self, queue: deque[Any], n: int, now: float) -> list[bytes]:
        """:meth:`send` of ``n`` items popped off the left of ``queue``, each item
        ``(pdu, ...)`` the request's context; the encoded PDUs, in order.

        The same checks, numbering and results as ``n`` calls of :meth:`send`
        (an item whose PDU is not a submit_sm goes through :meth:`send`), with
        the state checked once for the batch and no call per PDU but its encoding
        (the pool's write path: ~a window of submit_sm per call). A ``bytes``
        PDU is a submit_sm body (see :meth:`send`): only its header is packed.
        """
        popleft = queue.popleft
        out: list[bytes] = []
        append = out.append
        if _SUBMIT_SM not in self._may_send:  # send() raises on the first submit_sm
            for _ in range(n):
                item = popleft()
                append(self.send(item[0], now, item))
            return out
        in_flight = self.in_flight
        window = self.window
        pack = _HEADER_PACK
        for _ in range(n):
            item = popleft()
            pdu = item[0]
            kind = type(pdu)
            if kind is not bytes and kind is not SubmitSm:
                append(self.send(pdu, now, item))
                continue
            if self.windowed >= window:
                raise LocalProtocolError(f"window of {window} is full")
            seq = self._next_seq
            while seq in in_flight:  # only after a full wrap with a stuck request
                seq = seq + 1 if seq < MAX_SEQUENCE else 1
            self._next_seq = seq + 1 if seq < MAX_SEQUENCE else 1
            if kind is bytes:  # a submit_sm body (PlainSubmitTemplate.body): the header only
                append(pack(16 + len(pdu), _SUBMIT_SM, ESME_ROK, seq) + pdu)
            else:
                pdu.sequence_number = seq
                append(encode_submit_sm(pdu))
            in_flight[seq] = (_SUBMIT_SM, now, item)
            self.windowed += 1
        return out

    def send_empty_responses(self, command_id: int, command_status: int, sequence_numbers: Iterable[int]) -> bytes:
        """deliver_sm_resp / data_sm_resp (an empty message_id, SMPP 3.4 §4.6.2,
        §4.7.2) to several requests, in one buffer.

        The answers to the SMSC's deliver_sm: the receipt worker answers a
        whole stored batch at once, so the state and ``command_id`` are checked
        once and each response is one precompiled pack (no Struct built and
        encoded per receipt); from ``_BULK_MIN`` responses on, copies of one
        packed response get the sequence numbers written in by four slice
        assignments (no Python step per response). Bind responses must go
        through :meth:`send` (they move the state).
        """
        if self.state is _CLOSED:
            raise LocalProtocolError("session is closed")
        if command_id not in _EMPTY_BODY_RESPONSES:
            raise LocalProtocolError(f"send_empty_responses is for deliver_sm_resp/data_sm_resp, not {command_id:#x}")
        seqs = sequence_numbers if type(sequence_numbers) is list else list(sequence_numbers)
        n = len(seqs)
        if n < _BULK_MIN:
            pack = _EMPTY_RESPONSE.pack
            return b"".join([pack(17, command_id, command_status, seq) for seq in seqs])
        # n copies of one response, then the n sequence numbers (one big-endian pack)
        # put in their place octet by octet: four strided slice assignments, in C.
        out = bytearray(_EMPTY_RESPONSE.pack(17, command_id, command_status, 0) * n)
        numbers = struct.pack(f">{n}I", *seqs)
        out[12::17] = numbers[0::4]
        out[13::17] = numbers[1::4]
        out[14::17] = numbers[2::4]
        out[15::17] = numbers[3::4]
        return bytes(out)

    def send_enquire_link(self, now: float) -> bytes:
        """enquire_link (header only), tracked so that its timeout means a dead link."""
        if C.ENQUIRE_LINK not in self._may_send:
            raise LocalProtocolError(f"no enquire_link in state {self.state.name}")
        seq = self.next_sequence_number()
        self.in_flight[seq] = (C.ENQUIRE_LINK, now, None)
        self._enquire_seq = seq
        return header_only(C.ENQUIRE_LINK, ESME_ROK, seq)

    def send_unbind(self, now: float) -> bytes:
        """unbind (header only); the session goes UNBOUND until unbind_resp."""
        if C.UNBIND not in self._may_send:
            raise LocalProtocolError(f"no unbind in state {self.state.name}")
        seq = self.next_sequence_number()
        self.in_flight[seq] = (C.UNBIND, now, None)
        self._set_state(State.UNBOUND)
        return header_only(C.UNBIND, ESME_ROK, seq)

    def data_to_send(self) -> bytes:
        """Automatic answers queued by receive_data/sweep (empty if none)."""
        if not self._outbox:
            return b""
        data = b"".join(self._outbox)
        self._outbox.clear()
        return data

    # -- receiving ---------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Any]:
        """Feed received bytes; returns decoded PDUs (requests) and events, in order."""
        if self.state is _CLOSED:
            return []
        try:
            frames = self._framer.feed(data)
        except RemoteProtocolError as exc:
            return self._fatal_framing(exc)
        events: list[Any] = []
        if frames:
            self._rx_seen = True
        claim = self._claim_deliver
        run: ClaimedDelivers | None = None  # the latest run
        resps: SubmitResponses | None = None  # the latest run of accepted submit_sm_resp
        runs = self.submit_runs
        in_flight = self.in_flight
        for frame in frames:
            # One unpacking, not an attribute read (a descriptor call) per field.
            cid, status, seq, body = frame
            if cid == _SUBMIT_SM_RESP:
                # The commonest frame: _receive_response's result for a
                # "message_id\0" body answering a submit_sm in flight, inline.
                entry = in_flight.get(seq)
                if entry is not None and entry[0] == _SUBMIT_SM and type(body) is bytes:
                    message_id, nul, rest = body.partition(b"\0")
                    if nul and not rest:
                        del in_flight[seq]
                        self.windowed -= 1
                        if runs and not status:  # accepted: joins the run
                            if resps is None or events[-1] is not resps:
                                resps = SubmitResponses([])
                                events.append(resps)
                            resps.items.append((entry[2], message_id.decode("latin-1")))
                            continue
                        resp = SubmitSmResp(seq, status, (), message_id.decode("latin-1"))
                        events.append(Response(resp, _SUBMIT_SM, entry[2], entry[1]))
                        continue  # a submit_sm_resp changes no state
                self._receive_response(frame, events)
            elif cid & RESP_BIT:
                self._receive_response(frame, events)
            elif cid == _DELIVER_SM and claim is not None and cid in self._peer_may_send:
                try:
                    value = claim(body)
                except Exception:  # a failing hook claims nothing: the general path decides
                    self.claim_errors += 1
                    value = None
                if value is None:
                    self._receive_request(frame, events)
                else:
                    if run is None or events[-1] is not run:  # a new run
                        run = ClaimedDelivers([])
                        events.append(run)
                    run.items.append((seq, value))
                    continue  # claiming changes no state
            else:
                self._receive_request(frame, events)
            if self.state is _CLOSED:
                return events
        if self._framer.failed:  # frames before a bad header were returned first
            try:
                self._framer.feed(b"")
            except RemoteProtocolError as exc:
                events.extend(self._fatal_framing(exc))
        return events

    def _fatal_framing(self, exc: RemoteProtocolError) -> list[Any]:
        status = exc.command_status or ESME_RINVCMDLEN
        seq = exc.sequence_number or 0
        self._outbox.append(header_only(C.GENERIC_NACK, status, seq))
        self._set_state(State.CLOSED)
        return [ProtocolViolation(str(exc), exc.command_id or 0, seq, fatal=True)]

    def _receive_response(self, frame: Frame, events: list[Any]) -> None:
        cid, status, seq, body = frame  # (a plain tuple: the session's framer)
        entry = self.in_flight.pop(seq, None)
        try:
            pdu = decode_body(cid, status, seq, body)
        except RemoteProtocolError as exc:
            if entry is not None:
                self.in_flight[seq] = entry  # let it time out
            events.append(ProtocolViolation(str(exc), cid, seq, fatal=False))
            return
        if entry is None or (cid != entry[0] | RESP_BIT and cid != C.GENERIC_NACK):
            if entry is not None:
                self.in_flight[seq] = entry
            events.append(StrayResponse(pdu))
            return
        req = entry[0]
        if req in WINDOWED:
            self.windowed -= 1
        elif req == C.ENQUIRE_LINK:
            self._enquire_seq = 0
        elif status == ESME_ROK:
            if req == C.UNBIND:
                self._set_state(State.CLOSED)
            elif self.state is _OPEN:
                new_state = _BIND_RESULT.get(cid)
                if new_state is not None:
                    self._set_state(new_state)
        elif req == C.UNBIND:
            self._set_state(State.CLOSED)  # a refused unbind still ends the session
        events.append(Response(pdu, req, entry[2], entry[1]))

    def _receive_request(self, frame: Frame, events: list[Any]) -> None:
        cid, status, seq, body = frame  # (a plain tuple: the session's framer)
        if cid not in self._peer_may_send:
            if cid not in KNOWN_REQUESTS:
                self._outbox.append(header_only(C.GENERIC_NACK, ESME_RINVCMDID, seq))
                events.append(ProtocolViolation("unknown command_id", cid, seq, fatal=False))
            elif cid not in _NO_RESPONSE:
                self._outbox.append(header_only(cid | RESP_BIT, ESME_RINVBNDSTS, seq))
                events.append(
                    ProtocolViolation(
                        f"command_id {cid:#x} not allowed in {self.state.name}",
                        cid,
                        seq,
                        fatal=False,
                    )
                )
            return
        if cid == C.ENQUIRE_LINK:  # §4.11: answer at once, nothing to report
            self._outbox.append(header_only(C.ENQUIRE_LINK_RESP, ESME_ROK, seq))
            return
        if cid == C.UNBIND:  # §4.2: answer and end the session
            self._outbox.append(header_only(C.UNBIND_RESP, ESME_ROK, seq))
            self._set_state(State.CLOSED)
            events.append(Unbound())
            return
        try:
            pdu = decode_body(cid, status, seq, body)
        except RemoteProtocolError as exc:
            status = exc.command_status or ESME_RINVMSGLEN
            self._outbox.append(header_only(C.GENERIC_NACK, status, seq))
            events.append(ProtocolViolation(str(exc), cid, seq, fatal=False))
            return
        events.append(pdu)

    # -- time --------------------------------------------------------------

    def sweep(self, now: float) -> list[ResponseTimeout]:
        """Time out old requests and queue an enquire_link when the link is quiet."""
        if self._rx_seen:
            self._rx_seen = False
            self.last_rx = now
        events: list[ResponseTimeout] = []
        in_flight = self.in_flight
        if in_flight:
            deadline = now - self.response_timeout_s
            expired: list[int] = []
            for seq, entry in in_flight.items():  # insertion order == send order
                if entry[1] > deadline:
                    break
                expired.append(seq)
            for seq in expired:
                cid, sent_at, context = in_flight.pop(seq)
                if cid in WINDOWED:
                    self.windowed -= 1
                elif cid == C.ENQUIRE_LINK:
                    self._enquire_seq = 0
                events.append(ResponseTimeout(seq, cid, context, sent_at))
        if (
            self.enquire_link_interval_s > 0
            and not self._enquire_seq
            and now - self.last_rx >= self.enquire_link_interval_s
            and C.ENQUIRE_LINK in self._may_send
        ):
            self._outbox.append(self.send_enquire_link(now))
            self.last_rx = now  # next one an interval later unless this times out
        return events

    def connection_lost(self) -> list[tuple[int, InFlight]]:
        """The connection is gone: CLOSED; returns every request left unanswered."""
        self._set_state(State.CLOSED)
        lost = list(self.in_flight.items())
        self.in_flight.clear()
        self.windowed = 0
        self._enquire_seq = 0
        self._outbox.clear()
        return lost
