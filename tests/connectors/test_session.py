"""Session state machine: an ESME and an SMSC session talking in memory."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.codec import encode
from connectors.constants import CommandId
from connectors.errors import LocalProtocolError
from connectors.pdu import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
)
from connectors.session import (
    ESME,
    MAX_SEQUENCE,
    SMSC,
    ProtocolViolation,
    Response,
    ResponseTimeout,
    Session,
    State,
    StrayResponse,
    Unbound,
    header_only,
)
from connectors.status import (
    ESME_RINVBNDSTS,
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVPASWD,
    ESME_RTHROTTLED,
)
from tests.connectors.helpers import FAKE_DESTINATION, SessionPair

C = CommandId
HEADER = struct.Struct(">IIII")


def submit() -> SubmitSm:
    return SubmitSm(destination_addr=FAKE_DESTINATION, short_message=b"test")


def bound_pair(
    window: int = 10, response_timeout_s: float = 30.0, keepalive_s: float = 0
) -> SessionPair:
    pair = SessionPair(window, response_timeout_s, keepalive_s)
    pair.bind(BindTransceiver(system_id="esme", password="pw"), BindTransceiverResp)
    return pair


@pytest.mark.parametrize(
    ("request_cls", "resp_cls", "state"),
    [
        (BindTransmitter, BindTransmitterResp, State.BOUND_TX),
        (BindReceiver, BindReceiverResp, State.BOUND_RX),
        (BindTransceiver, BindTransceiverResp, State.BOUND_TRX),
    ],
)
def test_bind_moves_both_sides_to_the_bound_state(request_cls, resp_cls, state) -> None:
    pair = SessionPair()
    assert pair.esme.state is State.OPEN
    events = pair.send(pair.esme, request_cls(system_id="esme", password="pw"))
    assert type(events[0]) is request_cls
    assert events[0].system_id == "esme"
    assert events[0].sequence_number == 1
    back = pair.send(pair.smsc, resp_cls(sequence_number=1, system_id="smsc"))
    assert pair.smsc.state is state
    assert pair.esme.state is state
    assert type(back[0]) is Response
    assert back[0].pdu.system_id == "smsc"
    assert pair.esme.in_flight == {}


def test_refused_bind_stays_open_and_the_status_is_data() -> None:
    pair = SessionPair()
    pair.send(pair.esme, BindTransceiver(system_id="esme", password="bad"))
    back = pair.send(
        pair.smsc, BindTransceiverResp(sequence_number=1, command_status=ESME_RINVPASWD)
    )
    assert back[0].pdu.command_status == ESME_RINVPASWD
    assert pair.esme.state is State.OPEN
    assert pair.smsc.state is State.OPEN


def test_submit_before_bind_is_a_local_error() -> None:
    session = Session(ESME)
    with pytest.raises(LocalProtocolError):
        session.send(submit(), 0.0)


def test_submit_received_while_open_is_answered_with_invbndsts() -> None:
    smsc = Session(SMSC)
    pdu = submit()
    pdu.sequence_number = 7
    from connectors.codec import encode

    events = smsc.receive_data(encode(pdu))
    assert type(events[0]) is ProtocolViolation
    assert not events[0].fatal
    assert HEADER.unpack(smsc.data_to_send()) == (16, C.SUBMIT_SM_RESP, ESME_RINVBNDSTS, 7)


def test_receiver_may_not_submit_and_transmitter_gets_no_deliver_sm() -> None:
    pair = SessionPair()
    pair.bind(BindReceiver(), BindReceiverResp)
    assert not pair.esme.can_submit()
    with pytest.raises(LocalProtocolError):
        pair.esme.send(submit(), 0.0)
    tx = SessionPair()
    tx.bind(BindTransmitter(), BindTransmitterResp)
    with pytest.raises(LocalProtocolError):
        tx.smsc.send(DeliverSm(), 0.0)


def test_submit_and_response_carry_the_context() -> None:
    pair = bound_pair()
    events = pair.send(pair.esme, submit(), context="token-1")
    assert type(events[0]) is SubmitSm
    assert events[0].destination_addr == FAKE_DESTINATION
    assert pair.esme.windowed == 1
    back = pair.send(
        pair.smsc, SubmitSmResp(sequence_number=events[0].sequence_number, message_id="ab12")
    )
    assert type(back[0]) is Response
    assert back[0].context == "token-1"
    assert back[0].command_id == C.SUBMIT_SM
    assert back[0].pdu.message_id == "ab12"
    assert pair.esme.windowed == 0


def test_responses_out_of_order_match_by_sequence_number() -> None:
    pair = bound_pair()
    seqs = [pair.send(pair.esme, submit(), context=i)[0].sequence_number for i in range(5)]
    contexts = []
    for seq in reversed(seqs):
        back = pair.send(pair.smsc, SubmitSmResp(sequence_number=seq, message_id=str(seq)))
        contexts.append(back[0].context)
    assert contexts == [4, 3, 2, 1, 0]
    assert pair.esme.in_flight == {}


def test_non_zero_status_in_a_response_is_data() -> None:
    pair = bound_pair()
    seq = pair.send(pair.esme, submit(), context="t")[0].sequence_number
    back = pair.send(pair.smsc, SubmitSmResp(sequence_number=seq, command_status=ESME_RTHROTTLED))
    assert type(back[0]) is Response
    assert back[0].pdu.command_status == ESME_RTHROTTLED


def test_generic_nack_answers_the_request_it_names() -> None:
    pair = bound_pair()
    seq = pair.send(pair.esme, submit(), context="t")[0].sequence_number
    back = pair.send(pair.smsc, GenericNack(sequence_number=seq, command_status=ESME_RINVCMDID))
    assert type(back[0]) is Response
    assert type(back[0].pdu) is GenericNack
    assert back[0].context == "t"
    assert pair.esme.windowed == 0


def test_window_is_never_exceeded() -> None:
    pair = bound_pair(window=3)
    for _ in range(3):
        assert pair.esme.can_submit()
        pair.send(pair.esme, submit())
    assert not pair.esme.can_submit()
    assert pair.esme.free_window() == 0
    with pytest.raises(LocalProtocolError):
        pair.esme.send(submit(), 0.0)


def test_sequence_numbers_wrap_and_skip_numbers_in_flight() -> None:
    pair = bound_pair()
    esme = pair.esme
    stuck = esme.send(submit(), 0.0, "stuck")  # seq 2 (bind took 1)
    assert HEADER.unpack_from(stuck)[3] == 2
    esme._next_seq = MAX_SEQUENCE
    data = esme.send(submit(), 0.0)
    assert HEADER.unpack_from(data)[3] == MAX_SEQUENCE
    assert HEADER.unpack_from(esme.send(submit(), 0.0))[3] == 1
    assert HEADER.unpack_from(esme.send(submit(), 0.0))[3] == 3  # 2 is still in flight


def test_sweep_times_out_old_requests_only() -> None:
    pair = bound_pair(response_timeout_s=5.0)
    pair.now = 0.0
    pair.send(pair.esme, submit(), context="old")
    pair.now = 3.0
    pair.send(pair.esme, submit(), context="new")
    events = pair.esme.sweep(5.5)
    assert [type(e) for e in events] == [ResponseTimeout]
    assert events[0].context == "old"
    assert pair.esme.windowed == 1
    assert [entry[2] for entry in pair.esme.in_flight.values()] == ["new"]


def test_late_response_after_timeout_is_stray() -> None:
    pair = bound_pair(response_timeout_s=1.0)
    seq = pair.send(pair.esme, submit(), context="x")[0].sequence_number
    assert len(pair.esme.sweep(2.0)) == 1
    data = pair.smsc.send(SubmitSmResp(sequence_number=seq), 2.0)
    events = pair.esme.receive_data(data)
    assert [type(e) for e in events] == [StrayResponse]


def test_enquire_link_is_sent_when_quiet_and_answered_automatically() -> None:
    pair = bound_pair(keepalive_s=10.0)
    esme = pair.esme
    assert esme.sweep(5.0) == []  # the bind_resp was seen: quiet since 5.0
    assert esme.data_to_send() == b""
    assert esme.sweep(14.0) == []
    assert esme.data_to_send() == b""
    assert esme.sweep(15.0) == []
    data = esme.data_to_send()
    _length, cid, _status, _seq = HEADER.unpack(data)
    assert cid == C.ENQUIRE_LINK
    # the SMSC answers by itself; the answer clears the keepalive
    assert pair.deliver(esme, data) == []
    assert pair.back and type(pair.back[0]) is Response
    assert pair.back[0].command_id == C.ENQUIRE_LINK
    assert esme.sweep(15.5) == []
    assert esme.data_to_send() == b""


def test_unanswered_enquire_link_times_out() -> None:
    pair = bound_pair(response_timeout_s=2.0, keepalive_s=10.0)
    pair.esme.sweep(0.0)
    pair.esme.sweep(10.0)
    assert HEADER.unpack(pair.esme.data_to_send())[1] == C.ENQUIRE_LINK
    events = pair.esme.sweep(12.5)
    assert [e.command_id for e in events] == [C.ENQUIRE_LINK]


def test_traffic_postpones_the_keepalive() -> None:
    pair = bound_pair(keepalive_s=10.0)
    pair.send(pair.smsc, DeliverSm(esm_class=0x04))
    pair.esme.sweep(8.0)  # saw data since the last sweep: quiet period starts at 8
    pair.esme.sweep(15.0)
    assert pair.esme.data_to_send() == b""
    pair.esme.sweep(18.0)
    assert HEADER.unpack(pair.esme.data_to_send())[1] == C.ENQUIRE_LINK


def test_unknown_command_id_gets_generic_nack_and_the_session_goes_on() -> None:
    pair = bound_pair()
    events = pair.esme.receive_data(HEADER.pack(16, 0x00000777, 0, 42))
    assert type(events[0]) is ProtocolViolation and not events[0].fatal
    assert HEADER.unpack(pair.esme.data_to_send()) == (16, C.GENERIC_NACK, ESME_RINVCMDID, 42)
    assert pair.esme.state is State.BOUND_TRX


def test_bad_command_length_is_fatal_with_generic_nack() -> None:
    pair = bound_pair()
    events = pair.esme.receive_data(HEADER.pack(8, C.SUBMIT_SM_RESP, 0, 9))
    assert type(events[0]) is ProtocolViolation and events[0].fatal
    _length, cid, status, _ = HEADER.unpack(pair.esme.data_to_send())
    assert (cid, status) == (C.GENERIC_NACK, ESME_RINVCMDLEN)
    assert pair.esme.state is State.CLOSED
    assert pair.esme.receive_data(b"anything") == []


def test_frames_before_a_bad_header_are_still_delivered() -> None:
    pair = bound_pair()
    good = pair.smsc.send(DeliverSm(esm_class=0x04), 0.0)
    events = pair.esme.receive_data(good + HEADER.pack(3, 0, 0, 0))
    assert [type(e) for e in events] == [DeliverSm, ProtocolViolation]


def test_malformed_body_gets_generic_nack_and_the_session_goes_on() -> None:
    pair = bound_pair()
    body = b"\x00" * 3  # deliver_sm cut short
    events = pair.esme.receive_data(HEADER.pack(16 + len(body), C.DELIVER_SM, 0, 5) + body)
    assert type(events[0]) is ProtocolViolation and not events[0].fatal
    _, cid, status, seq = HEADER.unpack(pair.esme.data_to_send())
    assert (cid, seq) == (C.GENERIC_NACK, 5)
    assert status != 0
    assert pair.esme.state is State.BOUND_TRX


def test_esme_unbind_round_trip() -> None:
    pair = bound_pair()
    data = pair.esme.send_unbind(0.0)
    assert pair.esme.state is State.UNBOUND
    events = pair.deliver(pair.esme, data)
    assert [type(e) for e in events] == [Unbound]
    assert pair.smsc.state is State.CLOSED
    assert pair.esme.state is State.CLOSED
    assert pair.back[0].command_id == C.UNBIND


def test_smsc_unbind_is_answered_by_the_esme() -> None:
    pair = bound_pair()
    events = pair.deliver(pair.smsc, pair.smsc.send_unbind(0.0))
    assert [type(e) for e in events] == [Unbound]
    assert pair.esme.state is State.CLOSED
    assert pair.smsc.state is State.CLOSED


def test_deliver_sm_response_from_the_esme() -> None:
    pair = bound_pair()
    events = pair.send(
        pair.smsc, DeliverSm(esm_class=0x04, short_message=b"id:1 stat:DELIVRD"), "r"
    )
    assert type(events[0]) is DeliverSm
    assert pair.smsc.windowed == 1
    seen_by_smsc = pair.send(pair.esme, DeliverSmResp(sequence_number=events[0].sequence_number))
    assert type(seen_by_smsc[0]) is Response
    assert seen_by_smsc[0].context == "r"
    assert pair.smsc.windowed == 0
    # answered twice: the second answer matches nothing
    again = pair.send(pair.esme, DeliverSmResp(sequence_number=events[0].sequence_number))
    assert type(again[0]) is StrayResponse


def claiming_pair(bind_request: Any = None, bind_resp: Any = BindTransceiverResp) -> tuple[SessionPair, list[bytes]]:
    """A bound pair whose ESME claims the deliver_sm bodies holding b"|C" (value: their last 3 octets)."""
    asked: list[bytes] = []

    def claim(body: bytes) -> object:
        asked.append(body)
        return body[-3:].decode() if b"|C" in body else None

    pair = SessionPair()
    pair.esme = Session(ESME, 10, 30.0, 0, claim_deliver=claim)
    pair.bind(bind_request or BindTransceiver(system_id="esme", password="pw"), bind_resp)
    return pair, asked


def deliver(seq: int, tag: str) -> bytes:
    return encode(DeliverSm(sequence_number=seq, esm_class=0x04, short_message=tag.encode()))


def test_claimed_deliver_sm_come_in_runs_in_order_with_the_other_events() -> None:
    pair, asked = claiming_pair()
    pair.esme.send(submit(), 0.0, "s1")  # in flight, so its response is a Response event
    data = b"".join(
        [
            deliver(7, "|Ca"),
            deliver(8, "|Cb"),
            encode(SubmitSmResp(sequence_number=2, message_id="m1")),
            deliver(9, "|Cc"),
            deliver(10, "plain"),
            deliver(11, "|Cd"),
            header_only(C.ENQUIRE_LINK, 0, 12),  # answered, no event: the run goes on
            deliver(12, "|Ce"),
        ]
    )
    events = pair.esme.receive_data(data)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ClaimedDelivers", "Response", "ClaimedDelivers", "DeliverSm", "ClaimedDelivers"]
    assert events[0].items == [(7, "|Ca"), (8, "|Cb")]
    assert events[1].context == "s1"
    assert events[2].items == [(9, "|Cc")]
    assert events[3].sequence_number == 10 and events[3].short_message == b"plain"
    assert events[4].items == [(11, "|Cd"), (12, "|Ce")]
    assert len(asked) == 6  # every deliver_sm body, nothing else
    assert pair.esme.data_to_send() == header_only(C.ENQUIRE_LINK_RESP, 0, 12)


def test_the_claim_hook_is_not_asked_where_deliver_sm_is_not_allowed() -> None:
    pair, asked = claiming_pair(BindTransmitter(system_id="esme", password="pw"), BindTransmitterResp)
    events = pair.esme.receive_data(deliver(5, "|Ca"))
    assert asked == []
    assert type(events[0]) is ProtocolViolation
    assert pair.esme.data_to_send() == header_only(C.DELIVER_SM_RESP, ESME_RINVBNDSTS, 5)


def test_a_claim_hook_that_raises_leaves_the_pdu_to_the_general_path() -> None:
    def broken(body: bytes) -> object:
        if b"boom" in body:
            raise ValueError("a bug in the hook")
        return "claimed"

    pair = SessionPair()
    pair.esme = Session(ESME, 10, 30.0, 0, claim_deliver=broken)
    pair.bind(BindTransceiver(system_id="esme", password="pw"), BindTransceiverResp)
    events = pair.esme.receive_data(deliver(3, "boom") + deliver(4, "fine"))
    assert type(events[0]) is DeliverSm and events[0].short_message == b"boom"
    assert type(events[1]).__name__ == "ClaimedDelivers" and events[1].items == [(4, "claimed")]
    assert pair.esme.claim_errors == 1 and pair.esme.is_bound()


def test_the_claim_hook_sees_deliver_sm_only() -> None:
    pair, asked = claiming_pair()
    events = pair.esme.receive_data(encode(DataSm(sequence_number=4, esm_class=0x04, message_payload=b"|Ca")))
    assert asked == []
    assert type(events[0]) is DataSm


def test_connection_lost_returns_everything_in_flight() -> None:
    pair = bound_pair()
    for i in range(4):
        pair.send(pair.esme, submit(), context=i)
    lost = pair.esme.connection_lost()
    assert sorted(entry[2] for _, entry in lost) == [0, 1, 2, 3]
    assert pair.esme.state is State.CLOSED
    assert pair.esme.windowed == 0


def test_input_byte_by_byte_gives_the_same_events() -> None:
    pair = bound_pair()
    data = b"".join(
        pair.smsc.send(DeliverSm(esm_class=0x04, short_message=b"x" * i), 0.0) for i in range(3)
    )
    events = []
    for i in range(len(data)):
        events += pair.esme.receive_data(data[i : i + 1])
    assert [e.short_message for e in events] == [b"", b"x", b"xx"]


def test_header_only_helper() -> None:
    assert header_only(C.ENQUIRE_LINK, 0, 5) == HEADER.pack(16, C.ENQUIRE_LINK, 0, 5)


@settings(max_examples=60, deadline=None)
@given(
    window=st.integers(min_value=1, max_value=8),
    ops=st.lists(
        st.tuples(st.sampled_from(["submit", "answer", "sweep"]), st.integers(0, 50)), max_size=80
    ),
)
def test_never_more_than_window_in_flight(window: int, ops: list[tuple[str, int]]) -> None:
    """Whatever mix of submits, out-of-order answers and timeouts: in flight <= window."""
    pair = bound_pair(window=window, response_timeout_s=5.0)
    now = 0.0
    outstanding: list[int] = []
    for op, n in ops:
        now += 0.5
        if op == "submit":
            if pair.esme.can_submit():
                pdu = submit()
                pair.esme.send(pdu, now, n)
                outstanding.append(pdu.sequence_number)
            else:
                with pytest.raises(LocalProtocolError):
                    pair.esme.send(submit(), now)
        elif op == "answer" and outstanding:
            seq = outstanding.pop(n % len(outstanding))
            pair.esme.receive_data(pair.smsc.send(SubmitSmResp(sequence_number=seq), now))
        elif op == "sweep":
            for event in pair.esme.sweep(now + n / 10):
                outstanding.remove(event.sequence_number)
        assert pair.esme.windowed <= window
        assert pair.esme.windowed == len(outstanding) == len(pair.esme.in_flight)


def test_batched_empty_responses_match_the_codec() -> None:
    pair = bound_pair()
    seqs = [pair.send(pair.smsc, DeliverSm(esm_class=0x04), n)[0].sequence_number for n in range(3)]
    batch = pair.esme.send_empty_responses(C.DELIVER_SM_RESP, 0, seqs)
    assert batch == b"".join(pair.esme.send(DeliverSmResp(sequence_number=s), 0.0) for s in seqs)
    answered = pair.smsc.receive_data(batch)
    assert [type(e) for e in answered] == [Response] * 3
    assert sorted(e.pdu.sequence_number for e in answered) == sorted(seqs)
    assert pair.esme.send_empty_responses(C.DATA_SM_RESP, 0x45, [7]) == HEADER.pack(17, C.DATA_SM_RESP, 0x45, 7) + b"\0"
    assert pair.esme.send_empty_responses(C.DELIVER_SM_RESP, 0, []) == b""
    with pytest.raises(LocalProtocolError):
        pair.esme.send_empty_responses(C.SUBMIT_SM_RESP, 0, [1])  # its body is a message_id
    with pytest.raises(LocalProtocolError):
        pair.esme.send_empty_responses(C.BIND_TRANSCEIVER_RESP, 0, [1])  # moves the state: send()
    with pytest.raises(LocalProtocolError):
        pair.esme.send_empty_responses(C.SUBMIT_SM, 0, [1])  # not a response
    pair.esme.connection_lost()
    with pytest.raises(LocalProtocolError):
        pair.esme.send_empty_responses(C.DELIVER_SM_RESP, 0, seqs)


@settings(max_examples=300, deadline=None)
@given(
    seqs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=40),
    status=st.sampled_from([0, 0x45, 0x58, 0xFFFFFFFF]),
    data_sm=st.booleans(),
)
def test_empty_responses_in_bulk_are_the_codecs_bytes(seqs: list[int], status: int, data_sm: bool) -> None:
    """From _BULK_MIN responses on the sequence numbers are written into copies of one
    response: the same octets as one pack per response (the codec's, for status 0)."""
    pair = bound_pair()
    cid = C.DATA_SM_RESP if data_sm else C.DELIVER_SM_RESP
    kind = DataSmResp if data_sm else DeliverSmResp
    # (one pack per response: the method before the bulk path)
    expected = b"".join(HEADER.pack(17, cid, status, s) + b"\0" for s in seqs)
    if status == 0:  # (the codec writes an error response without its body)
        assert expected == b"".join(encode(kind(sequence_number=s, message_id="")) for s in seqs)
    assert pair.esme.send_empty_responses(cid, status, seqs) == expected
    assert pair.esme.send_empty_responses(cid, status, iter(seqs)) == expected  # any iterable


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    cut=st.integers(min_value=1, max_value=40),
    role=st.sampled_from([ESME, SMSC]),
)
def test_garbage_never_raises(data: bytes, cut: int, role: str) -> None:
    """Whatever the peer sends, in any chunking: events and answers, never an exception."""
    pair = bound_pair()
    session = pair.esme if role == ESME else pair.smsc
    prefix = HEADER.pack(16, C.ENQUIRE_LINK, 0, 99)  # a valid PDU first, then the noise
    stream = prefix + data
    for i in range(0, len(stream), cut):
        for event in session.receive_data(stream[i : i + cut]):
            assert hasattr(event, "command_id") or isinstance(event, (Unbound, StrayResponse))
        session.data_to_send()
        session.sweep(1.0)
    assert session.state in (State.BOUND_TRX, State.CLOSED)
