"""Codec: round trips for every PDU type and TLV, spec limits, lenient decoding."""

from __future__ import annotations

import struct

import pytest

from connectors import (
    PDU_CLASSES,
    TLV_SPECS,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    CommandId,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    LocalProtocolError,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    RemoteProtocolError,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Tag,
    Unbind,
    UnbindResp,
    UnsuccessSme,
    decode,
    decode_body,
    encode,
)
from connectors.codec import _SPECS, _decode_generic, _encode_generic

# Obviously fake sample numbers only.
SRC = "Acme"
DST = "4500000001"

SAMPLES: list[Pdu] = [
    BindTransmitter(sequence_number=1, system_id="acme", password="secret", system_type="VMA"),
    BindReceiver(sequence_number=2, system_id="acme", password="pw", addr_ton=1, addr_npi=1),
    BindTransceiver(sequence_number=3, system_id="acme", password="pw", address_range="^45"),
    BindTransmitterResp(sequence_number=1, system_id="SMSC", sc_interface_version=0x34),
    BindReceiverResp(sequence_number=2, system_id="SMSC"),
    BindTransceiverResp(sequence_number=3, system_id="SMSC", sc_interface_version=0x34),
    Outbind(sequence_number=4, system_id="SMSC", password="pw"),
    Unbind(sequence_number=5),
    UnbindResp(sequence_number=5),
    GenericNack(sequence_number=6, command_status=0x03),
    EnquireLink(sequence_number=7),
    EnquireLinkResp(sequence_number=7),
    SubmitSm(
        sequence_number=8,
        service_type="CMT",
        source_addr_ton=5,
        source_addr=SRC,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=DST,
        esm_class=0x40,
        registered_delivery=1,
        data_coding=8,
        validity_period="000001000000000R",
        short_message=b"\x05\x00\x03\x01\x02\x01\x00h\x00i",
    ),
    SubmitSmResp(sequence_number=8, message_id="0a1b2c3d"),
    DeliverSm(
        sequence_number=9,
        source_addr=DST,
        destination_addr=SRC,
        esm_class=0x04,
        short_message=b"id:0a1b2c3d sub:001 dlvrd:001 stat:DELIVRD err:000 text:",
        receipted_message_id="0a1b2c3d",
        message_state=2,
        network_error_code=b"\x03\x00\x00",
    ),
    DeliverSmResp(sequence_number=9),
    DataSm(
        sequence_number=10,
        source_addr=SRC,
        destination_addr=DST,
        message_payload=b"long text" * 50,
        qos_time_to_live=3600,
        dest_telematics_id=0x1234,
    ),
    DataSmResp(sequence_number=10, message_id="m1", delivery_failure_reason=1),
    QuerySm(sequence_number=11, message_id="m1", source_addr=SRC),
    QuerySmResp(
        sequence_number=11, message_id="m1", final_date="250101120000000+", message_state=2
    ),
    CancelSm(sequence_number=12, message_id="m1", source_addr=SRC, destination_addr=DST),
    CancelSmResp(sequence_number=12),
    ReplaceSm(sequence_number=13, message_id="m1", source_addr=SRC, short_message=b"new"),
    ReplaceSmResp(sequence_number=13),
    AlertNotification(sequence_number=14, source_addr=DST, esme_addr=SRC, ms_availability_status=0),
    SubmitMulti(
        sequence_number=15,
        source_addr=SRC,
        dest_address=(
            SmeAddress(1, 1, DST),
            DistributionList("friends"),
            SmeAddress(2, 1, "4500002"),
        ),
        registered_delivery=1,
        short_message=b"hello all",
        sar_msg_ref_num=9,
    ),
    SubmitMultiResp(
        sequence_number=15,
        message_id="m2",
        unsuccess_sme=(UnsuccessSme(1, 1, DST, 0x0B),),
    ),
]


def test_samples_cover_every_pdu_type() -> None:
    assert {type(p) for p in SAMPLES} == set(PDU_CLASSES.values())


@pytest.mark.parametrize("pdu", SAMPLES, ids=lambda p: type(p).__name__)
def test_round_trip_every_pdu_type(pdu: Pdu) -> None:
    wire = encode(pdu)
    length, command_id, status, seq = struct.unpack_from(">IIII", wire)
    assert length == len(wire)
    assert command_id == pdu.command_id
    assert (status, seq) == (pdu.command_status, pdu.sequence_number)
    assert decode(wire) == pdu
    assert decode(memoryview(wire)) == pdu
    assert decode_body(command_id, status, seq, wire[16:]) == pdu


@pytest.mark.parametrize("pdu", SAMPLES, ids=lambda p: type(p).__name__)
def test_fast_and_generic_paths_agree(pdu: Pdu) -> None:
    wire = _encode_generic(pdu)
    assert encode(pdu) == wire
    spec = _SPECS[type(pdu)]
    assert _decode_generic(spec, pdu.command_status, pdu.sequence_number, wire[16:]) == pdu


def _tlv_value(kind: int, size: int) -> object:
    if kind == 0:
        return (1 << (8 * size)) - 1  # largest value of that width
    if kind == 1:
        return "x" * (size - 1)
    return b"\xab" * min(size, 300)


ALL_CLASSES = sorted(_SPECS, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=[c.__name__ for c in ALL_CLASSES])
def test_round_trip_every_tlv_of_every_pdu(cls: type[Pdu]) -> None:
    spec = _SPECS[cls]
    pdu = cls(sequence_number=42)
    for tlv in spec.tlvs:
        setattr(pdu, tlv.name, _tlv_value(tlv.kind, tlv.size))
    wire = encode(pdu)
    assert decode(wire) == pdu
    # Each TLV is on the wire with its spec tag.
    for tlv in spec.tlvs:
        assert struct.pack(">H", tlv.tag) in wire


def test_tlv_specs_cover_every_tag_constant() -> None:
    tags = {v for k, v in vars(Tag).items() if k.isupper()}
    assert {spec.tag for spec in TLV_SPECS.values()} == tags


def test_submit_sm_wire_bytes_match_spec_layout() -> None:
    pdu = SubmitSm(
        sequence_number=2,
        source_addr_ton=5,
        source_addr="Acme",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="4500000001",
        registered_delivery=1,
        short_message=b"hi",
    )
    body = (
        b"\x00"  # service_type
        b"\x05\x00Acme\x00"  # source ton, npi, addr
        b"\x01\x014500000001\x00"  # dest ton, npi, addr
        b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        b"\x00\x00"  # schedule_delivery_time, validity_period
        b"\x01\x00\x00\x00"  # registered_delivery, replace_if_present, data_coding, default id
        b"\x02hi"  # sm_length, short_message
    )
    assert encode(pdu) == struct.pack(">IIII", 16 + len(body), 4, 0, 2) + body


def test_unknown_tlvs_survive_a_round_trip() -> None:
    extra = ((0x1400, b"vendor"), (0x1501, b""), (Tag.MESSAGE_STATE, b"\x02"))
    pdu = SubmitSm(destination_addr=DST, short_message=b"x", extra_tlvs=extra)
    decoded = decode(encode(pdu))
    assert isinstance(decoded, SubmitSm)
    # message_state is not a submit_sm TLV: it stays raw, in order.
    assert decoded.extra_tlvs == extra
    assert decoded == pdu


def test_duplicate_and_misfit_tlvs_are_kept_raw() -> None:
    body = encode(DeliverSm(message_state=2))[16:]
    body += struct.pack(">HHB", Tag.MESSAGE_STATE, 1, 5)  # duplicate
    body += struct.pack(">HH", Tag.USER_MESSAGE_REFERENCE, 3) + b"\x01\x07\x01"  # > 16 bits
    pdu = decode_body(CommandId.DELIVER_SM, 0, 1, body)
    assert isinstance(pdu, DeliverSm)
    assert pdu.message_state == 2
    assert pdu.user_message_reference is None
    assert pdu.extra_tlvs == (
        (Tag.MESSAGE_STATE, b"\x05"),
        (Tag.USER_MESSAGE_REFERENCE, b"\x01\x07\x01"),
    )
    assert decode(encode(pdu)) == pdu


@pytest.mark.parametrize(
    ("tag", "raw", "name", "value"),
    [
        (Tag.USER_MESSAGE_REFERENCE, b"\x07", "user_message_reference", 7),  # 1 octet for 2
        (Tag.MESSAGE_STATE, b"\x00\x02", "message_state", 2),  # 2 octets for 1
        (Tag.SAR_MSG_REF_NUM, b"\x00\x00\x00\x09", "sar_msg_ref_num", 9),
    ],
)
def test_integer_tlv_of_another_width_is_accepted_if_it_fits(
    tag: int, raw: bytes, name: str, value: int
) -> None:
    body = encode(DeliverSm(esm_class=4))[16:] + struct.pack(">HH", tag, len(raw)) + raw
    pdu = decode_body(CommandId.DELIVER_SM, 0, 1, body)
    assert getattr(pdu, name) == value
    assert pdu.extra_tlvs == ()
    assert decode(encode(pdu)) == pdu


def test_cstring_tlv_without_nul_is_accepted() -> None:
    body = encode(DeliverSm(esm_class=4))[16:]
    body += struct.pack(">HH", Tag.RECEIPTED_MESSAGE_ID, 6) + b"abc123"
    pdu = decode_body(CommandId.DELIVER_SM, 0, 1, body)
    assert isinstance(pdu, DeliverSm)
    assert pdu.receipted_message_id == "abc123"


# --- limits on encode ----------------------------------------------------------


@pytest.mark.parametrize(
    ("pdu", "field"),
    [
        (SubmitSm(service_type="x" * 6), "service_type"),
        (SubmitSm(source_addr="1" * 21), "source_addr"),
        (SubmitSm(destination_addr="1" * 21), "destination_addr"),
        (SubmitSm(short_message=b"x" * 255), "short_message"),
        (SubmitSm(schedule_delivery_time="2501"), "schedule_delivery_time"),
        (SubmitSm(validity_period="x" * 17), "validity_period"),
        (SubmitSm(destination_addr="45\x0012"), "destination_addr"),
        (SubmitSm(source_addr="Ω"), "source_addr"),
        (SubmitSm(esm_class=256), "esm_class"),
        (SubmitSm(sar_msg_ref_num=0x10000), "sar_msg_ref_num"),
        (SubmitSm(short_message=b"x", message_payload=b"y"), "message_payload"),
        (SubmitSm(message_payload=b"x" * 0x10000), "message_payload"),
        (SubmitSm(extra_tlvs=((0x10000, b""),)), "extra_tlvs"),
        (SubmitSm(sequence_number=1 << 32), "sequence_number"),
        (SubmitSm(command_status=-1), "command_status"),
        (BindTransmitter(system_id="s" * 16), "system_id"),
        (BindTransmitter(password="p" * 9), "password"),
        (BindTransmitter(system_type="t" * 13), "system_type"),
        (BindTransmitter(address_range="r" * 41), "address_range"),
        (BindTransmitterResp(system_id="s" * 16), "system_id"),
        (SubmitSmResp(message_id="m" * 65), "message_id"),
        (DeliverSm(receipted_message_id="m" * 65), "receipted_message_id"),
        (DataSm(source_addr="1" * 65), "source_addr"),
        (QuerySm(message_id="m" * 65), "message_id"),
        (CancelSm(destination_addr="1" * 21), "destination_addr"),
        (AlertNotification(esme_addr="1" * 65), "esme_addr"),
        (DeliverSm(network_error_code=b"1234"), "network_error_code"),
        (SubmitMulti(dest_address=(SmeAddress(destination_addr="1" * 21),)), "dest_address"),
        (SubmitMulti(dest_address=(DistributionList("d" * 21),)), "dest_address"),
        (SubmitMulti(dest_address=(SmeAddress(),) * 255), "dest_address"),
        (SubmitMulti(dest_address=("4500000001",)), "dest_address"),  # type: ignore[arg-type]
        (
            SubmitMultiResp(unsuccess_sme=(UnsuccessSme(error_status_code=1 << 32),)),
            "unsuccess_sme",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_encode_enforces_spec_limits(pdu: Pdu, field: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(pdu)
    assert info.value.field == field


def test_limit_errors_do_not_leak_values() -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(SubmitSm(destination_addr="4599999999" * 3))
    assert "4599999999" not in str(info.value)


def test_max_lengths_are_accepted() -> None:
    pdu = SubmitSm(
        service_type="x" * 5,
        source_addr="1" * 20,
        destination_addr="2" * 20,
        schedule_delivery_time="250101120000000+",
        validity_period="000001000000000R",
        short_message=b"x" * 254,
    )
    assert decode(encode(pdu)) == pdu


def test_wrong_types_raise_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode(SubmitSm(destination_addr=12345))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode(SubmitSm(short_message="text"))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode("not a pdu")  # type: ignore[arg-type]


# --- responses with errors ----------------------------------------------------------

RESP_WITH_BODY = [
    SubmitMultiResp,
    BindTransmitterResp,
    BindReceiverResp,
    BindTransceiverResp,
    SubmitSmResp,
    DeliverSmResp,
    DataSmResp,
    QuerySmResp,
]


@pytest.mark.parametrize("cls", RESP_WITH_BODY, ids=lambda c: c.__name__)
def test_empty_body_error_resp_decodes(cls: type[Pdu]) -> None:
    wire = struct.pack(">IIII", 16, cls.command_id, 0x0D, 77)
    pdu = decode(wire)
    assert type(pdu) is cls
    assert pdu.command_status == 0x0D
    assert pdu.sequence_number == 77


@pytest.mark.parametrize("cls", RESP_WITH_BODY, ids=lambda c: c.__name__)
def test_error_resp_with_default_body_encodes_header_only(cls: type[Pdu]) -> None:
    pdu = cls(sequence_number=5, command_status=0x58)
    wire = encode(pdu)
    assert len(wire) == 16
    assert decode(wire) == pdu


def test_error_status_in_resp_is_data() -> None:
    pdu = SubmitSmResp(sequence_number=3, command_status=0x58, message_id="")
    assert decode(encode(pdu)) == pdu
    wire = struct.pack(">IIII", 20, CommandId.SUBMIT_SM_RESP, 0x45, 3) + b"abc\x00"
    decoded = decode(wire)
    assert isinstance(decoded, SubmitSmResp)
    assert decoded.command_status == 0x45
    assert decoded.message_id == "abc"


def test_message_id_without_nul_is_taken_whole() -> None:
    wire = struct.pack(">IIII", 19, CommandId.SUBMIT_SM_RESP, 0, 3) + b"abc"
    decoded = decode(wire)
    assert isinstance(decoded, SubmitSmResp)
    assert decoded.message_id == "abc"


def test_non_ascii_strings_decode_as_latin1() -> None:
    body = b"\x00\x05\x00Acm\xe9\x00\x01\x01" + DST.encode() + b"\x00" + b"\x00" * 9 + b"\x00"
    pdu = decode_body(CommandId.DELIVER_SM, 0, 1, body)
    assert isinstance(pdu, DeliverSm)
    assert pdu.source_addr == "Acmé"


# --- malformed input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "offset"),
    [
        (b"\x00\x00\x00\x10\x00\x00\x00", 0),  # short header
        (struct.pack(">IIII", 17, 0x15, 0, 1), 0),  # length disagrees
        (struct.pack(">IIII", 16, 0x12345, 0, 1), 4),  # unknown command_id
        (struct.pack(">IIII", 20, CommandId.BIND_TRANSMITTER, 0, 1) + b"abcd", 16),
        (struct.pack(">IIII", 22, CommandId.ENQUIRE_LINK, 0, 1) + b"\x00\x01\x00\x05ab", 16),
        (struct.pack(">IIII", 18, CommandId.ENQUIRE_LINK, 0, 1) + b"\x00\x01", 16),
    ],
)
def test_malformed_input_raises_remote_error(wire: bytes, offset: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(wire)
    assert info.value.offset == offset


def test_sm_length_past_end_is_remote_error_with_offset() -> None:
    wire = bytearray(encode(DeliverSm(short_message=b"abc")))
    sm_length_at = len(wire) - 4
    assert wire[sm_length_at] == 3
    wire[sm_length_at] = 9
    with pytest.raises(RemoteProtocolError) as info:
        decode(bytes(wire))
    assert info.value.offset == sm_length_at
    assert info.value.command_id == CommandId.DELIVER_SM
    assert "sm_length" in info.value.reason


def test_unknown_command_id_error_carries_nack_data() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_body(0x00001234, 0, 99, b"")
    assert info.value.command_status == 0x03  # ESME_RINVCMDID
    assert info.value.sequence_number == 99


def test_repr_hides_numbers_text_and_password() -> None:
    text = repr(
        SubmitSm(source_addr="4511111111", destination_addr=DST, short_message=b"secret text")
    ) + repr(BindTransmitter(system_id="acme", password="hunter2"))
    for secret in ("4511111111", DST, "secret text", "hunter2"):
        assert secret not in text
    assert "acme" in text


def test_submit_multi_bad_dest_flag_is_remote_error() -> None:
    wire = bytearray(encode(SubmitMulti(dest_address=(SmeAddress(1, 1, DST),))))
    flag_at = 16 + 1 + 2 + 1 + 1  # service_type, ton/npi, source_addr, number_of_dests
    assert wire[flag_at] == 1
    wire[flag_at] = 3
    with pytest.raises(RemoteProtocolError) as info:
        decode(bytes(wire))
    assert info.value.command_status == 0x40  # ESME_RINVDESTFLAG
    assert info.value.offset == flag_at


def test_submit_multi_repr_hides_destinations() -> None:
    text = repr(SubmitMulti(dest_address=(SmeAddress(1, 1, DST),))) + repr(
        SubmitMultiResp(unsuccess_sme=(UnsuccessSme(1, 1, DST, 0x0B),))
    )
    assert DST not in text


@pytest.mark.parametrize("service_type", [b"", b"CMT"])
@pytest.mark.parametrize("command_id", [CommandId.DELIVER_SM, CommandId.SUBMIT_SM])
def test_addresses_longer_than_spec_decode_leniently(command_id: int, service_type: bytes) -> None:
    long_source = "4" + "0" * 29  # 30 digits, over the 20 of the spec
    body = (
        service_type
        + b"\x00\x01\x01"
        + long_source.encode()
        + b"\x00\x05\x00Acme\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x02hi"
    )
    pdu = decode_body(command_id, 0, 1, body)
    spec = _SPECS[type(pdu)]
    assert pdu == _decode_generic(spec, 0, 1, body)
    assert pdu.source_addr == long_source  # type: ignore[attr-defined]
    assert pdu.short_message == b"hi"  # type: ignore[attr-defined]
    with pytest.raises(LocalProtocolError):  # but we never send one
        encode(pdu)
