"""SMPP codec micro benchmarks (connectors/codec.py, connectors/framer.py).

Targets on the 2-core dev machine (the hot path of the engine):

- encode submit_sm (alphanumeric source, 11-digit destination,
  registered_delivery=1, 20-octet short_message) ≤ 1.2 µs
- decode submit_sm_resp ≤ 0.5 µs
- decode deliver_sm receipt (text body + receipted_message_id, message_state) ≤ 1.5 µs

For scale: a minimal hand-written struct encoder of a plain submit_sm takes
~1.1 µs here, aiosmpplib ~8 µs. Targets are recorded in ``extra_info``, not
asserted, so a busy machine does not fail the build; compare runs with
``make bench-compare``.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from connectors import (
    BindTransceiver,
    BindTransceiverResp,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    Framer,
    Pdu,
    QuerySm,
    QuerySmResp,
    SubmitSm,
    SubmitSmResp,
    decode,
    decode_body,
    decode_frame,
    encode,
)
from connectors.framer import Frame

# Obviously fake numbers.
SUBMIT = SubmitSm(
    sequence_number=123456,
    source_addr_ton=5,
    source_addr="AcmeShop",
    dest_addr_ton=1,
    dest_addr_npi=1,
    destination_addr="45000000001",
    registered_delivery=1,
    short_message=b"Your code is 123456.",  # 20 octets
)
SUBMIT_RESP = SubmitSmResp(sequence_number=123456, message_id="5f2b1c9e-00a1")
RECEIPT_TEXT = (
    b"id:5f2b1c9e-00a1 sub:001 dlvrd:001 submit date:2501011200 "
    b"done date:2501011201 stat:DELIVRD err:000 text:Your code is 12"
)
RECEIPT = DeliverSm(
    sequence_number=77,
    source_addr_ton=1,
    source_addr_npi=1,
    source_addr="45000000001",
    dest_addr_ton=5,
    destination_addr="AcmeShop",
    esm_class=0x04,
    short_message=RECEIPT_TEXT,
    receipted_message_id="5f2b1c9e-00a1",
    message_state=2,
)

SUBMIT_RESP_BODY = encode(SUBMIT_RESP)[16:]
RECEIPT_BODY = encode(RECEIPT)[16:]


def test_encode_submit_sm(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 1.2
    wire = benchmark(encode, SUBMIT)
    assert decode(wire) == SUBMIT


def test_decode_submit_sm_resp(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 0.5
    pdu = benchmark(decode_body, SUBMIT_RESP.command_id, 0, 123456, SUBMIT_RESP_BODY)
    assert pdu == SUBMIT_RESP


def test_decode_deliver_sm_receipt(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 1.5
    pdu = benchmark(decode_body, RECEIPT.command_id, 0, 77, RECEIPT_BODY)
    assert pdu == RECEIPT


def _mixed_stream(size: int) -> tuple[bytes, int]:
    """Back-to-back PDUs as an SMSC sends them: resps, receipts, keepalives."""
    cycle = [
        encode(SUBMIT_RESP),
        encode(SUBMIT_RESP),
        encode(SUBMIT_RESP),
        encode(RECEIPT),
        encode(EnquireLink(sequence_number=9)),
    ]
    parts: list[bytes] = []
    total = 0
    while total < size:
        for wire in cycle:
            parts.append(wire)
            total += len(wire)
    return b"".join(parts), len(parts)


STREAM, STREAM_PDUS = _mixed_stream(64 * 1024)


def test_framer_64k_mixed(benchmark: BenchmarkFixture) -> None:
    """Frame a 64 KiB read of mixed PDUs (framing only, bodies not decoded)."""
    benchmark.extra_info["pdus"] = STREAM_PDUS

    def run() -> list[Frame]:
        return Framer().feed(STREAM)

    frames = benchmark(run)
    assert len(frames) == STREAM_PDUS


def test_framer_and_decode_64k_mixed(benchmark: BenchmarkFixture) -> None:
    """Frame and decode a 64 KiB read of mixed PDUs."""
    benchmark.extra_info["pdus"] = STREAM_PDUS

    def run() -> list[Pdu]:
        return [decode_frame(frame) for frame in Framer().feed(STREAM)]

    pdus = benchmark(run)
    assert len(pdus) == STREAM_PDUS


def test_framer_64k_in_1500_byte_reads(benchmark: BenchmarkFixture) -> None:
    """Same stream cut at MTU-sized boundaries, so PDUs straddle reads."""
    chunks = [STREAM[i : i + 1500] for i in range(0, len(STREAM), 1500)]

    def run() -> int:
        framer = Framer()
        return sum(len(framer.feed(chunk)) for chunk in chunks)

    assert benchmark(run) == STREAM_PDUS


PER_TYPE: list[Pdu] = [
    BindTransceiver(sequence_number=1, system_id="acme", password="secret"),
    BindTransceiverResp(sequence_number=1, system_id="SMSC", sc_interface_version=0x34),
    EnquireLink(sequence_number=2),
    EnquireLinkResp(sequence_number=2),
    SUBMIT,
    SubmitSm(
        sequence_number=3,
        source_addr="AcmeShop",
        destination_addr="45000000001",
        esm_class=0x40,
        data_coding=8,
        short_message=bytes(140),
        sar_msg_ref_num=7,
        sar_total_segments=2,
        sar_segment_seqnum=1,
    ),
    SUBMIT_RESP,
    SubmitSmResp(sequence_number=4, command_status=0x58),
    RECEIPT,
    DeliverSmResp(sequence_number=77),
    DataSm(sequence_number=5, source_addr="AcmeShop", message_payload=bytes(300)),
    QuerySm(sequence_number=6, message_id="5f2b1c9e-00a1", source_addr="AcmeShop"),
    QuerySmResp(sequence_number=6, message_id="5f2b1c9e-00a1", message_state=2),
]
IDS = [
    "bind_transceiver",
    "bind_transceiver_resp",
    "enquire_link",
    "enquire_link_resp",
    "submit_sm",
    "submit_sm_sar_tlvs",
    "submit_sm_resp",
    "submit_sm_resp_throttled",
    "deliver_sm_receipt",
    "deliver_sm_resp",
    "data_sm_payload",
    "query_sm",
    "query_sm_resp",
]


@pytest.mark.parametrize("pdu", PER_TYPE, ids=IDS)
def test_encode_per_type(benchmark: BenchmarkFixture, pdu: Pdu) -> None:
    wire = benchmark(encode, pdu)
    assert decode(wire) == pdu


@pytest.mark.parametrize("pdu", PER_TYPE, ids=IDS)
def test_decode_per_type(benchmark: BenchmarkFixture, pdu: Pdu) -> None:
    wire = encode(pdu)
    assert benchmark(decode, wire) == pdu


def test_for_scale_aiosmpplib_encode_submit_sm(benchmark: BenchmarkFixture) -> None:
    """The same submit_sm through aiosmpplib (test-only dependency), for scale."""
    aiosmpplib = pytest.importorskip("aiosmpplib")
    theirs = aiosmpplib.SubmitSm(
        sequence_num=123456,
        short_message="Your code is 123456.",
        source=aiosmpplib.PhoneNumber("AcmeShop", aiosmpplib.TON.ALPHANUMERIC),
        destination=aiosmpplib.PhoneNumber(
            "45000000001", aiosmpplib.TON.INTERNATIONAL, aiosmpplib.NPI.ISDN
        ),
        encoding="ascii",
    )

    def run() -> bytes:
        theirs.set_encoded_message(b"")  # aiosmpplib caches the encoded text
        wire: bytes = theirs.pdu()
        return wire

    wire = benchmark(run)
    assert len(wire) == len(encode(SUBMIT))
