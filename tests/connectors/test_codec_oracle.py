"""Oracle: our codec against aiosmpplib, an independent SMPP implementation.

Test-only dependency. For the PDUs both implement (submit_sm, deliver_sm,
submit_sm_resp, bind_*), the bytes we encode must equal the bytes aiosmpplib
encodes for the same content, and each side must decode the other's bytes to
the same fields. aiosmpplib works in text (it applies a data_coding codec);
we use latin-1 (data_coding 3) so its text maps 1:1 to our octets.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

aiosmpplib = pytest.importorskip("aiosmpplib")
from aiosmpplib import NPI, TON, OptionalParam, PhoneNumber  # noqa: E402

from connectors import (  # noqa: E402
    BindReceiver,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    DeliverSm,
    SubmitSm,
    SubmitSmResp,
    Tag,
    decode,
    encode,
)

LATIN_1 = 3  # data_coding


def their_decode(cls: Any, wire: bytes) -> Any:
    header = cls.parse_header(wire[:16])
    return cls.from_pdu(wire, header, default_encoding="latin_1")


ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
addresses = st.text("0123456789", min_size=1, max_size=20)
tons = st.sampled_from(list(TON))
npis = st.sampled_from(list(NPI))
octet = st.integers(0, 255)


@settings(max_examples=80, deadline=None)
@given(
    seq=st.integers(1, 0x7FFFFFFF),
    service_type=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=5),
    source=addresses,
    source_ton=tons,
    source_npi=npis,
    destination=addresses,
    dest_ton=tons,
    dest_npi=npis,
    esm_class=st.sampled_from([0x00, 0x03, 0x80]),
    protocol_id=octet,
    priority_flag=st.integers(0, 3),
    registered_delivery=st.integers(0, 0x1F),
    text=ascii_text.filter(bool),
    sar=st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(1, 255), st.integers(1, 255)),
)
def test_submit_sm_bytes_match_aiosmpplib(
    seq: int,
    service_type: str,
    source: str,
    source_ton: TON,
    source_npi: NPI,
    destination: str,
    dest_ton: TON,
    dest_npi: NPI,
    esm_class: int,
    protocol_id: int,
    priority_flag: int,
    registered_delivery: int,
    text: str,
    sar: tuple[int, int, int] | None,
) -> None:
    params = []
    ours_tlvs: dict[str, Any] = {}
    if sar is not None:
        params = [
            OptionalParam(Tag.SAR_MSG_REF_NUM, sar[0]),
            OptionalParam(Tag.SAR_TOTAL_SEGMENTS, sar[1]),
            OptionalParam(Tag.SAR_SEGMENT_SEQNUM, sar[2]),
        ]
        ours_tlvs = {
            "sar_msg_ref_num": sar[0],
            "sar_total_segments": sar[1],
            "sar_segment_seqnum": sar[2],
        }
    theirs = aiosmpplib.SubmitSm(
        sequence_num=seq,
        short_message=text,
        source=PhoneNumber(source, source_ton, source_npi),
        destination=PhoneNumber(destination, dest_ton, dest_npi),
        service_type=service_type,
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority_flag,
        registered_delivery=registered_delivery,
        encoding="latin_1",
        optional_params=params,
    )
    ours = SubmitSm(
        sequence_number=seq,
        service_type=service_type,
        source_addr_ton=int(source_ton),
        source_addr_npi=int(source_npi),
        source_addr=source,
        dest_addr_ton=int(dest_ton),
        dest_addr_npi=int(dest_npi),
        destination_addr=destination,
        esm_class=esm_class,
        protocol_id=protocol_id,
        priority_flag=priority_flag,
        registered_delivery=registered_delivery,
        data_coding=LATIN_1,
        short_message=text.encode("latin-1"),
        **ours_tlvs,
    )
    wire = encode(ours)
    assert wire == theirs.pdu()
    assert decode(theirs.pdu()) == ours
    back = their_decode(aiosmpplib.SubmitSm, wire)
    assert back.short_message == text
    assert back.destination == PhoneNumber(destination, dest_ton, dest_npi)
    assert back.source == PhoneNumber(source, source_ton, source_npi)
    assert (back.esm_class, back.registered_delivery) == (esm_class, registered_delivery)


def test_submit_sm_validity_period_string_matches_aiosmpplib() -> None:
    from datetime import timedelta

    period = timedelta(days=1, hours=2, minutes=3, seconds=4)
    theirs = aiosmpplib.SubmitSm(
        sequence_num=3,
        short_message="hello",
        source=PhoneNumber("Acme", TON.ALPHANUMERIC),
        destination=PhoneNumber("4500000001", TON.INTERNATIONAL, NPI.ISDN),
        validity_period=period,
        encoding="latin_1",
    )
    relative = aiosmpplib.SubmitSm.datetime_to_smpp_time(period)
    ours = SubmitSm(
        sequence_number=3,
        source_addr_ton=5,
        source_addr="Acme",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="4500000001",
        validity_period=relative,
        registered_delivery=1,
        data_coding=LATIN_1,
        short_message=b"hello",
    )
    assert encode(ours) == theirs.pdu()


@settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(1, 0x7FFFFFFF),
    source=addresses,
    receipt_id=st.text("0123456789abcdef", min_size=1, max_size=64),
    state=st.integers(1, 8),
    text=ascii_text.filter(bool),
)
def test_deliver_sm_receipt_matches_aiosmpplib(
    seq: int, source: str, receipt_id: str, state: int, text: str
) -> None:
    theirs = aiosmpplib.DeliverSm(
        sequence_num=seq,
        short_message=text,
        source=PhoneNumber(source, TON.INTERNATIONAL, NPI.ISDN),
        destination=PhoneNumber("Acme", TON.ALPHANUMERIC),
        esm_class=0x04,
        registered_delivery=0,
        encoding="latin_1",
        optional_params=[
            OptionalParam(Tag.RECEIPTED_MESSAGE_ID, receipt_id),
            OptionalParam(Tag.MESSAGE_STATE, state),
        ],
    )
    ours = DeliverSm(
        sequence_number=seq,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=source,
        dest_addr_ton=5,
        destination_addr="Acme",
        esm_class=0x04,
        data_coding=LATIN_1,
        short_message=text.encode("latin-1"),
        message_state=state,
        receipted_message_id=receipt_id,
    )
    assert encode(ours) == theirs.pdu()
    assert decode(theirs.pdu()) == ours
    back = their_decode(aiosmpplib.DeliverSm, encode(ours))
    assert back.short_message == text
    tlvs = {p.tag: p.value for p in back.optional_params}
    assert tlvs == {Tag.MESSAGE_STATE: state, Tag.RECEIPTED_MESSAGE_ID: receipt_id}


@settings(max_examples=40, deadline=None)
@given(seq=st.integers(1, 0x7FFFFFFF), message_id=st.text("0123456789ABCDEF-", max_size=64))
def test_submit_sm_resp_matches_aiosmpplib(seq: int, message_id: str) -> None:
    theirs = aiosmpplib.SubmitSmResp(sequence_num=seq, message_id=message_id)
    ours = SubmitSmResp(sequence_number=seq, message_id=message_id)
    assert encode(ours) == theirs.pdu()
    assert decode(theirs.pdu()) == ours
    assert their_decode(aiosmpplib.SubmitSmResp, encode(ours)).message_id == message_id


AnyBind = BindTransmitter | BindReceiver | BindTransceiver
BINDS: list[tuple[type[AnyBind], Any]] = [
    (BindTransmitter, aiosmpplib.BindTransmitter),
    (BindReceiver, aiosmpplib.BindReceiver),
    (BindTransceiver, aiosmpplib.BindTransceiver),
]


@pytest.mark.parametrize(("ours_cls", "theirs_cls"), BINDS, ids=lambda c: c.__name__)
@settings(max_examples=30, deadline=None)
@given(
    seq=st.integers(1, 0x7FFFFFFF),
    system_id=st.text("abcdefghijklmnopqrstuvwxyz0123456789", max_size=15),
    password=st.text("abcdefghijklmnopqrstuvwxyz0123456789", max_size=8),
    system_type=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=12),
    addr_ton=tons,
    addr_npi=npis,
    address_range=st.text("0123456789^$", max_size=40),
)
def test_binds_match_aiosmpplib(
    ours_cls: type[AnyBind],
    theirs_cls: Any,
    seq: int,
    system_id: str,
    password: str,
    system_type: str,
    addr_ton: TON,
    addr_npi: NPI,
    address_range: str,
) -> None:
    theirs = theirs_cls(
        sequence_num=seq,
        system_id=system_id,
        password=password,
        system_type=system_type,
        addr_ton=addr_ton,
        addr_npi=addr_npi,
        address_range=address_range,
    )
    ours = ours_cls(
        sequence_number=seq,
        system_id=system_id,
        password=password,
        system_type=system_type,
        addr_ton=int(addr_ton),
        addr_npi=int(addr_npi),
        address_range=address_range,
    )
    assert encode(ours) == theirs.pdu()
    assert decode(theirs.pdu()) == ours
    back = their_decode(theirs_cls, encode(ours))
    assert (back.system_id, back.password, back.address_range) == (
        system_id,
        password,
        address_range,
    )


def test_bind_transceiver_resp_matches_aiosmpplib() -> None:
    theirs = aiosmpplib.BindTransceiverResp(
        sequence_num=9, system_id="SMSC", sc_interface_version=0x34
    )
    ours = BindTransceiverResp(sequence_number=9, system_id="SMSC", sc_interface_version=0x34)
    assert encode(ours) == theirs.pdu()
    assert decode(theirs.pdu()) == ours
    back = their_decode(aiosmpplib.BindTransceiverResp, encode(ours))
    assert (back.system_id, back.sc_interface_version) == ("SMSC", 0x34)
