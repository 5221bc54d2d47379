"""Test helpers: an in-memory ESME↔SMSC session pair and a recording pool handler.

``SessionPair`` follows h11's ``ConnectionPair``: whatever one side sends is
fed to the other, and the events each side saw are returned, so a test reads
as a conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from connectors.pdu import DataSm, DeliverSm
from connectors.session import ESME, SMSC, Session

FAKE_DESTINATION = "4500000001"  # obviously fake sample number
FAKE_SOURCE = "4500000002"


class SessionPair:
    """An ESME session and an SMSC session wired back to back in memory."""

    def __init__(
        self, window: int = 10, response_timeout_s: float = 30.0, keepalive_s: float = 0
    ) -> None:
        self.esme = Session(ESME, window, response_timeout_s, keepalive_s)
        self.smsc = Session(SMSC, window, response_timeout_s, keepalive_s)
        self.now = 0.0

    def peer(self, side: Session) -> Session:
        return self.smsc if side is self.esme else self.esme

    def send(self, side: Session, pdu: Any, context: object = None) -> list[Any]:
        """``side`` sends ``pdu``; returns what the other side saw (after auto replies)."""
        data = side.send(pdu, self.now, context)
        return self.deliver(side, data)

    def deliver(self, side: Session, data: bytes) -> list[Any]:
        """Feed bytes from ``side`` to its peer; auto replies flow back to ``side``."""
        peer = self.peer(side)
        events = peer.receive_data(data)
        auto = peer.data_to_send()
        self.back: list[Any] = side.receive_data(auto) if auto else []
        return events

    def bind(self, request: Any, response_cls: Any) -> None:
        events = self.send(self.esme, request)
        assert len(events) == 1
        resp = response_cls(sequence_number=events[0].sequence_number)
        back = self.send(self.smsc, resp)
        assert len(back) == 1
        assert back[0].pdu.command_status == 0


class RecordingHandler:
    """A PoolHandler that records every call and lets tests await conditions."""

    def __init__(self, auto_respond: bool = True) -> None:
        self.responses: list[tuple[object, int, str]] = []
        self.lost: list[tuple[object, str]] = []
        self.delivers: list[Any] = []
        self.bind_states: list[tuple[str, bool]] = []
        self.auto_respond = auto_respond
        self._conditions: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def outcomes(self) -> int:
        return len(self.responses) + len(self.lost)

    def on_submit_resp(self, token: object, command_status: int, message_id: str) -> None:
        self.responses.append((token, command_status, message_id))
        self._check()

    def on_submit_lost(self, token: object, reason: str) -> None:
        self.lost.append((token, reason))
        self._check()

    def on_deliver(self, bind: Any, pdu: DeliverSm | DataSm) -> None:
        self.delivers.append(pdu)
        if self.auto_respond:
            bind.respond(pdu, 0)
        self._check()

    def on_bind_state(self, bind_name: str, up: bool) -> None:
        self.bind_states.append((bind_name, up))
        self._check()

    def _check(self) -> None:
        if not self._conditions:
            return
        keep = []
        for predicate, future in self._conditions:
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            else:
                keep.append((predicate, future))
        self._conditions = keep

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait (event-driven, no polling) until ``predicate()`` holds."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._conditions.append((predicate, future))
        await asyncio.wait_for(future, timeout)
