"""Segmentation rules from the specification: budgets, cuts, UDH/SAR/payload, options, errors."""

from __future__ import annotations

import pytest

from engine.text.gsm7_tables import DEFAULT_EXTENSION
from engine.text.segmenter import (
    DEFAULT_OPTIONS,
    SegmentError,
    SegmentOptions,
    describe,
    is_grapheme_boundary,
    segment,
    segment_binary,
    smart_replace,
)

from .helpers import air_octets, decode_part, joined, part_septets, split_udh, udh_ies

UDH16 = SegmentOptions(concat="udh16")
SAR = SegmentOptions(concat="sar")
PAYLOAD = SegmentOptions(concat="payload")
PACKED = SegmentOptions(packed=True)
TURKISH = SegmentOptions(shift_tables=("turkish",))
ALL_LANGS = SegmentOptions(shift_tables=("turkish", "spanish", "portuguese"))


def sizes(text: str, options: SegmentOptions = DEFAULT_OPTIONS) -> list[int]:
    result = segment(text, options)
    if result.encoding == "gsm7":
        return [len(part_septets(p, options.packed)) for p in result.parts]
    return [len(split_udh(p)[1]) // 2 for p in result.parts]


# -- GSM-7 boundaries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,expected",
    [
        (1, [1]),
        (152, [152]),
        (153, [153]),
        (154, [154]),
        (159, [159]),
        (160, [160]),
        (161, [153, 8]),
        (306, [153, 153]),
        (307, [153, 153, 1]),
        (459, [153, 153, 153]),
        (460, [153, 153, 153, 1]),
    ],
)
def test_gsm_boundaries(n: int, expected: list[int]) -> None:
    text = "x" * n
    result = segment(text)
    assert result.encoding == "gsm7"
    assert result.units == n
    assert sizes(text) == expected
    assert joined(result) == text
    assert [p.text for p in result.parts] == ["x" * k for k in expected]


def test_empty_text() -> None:
    with pytest.raises(SegmentError) as info:
        segment("")
    assert info.value.code == "empty_text"


@pytest.mark.parametrize(
    "n,expected", [(160, [160]), (161, [152, 9]), (304, [152, 152]), (305, [152, 152, 1])]
)
def test_udh16_budget_is_152(n: int, expected: list[int]) -> None:
    assert sizes("y" * n, UDH16) == expected


@pytest.mark.parametrize("offset", [*range(145, 160), *range(298, 312)])
@pytest.mark.parametrize("ch", sorted(DEFAULT_EXTENSION.values()))
def test_extension_character_at_every_position_near_a_boundary(offset: int, ch: str) -> None:
    text = "a" * offset + ch + "b" * (320 - offset)
    result = segment(text)
    assert result.units == len(text) + 1
    for part in result.parts:
        septets = part_septets(part)
        assert len(septets) <= 153
        assert septets[-1:] != b"\x1b"  # never ends between ESC and its character
    assert joined(result) == text
    first, second = (len(part_septets(p)) for p in result.parts[:2])
    assert first == (152 if offset == 152 else 153)
    if offset >= 298:  # the ESC pair falls at or near the second cut (153 + 153 = 306)
        assert second == (152 if offset == 305 else 153)


def test_escape_at_single_message_limit() -> None:
    assert len(segment("a" * 158 + "€").parts) == 1  # 160 septets
    result = segment("a" * 159 + "€")  # 161 septets: two parts
    assert [len(part_septets(p)) for p in result.parts] == [153, 8]


# -- UCS-2 boundaries -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Ж" * 70, [70]),
        ("Ж" * 71, [67, 4]),
        ("Ж" * 134, [67, 67]),
        ("Ж" * 135, [67, 67, 1]),
        ("😀" * 35, [70]),  # 70 units in one message
        ("a" * 68 + "😀", [70]),
        ("a" * 69 + "😀", [67, 4]),
        ("a" * 65 + "😀" + "b" * 10, [67, 10]),  # the pair ends exactly at 67
        ("a" * 66 + "😀" + "b" * 10, [66, 12]),  # the pair would straddle 66/67: moves
        ("😀" * 36, [66, 6]),  # 33 pairs = 66 units; the 34th cannot start at 66
    ],
)
def test_ucs2_boundaries(text: str, expected: list[int]) -> None:
    result = segment(text)
    assert result.encoding == "ucs2"
    assert sizes(text) == expected
    assert result.units == len(text.encode("utf-16-be")) // 2
    for part in result.parts:
        assert part.data_coding == 0x08
        data = split_udh(part)[1]
        last = int.from_bytes(data[-2:], "big")
        assert not 0xD800 <= last <= 0xDBFF
    assert joined(result) == text


def test_ucs2_udh16_budget_is_66() -> None:
    assert sizes("Ж" * 140, UDH16) == [66, 66, 8]


def test_lone_surrogate_is_bad_encoding() -> None:
    with pytest.raises(SegmentError) as info:
        segment("ab\ud800cd")
    assert info.value.code == "bad_encoding"
    assert "position 2" in info.value.reason


# -- grapheme clusters ------------------------------------------------------------------------

CLUSTERS = [
    "👨\u200d👩\u200d👧\u200d👦",  # ZWJ family, 11 units
    "👍🏽",  # skin tone modifier
    "❤\ufe0f",  # variation selector
    "🇩🇰",  # regional indicator pair
    "e\u0301\u0323",  # base + combining marks
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # tag sequence flag
    "\u0915\u094d\u0937",  # Devanagari conjunct (virama)
]


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("lead", range(55, 68))
def test_cuts_avoid_grapheme_clusters(cluster: str, lead: int) -> None:
    text = "Ж" * lead + cluster + "Ж" * 80
    result = segment(text)
    assert joined(result) == text
    boundary = 0
    for part in result.parts[:-1]:
        boundary += len(part.text)
        assert is_grapheme_boundary(text, boundary), (lead, boundary)


def test_cluster_longer_than_a_part_is_still_cut() -> None:
    text = "a" + "\u0301" * 200  # one cluster, 201 units: must be cut somewhere
    result = segment(text)
    assert joined(result) == text
    assert all(len(split_udh(p)[1]) // 2 <= 67 for p in result.parts)


def test_regional_indicators_pair_up_from_the_start() -> None:
    flags = "🇩🇰🇸🇪🇳🇴"  # six code points, three flags
    assert [is_grapheme_boundary(flags, j) for j in range(1, 6)] == [
        False,
        True,
        False,
        True,
        False,
    ]
    assert not is_grapheme_boundary("a\r\nb", 2)


def test_crlf_is_not_split_in_gsm() -> None:
    text = "a" * 152 + "\r\n" + "b" * 20
    result = segment(text)
    assert result.parts[0].text == "a" * 152
    assert joined(result) == text


# -- concatenation modes ----------------------------------------------------------------------


def test_udh8_headers_and_ref_mask() -> None:
    result = segment("z" * 400, ref=0x1AB)
    assert len(result.parts) == 3
    for seq, part in enumerate(result.parts, 1):
        udh, _ = split_udh(part)
        assert udh == bytes((5, 0x00, 3, 0xAB, 3, seq))
        assert part.esm_class == 0x40
        assert part.tlvs == ()
        assert part.data_coding == 0


def test_udh16_headers() -> None:
    result = segment("z" * 400, UDH16, ref=0x12345)
    for seq, part in enumerate(result.parts, 1):
        assert split_udh(part)[0] == bytes((6, 0x08, 4, 0x23, 0x45, 3, seq))


def test_single_part_has_no_udh() -> None:
    part = segment("hello").parts[0]
    assert part.esm_class == 0
    assert part.short_message == b"hello"
    assert part.tlvs == ()


def test_sar_tlvs_and_no_udhi() -> None:
    result = segment("z" * 400, SAR, ref=0x1ABCD)
    assert [len(p.short_message) for p in result.parts] == [153, 153, 94]
    for seq, part in enumerate(result.parts, 1):
        assert part.esm_class == 0
        assert part.tlvs == ((0x020C, b"\xab\xcd"), (0x020E, b"\x03"), (0x020F, bytes((seq,))))
    assert segment("short", SAR).parts[0].tlvs == ()


def test_sar_ucs2_parts_are_67_units() -> None:
    assert [len(p.short_message) for p in segment("Ж" * 100, SAR).parts] == [134, 66]


def test_payload_mode_is_one_pdu() -> None:
    text = "p" * 400
    result = segment(text, PAYLOAD)
    assert len(result.parts) == 1
    assert result.segments == 3
    part = result.parts[0]
    assert part.short_message == b""
    assert part.esm_class == 0
    assert part.tlvs == ((0x0424, b"p" * 400),)
    assert part.text == text
    ucs = segment("Ж" * 100, PAYLOAD).parts[0]
    assert ucs.tlvs == ((0x0424, ("Ж" * 100).encode("utf-16-be")),)
    assert ucs.data_coding == 0x08


def test_payload_mode_respects_max_parts() -> None:
    with pytest.raises(SegmentError) as info:
        segment("p" * 1531, PAYLOAD)
    assert info.value.code == "too_many_parts"
    assert "11" in info.value.reason


def test_packed_parts_fit_140_octets() -> None:
    text = "q" * 400 + "{}"
    result = segment(text, PACKED)
    for part in result.parts:
        assert len(part.short_message) <= 140
    assert len(result.parts[0].short_message) == 140  # 6 UDH + 134 packed octets (153 septets)
    assert joined(result, packed=True) == text
    single = segment("hellohello", PACKED).parts[0]
    assert single.short_message.hex() == "e8329bfd4697d9ec37"


def test_gsm_data_coding_option() -> None:
    opts = SegmentOptions(gsm_data_coding=1)
    assert segment("hi", opts).parts[0].data_coding == 1
    assert segment("Ж", opts).parts[0].data_coding == 8


# -- max_parts, errors ------------------------------------------------------------------------


def test_max_parts() -> None:
    assert len(segment("m" * 1530).parts) == 10
    with pytest.raises(SegmentError) as info:
        segment("m" * 1531)
    assert info.value.code == "too_many_parts"
    assert "11 parts" in info.value.reason
    assert len(segment("m" * 1531, SegmentOptions(max_parts=11)).parts) == 11


def test_encoding_override() -> None:
    assert segment("hello", encoding="ucs2").encoding == "ucs2"
    assert segment("hello", encoding="ucs2").units == 5
    assert segment("hello", encoding="gsm7").encoding == "gsm7"
    with pytest.raises(SegmentError) as info:
        segment("my pin is 1234 😀 ok", encoding="gsm7")
    assert info.value.code == "bad_encoding"
    assert "position 15" in info.value.reason
    assert "pin" not in info.value.reason and "😀" not in info.value.reason
    with pytest.raises(SegmentError) as info:
        segment("hello", encoding="latin1")
    assert info.value.code == "bad_encoding"


def test_error_reasons_never_contain_text() -> None:
    secret = "Secret-Message-Body ç " * 100
    for kwargs in ({"encoding": "gsm7"}, {}):
        try:
            segment(secret, **kwargs)  # type: ignore[arg-type]
        except SegmentError as exc:
            assert "Secret" not in str(exc)
            assert "ç" not in str(exc)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concat": "udh32"},
        {"max_parts": 0},
        {"max_parts": 256},
        {"gsm_data_coding": 8},
        {"shift_tables": ("klingon",)},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SegmentOptions(**kwargs)  # type: ignore[arg-type]


# -- shift tables -----------------------------------------------------------------------------


def test_shift_tables_off_by_default() -> None:
    assert segment("Şeker").encoding == "ucs2"


def test_turkish_locking_shift() -> None:
    result = segment("Şeker ğ ı İ", TURKISH)
    assert result.encoding == "gsm7"
    part = result.parts[0]
    udh, _ = split_udh(part)
    assert udh == bytes((3, 0x25, 1, 1))
    assert part.esm_class == 0x40
    assert decode_part(part) == "Şeker ğ ı İ"
    assert result.units == 11


def test_spanish_single_shift() -> None:
    result = segment("Canción rápida", SegmentOptions(shift_tables=("spanish",)))
    assert result.encoding == "gsm7"
    assert udh_ies(split_udh(result.parts[0])[0]) == {0x24: b"\x02"}
    assert result.units == len("Canción rápida") + 2
    assert joined(result) == "Canción rápida"
    # with Portuguese enabled too, its locking table holds ó and á as single septets: cheaper
    both = segment("Canción rápida", ALL_LANGS)
    assert udh_ies(split_udh(both.parts[0])[0]) == {0x25: b"\x03"}
    assert both.units == len("Canción rápida")
    assert joined(both) == "Canción rápida"


def test_portuguese() -> None:
    text = "Atenção: promoção válida até amanhã"
    result = segment(text, ALL_LANGS)
    assert result.encoding == "gsm7"
    assert joined(result) == text
    assert segment(text, SegmentOptions(shift_tables=("portuguese",))).encoding == "gsm7"


@pytest.mark.parametrize(
    "n,expected",
    [(155, [155]), (156, [149, 7]), (298, [149, 149]), (299, [149, 149, 1])],
)
def test_shift_ie_shrinks_budget(n: int, expected: list[int]) -> None:
    text = "ı" * n  # Turkish dotless i: one septet in the Turkish locking table
    result = segment(text, TURKISH)
    assert result.encoding == "gsm7"
    assert sizes(text, TURKISH) == expected
    for part in result.parts:
        assert air_octets(part, "gsm7") <= 140
    assert joined(result) == text


def test_shift_budget_with_udh16_and_packed() -> None:
    text = "ı" * 400
    opts = SegmentOptions(shift_tables=("turkish",), concat="udh16", packed=True)
    result = segment(text, opts)
    assert [len(part_septets(p, True)) for p in result.parts] == [148, 148, 104]
    for part in result.parts:
        assert len(part.short_message) <= 140
    assert joined(result, packed=True) == text


def test_table_choice_minimises_parts() -> None:
    pt = SegmentOptions(shift_tables=("portuguese",))
    short = segment("ção Ω", pt)  # one part either way: the smaller UDH (single shift only) wins
    assert udh_ies(split_udh(short.parts[0])[0]) == {0x24: b"\x03"}
    assert short.units == 7
    text = "ção" * 50 + "Ω"  # single shift only: 251 septets, 2 parts; both tables: 152, 1 part
    result = segment(text, pt)
    assert len(result.parts) == 1
    assert udh_ies(split_udh(result.parts[0])[0]) == {0x25: b"\x03", 0x24: b"\x03"}
    assert result.units == 152
    assert joined(result) == text


def test_text_fitting_no_table_is_ucs2() -> None:
    assert segment("Şeker Привет", ALL_LANGS).encoding == "ucs2"
    with pytest.raises(SegmentError) as info:
        segment("Şeker Привет", ALL_LANGS, encoding="gsm7")
    assert "national shift table" in info.value.reason


def test_gsm_text_uses_no_shift_ie() -> None:
    part = segment("plain text", ALL_LANGS).parts[0]
    assert part.esm_class == 0


# -- smart replacement ------------------------------------------------------------------------


def test_smart_replace_off_by_default() -> None:
    assert segment("It’s here").encoding == "ucs2"


def test_smart_replace_makes_gsm() -> None:
    opts = SegmentOptions(smart_replace=True)
    text = "“Quote” – it’s here…\u00a0ok\u200b"
    result = segment(text, opts)
    assert result.encoding == "gsm7"
    assert result.replaced == {"“": 1, "”": 1, "–": 1, "’": 1, "…": 1, "\u00a0": 1, "\u200b": 1}
    assert joined(result) == '"Quote" - it\'s here... ok'
    assert result.units == len('"Quote" - it\'s here... ok')


def test_smart_replace_is_dropped_when_text_stays_ucs2() -> None:
    opts = SegmentOptions(smart_replace=True)
    text = "It’s 😀"
    result = segment(text, opts)
    assert result.encoding == "ucs2"
    assert result.replaced == {}
    assert joined(result) == text


def test_smart_replace_then_shift_table() -> None:
    opts = SegmentOptions(smart_replace=True, shift_tables=("turkish",))
    result = segment("“Şeker”", opts)
    assert result.encoding == "gsm7"
    assert result.replaced == {"“": 1, "”": 1}
    assert joined(result) == '"Şeker"'


def test_only_invisible_characters_is_empty() -> None:
    with pytest.raises(SegmentError) as info:
        segment("\u200b\u200b", SegmentOptions(smart_replace=True))
    assert info.value.code == "empty_text"


def test_smart_replace_function() -> None:
    assert smart_replace("plain") == ("plain", {})
    assert smart_replace("a—b—c") == ("a-b-c", {"—": 2})


# -- describe and binary ----------------------------------------------------------------------


def test_describe() -> None:
    assert describe("hello") == {"encoding": "gsm7", "segments": 1, "units": 5, "parts": ["hello"]}
    d = describe("x" * 161, PAYLOAD)
    assert d["segments"] == 2
    assert d["parts"] == ["x" * 153, "x" * 8]
    assert describe("Ж" * 71)["parts"] == ["Ж" * 67, "Ж" * 4]


def test_segment_binary() -> None:
    assert [len(p.short_message) for p in segment_binary(b"\x01" * 140).parts] == [140]
    result = segment_binary(b"\x01" * 300, ref=7)
    assert [len(split_udh(p)[1]) for p in result.parts] == [134, 134, 32]
    assert all(p.data_coding == 0x04 for p in result.parts)
    udh16 = segment_binary(b"\x01" * 300, UDH16)
    assert [len(split_udh(p)[1]) for p in udh16.parts] == [133, 133, 34]


# -- Indian languages and Urdu --------------------------------------------------------------

INDIC = SegmentOptions(shift_tables=("hindi", "bengali", "tamil", "telugu", "urdu"), max_parts=255)


@pytest.mark.parametrize(
    "text,ies",
    [
        ("नमस्ते, आपका ऑर्डर भेज दिया गया है।", {0x25: b"\x06", 0x24: b"\x06"}),
        ("வணக்கம், உங்கள் ஆர்டர் அனுப்பப்பட்டது.", {0x25: b"\x0b"}),
        ("آپ کا آرڈر بھیج دیا گیا ہے۔", {0x25: b"\x0d", 0x24: b"\x0d"}),
        ("మీ ఆర్డర్ పంపబడింది.", {0x25: b"\x0c"}),
    ],
)
def test_indic_texts_use_national_tables(text: str, ies: dict[int, bytes]) -> None:
    assert segment(text).encoding == "ucs2"  # off by default
    result = segment(text, INDIC)
    assert result.encoding == "gsm7"
    assert udh_ies(split_udh(result.parts[0])[0]) == ies
    assert joined(result) == text


def test_indic_multipart_cuts_between_clusters() -> None:
    text = "नमस्ते आपका ऑर्डर भेज दिया गया है " * 12
    result = segment(text, INDIC)
    assert result.encoding == "gsm7"
    assert len(result.parts) > 1
    assert joined(result) == text
    cut = 0
    for part in result.parts[:-1]:
        cut += len(part.text)
        assert is_grapheme_boundary(text, cut)
        assert air_octets(part, "gsm7") <= 140


@pytest.mark.parametrize(
    "options",
    [DEFAULT_OPTIONS, UDH16, SAR, PAYLOAD, PACKED, TURKISH, SegmentOptions(gsm_data_coding=1)],
)
@pytest.mark.parametrize(
    "text", ["a", "Hello world, this is message 123456", "x" * 159, "x" * 160, "x" * 161, "[]" * 40, "{" * 81,
             "é" * 10, "€" * 80, "€" * 81],
)
def test_single_part_fast_path_is_what_the_general_path_gives(options: SegmentOptions, text: str) -> None:
    """segment()'s shortcut for a one-part default-alphabet message gives exactly what
    _segment_gsm gives (encoding, units, parts, replaced, segments)."""
    from engine.text.gsm7 import DEFAULT, encode_default
    from engine.text.segmenter import _segment_gsm

    septets = encode_default(text)
    assert septets is not None
    assert segment(text, options, "auto", 7) == _segment_gsm(text, septets, DEFAULT, options, 7, {})
    assert segment(text, options, "gsm7", 7) == _segment_gsm(text, septets, DEFAULT, options, 7, {})
