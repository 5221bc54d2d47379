"""Accepted submit_sm_resp in runs (``Session(submit_runs=True)``) and their way up.

A session made with ``submit_runs`` reports each run of consecutive accepted
submit_sm_resp (status 0, a plain ``message_id\\0`` body, answering a
submit_sm in flight) as one ``SubmitResponses`` event. Everything else must be
exactly what a session without the flag reports, in the same order: errors,
throttle replies, generic_nack, bodies with TLVs, strays, deliver_sm between
them; and the in-flight table and window must end the same.
"""

from __future__ import annotations

import struct
from typing import Any

from connectors.codec import encode
from connectors.constants import CommandId
from connectors.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
)
from connectors.session import ESME, Response, Session, SubmitResponses
from tests.connectors.helpers import FAKE_DESTINATION, FAKE_SOURCE, SessionPair

C = CommandId
HEADER = struct.Struct(">IIII")


def bound(runs: bool) -> SessionPair:
    pair = SessionPair(window=20)
    pair.esme = Session(ESME, 20, 30.0, 0, submit_runs=runs)
    pair.bind(BindTransceiver(system_id="esme", password="pw"), BindTransceiverResp)
    return pair


def conversation(pair: SessionPair) -> list[Any]:
    """12 submit_sm, then their answers of every kind in two reads, a deliver_sm among them."""
    sent = [pair.esme.send(SubmitSm(destination_addr=FAKE_DESTINATION, short_message=b"m%d" % i), 1.0, ("t", i))
            for i in range(12)]
    seqs = [p.sequence_number for p in pair.smsc.receive_data(b"".join(sent))]
    deliver = encode(DeliverSm(sequence_number=77, source_addr=FAKE_SOURCE, destination_addr="ACME",
                               short_message=b"mo"))
    first = [
        encode(SubmitSmResp(sequence_number=seqs[0], message_id="a0")),
        encode(SubmitSmResp(sequence_number=seqs[1], message_id="a1")),
        deliver,  # splits the run
        encode(SubmitSmResp(sequence_number=seqs[2], message_id="a2")),
        encode(SubmitSmResp(sequence_number=seqs[3], message_id="a3", extra_tlvs=((0x1401, b"x"),))),  # a TLV
        HEADER.pack(16, C.SUBMIT_SM_RESP, 0x58, seqs[4]),  # throttled, no body
        encode(SubmitSmResp(sequence_number=seqs[5], message_id="")),  # accepted, an empty id
        encode(SubmitSmResp(sequence_number=seqs[5], message_id="again")),  # nothing in flight now: stray
        encode(SubmitSmResp(sequence_number=9999, message_id="stray")),
        encode(GenericNack(sequence_number=seqs[6], command_status=0x03)),
        encode(SubmitSmResp(sequence_number=seqs[7], command_status=0x45, message_id="e7")),  # an error with an id
    ]
    second = [
        encode(SubmitSmResp(sequence_number=seqs[8], message_id="b8")),
        encode(SubmitSmResp(sequence_number=seqs[9], message_id="b9")),
        HEADER.pack(17, C.SUBMIT_SM_RESP, 0, seqs[10]) + b"\0",
        HEADER.pack(16, C.SUBMIT_SM_RESP, 0, seqs[11]),  # accepted without a body: the general path
    ]
    return [pair.esme.receive_data(b"".join(first)), pair.esme.receive_data(b"".join(second))]


def flatten(reads: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples; runs of accepted responses as (context, message_id) items."""
    out: list[tuple[Any, ...]] = []
    for events in reads:
        out.append(("read",))
        for e in events:
            if isinstance(e, SubmitResponses):
                out.append(("run", tuple(e.items)))
            elif isinstance(e, Response):
                out.append(("response", e.pdu, e.command_id, e.context, e.sent_at))
            else:
                out.append((type(e).__name__, repr(e), getattr(e, "pdu", e)))
    return out


def as_runs(reads: list[list[Any]], bodiless: set[Any]) -> list[tuple[Any, ...]]:
    """What a session with submit_runs must report, from the events of one without it
    (``bodiless``: contexts of accepted responses without a message_id body)."""
    out: list[tuple[Any, ...]] = []
    for events in reads:
        out.append(("read",))
        for e in events:
            plain = (
                isinstance(e, Response)
                and type(e.pdu) is SubmitSmResp
                and e.pdu.command_status == 0
                and e.pdu == SubmitSmResp(e.pdu.sequence_number, 0, (), e.pdu.message_id)
                and e.context not in bodiless
            )
            if plain:
                item = (e.context, e.pdu.message_id)
                if out[-1][0] == "run":
                    out[-1] = ("run", (*out[-1][1], item))
                else:
                    out.append(("run", (item,)))
            else:
                out.extend(flatten([[e]])[1:])
    return out


def test_runs_replace_only_the_accepted_plain_responses() -> None:
    without, runs = bound(False), bound(True)
    expected = as_runs(conversation(without), {("t", 11)})
    got = flatten(conversation(runs))
    assert got == expected
    kinds = [g[0] for g in got]
    assert kinds.count("run") == 4  # a0 a1 | a2 | "" | b8 b9 "" (the one without a body: a Response)
    assert ("run", ((("t", 0), "a0"), (("t", 1), "a1"))) in got
    assert ("run", ((("t", 8), "b8"), (("t", 9), "b9"), (("t", 10), ""))) in got
    # the accepted response with an empty id ran alone between a throttle reply and a stray
    assert ("run", ((("t", 5), ""),)) in got
    assert runs.esme.in_flight == without.esme.in_flight  # the stray one left nothing; all answered
    assert runs.esme.windowed == without.esme.windowed == 0


def test_the_session_without_the_flag_reports_responses() -> None:
    pair = bound(False)
    assert not any(isinstance(e, SubmitResponses) for read in conversation(pair) for e in read)
