"""Hypothesis properties: parts decode and join back, fit their limits, never cut a unit apart."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.text import gsm7
from engine.text.gsm7_tables import DEFAULT_BASIC, DEFAULT_EXTENSION
from engine.text.segmenter import SegmentError, SegmentOptions, _segment_gsm, segment, smart_replace

from .helpers import air_octets, decode_part, languages, part_septets, split_udh, udh_ies

GSM_BASIC = [c for c in DEFAULT_BASIC if c != "\x1b"]
GSM_EXT = list(DEFAULT_EXTENSION.values())
OTHER = list("çáíóúÁÍÓÚâêôãõÀÂÊÔÃÕŞşĞğİıª∞º`\t\x1b\x00ЖЯ中") + list("नमस्तेऑ।ক্ষவணக்கம்آپکا۔")
TYPO = list("‘’“”–—…\u00a0\u200b\u2009")
CLUSTER_BITS = ["\u200d", "\ufe0f", "\U0001f3fd", "\u0301", "\U0001f1e9", "\U0001f1f0", "\r\n"]
EMOJI = ["😀", "👍", "👨", "👩", "❤", "🏴"]

chars = st.one_of(
    st.sampled_from(GSM_BASIC),
    st.sampled_from(GSM_BASIC),
    st.sampled_from(GSM_EXT),
    st.sampled_from(OTHER),
    st.sampled_from(TYPO),
    st.sampled_from(CLUSTER_BITS),
    st.sampled_from(EMOJI),
    st.characters(blacklist_categories=("Cs",)),
)
texts = st.lists(chars, min_size=1, max_size=700).map("".join)
gsm_texts = st.lists(
    st.one_of(st.sampled_from(GSM_BASIC), st.sampled_from(GSM_EXT)), min_size=1, max_size=800
).map("".join)
options = st.builds(
    SegmentOptions,
    concat=st.sampled_from(["udh8", "udh16", "sar", "payload"]),
    packed=st.booleans(),
    shift_tables=st.lists(
        st.sampled_from(["turkish", "spanish", "portuguese", "hindi", "bengali", "tamil", "urdu"]),
        unique=True,
        max_size=4,
    ).map(tuple),
    smart_replace=st.booleans(),
    max_parts=st.just(255),
)
refs = st.integers(min_value=0, max_value=2**20)


def check(text: str, opts: SegmentOptions, ref: int) -> None:
    try:
        result = segment(text, opts, ref=ref)
    except SegmentError as exc:
        assert exc.code in ("empty_text", "too_many_parts")
        return
    expected = smart_replace(text)[0] if result.replaced else text
    assert "".join(p.text for p in result.parts) == expected

    if opts.concat == "payload":
        (part,) = result.parts
        assert part.short_message == b""
        ((tag, payload),) = part.tlvs
        assert tag == 0x0424
        if result.encoding == "ucs2":
            assert payload.decode("utf-16-be") == expected
        return

    assert result.segments == len(result.parts)
    total = len(result.parts)
    units = 0
    for seq, part in enumerate(result.parts, 1):
        udh, data = split_udh(part)
        assert decode_part(part, opts.packed and result.encoding == "gsm7") == part.text
        if result.encoding == "gsm7":
            septets = part_septets(part, opts.packed)
            units += len(septets)
            assert septets[-1:] != b"\x1b"
            if opts.packed:
                assert len(part.short_message) <= 140
            else:
                assert air_octets(part, "gsm7") <= 140
            assert part.data_coding == opts.gsm_data_coding
        else:
            units += len(data) // 2
            assert len(part.short_message) <= 140
            assert len(data) % 2 == 0
            first = int.from_bytes(data[:2], "big")
            last = int.from_bytes(data[-2:], "big")
            assert not 0xDC00 <= first <= 0xDFFF
            assert not 0xD800 <= last <= 0xDBFF
            assert part.data_coding == 0x08
        ies = udh_ies(udh)
        if total > 1 and opts.concat == "udh8":
            assert ies[0x00] == bytes((ref & 0xFF, total, seq))
        if total > 1 and opts.concat == "udh16":
            assert ies[0x08] == (ref & 0xFFFF).to_bytes(2, "big") + bytes((total, seq))
        if total > 1 and opts.concat == "sar":
            assert dict(part.tlvs) == {
                0x020C: (ref & 0xFFFF).to_bytes(2, "big"),
                0x020E: bytes((total,)),
                0x020F: bytes((seq,)),
            }
            assert 0x00 not in ies and 0x08 not in ies
        assert (part.esm_class == 0x40) == bool(udh)
        if result.encoding == "gsm7" and udh:
            locking, single = languages(udh)
            assert gsm7.alphabet(locking, single).try_encode(part.text) is not None
    assert units == result.units


@settings(max_examples=300, deadline=None)
@given(texts, options, refs)
def test_any_text_any_options(text: str, opts: SegmentOptions, ref: int) -> None:
    check(text, opts, ref)


@settings(max_examples=200, deadline=None)
@given(gsm_texts, options, refs)
def test_gsm_texts_stay_gsm(text: str, opts: SegmentOptions, ref: int) -> None:
    result = segment(text, opts, ref=ref)
    assert result.encoding == "gsm7"
    assert result.units == len(text) + sum(text.count(c) for c in GSM_EXT)
    check(text, opts, ref)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_septet_round_trip(text: str) -> None:
    septets = gsm7.encode_default(text)
    if septets is None:
        assert any(c not in GSM_BASIC and c not in GSM_EXT for c in text)
        return
    assert gsm7.decode(septets) == text
    assert gsm7.decode(gsm7.unpack(gsm7.pack(septets), 0, len(septets))) == text


NATIONAL = list("ŞşĞğİıçáíóúÁÍÓÚâêôãõÀÂÊÔÃÕª∞ºΦΩΓ") + GSM_EXT
national_texts = st.lists(
    st.one_of(st.sampled_from(NATIONAL), st.sampled_from([c for c in GSM_BASIC if c != "\r"])),
    min_size=1,
    max_size=500,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(national_texts, st.sampled_from(["udh8", "udh16"]))
def test_shift_table_choice_needs_fewest_parts(text: str, concat: str) -> None:
    """No other table combination would have needed fewer parts (or, as many, a smaller UDH)."""
    opts = SegmentOptions(
        shift_tables=("turkish", "spanish", "portuguese"), concat=concat, max_parts=255
    )
    ours = segment(text, opts)
    if ours.encoding == "ucs2":
        for lock in (None, "turkish", "portuguese"):
            for single in (None, "turkish", "spanish", "portuguese"):
                assert gsm7.alphabet(lock, single).try_encode(text) is None
        return
    our_udh = split_udh(ours.parts[0])[0]
    our_key = (len(ours.parts), len(gsm7.alphabet(*languages(our_udh)).udh_ies))
    for lock in (None, "turkish", "portuguese"):
        for single in (None, "turkish", "spanish", "portuguese"):
            alpha = gsm7.alphabet(lock, single)
            septets = alpha.try_encode(text)
            if septets is None:
                continue
            other = _segment_gsm(text, septets, alpha, opts, 0, {})
            assert our_key <= (len(other.parts), len(alpha.udh_ies)), (lock, single)
