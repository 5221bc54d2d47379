"""decode_text / decode_septets: every data_coding, escapes, national tables, packing, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.text import gsm7
from engine.text.decoder import UserDataError, alphabet_of, decode_septets, decode_text
from engine.text.gsm7_tables import DEFAULT_BASIC, DEFAULT_EXTENSION
from engine.text.udh import parse_udh

R = "\ufffd"


# -- GSM 7 bit, unpacked (data_coding 0x00, the SMPP default) -------------------------------


def test_default_alphabet_every_septet() -> None:
    for code, ch in enumerate(DEFAULT_BASIC):
        if code != 0x1B:
            assert decode_septets(bytes((code,))) == ch
    assert decode_text(b"Hello @ \x00 \x11", 0x00) == "Hello ¡ @ _"


def test_extension_table_through_escape() -> None:
    for code, ch in DEFAULT_EXTENSION.items():
        assert decode_septets(bytes((0x1B, code))) == ch
    assert decode_text(b"5 \x1be = a\x1b<b\x1b>", 0x00) == "5 € = a[b]"


def test_escape_edge_cases() -> None:
    assert decode_septets(b"\x1bA") == "A"  # TS 23.038 §6.2.1.1: unknown extension → basic
    assert decode_septets(b"a\x1b\x1bb") == "a b"  # ESC ESC: reserved, shown as a space
    assert decode_septets(b"ab\x1b") == "ab"  # a dangling ESC is not a character
    assert decode_septets(b"\x1b\x1b\x1b") == " "
    assert decode_septets(b"\x1b\xe5x") == R + "x"  # ESC + a non-septet


def test_octets_with_the_high_bit_are_not_septets() -> None:
    assert decode_text(b"a\x80b\xff", 0x00) == f"a{R}b{R}"


def test_agrees_with_the_encoders_decoder_on_septets() -> None:
    text = "Ünìcode? Ñö: {[€]} ~ ^ | \\ \x0c Æ ø Å ΔΦΓΛΩΠΨΣΘΞ ¿§"
    septets = gsm7.encode(text)
    assert decode_septets(septets) == gsm7.decode(septets) == text


# -- national language tables named by the UDH ----------------------------------------------


def test_turkish_locking_and_single_shift_from_the_udh() -> None:
    text = "Şeker ığdır ÇĞİ €"
    septets = gsm7.encode(text, "turkish", "turkish")
    sm = bytes.fromhex("06 250101 240101") + septets
    udh = parse_udh(sm, True)
    assert (udh.locking_shift, udh.single_shift) == (1, 1)
    assert decode_text(sm, 0x00, udh) == text
    # TS 23.038 A.3.1 spot values: 0x07 ı, 0x1C Ş in the locking table
    assert decode_septets(b"\x07\x1c", locking_shift=1) == "ıŞ"
    assert decode_septets(b"\x1b\x47", single_shift=1) == "Ğ"  # A.2.1


def test_spanish_single_shift_only() -> None:
    sm = bytes.fromhex("03 240102") + b"Canci\x1bon"
    assert decode_text(sm, 0x00, parse_udh(sm, True)) == "Canción"


def test_indic_locking_table_and_unassigned_cell() -> None:
    text = "नमस्ते"
    sm = bytes.fromhex("03 250106") + gsm7.encode(text, "hindi", None)
    assert decode_text(sm, 0x00, parse_udh(sm, True)) == text
    assert decode_septets(b"\x11", locking_shift=0x0C) == R  # Tamil 0x11 is unassigned


def test_unknown_language_id_falls_back_to_the_default_tables() -> None:
    sm = bytes.fromhex("06 25017F 24017F") + b"\x07\x1b\x65"  # id 0x7F has no tables
    assert decode_text(sm, 0x00, parse_udh(sm, True)) == "ì€"


def test_shift_elements_do_not_touch_ucs2() -> None:
    sm = bytes.fromhex("03 250101") + "Şş".encode("utf-16-be")
    assert decode_text(sm, 0x08, parse_udh(sm, True)) == "Şş"


# -- GSM 7 bit, packed ------------------------------------------------------------------------


def test_packed_known_vector() -> None:
    assert decode_text(bytes.fromhex("E8329BFD4697D9EC37"), 0x00, packed=True) == "hellohello"


def test_packed_after_a_udh_skips_the_fill_bits() -> None:
    # 6-octet UDH = 48 bits; 1 fill bit aligns to 49 = 7 * 7; 'A' (0x41) << 1 = 0x82
    sm = bytes.fromhex("050003010201") + b"\x82"
    assert decode_text(sm, 0x00, parse_udh(sm, True), packed=True) == "A"
    # 7-octet UDH = 56 bits: no fill; 7 septets leave 7 spare bits, which carry a CR:
    # the last octet is G's top bit (0x47 >> 6) and CR << 1 = 0x1B
    sm = bytes.fromhex("06080400010201") + gsm7.pack(b"ABCDEFG")
    assert sm[-1] == 0x1B
    assert decode_text(sm, 0x00, parse_udh(sm, True), packed=True) == "ABCDEFG"


@pytest.mark.parametrize(
    "udh_hex,language",
    [
        ("", None),  # no header, no fill
        ("050003010201", None),  # 6 octets: 1 fill bit
        ("06080400010201", None),  # 7 octets: none
        ("0B0003070301250101240101", "turkish"),  # 12 octets: 2 fill bits, Turkish tables
    ],
)
def test_packed_with_every_fill(udh_hex: str, language: str | None) -> None:
    text = ("Ağaç {ışık} €5 " if language else "Hello {world} €10 ~ ") + "1234567890 " * 3
    udh = bytes.fromhex(udh_hex)
    septets = gsm7.encode(text, language, language)
    sm = udh + gsm7.pack(septets, (7 - len(udh) * 8 % 7) % 7)
    assert decode_text(sm, 0x00, parse_udh(sm, bool(udh)), packed=True) == text


def test_packed_final_cr_on_an_octet_boundary_is_read_as_padding() -> None:
    # 8 septets fill 7 octets exactly; a final CR there is indistinguishable from the
    # padding CR of TS 23.038 §6.1.2.3.1, so it is dropped (the sender must double it;
    # max_octets=7 makes pack leave it single, as a sender that does not double would).
    single = gsm7.pack(gsm7.encode("abcdefg\r"), max_octets=7)
    assert len(single) == 7
    assert decode_text(single, 0x00, packed=True) == "abcdefg"
    assert decode_text(gsm7.pack(gsm7.encode("abcdefg\r\r")), 0x00, packed=True) == "abcdefg\r\r"
    assert decode_text(gsm7.pack(gsm7.encode("abcdef\r")), 0x00, packed=True) == "abcdef\r"


# -- other data codings -----------------------------------------------------------------------


def test_ia5_ascii() -> None:
    assert decode_text(b"plain {ascii} @", 0x01) == "plain {ascii} @"
    assert decode_text(b"a\xe9b", 0x01) == f"a{R}b"


def test_latin_1() -> None:
    assert decode_text("café ÿ".encode("latin-1"), 0x03) == "café ÿ"


def test_cyrillic_and_hebrew() -> None:
    assert decode_text("Привет".encode("iso8859-5"), 0x06) == "Привет"
    assert decode_text("שלום".encode("iso8859-8"), 0x07) == "שלום"


def test_ucs2_with_surrogate_pairs() -> None:
    data = bytes.fromhex("041F04400438043204350442") + "😀 ok".encode("utf-16-be")
    assert decode_text(data, 0x08) == "Привет😀 ok"


def test_ucs2_lone_surrogate_is_a_replacement() -> None:
    assert decode_text(bytes.fromhex("D83D0041"), 0x08) == R + "A"
    assert decode_text(bytes.fromhex("0041DE00"), 0x08) == "A" + R


def test_ucs2_odd_length_is_an_error() -> None:
    with pytest.raises(UserDataError, match="odd length \\(3 octets\\)"):
        decode_text(b"\x00A\x00", 0x08)
    sm = bytes.fromhex("050003010201") + b"\x00A\x00"  # counted after the header
    with pytest.raises(UserDataError):
        decode_text(sm, 0x08, parse_udh(sm, True))


@pytest.mark.parametrize(
    "dc",
    [
        0x02,
        0x04,
        0xF4,
        0xF5,
        0xF6,
        0xF7,
        0x15,
        0x05,
        0x09,
        0x0A,
        0x0D,
        0x0E,
        0x0F,
        0x31,
        0x2C,
        0x80,
        0xBF,
    ],
)
def test_binary_and_unsupported_codings_are_not_text(dc: int) -> None:
    assert alphabet_of(dc) is None
    assert decode_text(b"\x00\x01\xfe\xff", dc) is None


@pytest.mark.parametrize(
    "dc,alphabet",
    [
        (0x00, "gsm7"), (0x01, "ascii"), (0x03, "latin-1"), (0x06, "iso8859-5"),
        (0x07, "iso8859-8"), (0x08, "ucs2"),
        (0x10, "gsm7"), (0x11, "gsm7"), (0x18, "ucs2"), (0x19, "ucs2"), (0x40, "gsm7"),
        (0x48, "ucs2"), (0xC0, "gsm7"), (0xD8, "gsm7"), (0xE0, "ucs2"), (0xEF, "ucs2"),
        (0xF0, "gsm7"), (0xF3, "gsm7"), (0xF8, "gsm7"),
    ],
)  # fmt: skip
def test_data_coding_table(dc: int, alphabet: str) -> None:
    assert alphabet_of(dc) == alphabet


def test_flash_and_class_codings_decode() -> None:
    assert decode_text(b"Hi\x1be", 0xF0) == "Hi€"  # class 0 (flash), GSM 7 bit
    assert decode_text("Hi😀".encode("utf-16-be"), 0x18) == "Hi😀"  # class 0, UCS-2


# -- never raises on arbitrary octets ---------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=160), st.integers(0, 255), st.booleans())
def test_any_octets_decode_or_raise_only_user_data_error(
    data: bytes, dc: int, packed: bool
) -> None:
    try:
        udh = parse_udh(data, True)
    except UserDataError:
        udh = parse_udh(data, False)
    try:
        text = decode_text(data, dc, udh, packed=packed)
    except UserDataError:
        assert alphabet_of(dc) == "ucs2" and (len(data) - udh.payload_offset) % 2 == 1
        return
    assert (text is None) == (alphabet_of(dc) is None)


def test_the_escape_fast_path_agrees_with_the_loop_for_every_table_pair() -> None:
    """decode_septets with escapes (one decode, split on ESC) gives what the one-escape-at-a-time
    loop gives, for every pair of locking / single shift tables and every code after an ESC
    (ESC ESC, a dangling ESC, octets above 0x7F included)."""
    import random

    from engine.text import decoder as d

    rng = random.Random(20)
    ids: list[int | None] = [None, *range(16)]
    codes = [*range(256)]
    for locking in ids:
        for single in ids:
            basic = d._LOCKING.get(locking, d._DEFAULT_CHARMAP)
            shift = d._SINGLE.get(single, d.DEFAULT_EXTENSION)
            every = bytes(b for code in codes for b in (d.ESC, code))  # ESC + each code
            cases = [every, every + bytes([d.ESC]), b"ab" + every[:40] + b"cd"]
            cases += [bytes([0x41, d.ESC, code, 0x42, d.ESC, 0x28]) for code in codes]  # one code at a time
            cases.append(bytes(b for code in range(0x28, 0x7F) for b in (d.ESC, code)))  # many, no ESC ESC
            for _ in range(30):
                cases.append(bytes(rng.choice([d.ESC, d.ESC, rng.randrange(128), rng.randrange(256)])
                                   for _ in range(rng.randrange(1, 40))))
            for septets in cases:
                assert d.decode_septets(septets, locking, single) == d._decode_escapes(septets, basic, shift), (
                    locking, single, septets.hex())
    with_tables = sum(1 for lo in ids for si in ids if (lo is None or lo in d._LOCKING) and (si is None or si in d._SINGLE))
    assert len(d._ESCAPES) == with_tables  # the fast path ran for every pair, and kept one table per pair of tables


def test_packed_wanted_final_cr_survives_because_pack_doubles_it() -> None:
    # Our sending side follows TS 23.038 §6.1.2.3.1: CR CR after a wanted final CR
    # on an octet boundary (CR CR means CR), so the receiver keeps one.
    packed = gsm7.pack(gsm7.encode("abcdefg\r"))
    assert len(packed) == 8
    assert decode_text(packed, 0x00, packed=True) == "abcdefg\r\r"
    # Not where the octet does not fit: a full part counts its septets anyway.
    full = gsm7.pack(gsm7.encode("a" * 159 + "\r"), max_octets=140)
    assert len(full) == 140
    assert gsm7.unpack(full, count=160)[-1] == 0x0D
