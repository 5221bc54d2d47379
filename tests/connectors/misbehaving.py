"""A zoo of misbehaving SMSCs, and a TCP proxy that cuts the link mid-window.

After jasmin's ``tests/protocols/smpp/smsc_simulator.py`` and asyncpg's
``_testbase/fuzzer.py``. Each server is real TCP on 127.0.0.1 with an
ephemeral port; it uses the SMSC side of our Session for binds, so only the
behaviour under test is odd.

Behaviours:

``black_hole``          accepts the connection, never answers anything
``no_response``         binds, then never answers submit_sm
``throttle``            answers the first ``count`` submit_sm with ESME_RTHROTTLED, then OK
``generic_nack``        answers every submit_sm with generic_nack (ESME_RSYSERR)
``unbind_on_submit``    answers the server's first submit_sm with an unbind of its own
``bad_command_length``  answers the first submit_sm with a header whose command_length is 4
``garbage``             answers the first submit_sm with random bytes
``slow_response``       answers each submit_sm after ``delay_s``
``mute``                binds, then answers nothing at all (enquire_link included)
``bind_syserr``         refuses every bind with ESME_RSYSERR (not a credentials error)
``stall``               binds, then stops reading until ``resume()`` (TCP back-pressure)
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Callable
from typing import Any, cast

from connectors.constants import CommandId
from connectors.pdu import BindReceiverResp, BindTransceiverResp, BindTransmitterResp
from connectors.session import SMSC, Session

C = CommandId
HEADER = struct.Struct(">IIII")
BEHAVIOURS = (
    "black_hole",
    "no_response",
    "throttle",
    "generic_nack",
    "unbind_on_submit",
    "bad_command_length",
    "garbage",
    "slow_response",
    "mute",
    "bind_syserr",
    "stall",
)
_BIND_RESP: dict[int, Any] = {
    C.BIND_TRANSMITTER: BindTransmitterResp,
    C.BIND_RECEIVER: BindReceiverResp,
    C.BIND_TRANSCEIVER: BindTransceiverResp,
}


class _Conn(asyncio.Protocol):
    def __init__(self, server: MisbehavingSmsc) -> None:
        self.server = server
        self.session = Session(SMSC, window=1, enquire_link_interval_s=0)
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections += 1
        self.server.live.add(self)
        self.server.notify()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.live.discard(self)
        self.transport = None
        self.server.notify()

    def data_received(self, data: bytes) -> None:
        server = self.server
        if server.behaviour == "black_hole":
            server.bytes_swallowed += len(data)
            server.notify()
            return
        if server.behaviour == "mute" and self.session.is_bound():
            server.bytes_swallowed += len(data)
            server.notify()
            return
        self.buf += data
        while len(self.buf) >= 16 and self.transport is not None:
            length, cid, _, seq = HEADER.unpack_from(self.buf)
            if len(self.buf) < length or length < 16:
                break
            pdu_bytes = bytes(self.buf[:length])
            del self.buf[:length]
            if cid == C.SUBMIT_SM and self.session.is_bound():
                server.submits += 1
                self.on_submit(seq)
            else:
                self.control(pdu_bytes)
        server.notify()

    def control(self, pdu_bytes: bytes) -> None:
        assert self.transport is not None
        for event in self.session.receive_data(pdu_bytes):
            resp_cls = _BIND_RESP.get(getattr(event, "command_id", 0))
            if resp_cls is not None:
                self.server.binds += 1
                status = 0x08 if self.server.behaviour == "bind_syserr" else 0
                resp = resp_cls(
                    sequence_number=event.sequence_number, command_status=status, system_id="zoo"
                )
                self.transport.write(self.session.send(resp, 0.0))
                if self.server.behaviour == "stall" and not self.server.resumed:
                    self.transport.pause_reading()
        auto = self.session.data_to_send()
        if auto:
            self.transport.write(auto)

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def on_submit(self, seq: int) -> None:
        server = self.server
        behaviour = server.behaviour
        ok = _submit_resp(seq, 0, b"%d" % server.submits)
        if behaviour == "no_response":
            return
        if behaviour == "throttle":
            if server.throttled < server.count:
                server.throttled += 1
                self.write(_submit_resp(seq, 0x58, b""))
            else:
                self.write(ok)
        elif behaviour == "generic_nack":
            self.write(HEADER.pack(16, C.GENERIC_NACK, 0x08, seq))
        elif behaviour == "slow_response":
            asyncio.get_running_loop().call_later(server.delay_s, self.write, ok)
        elif server.misbehaved:
            self.write(ok)
        else:
            server.misbehaved = True
            if behaviour == "unbind_on_submit":
                self.write(self.session.send_unbind(0.0))
            elif behaviour == "bad_command_length":
                self.write(HEADER.pack(4, C.SUBMIT_SM_RESP, 0, seq))
            elif behaviour == "garbage":
                self.write(random.Random(7).randbytes(64))
            else:
                self.write(ok)


def _submit_resp(seq: int, status: int, message_id: bytes) -> bytes:
    body = message_id + b"\0" if status == 0 else b""
    return HEADER.pack(16 + len(body), C.SUBMIT_SM_RESP, status, seq) + body


class MisbehavingSmsc:
    """``async with MisbehavingSmsc("throttle", count=3) as smsc: smsc.port``."""

    def __init__(self, behaviour: str, *, count: int = 1, delay_s: float = 0.2) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(behaviour)
        self.behaviour = behaviour
        self.count = count
        self.delay_s = delay_s
        self.port = 0
        self.connections = 0
        self.binds = 0
        self.submits = 0
        self.throttled = 0
        self.bytes_swallowed = 0
        self.misbehaved = False  # the one-shot behaviours strike once per server
        self.resumed = False
        self.live: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    async def __aenter__(self) -> MisbehavingSmsc:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self.live):
            if conn.transport is not None:
                conn.transport.abort()
        await self._server.wait_closed()

    def resume(self) -> None:
        """``stall``: start reading again."""
        self.resumed = True
        for conn in self.live:
            if conn.transport is not None:
                conn.transport.resume_reading()

    def notify(self) -> None:
        for predicate, future in self._waiters:
            if not future.done() and predicate():
                future.set_result(None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        await asyncio.wait_for(future, timeout)


class CuttingProxy:
    """TCP proxy client → upstream that aborts both sides after ``cut_after`` submit_sm.

    Only the first ``cuts`` connections are cut; later ones are forwarded as is.
    The cut happens as the submit_sm arrives, before it is forwarded, so the
    client has written PDUs that no SMSC ever sees (mid-window).
    """

    def __init__(self, upstream_port: int, cut_after: int, cuts: int = 1) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.port = 0
        self.cuts = 0
        self.forwarded_submits = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        cut = self.cuts_left > 0
        if cut:
            self.cuts_left -= 1
        back = asyncio.ensure_future(self._pipe(up_reader, writer))
        submits = 0
        try:
            while True:
                header = await reader.readexactly(16)
                length, cid, _, _ = HEADER.unpack(header)
                body = await reader.readexactly(length - 16)
                if cid == C.SUBMIT_SM:
                    submits += 1
                    if cut and submits > self.cut_after:
                        self.cuts += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    self.forwarded_submits += 1
                up_writer.write(header + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await back
            writer.transport.abort()
            up_writer.transport.abort()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
