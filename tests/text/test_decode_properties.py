"""Hypothesis: whatever the segmenter sends, parse_udh + decode_text read back.

Each part is taken as a receiver would get it (short_message, esm_class,
data_coding, TLVs), its header parsed and its text decoded; the parts,
ordered by the sequence number they carry (UDH or SAR TLVs), join to the
original text. GSM 7 bit texts (national shift tables when the options
enable them, packed or not) and UCS-2 texts, for udh8, udh16 and sar.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.text.decoder import decode_septets, decode_text
from engine.text.gsm7 import unpack
from engine.text.gsm7_tables import DEFAULT_BASIC, DEFAULT_EXTENSION, NATIONAL_LANGUAGES
from engine.text.segmenter import Part, SegmentOptions, segment
from engine.text.udh import fill_bits, parse_udh

TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F

GSM_BASIC = [c for c in DEFAULT_BASIC if c != "\x1b"]
GSM_EXT = list(DEFAULT_EXTENSION.values())
LANGUAGES = ["turkish", "spanish", "portuguese", "hindi", "bengali", "tamil", "urdu"]
NATIONAL = sorted(
    {
        ch
        for name in LANGUAGES
        for table in (NATIONAL_LANGUAGES[name].locking, NATIONAL_LANGUAGES[name].single)
        if table is not None
        for ch in (table if isinstance(table, str) else table.values())
        if ch not in ("\x1b", "\ufffd")
    }
)
EMOJI = ["😀", "👍🏽", "🇩🇰", "❤️", "👨\u200d👩\u200d👧"]

gsm_texts = st.lists(
    st.one_of(st.sampled_from(GSM_BASIC), st.sampled_from(GSM_EXT)), min_size=1, max_size=600
).map("".join)
national_texts = st.lists(
    st.one_of(st.sampled_from(GSM_BASIC), st.sampled_from(NATIONAL)), min_size=1, max_size=500
).map("".join)
ucs2_texts = st.lists(
    st.one_of(
        st.sampled_from(GSM_BASIC),
        st.sampled_from(EMOJI),
        st.characters(codec="utf-8"),  # no lone surrogates
    ),
    min_size=1,
    max_size=400,
).map("".join)
options = st.builds(
    SegmentOptions,
    concat=st.sampled_from(["udh8", "udh16", "sar"]),
    packed=st.booleans(),
    shift_tables=st.lists(st.sampled_from(LANGUAGES), unique=True, max_size=4).map(tuple),
    max_parts=st.just(255),
)
refs = st.integers(min_value=0, max_value=2**16 - 1)


def _received(part: Part, packed: bool) -> tuple[int, int, int, str]:
    """(reference, total, sequence, text) of a part, read as a receiver would."""
    udh = parse_udh(part.short_message, part.esm_class & 0x40)
    text = decode_text(part.short_message, part.data_coding, udh, packed=packed)
    assert text is not None
    tlvs = dict(part.tlvs)
    if TAG_SAR_SEGMENT_SEQNUM in tlvs:
        assert udh.concat is None
        return (
            int.from_bytes(tlvs[TAG_SAR_MSG_REF_NUM], "big"),
            tlvs[TAG_SAR_TOTAL_SEGMENTS][0],
            tlvs[TAG_SAR_SEGMENT_SEQNUM][0],
            text,
        )
    if udh.concat is None:
        return (0, 1, 1, text)
    return (udh.concat.reference, udh.concat.total, udh.concat.sequence, text)


def _wire_text(part: Part, packed: bool) -> str:
    """What a receiver reads of ``part``, said from what the packer promises.

    TS 23.038 §6.1.2.3.1: a CR whose septet ends exactly on an octet boundary reads
    as the padding CR. sendgate's packer pads 7 spare bits with a CR (the receiver
    drops it) and doubles a wanted final CR that would end on the boundary (CR CR
    means CR: the receiver shows both), unless the extra octet does not fit (a full
    part): only then do the part's own septets fill its octets exactly, and the
    receiver drops its final CR — the one documented loss.
    """
    if not packed or part.data_coding == 0x08 or not part.text.endswith("\r"):
        return part.text
    offset = 1 + part.short_message[0] if part.esm_class & 0x40 else 0
    fill = fill_bits(offset)
    bits = (len(part.short_message) - offset) * 8 - fill
    udh = parse_udh(part.short_message, part.esm_class & 0x40)
    every = decode_septets(unpack(part.short_message[offset:], fill, count=bits // 7),
                           udh.locking_shift, udh.single_shift)
    if bits % 7 == 0:
        assert every in (part.text, part.text + "\r")  # exact fill, or the padding CR
        return part.text[:-1] if every == part.text else part.text
    assert every in (part.text, part.text + "\r")  # as it was, or the final CR doubled
    return every


def check(text: str, opts: SegmentOptions, ref: int, seed: int) -> None:
    result = segment(text, opts, ref=ref)
    packed = opts.packed and result.encoding == "gsm7"
    received = [_received(p, packed) for p in result.parts]
    expected = []
    for part, (_, _, _, got) in zip(result.parts, received, strict=True):
        want = _wire_text(part, packed)
        assert got == want
        expected.append(want)
    total = len(result.parts)
    mask = 0xFF if opts.concat == "udh8" else 0xFFFF
    for seq, (r, t, s, _) in enumerate(received, 1):
        assert (t, s) == (total, seq)
        assert r == (ref & mask if total > 1 else 0)
    random.Random(seed).shuffle(received)  # parts may arrive in any order
    assert "".join(t for *_, t in sorted(received)) == "".join(expected)
    if all(_wire_text(p, packed) == p.text for p in result.parts):
        assert "".join(t for *_, t in sorted(received)) == text


@settings(max_examples=250, deadline=None)
@given(gsm_texts, options, refs, st.integers())
def test_gsm_texts_read_back(text: str, opts: SegmentOptions, ref: int, seed: int) -> None:
    assert segment(text, opts).encoding == "gsm7"
    check(text, opts, ref, seed)


@settings(max_examples=250, deadline=None)
@given(national_texts, options, refs, st.integers())
def test_national_texts_read_back(text: str, opts: SegmentOptions, ref: int, seed: int) -> None:
    check(text, opts, ref, seed)


@settings(max_examples=200, deadline=None)
@given(ucs2_texts, options, refs, st.integers())
def test_ucs2_texts_read_back(text: str, opts: SegmentOptions, ref: int, seed: int) -> None:
    check(text, opts, ref, seed)


def _one_language_text(name: str) -> st.SearchStrategy[str]:
    """Texts drawn from one language's locking and single shift tables (they always fit)."""
    lang = NATIONAL_LANGUAGES[name]
    chars = sorted(
        {
            ch
            for ch in (lang.locking or DEFAULT_BASIC) + "".join((lang.single or {}).values())
            if ch not in ("\x1b", "\ufffd")
        }
    )
    return st.lists(st.sampled_from(chars), min_size=1, max_size=400).map("".join)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(LANGUAGES).flatmap(_one_language_text),
    st.sampled_from(["udh8", "udh16", "sar"]),
    st.booleans(),
    refs,
)
def test_national_tables_are_used_when_enabled(
    text: str, concat: str, packed: bool, ref: int
) -> None:
    opts = SegmentOptions(
        concat=concat, packed=packed, shift_tables=tuple(LANGUAGES), max_parts=255
    )
    result = segment(text, opts, ref=ref)
    assert result.encoding == "gsm7"  # the text fits one language's tables
    check(text, opts, ref, ref)
