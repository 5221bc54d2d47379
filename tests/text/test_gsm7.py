"""GSM 03.38 tables and codecs, checked against TS 23.038 (tables written out independently here)."""

from __future__ import annotations

import pytest

from engine.text import gsm7
from engine.text.gsm7_tables import (
    DEFAULT_BASIC,
    DEFAULT_EXTENSION,
    NATIONAL_LANGUAGES,
    PORTUGUESE_LOCKING,
    TURKISH_LOCKING,
    UNASSIGNED,
)

# TS 23.038 §6.2.1, row by row (rows = low nibble, columns = high nibble), ESC shown as None.
SPEC_BASIC_ROWS = [
    ("@", "Δ", " ", "0", "¡", "P", "¿", "p"),
    ("£", "_", "!", "1", "A", "Q", "a", "q"),
    ("$", "Φ", '"', "2", "B", "R", "b", "r"),
    ("¥", "Γ", "#", "3", "C", "S", "c", "s"),
    ("è", "Λ", "¤", "4", "D", "T", "d", "t"),
    ("é", "Ω", "%", "5", "E", "U", "e", "u"),
    ("ù", "Π", "&", "6", "F", "V", "f", "v"),
    ("ì", "Ψ", "'", "7", "G", "W", "g", "w"),
    ("ò", "Σ", "(", "8", "H", "X", "h", "x"),
    ("Ç", "Θ", ")", "9", "I", "Y", "i", "y"),
    ("\n", "Ξ", "*", ":", "J", "Z", "j", "z"),
    ("Ø", None, "+", ";", "K", "Ä", "k", "ä"),
    ("ø", "Æ", ",", "<", "L", "Ö", "l", "ö"),
    ("\r", "æ", "-", "=", "M", "Ñ", "m", "ñ"),
    ("Å", "ß", ".", ">", "N", "Ü", "n", "ü"),
    ("å", "É", "/", "?", "O", "§", "o", "à"),
]
SPEC_EXTENSION = {
    "\x0c": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}  # fmt: skip


def spec_basic() -> dict[str, int]:
    out: dict[str, int] = {}
    for row, chars in enumerate(SPEC_BASIC_ROWS):
        for col, ch in enumerate(chars):
            if ch is not None:
                out[ch] = col * 16 + row
    return out


def test_default_table_matches_spec_layout() -> None:
    basic = spec_basic()
    assert len(basic) == 127
    for ch, code in basic.items():
        assert DEFAULT_BASIC[code] == ch
    assert {ch: code for code, ch in DEFAULT_EXTENSION.items()} == SPEC_EXTENSION


@pytest.mark.parametrize("ch,code", sorted(spec_basic().items(), key=lambda kv: kv[1]))
def test_every_basic_character_is_one_septet(ch: str, code: int) -> None:
    assert gsm7.encode(ch) == bytes((code,))
    assert gsm7.encode_default(ch) == bytes((code,))
    assert gsm7.decode(bytes((code,))) == ch
    assert gsm7.septet_count(ch) == 1
    # also inside a non-ASCII text (charmap path) and an ASCII text (bytes path)
    assert gsm7.encode("Δ" + ch) == bytes((0x10, code))
    assert gsm7.encode("a" + ch) == bytes((0x61, code))


@pytest.mark.parametrize("ch,code", sorted(SPEC_EXTENSION.items(), key=lambda kv: kv[1]))
def test_every_extension_character_is_esc_plus_code(ch: str, code: int) -> None:
    assert gsm7.encode(ch) == bytes((0x1B, code))
    assert gsm7.encode("Δ" + ch + "x") == bytes((0x10, 0x1B, code, 0x78))
    assert gsm7.encode("a" + ch + "@") == bytes((0x61, 0x1B, code, 0x00))
    assert gsm7.decode(bytes((0x1B, code))) == ch
    assert gsm7.septet_count(ch) == 2


@pytest.mark.parametrize(
    "text,fits",
    [
        ("Ç", True),
        ("ç", False),  # the classic trap: only the capital is in the basic set
        ("ÆØÅæøå", True),
        ("\x1b", False),  # a bare ESC is not a character
        ("a\x1bb", False),
        ("\x00", False),
        ("`", False),
        ("\t", False),
        ("\x7f", False),
        ("\x0c", True),  # form feed is in the extension table
        ("ΔΦΓΛΩΠΨΣΘΞ", True),
        ("Α", False),  # Greek capital alpha looks like A but is not in the table
        ("€", True),
        ("á", False),
        ("ÿ", False),
    ],
)
def test_traps(text: str, fits: bool) -> None:
    assert (gsm7.encode_default(text) is not None) is fits
    assert (gsm7.septet_count(text) is not None) is fits


def test_encode_error_names_position_not_text() -> None:
    with pytest.raises(gsm7.GsmEncodeError) as info:
        gsm7.encode("secret code ç")
    assert info.value.position == 12
    assert "secret" not in str(info.value)
    assert "ç" not in str(info.value)
    assert "position 12" in str(info.value)


def test_decode_unknown_escape_shows_basic_character_and_drops_dangling_esc() -> None:
    assert gsm7.decode(bytes((0x1B, 0x41))) == "A"  # TS 23.038 §6.2.1.1 note
    assert gsm7.decode(b"a\x1b") == "a"


@pytest.mark.parametrize(
    "text,packed_hex",
    [
        ("hellohello", "e8329bfd4697d9ec37"),  # TS 23.038 / widely used example
        ("1234567", "31d98c56b3dd1a"),  # 7 spare bits carry CR (§6.1.2.3.1)
        ("12345678", "31d98c56b3dd70"),
        ("A", "41"),
    ],
)
def test_pack_known_vectors(text: str, packed_hex: str) -> None:
    packed = gsm7.pack(gsm7.encode(text))
    assert packed.hex() == packed_hex
    assert gsm7.decode(gsm7.unpack(packed)) == text


@pytest.mark.parametrize("fill", range(7))
@pytest.mark.parametrize("n", [1, 6, 7, 8, 9, 15, 16, 153, 160])
def test_pack_unpack_round_trip_with_fill_bits(fill: int, n: int) -> None:
    septets = bytes((i * 37 + 5) % 128 for i in range(n))
    packed = gsm7.pack(septets, fill)
    assert len(packed) == (fill + 7 * n + 7) // 8
    assert gsm7.unpack(packed, fill, count=n) == septets
    assert packed[0] & ((1 << fill) - 1) == 0  # fill bits are zero


def test_160_septets_pack_into_140_octets() -> None:
    assert len(gsm7.pack(b"\x41" * 160)) == 140
    assert len(gsm7.pack(b"\x41" * 153, fill_bits=1)) == 134  # after a 6-octet UDH


# -- national language tables (TS 23.038 Annex A) -------------------------------------------


def test_language_identifiers() -> None:
    ids = {name: lang.language_id for name, lang in NATIONAL_LANGUAGES.items()}
    assert ids["turkish"] == 1
    assert ids["spanish"] == 2
    assert ids["portuguese"] == 3
    assert NATIONAL_LANGUAGES["spanish"].locking is None  # Spanish has a single shift table only


@pytest.mark.parametrize(
    "table,expected",
    [
        (TURKISH_LOCKING, {0x04: "€", 0x07: "ı", 0x0B: "Ğ", 0x0C: "ğ", 0x1C: "Ş", 0x1D: "ş",
                           0x40: "İ", 0x60: "ç", 0x1B: "\x1b"}),
        (PORTUGUESE_LOCKING, {0x04: "ê", 0x09: "ç", 0x12: "ª", 0x15: "∞", 0x16: "^", 0x17: "\\",
                              0x24: "º", 0x40: "Í", 0x5B: "Ã", 0x60: "~", 0x7D: "`"}),
    ],
)  # fmt: skip
def test_locking_tables_spot_checks(table: str, expected: dict[int, str]) -> None:
    assert len(table) == 128
    for code, ch in expected.items():
        assert table[code] == ch


@pytest.mark.parametrize(
    "lang,code,ch",
    [
        ("turkish", 0x47, "Ğ"), ("turkish", 0x49, "İ"), ("turkish", 0x53, "Ş"),
        ("turkish", 0x63, "ç"), ("turkish", 0x67, "ğ"), ("turkish", 0x69, "ı"),
        ("turkish", 0x73, "ş"), ("turkish", 0x65, "€"),
        ("spanish", 0x09, "ç"), ("spanish", 0x41, "Á"), ("spanish", 0x49, "Í"),
        ("spanish", 0x4F, "Ó"), ("spanish", 0x55, "Ú"), ("spanish", 0x61, "á"),
        ("spanish", 0x69, "í"), ("spanish", 0x6F, "ó"), ("spanish", 0x75, "ú"),
        ("portuguese", 0x05, "ê"), ("portuguese", 0x12, "Φ"), ("portuguese", 0x1F, "Ê"),
        ("portuguese", 0x5B, "Ã"), ("portuguese", 0x7F, "â"), ("portuguese", 0x40, "|"),
    ],
)  # fmt: skip
def test_single_shift_tables_spot_checks(lang: str, code: int, ch: str) -> None:
    single = NATIONAL_LANGUAGES[lang].single
    assert single is not None
    assert single[code] == ch
    assert 0x1B not in single


@pytest.mark.parametrize("lang", sorted(NATIONAL_LANGUAGES))
def test_every_character_of_every_national_table_round_trips(lang: str) -> None:
    nl = NATIONAL_LANGUAGES[lang]
    for locking in [None, lang] if nl.locking is not None else [None]:
        for single in [None, lang] if nl.single is not None else [None]:
            alpha = gsm7.alphabet(locking, single)
            basic = nl.locking if locking else DEFAULT_BASIC
            shift = (nl.single if single else None) or DEFAULT_EXTENSION
            assert basic is not None
            for code, ch in enumerate(basic):
                if code == 0x1B or ch == UNASSIGNED:
                    continue
                assert alpha.encode(ch) == bytes((code,)), (lang, code)
                assert alpha.decode(bytes((code,))) == ch
            for code, ch in shift.items():
                first = min(c for c, other in shift.items() if other == ch)  # Indic * and ¡ twice
                expected = bytes((basic.index(ch),)) if ch in basic else bytes((0x1B, first))
                assert alpha.encode(ch) == expected, (lang, code)
                assert alpha.decode(bytes((0x1B, code))) == ch
            assert alpha.try_encode("\x1b") is None
            assert alpha.try_encode(UNASSIGNED) is None


def test_udh_information_elements() -> None:
    assert gsm7.alphabet("turkish", None).udh_ies == bytes((0x25, 1, 1))
    assert gsm7.alphabet(None, "spanish").udh_ies == bytes((0x24, 1, 2))
    assert gsm7.alphabet("portuguese", "portuguese").udh_ies == bytes((0x25, 1, 3, 0x24, 1, 3))
    assert gsm7.DEFAULT.udh_ies == b""


def test_unknown_language_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown national language"):
        gsm7.alphabet("klingon", None)
    with pytest.raises(ValueError, match="no locking shift table"):
        gsm7.alphabet("spanish", None)


# -- Indian languages and Urdu (engine/text/shift_tables.py) --------------------------------------

INDIC_BLOCKS = {
    "bengali": (0x04, 0x0980),
    "gujarati": (0x05, 0x0A80),
    "hindi": (0x06, 0x0900),
    "kannada": (0x07, 0x0C80),
    "malayalam": (0x08, 0x0D00),
    "oriya": (0x09, 0x0B00),
    "punjabi": (0x0A, 0x0A00),
    "tamil": (0x0B, 0x0B80),
    "telugu": (0x0C, 0x0C00),
    "urdu": (0x0D, 0x0600),
}
# cells every Indic/Urdu locking table shares with the default alphabet
LOCKING_COMMON = {0x0A: "\n", 0x0D: "\r", 0x1B: "\x1b", 0x20: " ", 0x21: "!", 0x28: ")",
                  0x29: "(", 0x2C: ",", 0x2E: ".", 0x3A: ":", 0x3B: ";", 0x3F: "?"}  # fmt: skip
SINGLE_COMMON = dict(zip(range(0x00, 0x19), "@£$¥¿\"¤%&'\x0c*+?-/<=>¡^¡_#*", strict=True))
SINGLE_COMMON.update({0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|"})
del SINGLE_COMMON[0x0D]  # 0x0D is reserved in the national single shift tables


@pytest.mark.parametrize("lang", sorted(INDIC_BLOCKS))
def test_indic_locking_table_structure(lang: str) -> None:
    language_id, block = INDIC_BLOCKS[lang]
    nl = NATIONAL_LANGUAGES[lang]
    assert nl.language_id == language_id
    table = nl.locking
    assert table is not None and len(table) == 128
    for code, ch in LOCKING_COMMON.items():
        assert table[code] == ch, (lang, hex(code))
    assert table[0x30:0x3A] == "0123456789"
    assert table[0x61:0x7B] == "abcdefghijklmnopqrstuvwxyz"
    assigned = [ch for code, ch in enumerate(table) if code not in LOCKING_COMMON]
    script = [ch for ch in assigned if ch != UNASSIGNED and not ch.isascii()]
    assert all(block <= ord(ch) < block + 0x100 for ch in script), lang
    assert len(script) == len(set(script))  # no character twice


@pytest.mark.parametrize("lang", sorted(INDIC_BLOCKS))
def test_indic_single_table_structure(lang: str) -> None:
    single = NATIONAL_LANGUAGES[lang].single
    assert single is not None
    for code, ch in SINGLE_COMMON.items():
        assert single[code] == ch, (lang, hex(code))
    assert "".join(single[c] for c in range(0x41, 0x5B)) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert 0x0D not in single and 0x1B not in single
    assert (single.get(0x65) == "€") is (lang != "telugu")


@pytest.mark.parametrize(
    "lang,table,code,cp",
    [
        ("kannada", "locking", 0x24, 0x0CA1),  # spec typo (repeats U+0CAA), as corrected by Android
        ("kannada", "locking", 0x3D, 0x0CAA),
        ("tamil", "single", 0x24, 0x0BEE),
        ("hindi", "locking", 0x00, 0x0901),
        ("hindi", "locking", 0x40, 0x092C),
        ("hindi", "locking", 0x7F, 0x097F),
        ("hindi", "single", 0x19, 0x0964),
        ("bengali", "locking", 0x60, 0x09CE),
        ("bengali", "single", 0x19, 0x09E6),
        ("urdu", "locking", 0x00, 0x0627),
        ("urdu", "single", 0x3F, 0x06D4),
        ("telugu", "single", 0x22, 0x0C6C),  # not U+06CC as in TS 23.038 V9.1.1
        ("punjabi", "single", 0x2D, 0x0A75),
        ("malayalam", "locking", 0x7F, 0x0D79),
    ],
)
def test_indic_spot_checks(lang: str, table: str, code: int, cp: int) -> None:
    nl = NATIONAL_LANGUAGES[lang]
    if table == "locking":
        assert nl.locking is not None
        assert nl.locking[code] == chr(cp)
    else:
        assert nl.single is not None
        assert nl.single[code] == chr(cp)


@pytest.mark.parametrize(
    "lang,code", [("telugu", 0x11), ("tamil", 0x11), ("kannada", 0x00), ("punjabi", 0x09)]
)
def test_indic_unassigned_cells(lang: str, code: int) -> None:
    table = NATIONAL_LANGUAGES[lang].locking
    assert table is not None and table[code] == UNASSIGNED
    assert gsm7.decode(bytes((code,)), lang, None) == UNASSIGNED
