"""parse_udh (3GPP TS 23.040 §9.2.3.24): concatenation, shift tables, skipping, malformed headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.text.udh import (
    NO_UDH,
    Concat,
    UdhError,
    UserDataError,
    UserDataHeader,
    fill_bits,
    parse_udh,
)


def test_without_udhi_the_whole_message_is_user_data() -> None:
    assert parse_udh(b"\x05\x00\x03\x01\x02\x01hello", False) is NO_UDH
    assert parse_udh(b"", 0) == UserDataHeader(0, None, None, None)


def test_esm_class_bit_can_be_passed_as_is() -> None:
    udh = parse_udh(bytes.fromhex("050003CC0201") + b"hi", 0x43 & 0x40)
    assert udh == UserDataHeader(6, Concat(0xCC, 2, 1))


def test_concatenation_8_bit_reference() -> None:
    # a real part 2 of 3, reference 0x2A (§9.2.3.24.1)
    sm = bytes.fromhex("0500032A0302") + b"abc"
    udh = parse_udh(sm, True)
    assert udh.concat == Concat(reference=0x2A, total=3, sequence=2)
    assert udh.payload_offset == 6
    assert sm[udh.payload_offset :] == b"abc"
    assert udh.single_shift is None and udh.locking_shift is None


def test_concatenation_16_bit_reference() -> None:
    sm = bytes.fromhex("060804BEEF0A0A") + b"x"  # §9.2.3.24.8, big-endian reference
    udh = parse_udh(sm, True)
    assert udh.concat == Concat(0xBEEF, 10, 10)
    assert udh.payload_offset == 7


def test_national_language_shift_elements() -> None:
    # locking Turkish (0x25, id 1), single Spanish (0x24, id 2) after an 8-bit concat IE
    sm = bytes.fromhex("0B 0003070301 250101 240102") + b"z"
    udh = parse_udh(sm, True)
    assert udh == UserDataHeader(12, Concat(7, 3, 1), single_shift=2, locking_shift=1)


def test_unknown_elements_are_skipped() -> None:
    # application port addressing 16 bit (0x05, 4 octets) and an unknown 0x70 IE around concat
    sm = bytes.fromhex("0F 050415811581 0003010202 7002ABCD") + b"data"
    udh = parse_udh(sm, True)
    assert udh.concat == Concat(1, 2, 2)
    assert udh.payload_offset == 16
    assert sm[16:] == b"data"


def test_zero_length_and_empty_elements() -> None:
    assert parse_udh(b"\x00hello", True) == UserDataHeader(1)
    assert parse_udh(bytes.fromhex("027000") + b"x", True) == UserDataHeader(3)


def test_repeated_element_last_one_wins() -> None:
    sm = bytes.fromhex("0A 0003010201 0003090302")
    assert parse_udh(sm, True).concat == Concat(9, 3, 2)


@pytest.mark.parametrize(
    "ie",
    [
        "0003010002",  # 8-bit: total 0
        "0003010200",  # 8-bit: sequence 0
        "0003010203",  # 8-bit: sequence > total
        "080400010001",  # 16-bit: total 0
        "080400010203",  # 16-bit: sequence > total
    ],
)
def test_concatenation_with_impossible_numbers_is_ignored(ie: str) -> None:
    # §9.2.3.24.1/.8: total 0, sequence 0 or sequence > total → ignore the whole IE
    body = bytes.fromhex(ie)
    sm = bytes((len(body),)) + body + b"t"
    udh = parse_udh(sm, True)
    assert udh.concat is None
    assert udh.payload_offset == 1 + len(body)


@pytest.mark.parametrize(
    "sm,match",
    [
        (b"", "message is empty"),
        (bytes.fromhex("05000301"), "runs past the end"),
        (bytes.fromhex("0300050102"), "runs past the header"),
        (bytes.fromhex("0100"), "no length octet"),
        (bytes.fromhex("0400020102"), "has length 2, expected 3"),
        (bytes.fromhex("0708050001020304") + b"x", "has length 5, expected 4"),
        (bytes.fromhex("0424020101"), "expected 1"),
        (bytes.fromhex("0225000000"), "expected 1"),
    ],
)
def test_malformed_headers_raise_udh_error(sm: bytes, match: str) -> None:
    with pytest.raises(UdhError, match=match):
        parse_udh(sm, True)


def test_udh_error_is_a_value_error() -> None:
    assert issubclass(UdhError, UserDataError) and issubclass(UdhError, ValueError)


@pytest.mark.parametrize("offset,fill", [(0, 0), (1, 6), (6, 1), (7, 0), (9, 5), (12, 2), (13, 1)])
def test_fill_bits_align_septets_after_the_header(offset: int, fill: int) -> None:
    assert fill_bits(offset) == fill
    assert (offset * 8 + fill) % 7 == 0


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=160))
def test_any_octets_parse_or_raise_udh_error(sm: bytes) -> None:
    """Fuzz invariant: a header or UdhError, nothing else; the offset stays inside the message."""
    try:
        udh = parse_udh(sm, True)
    except UdhError:
        return
    assert 1 <= udh.payload_offset <= len(sm)
    if udh.concat is not None:
        assert 1 <= udh.concat.sequence <= udh.concat.total
