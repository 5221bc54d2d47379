"""Framer: arbitrary chunking, coalesced PDUs, bad lengths."""

from __future__ import annotations

import struct

import pytest

from connectors import (
    BindTransceiverResp,
    CommandId,
    DeliverSm,
    EnquireLink,
    Frame,
    Framer,
    RemoteProtocolError,
    SubmitSmResp,
    decode_frame,
    encode,
)
from connectors.pdu import Pdu

PDUS: list[Pdu] = [
    BindTransceiverResp(sequence_number=1, system_id="SMSC", sc_interface_version=0x34),
    DeliverSm(
        sequence_number=2,
        esm_class=4,
        short_message=b"id:1 sub:001 dlvrd:001 stat:DELIVRD err:000 text:",
        receipted_message_id="1",
        message_state=2,
    ),
    SubmitSmResp(sequence_number=3, message_id="abc"),
    SubmitSmResp(sequence_number=4, command_status=0x58),
    EnquireLink(sequence_number=5),
]
STREAM = b"".join(encode(p) for p in PDUS)


def _decode_all(frames: list[Frame]) -> list[Pdu]:
    return [decode_frame(f) for f in frames]


def test_one_chunk_many_pdus() -> None:
    framer = Framer()
    assert _decode_all(framer.feed(STREAM)) == PDUS
    assert framer.buffered() == 0


def test_pdu_coalesced_behind_bind_resp_is_not_lost() -> None:
    framer = Framer()
    first = encode(PDUS[0]) + encode(PDUS[1])
    assert _decode_all(framer.feed(first)) == PDUS[:2]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 15, 16, 17, 64, 1000])
def test_any_chunking_yields_the_same_pdus(chunk: int) -> None:
    framer = Framer()
    frames: list[Frame] = []
    for i in range(0, len(STREAM), chunk):
        frames += framer.feed(STREAM[i : i + chunk])
    assert _decode_all(frames) == PDUS
    assert framer.buffered() == 0


def test_accepts_bytearray_and_memoryview() -> None:
    framer = Framer()
    half = len(STREAM) // 2
    frames = framer.feed(bytearray(STREAM[:half])) + framer.feed(memoryview(STREAM)[half:])
    assert _decode_all(frames) == PDUS
    assert all(type(f.body) is bytes for f in frames)


def test_frame_fields() -> None:
    (frame,) = Framer().feed(encode(SubmitSmResp(sequence_number=9, message_id="x")))
    assert frame == Frame(CommandId.SUBMIT_SM_RESP, 0, 9, b"x\x00")


def test_large_pdu_byte_by_byte_stays_linear() -> None:
    pdu = DeliverSm(sequence_number=1, message_payload=b"z" * 60000)
    wire = encode(pdu)
    framer = Framer()
    frames: list[Frame] = []
    for i in range(len(wire)):
        frames += framer.feed(wire[i : i + 1])
    assert _decode_all(frames) == [pdu]


@pytest.mark.parametrize("length", [0, 15, 65537, 0xFFFFFFFF])
def test_bad_command_length_raises(length: int) -> None:
    framer = Framer()
    with pytest.raises(RemoteProtocolError) as info:
        framer.feed(struct.pack(">IIII", length, CommandId.SUBMIT_SM, 0, 77))
    assert info.value.command_status == 0x02  # ESME_RINVCMDLEN
    assert info.value.sequence_number == 77
    assert framer.failed
    with pytest.raises(RemoteProtocolError):
        framer.feed(encode(EnquireLink(sequence_number=1)))


def test_max_command_length_is_configurable() -> None:
    wire = encode(DeliverSm(message_payload=b"z" * 200))
    with pytest.raises(RemoteProtocolError):
        Framer(max_command_length=100).feed(wire)
    assert len(Framer(max_command_length=len(wire)).feed(wire)) == 1


def test_frames_before_a_bad_header_are_returned_then_error() -> None:
    framer = Framer()
    good = encode(PDUS[2])
    frames = framer.feed(good + struct.pack(">IIII", 3, 4, 0, 1))
    assert _decode_all(frames) == [PDUS[2]]
    assert framer.failed
    with pytest.raises(RemoteProtocolError):
        framer.feed(b"")


def test_bad_length_detected_across_chunks() -> None:
    framer = Framer()
    bad = struct.pack(">IIII", 8, 4, 0, 1)
    assert framer.feed(bad[:10]) == []
    with pytest.raises(RemoteProtocolError):
        framer.feed(bad[10:])


def test_invalid_max_command_length() -> None:
    with pytest.raises(ValueError):
        Framer(max_command_length=10)


@pytest.mark.parametrize("chunk", [1, 3, 16, 17, 40, len(STREAM)])
def test_plain_frames_are_the_frames_as_plain_tuples(chunk: int) -> None:
    """Framer(plain=True) (the session's) cuts the same frames, as plain tuples,
    whatever the chunking (split headers and bodies: the buffered path too)."""
    named, plain = Framer(), Framer(plain=True)
    got_named: list[Frame] = []
    got_plain: list[tuple[int, int, int, bytes]] = []
    for i in range(0, len(STREAM), chunk):
        got_named += named.feed(STREAM[i : i + chunk])
        got_plain += plain.feed(STREAM[i : i + chunk])
    assert [type(f) for f in got_plain] == [tuple] * len(PDUS)
    assert [type(f) for f in got_named] == [Frame] * len(PDUS)
    assert got_plain == [tuple(f) for f in got_named]
    assert [decode_frame(Frame(*f)) for f in got_plain] == PDUS
