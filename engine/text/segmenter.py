"""Text → SMPP segments: encoding choice, concatenation and the bytes of every part.

Theory of operation (pure functions, no I/O, no logging):

1. **Encoding.** GSM-7 (3GPP TS 23.038 §6.2.1) when every character is in the
   default alphabet or its extension table, else UCS-2 (UTF-16BE, no BOM;
   non-BMP characters are surrogate pairs, two units). With
   ``options.smart_replace`` typographic look-alikes are replaced first, but
   only if that makes the text GSM-7. With ``options.shift_tables`` a text
   that fits a national locking/single shift table (TS 23.038 Annex A) is sent
   as GSM-7 with UDH IE 0x25 / 0x24 (TS 23.040 §9.2.3.24.15/16) instead of
   UCS-2. ``encoding="gsm7"|"ucs2"`` overrides the choice.
2. **Budget.** An SMS carries 140 octets (TS 23.040 §9.2.3.16). A UDH of L
   octets (length octet included) leaves ``140 - L`` octets: ``(140 - L) // 2``
   UCS-2 units, and ``160 - ceil(8L / 7)`` septets, because packed septets
   after a UDH start on a septet boundary (the fill bits count). Hence
   160/70/140 for one part, 153/67/134 with the 8-bit concatenation IE
   (L = 6), 152/66/133 with the 16-bit one (L = 7), and less again when shift
   IEs are present. SAR parts are sized like udh8 so they still fit a handset
   after the SMSC adds a UDH.
3. **Cuts.** Never between ESC and its character, never inside a surrogate
   pair (the split works on characters), and preferably on a grapheme cluster
   boundary (emoji ZWJ sequences, variation selectors, skin tones, flags,
   base + combining marks, CR LF): a cut moves back to the last boundary if
   the part can end earlier.
4. **Parts.** ``Part.short_message`` holds UDH + user data exactly as it goes
   into submit_sm; ``esm_class`` is 0x40 (UDHI) when there is a UDH
   (SMPP 3.4 §5.2.12); SAR uses TLVs 0x020C/0x020E/0x020F (§5.3.2.22-24);
   ``payload`` mode sends one PDU with the whole text in message_payload
   (0x0424, §5.3.2.32) and an empty short_message.

Errors are :class:`SegmentError` with a dead-letter ``code`` and a ``reason``
that names positions and character classes, never message text.
"""

from __future__ import annotations

import os
import re
import unicodedata
from array import array
from typing import Any

import msgspec

from engine.text.gsm7 import DEFAULT, ESC, Alphabet, alphabet, describe_char, encode_default, pack
from engine.text.gsm7_tables import NATIONAL_LANGUAGES

__all__ = [
    "DEFAULT_OPTIONS",
    "ConcatRefs",
    "Part",
    "SegmentError",
    "SegmentOptions",
    "Segmented",
    "describe",
    "is_grapheme_boundary",
    "segment",
    "segment_binary",
    "smart_replace",
]

# SMPP 3.4 §5.2.12 esm_class UDHI; §5.2.19 data_coding; §5.3.2 TLV tags.
ESM_UDHI = 0x40
DATA_CODING_UCS2 = 0x08
DATA_CODING_BINARY = 0x04
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_MESSAGE_PAYLOAD = 0x0424

SM_OCTETS = 140  # TS 23.040 §9.2.3.16: TP-UD is at most 140 octets
SM_SEPTETS = 160
MAX_PARTS_LIMIT = 255  # the concatenation IEs and sar_total_segments hold one octet
MAX_PAYLOAD_OCTETS = 65535  # SMPP 3.4 §5.3.2.32

CONCAT_MODES = ("udh8", "udh16", "sar", "payload")
ENCODINGS = ("auto", "gsm7", "ucs2")
# Octets a concatenation IE takes (IEI + IEDL + data); SAR/payload parts are sized like udh8.
_CONCAT_IE_OCTETS = {"udh8": 5, "udh16": 6, "sar": 5, "payload": 5}

_ESC_BYTE = bytes((ESC,))
_MAX_CLUSTER_BACKOFF = 64  # characters a cut may move back to find a grapheme boundary


class SegmentOptions(msgspec.Struct, frozen=True):
    """Per-carrier segmentation options (``[carriers.encoding]`` in the config)."""

    concat: str = "udh8"  # "udh16", "sar", "payload"
    packed: bool = False  # GSM-7 packed septets in short_message
    gsm_data_coding: int = 0  # data_coding used for GSM-7 (0 = SMSC default, 1 = IA5…)
    shift_tables: tuple[str, ...] = ()  # national languages enabled, e.g. ("turkish", "spanish")
    smart_replace: bool = False
    max_parts: int = 10

    def __post_init__(self) -> None:
        if self.concat not in CONCAT_MODES:
            raise ValueError(f"encoding.concat must be one of {', '.join(CONCAT_MODES)}")
        if not 0 <= self.gsm_data_coding <= 0xFF or self.gsm_data_coding == DATA_CODING_UCS2:
            raise ValueError("encoding.gsm_data_coding must be an octet and not 0x08 (UCS-2)")
        if not 1 <= self.max_parts <= MAX_PARTS_LIMIT:
            raise ValueError(f"encoding.max_parts must be between 1 and {MAX_PARTS_LIMIT}")
        for name in self.shift_tables:
            if name not in NATIONAL_LANGUAGES:
                raise ValueError(
                    f"encoding.shift_tables: unknown language {name!r}; "
                    f"known: {', '.join(sorted(NATIONAL_LANGUAGES))}"
                )


DEFAULT_OPTIONS = SegmentOptions()


class SegmentError(ValueError):
    """A text that cannot be sent. ``code`` is a dead-letter code; ``reason`` never quotes the text."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class Part(msgspec.Struct, gc=False):
    """One submit_sm worth of message: fields as they go into the PDU, plus the part's text.

    Not tracked by the garbage collector (``gc=False``): bytes, ints, str and a tuple of
    (int, bytes) cannot form a cycle, and one is made for every message."""

    short_message: bytes
    esm_class: int
    data_coding: int
    tlvs: tuple[tuple[int, bytes], ...]
    text: str


class Segmented(msgspec.Struct, gc=False):
    """The result of :func:`segment`.

    ``units`` counts septets for GSM-7 (escapes count 2), UTF-16 code units for
    UCS-2, octets for binary. ``replaced`` maps each character that smart
    replacement changed to its count. ``segments`` is the number of messages
    on the air: ``len(parts)`` except in payload mode, where one PDU carries
    what the SMSC splits into ``segments`` messages.

    Not tracked by the garbage collector (``gc=False``, one per message): its list
    holds only `Part` and its dict only str → int, so it is never part of a cycle.
    """

    encoding: str
    units: int
    parts: list[Part]
    replaced: dict[str, int]
    segments: int = 1


# -- smart replacement ----------------------------------------------------------------------

_SMART_MAP: dict[str, str] = {
    # single quotes, apostrophes, primes
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u2035": "'",
    "\u02bc": "'", "\u00b4": "'", "\u2039": "'", "\u203a": "'",
    # double quotes, guillemets, double primes
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u2036": '"',
    "\u00ab": '"', "\u00bb": '"',
    # hyphens and dashes, minus sign
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-",
    "\u2212": "-",
    # ellipsis
    "\u2026": "...",
    # spaces: no-break, en/em/thin..., narrow no-break, medium math, ideographic; tab
    "\u00a0": " ", "\u2000": " ", "\u2001": " ", "\u2002": " ", "\u2003": " ", "\u2004": " ",
    "\u2005": " ", "\u2006": " ", "\u2007": " ", "\u2008": " ", "\u2009": " ", "\u200a": " ",
    "\u202f": " ", "\u205f": " ", "\u3000": " ", "\t": " ",
    # zero-width and invisible characters: removed
    "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "", "\u00ad": "",
}  # fmt: skip
_SMART_TABLE = str.maketrans(_SMART_MAP)
_SMART_RE = re.compile("[" + "".join(re.escape(c) for c in _SMART_MAP) + "]")


def smart_replace(text: str) -> tuple[str, dict[str, int]]:
    """Replace typographic look-alikes with GSM-7 characters; returns (text, {char: count})."""
    found = _SMART_RE.findall(text)
    if not found:
        return text, {}
    counts: dict[str, int] = {}
    for ch in found:
        counts[ch] = counts.get(ch, 0) + 1
    return text.translate(_SMART_TABLE), counts


# -- grapheme cluster boundaries (a pragmatic subset of UAX #29) ----------------------------


def _is_extend(ch: str) -> bool:
    """Grapheme_Extend / SpacingMark / ZWJ / emoji modifiers / tags: never start a cluster."""
    cp = ord(ch)
    if cp < 0x300:
        return False
    if (
        cp in (0x200C, 0x200D)
        or 0xFE00 <= cp <= 0xFE0F
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F
        or 0xE0100 <= cp <= 0xE01EF
    ):
        return True
    return unicodedata.category(ch) in ("Mn", "Me", "Mc")


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def is_grapheme_boundary(text: str, j: int) -> bool:
    """True if a message may be cut between ``text[j-1]`` and ``text[j]``."""
    if j <= 0 or j >= len(text):
        return True
    prev = text[j - 1]
    nxt = text[j]
    if prev == "\r" and nxt == "\n":  # GB3
        return False
    if _is_extend(nxt):  # GB9, GB9a
        return False
    if prev == "\u200d":  # GB11 (ZWJ joins what follows in emoji sequences)
        return False
    if (
        ord(prev) >= 0x900
        and unicodedata.combining(prev) == 9
        and unicodedata.category(nxt) == "Lo"
    ):
        return False  # GB9c: virama + consonant (Indic conjuncts)
    if _is_regional_indicator(prev) and _is_regional_indicator(nxt):  # GB12/13: flags are pairs
        k = j - 1
        while k >= 0 and _is_regional_indicator(text[k]):
            k -= 1
        return (j - 1 - k) % 2 == 0
    return True


def _cluster_cut(text: str, start: int, j: int) -> int:
    """The last grapheme boundary in (start, j], or ``j`` itself if there is none near."""
    if is_grapheme_boundary(text, j):
        return j
    lo = max(start, j - _MAX_CLUSTER_BACKOFF)
    k = j - 1
    while k > lo:
        if is_grapheme_boundary(text, k):
            return k
        k -= 1
    return j


# -- budgets ----------------------------------------------------------------------------------


def _septet_budget(udh_octets: int) -> int:
    """Septets left beside a UDH of ``udh_octets`` (UDHL included), fill bits counted."""
    return SM_SEPTETS - (udh_octets * 8 + 6) // 7


def _ucs2_budget(udh_octets: int) -> int:
    return (SM_OCTETS - udh_octets) // 2


def _udh_octets(ie_octets: int) -> int:
    return 1 + ie_octets if ie_octets else 0


# -- splitting --------------------------------------------------------------------------------


def _split_gsm(text: str, septets: bytes, budget: int, alpha: Alphabet) -> list[tuple[str, bytes]]:
    """Cut unpacked septets into runs of at most ``budget``, on character boundaries."""
    chunks: list[tuple[str, bytes]] = []
    n = len(septets)
    a = 0
    i = 0
    while True:
        b = a + budget
        if b >= n:
            chunks.append((text[i:], septets[a:]))
            return chunks
        if septets[b - 1] == ESC:  # never between ESC and its character
            b -= 1
        j = i + (b - a) - septets.count(_ESC_BYTE, a, b)
        k = _cluster_cut(text, i, j)
        if k != j:
            b = a + len(alpha.encode(text[i:k]))
            j = k
        chunks.append((text[i:j], septets[a:b]))
        a = b
        i = j


def _split_ucs2(text: str, data: bytes, budget: int) -> list[tuple[str, bytes]]:
    """Cut text into runs of at most ``budget`` UTF-16 units, never inside a surrogate pair.

    ``data`` is the whole text in UTF-16BE. Without astral characters a unit is
    a character and the bytes are sliced; otherwise widths are measured.
    """
    chunks: list[tuple[str, bytes]] = []
    n = len(text)
    i = 0
    if len(data) == 2 * n:  # BMP only
        while i < n:
            j = min(i + budget, n)
            if j < n:
                j = _cluster_cut(text, i, j)
            chunks.append((text[i:j], data[2 * i : 2 * j]))
            i = j
        return chunks
    while i < n:
        j = min(i + budget, n)
        width = len(text[i:j].encode("utf-16-le")) // 2
        if width > budget:  # astral characters in range: each takes two units
            j -= width - budget
            width = len(text[i:j].encode("utf-16-le")) // 2
            while j < n:
                w = 2 if ord(text[j]) > 0xFFFF else 1
                if width + w > budget:
                    break
                width += w
                j += 1
        if j < n:
            j = _cluster_cut(text, i, j)
        piece = text[i:j]
        chunks.append((piece, piece.encode("utf-16-be")))
        i = j
    return chunks


# -- choosing the alphabet ----------------------------------------------------------------------


_Candidate = tuple[Alphabet, frozenset[str]]  # the alphabet and the characters it encodes
_candidate_cache: dict[tuple[str, ...], tuple[_Candidate, ...]] = {}


def _candidates(languages: tuple[str, ...]) -> tuple[_Candidate, ...]:
    """Every (locking, single) combination of the enabled languages, except default/default.

    Ordered: locking tables alone (with the default extension table), single
    shift tables alone, then the pairs.
    """
    cached = _candidate_cache.get(languages)
    if cached is not None:
        return cached
    locks: list[str | None] = [None]
    singles: list[str | None] = [None]
    for name in languages:
        lang = NATIONAL_LANGUAGES[name]
        if lang.locking is not None and name not in locks:
            locks.append(name)
        if lang.single is not None and name not in singles:
            singles.append(name)
    out: list[_Candidate] = []
    for lock in locks:
        for single in singles:
            if lock is None and single is None:
                continue
            alpha = alphabet(lock, single)
            out.append((alpha, alpha.charset))
    # locking tables alone first (fewest septets for the smallest UDH), then single shift
    # tables alone, then both: the lower-bound screen in _best_shift then skips most.
    out.sort(
        key=lambda c: (
            (c[0].locking is None and c[0].single is not None)
            + 2 * (c[0].locking is not None and c[0].single is not None)
        )
    )
    result = tuple(out)
    _candidate_cache[languages] = result
    return result


def _parts_needed(septets: int, ies: int, concat_ie: int) -> int:
    """A lower bound on the parts for ``septets`` (exact unless an ESC falls on a cut)."""
    if septets <= _septet_budget(_udh_octets(ies)):
        return 1
    return -(-septets // _septet_budget(_udh_octets(concat_ie + ies)))


def _gsm_parts(septets: bytes, ies: int, concat_ie: int) -> int:
    """Parts the septets need, cuts moved off escapes as :func:`_split_gsm` does."""
    n = len(septets)
    if n <= _septet_budget(_udh_octets(ies)):
        return 1
    budget = _septet_budget(_udh_octets(concat_ie + ies))
    if _ESC_BYTE not in septets:
        return -(-n // budget)
    count = 0
    a = 0
    while a < n:
        b = a + budget
        if b < n and septets[b - 1] == ESC:
            b -= 1
        a = b
        count += 1
    return count


def _best_shift(text: str, options: SegmentOptions) -> tuple[Alphabet, bytes] | None:
    """The national table combination giving the fewest parts, then the smallest UDH, then
    the fewest septets.

    Candidates are screened by set inclusion first and by a lower bound on
    their septets (every character at least one; characters outside the
    default alphabet two without a locking table), so usually only one or two
    are actually encoded.
    """
    unfit = DEFAULT.unfit_chars(text)
    outside = frozenset(unfit)
    n = len(text)
    best: tuple[tuple[int, int, int], Alphabet, bytes] | None = None
    concat_ie = _CONCAT_IE_OCTETS[options.concat]
    fits_alone: set[str] = set()  # locking tables that fit with the default extension table
    for alpha, charset in _candidates(options.shift_tables):
        if not outside <= charset:
            continue
        if alpha.locking is not None and alpha.locking.name in fits_alone:
            continue  # same septets (1 in the locking table, else 2) and a bigger UDH: never better
        ies = len(alpha.udh_ies)
        if best is not None:
            floor = n if alpha.locking is not None else n + len(unfit)
            if (_parts_needed(floor, ies, concat_ie), ies, floor) >= best[0]:
                continue
        septets = alpha.try_encode(text)
        if septets is None:
            continue
        if alpha.single is None and alpha.locking is not None:
            fits_alone.add(alpha.locking.name)
        key = (_gsm_parts(septets, ies, concat_ie), ies, len(septets))
        if best is None or key < best[0]:
            best = (key, alpha, septets)
    return None if best is None else (best[1], best[2])


def _gsm_error(text: str, options: SegmentOptions) -> SegmentError:
    outside = DEFAULT.unfit_positions(text)
    first = outside[0]
    reason = (
        f"encoding gsm7 requested but {len(outside)} character(s) are outside the GSM 03.38 "
        f"alphabet; first at position {first}: {describe_char(text[first])}"
    )
    if options.shift_tables:
        reason += "; no enabled national shift table fits either"
    return SegmentError("bad_encoding", reason)


# -- assembling parts ---------------------------------------------------------------------------


def _concat_ie(concat: str, ref: int, total: int, seq: int) -> bytes:
    if concat == "udh16":  # TS 23.040 §9.2.3.24.8
        return bytes((0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq))
    if concat == "udh8":  # TS 23.040 §9.2.3.24.1
        return bytes((0x00, 3, ref & 0xFF, total, seq))
    return b""  # sar: the reference travels in TLVs


def _too_many(count: int, options: SegmentOptions) -> SegmentError:
    return SegmentError(
        "too_many_parts", f"text needs {count} parts, more than max_parts {options.max_parts}"
    )


class ConcatRefs:
    """Concatenation references per destination, for :func:`segment`'s ``ref``: a
    fixed table of 65,536 16-bit counters (128 KiB, random at start), the one of a
    destination chosen by the hash of ``key`` (set before each call). Consulted,
    and moved on by one, only when a text goes in more than one part: a single part
    costs nothing. Consecutive long messages to a destination get consecutive
    references (a counter shared by several destinations only moves faster)."""

    __slots__ = ("_table", "key")

    SLOTS = 1 << 16

    def __init__(self) -> None:
        self.key = ""
        self._table = array("H", os.urandom(2 * self.SLOTS))

    def take(self) -> int:
        """The reference for a message in parts to ``key``; its counter moves on."""
        slot = hash(self.key) & (self.SLOTS - 1)
        ref = self._table[slot]
        self._table[slot] = (ref + 1) & 0xFFFF
        return ref


def _assemble(
    chunks: list[tuple[str, bytes]],
    ies: bytes,
    data_coding: int,
    options: SegmentOptions,
    ref: int | ConcatRefs,
    packed: bool,
) -> list[Part]:
    total = len(chunks)
    if total > options.max_parts:
        raise _too_many(total, options)
    concat = options.concat
    if total == 1:
        text, data = chunks[0]
        udh = bytes((len(ies),)) + ies if ies else b""
        if packed:
            data = pack(data, (7 - len(udh) * 8 % 7) % 7, SM_OCTETS - len(udh))
        return [Part(udh + data, ESM_UDHI if udh else 0, data_coding, (), text)]
    if isinstance(ref, ConcatRefs):
        ref = ref.take()
    parts: list[Part] = []
    sar = concat == "sar"
    ref_tlv = (TAG_SAR_MSG_REF_NUM, (ref & 0xFFFF).to_bytes(2, "big"))
    total_tlv = (TAG_SAR_TOTAL_SEGMENTS, bytes((total,)))
    for seq, (text, data) in enumerate(chunks, 1):
        body = _concat_ie(concat, ref, total, seq) + ies
        udh = bytes((len(body),)) + body if body else b""
        if packed:
            data = pack(data, (7 - len(udh) * 8 % 7) % 7, SM_OCTETS - len(udh))
        tlvs = (ref_tlv, total_tlv, (TAG_SAR_SEGMENT_SEQNUM, bytes((seq,)))) if sar else ()
        parts.append(Part(udh + data, ESM_UDHI if udh else 0, data_coding, tlvs, text))
    return parts


def _payload_part(
    text: str,
    data: bytes,
    ies: bytes,
    data_coding: int,
    packed: bool,
    segments: int,
    options: SegmentOptions,
) -> list[Part]:
    if segments > options.max_parts:
        raise _too_many(segments, options)
    udh = bytes((len(ies),)) + ies if ies else b""
    if packed:
        data = pack(data, (7 - len(udh) * 8 % 7) % 7)
    payload = udh + data
    if len(payload) > MAX_PAYLOAD_OCTETS:
        raise SegmentError(
            "too_many_parts", f"message_payload of {len(payload)} octets exceeds 65535"
        )
    return [Part(b"", ESM_UDHI if udh else 0, data_coding, ((TAG_MESSAGE_PAYLOAD, payload),), text)]


def _segment_gsm(
    text: str,
    septets: bytes,
    alpha: Alphabet,
    options: SegmentOptions,
    ref: int | ConcatRefs,
    replaced: dict[str, int],
) -> Segmented:
    units = len(septets)
    ies = alpha.udh_ies
    dc = options.gsm_data_coding
    if units <= _septet_budget(_udh_octets(len(ies))):
        chunks = [(text, septets)]
    else:
        budget = _septet_budget(_udh_octets(_CONCAT_IE_OCTETS[options.concat] + len(ies)))
        chunks = _split_gsm(text, septets, budget, alpha)
    if options.concat == "payload":
        parts = _payload_part(text, septets, ies, dc, options.packed, len(chunks), options)
        return Segmented("gsm7", units, parts, replaced, len(chunks))
    parts = _assemble(chunks, ies, dc, options, ref, options.packed)
    return Segmented("gsm7", units, parts, replaced, len(parts))


def _segment_ucs2(text: str, options: SegmentOptions, ref: int | ConcatRefs) -> Segmented:
    try:
        data = text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise SegmentError(
            "bad_encoding", f"lone surrogate at position {exc.start}: text is not valid Unicode"
        ) from None
    units = len(data) // 2
    if units <= SM_OCTETS // 2:
        chunks = [(text, data)]
    else:
        budget = _ucs2_budget(_udh_octets(_CONCAT_IE_OCTETS[options.concat]))
        chunks = _split_ucs2(text, data, budget)
    if options.concat == "payload":
        parts = _payload_part(text, data, b"", DATA_CODING_UCS2, False, len(chunks), options)
        return Segmented("ucs2", units, parts, {}, len(chunks))
    parts = _assemble(chunks, b"", DATA_CODING_UCS2, options, ref, False)
    return Segmented("ucs2", units, parts, {}, len(parts))


def segment(
    text: str, options: SegmentOptions = DEFAULT_OPTIONS, encoding: str = "auto", ref: int | ConcatRefs = 0
) -> Segmented:
    """Encode ``text`` and cut it into submit_sm parts.

    ``encoding`` is ``auto`` (GSM-7 when it fits, else UCS-2), ``gsm7`` or
    ``ucs2``. ``ref`` is the concatenation reference (masked to 8 bits for
    udh8, 16 bits for udh16 and SAR), or a :class:`ConcatRefs` to take it from
    when the text goes in parts. Raises :class:`SegmentError` with code
    ``empty_text``, ``bad_encoding`` or ``too_many_parts``.
    """
    if not text:
        raise SegmentError("empty_text", "text is empty")
    if encoding != "ucs2":
        if encoding != "auto" and encoding != "gsm7":
            raise SegmentError("bad_encoding", "encoding must be auto, gsm7 or ucs2")
        septets = encode_default(text)
        if septets is not None:
            if len(septets) <= SM_SEPTETS and not options.packed and options.concat != "payload" and options.max_parts:
                # The usual message: one part in the default alphabet (no UDH), what
                # _segment_gsm gives for it, without its chunk list and budget calls.
                return Segmented("gsm7", len(septets), [Part(septets, 0, options.gsm_data_coding, (), text)], {}, 1)
            return _segment_gsm(text, septets, DEFAULT, options, ref, {})
        candidate = text
        replaced: dict[str, int] = {}
        if options.smart_replace:
            candidate, replaced = smart_replace(text)
            if replaced:
                if not candidate:
                    raise SegmentError("empty_text", "text is empty after smart replacement")
                septets = encode_default(candidate)
                if septets is not None:
                    return _segment_gsm(candidate, septets, DEFAULT, options, ref, replaced)
        if options.shift_tables:
            found = _best_shift(candidate, options)
            if found is not None:
                return _segment_gsm(candidate, found[1], found[0], options, ref, replaced)
        if encoding == "gsm7":
            raise _gsm_error(candidate, options)
    return _segment_ucs2(text, options, ref)


def segment_binary(
    data: bytes, options: SegmentOptions = DEFAULT_OPTIONS, ref: int = 0
) -> Segmented:
    """Cut 8-bit data (data_coding 0x04) into parts: 140 octets alone, 134/133 concatenated."""
    if not data:
        raise SegmentError("empty_text", "data is empty")
    units = len(data)
    if units <= SM_OCTETS:
        chunks = [("", data)]
    else:
        budget = SM_OCTETS - _udh_octets(_CONCAT_IE_OCTETS[options.concat])
        chunks = [("", data[a : a + budget]) for a in range(0, units, budget)]
    if options.concat == "payload":
        parts = _payload_part("", data, b"", DATA_CODING_BINARY, False, len(chunks), options)
        return Segmented("binary", units, parts, {}, len(chunks))
    parts = _assemble(chunks, b"", DATA_CODING_BINARY, options, ref, False)
    return Segmented("binary", units, parts, {}, len(parts))


def describe(
    text: str, options: SegmentOptions = DEFAULT_OPTIONS, encoding: str = "auto"
) -> dict[str, Any]:
    """The ``sendgate segments --json`` object: how ``text`` splits on the air.

    In payload mode the parts shown are the messages the SMSC will make of the
    single PDU (sized like udh8).
    """
    if options.concat == "payload":
        options = msgspec.structs.replace(options, concat="udh8")
    result = segment(text, options, encoding)
    return {
        "encoding": result.encoding,
        "segments": result.segments,
        "units": result.units,
        "parts": [p.text for p in result.parts],
    }
