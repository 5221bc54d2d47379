"""The session's batched paths give what the one-PDU paths give.

``Session.send_submits`` (the pool's write path) against ``Session.send`` per
PDU, and ``receive_data``'s inline submit_sm_resp against ``_receive_response``:
the same bytes, sequence numbers, in-flight entries, window and events, and the
same errors.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

import pytest

from connectors.codec import encode
from connectors.constants import CommandId
from connectors.errors import LocalProtocolError
from connectors.pdu import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    DataSm,
    SubmitSm,
    SubmitSmResp,
)
from connectors.session import MAX_SEQUENCE, Response, Session, StrayResponse
from tests.connectors.helpers import FAKE_DESTINATION, SessionPair

C = CommandId
HEADER = struct.Struct(">IIII")


def bound(window: int = 10) -> SessionPair:
    pair = SessionPair(window)
    pair.bind(BindTransceiver(system_id="esme", password="pw"), BindTransceiverResp)
    return pair


def pdus(n: int) -> list[Any]:
    out: list[Any] = []
    for i in range(n):
        if i % 3 == 1:  # a TLV: not the plain form
            out.append(SubmitSm(destination_addr=FAKE_DESTINATION, short_message=b"x%d" % i, sar_msg_ref_num=i))
        else:
            out.append(SubmitSm(source_addr="SENDER", destination_addr=FAKE_DESTINATION, short_message=b"m%d" % i))
    return out


def state(s: Session) -> tuple[Any, ...]:
    return (dict(s.in_flight), s.windowed, s._next_seq)


def test_send_submits_is_send_per_pdu() -> None:
    one, many = bound(), bound()
    items_one = [(p, ("tok", i)) for i, p in enumerate(pdus(7))]
    items_many = [(p, ("tok", i)) for i, p in enumerate(pdus(7))]
    expected = [one.esme.send(pdu, 5.0, item) for pdu, item in ((it[0], it) for it in items_one)]
    queue: deque[Any] = deque(items_many)
    queue.append(("left", "in the queue"))
    got = many.esme.send_submits(queue, 7, 5.0)
    assert got == expected
    assert list(queue) == [("left", "in the queue")]
    assert [p.sequence_number for p, _ in items_many] == [p.sequence_number for p, _ in items_one]
    assert {s: (e[0], e[1], e[2][1]) for s, e in many.esme.in_flight.items()} == {
        s: (e[0], e[1], e[2][1]) for s, e in one.esme.in_flight.items()
    }
    assert many.esme.windowed == one.esme.windowed == 7
    # the SMSC reads them as the PDUs they are
    seen = many.smsc.receive_data(b"".join(got))
    assert [type(p) for p in seen] == [SubmitSm] * 7
    assert [p.short_message for p in seen] == [p.short_message for p, _ in items_one]


def test_send_submits_skips_a_stuck_sequence_number_after_a_wrap() -> None:
    one, many = bound(), bound()
    for pair in (one, many):
        pair.esme._next_seq = MAX_SEQUENCE - 1
        pair.esme.in_flight[MAX_SEQUENCE] = (C.SUBMIT_SM, 0.0, "stuck")
        pair.esme.in_flight[1] = (C.SUBMIT_SM, 0.0, "stuck")
    for pdu in pdus(3):
        one.esme.send(pdu, 1.0, None)
    many.esme.send_submits(deque((p, None) for p in pdus(3)), 3, 1.0)
    assert sorted(many.esme.in_flight) == sorted(one.esme.in_flight) == [1, 2, 3, MAX_SEQUENCE - 1, MAX_SEQUENCE]
    assert many.esme._next_seq == one.esme._next_seq == 4


def test_send_submits_raises_where_send_raises() -> None:
    pair = bound(window=2)
    queue: deque[Any] = deque((p, i) for i, p in enumerate(pdus(3)))
    with pytest.raises(LocalProtocolError, match="window of 2 is full"):
        pair.esme.send_submits(queue, 3, 0.0)
    assert pair.esme.windowed == 2
    assert len(queue) == 0  # popped as send() per item popped it

    rx = SessionPair()
    rx.bind(BindReceiver(), BindReceiverResp)
    queue = deque((p, i) for i, p in enumerate(pdus(2)))
    with pytest.raises(LocalProtocolError, match="may not send"):
        rx.esme.send_submits(queue, 2, 0.0)
    assert rx.esme.in_flight == {}


def test_send_submits_passes_other_pdus_to_send() -> None:
    one, many = bound(), bound()
    other = [DataSm(destination_addr=FAKE_DESTINATION), *pdus(1)]
    expected = [one.esme.send(p, 0.0, (p, 0)) for p in [DataSm(destination_addr=FAKE_DESTINATION), *pdus(1)]]
    assert many.esme.send_submits(deque((p, 0) for p in other), 2, 0.0) == expected
    assert [e[0] for e in many.esme.in_flight.values()] == [C.DATA_SM, C.SUBMIT_SM]


def answers(pair: SessionPair, n: int) -> tuple[list[Any], list[Any]]:
    """n submit_sm, answered in one read: ok, with a TLV, an error, answered twice."""
    seqs = [p.sequence_number for p in pair.smsc.receive_data(b"".join(pair.esme.send(p, 1.0, ("t", i)) for i, p in enumerate(pdus(n))))]
    data = [
        encode(SubmitSmResp(sequence_number=seqs[0], message_id="ab12")),
        encode(SubmitSmResp(sequence_number=seqs[1], message_id="cd34", extra_tlvs=((0x1401, b"x"),))),
        HEADER.pack(16, C.SUBMIT_SM_RESP, 0x58, seqs[2]),  # an error without a body
        encode(SubmitSmResp(sequence_number=seqs[3], message_id="")),
        encode(SubmitSmResp(sequence_number=seqs[3], message_id="again")),  # nothing in flight now
        encode(SubmitSmResp(sequence_number=9999, message_id="stray")),
    ]
    return seqs, pair.esme.receive_data(b"".join(data))


def test_inline_submit_sm_resp_is_the_general_path() -> None:
    pair = bound()
    seqs, events = answers(pair, 4)
    assert [type(e) for e in events] == [Response] * 4 + [StrayResponse] * 2
    assert [(e.pdu.sequence_number, e.pdu.command_status, e.pdu.message_id, e.command_id, e.context, e.sent_at)
            for e in events[:4]] == [
        (seqs[0], 0, "ab12", C.SUBMIT_SM, ("t", 0), 1.0),
        (seqs[1], 0, "cd34", C.SUBMIT_SM, ("t", 1), 1.0),
        (seqs[2], 0x58, "", C.SUBMIT_SM, ("t", 2), 1.0),
        (seqs[3], 0, "", C.SUBMIT_SM, ("t", 3), 1.0),
    ]
    assert events[1].pdu.extra_tlvs == ((0x1401, b"x"),)
    assert [type(e.pdu) for e in events] == [SubmitSmResp] * 6
    assert pair.esme.windowed == 0 and pair.esme.in_flight == {}


def test_submit_sm_resp_to_another_request_is_stray() -> None:
    pair = bound()
    seq = pair.esme.send_enquire_link(0.0) and pair.esme._enquire_seq
    events = pair.esme.receive_data(encode(SubmitSmResp(sequence_number=seq, message_id="x")))
    assert [type(e) for e in events] == [StrayResponse]
    assert seq in pair.esme.in_flight  # left to answer (or time out) as before
