"""GSM 7 bit codecs (3GPP TS 23.038): encode, decode, pack and unpack septets.

Why it looks like this: the segmenter calls ``encode_default`` for every
message, so the common case must not loop in Python. Each alphabet (a locking
table plus a single shift table) is compiled once into:

* a ``str.translate`` table mapping every encodable character to its septet(s)
  as a 1- or 2-character string (``ESC`` + code for single shift characters)
  and every *non*-encodable ASCII character to a non-ASCII sentinel, so that
  "the translated text is ASCII" means "every character fits";
* for the default alphabet, a 256-byte ``bytes.translate`` table that handles
  any Latin-1 text (which covers all of the default alphabet except the Greek
  capitals and the euro sign) at memcpy speed.

Septets are carried *unpacked* (one septet per octet, values 0..0x7F), which is
what SMPP short_message normally holds for data_coding 0; ``pack`` /
``unpack`` convert to and from the packed air format (TS 23.038 §6.1.2.1.1)
for carriers that want it.

Traps this module gets right: Ç is in the default alphabet but ç is not; Æ Ø
Å æ ø å are; a bare U+001B (ESC) in input is not a character and never
encodes; extension characters cost two septets.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from functools import lru_cache

from engine.text.gsm7_tables import (
    DEFAULT_BASIC,
    DEFAULT_EXTENSION,
    ESC,
    NATIONAL_LANGUAGES,
    UNASSIGNED,
    NationalLanguage,
)

__all__ = [
    "DEFAULT",
    "ESC",
    "Alphabet",
    "GsmEncodeError",
    "alphabet",
    "decode",
    "encode",
    "encode_default",
    "pack",
    "septet_count",
    "unpack",
]

_CR = 0x0D


class GsmEncodeError(ValueError):
    """The text holds characters outside the alphabet. The message names positions, never text."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def describe_char(ch: str) -> str:
    """A privacy-safe description of a character: its Unicode class, never the character."""
    cp = ord(ch)
    if 0xD800 <= cp <= 0xDFFF:
        return "lone surrogate"
    if cp == ESC:
        return "control character U+001B (ESC)"
    cat = unicodedata.category(ch)
    if cat == "So" and cp >= 0x1F000:
        return "emoji/pictograph (So)"
    if cat.startswith("C"):
        return f"control/format character ({cat})"
    if cat.startswith("L"):
        return f"letter ({cat})"
    if cat.startswith("M"):
        return f"combining mark ({cat})"
    if cat.startswith("Z"):
        return f"space/separator ({cat})"
    return f"symbol/punctuation ({cat})"


class Alphabet:
    """A locking shift table combined with a single shift table, compiled for fast coding.

    ``locking`` / ``single`` are the national languages whose tables are used,
    ``None`` for the default alphabet / default extension table.

    Encoding runs in C: ``codecs.charmap_encode`` with an ``EncodingMap``
    (built from a 256-entry table, which CPython only turns into the fast map
    when entry 0 is U+0000, so '@' at code 0 is stored in the free ESC slot
    0x1B and moved back by a ``bytes.translate``). Single shift characters come
    out as marker octets ``0x80 | code``; one ``re.sub`` puts an ESC before each
    and the same translate clears the marker bit.
    """

    __slots__ = (
        "_decode_basic",
        "_decode_single",
        "_encoding_map",
        "_unfit_re",
        "charset",
        "locking",
        "single",
        "udh_ies",
    )

    def __init__(self, locking: NationalLanguage | None, single: NationalLanguage | None) -> None:
        basic = (
            locking.locking
            if locking is not None and locking.locking is not None
            else DEFAULT_BASIC
        )
        shift = (
            single.single if single is not None and single.single is not None else DEFAULT_EXTENSION
        )
        self.locking = locking
        self.single = single
        self._decode_basic = basic
        self._decode_single = shift
        slots = ["\ufffe"] * 256  # U+FFFE: unmapped
        slots[0] = "\x00"  # required by the fast map; U+0000 itself is rejected after encoding
        for code, ch in enumerate(basic):
            if code not in (0, ESC) and ch != UNASSIGNED:
                slots[code] = ch
        if basic[0] != UNASSIGNED:
            slots[ESC] = basic[0]  # '@' (or the national code 0 character) parks in the ESC slot
        seen = set(basic)
        for code, ch in sorted(shift.items()):
            if code != ESC and ch not in seen:  # in both: one septet; twice (Indic * ¡): first
                slots[0x80 | code] = ch
                seen.add(ch)
        self._encoding_map = codecs.charmap_build("".join(slots))
        self.charset = frozenset(c for c in slots if c not in ("\ufffe", "\x00"))
        self._unfit_re = re.compile(
            "[^" + "".join(re.escape(c) for c in sorted(self.charset)) + "]"
        )
        ies = b""
        if locking is not None:
            ies += bytes((0x25, 1, locking.language_id))  # TS 23.040 §9.2.3.24.16 locking shift
        if single is not None:
            ies += bytes((0x24, 1, single.language_id))  # TS 23.040 §9.2.3.24.15 single shift
        self.udh_ies = ies

    @property
    def name(self) -> str:
        """``default`` or e.g. ``turkish/turkish``, ``-/spanish`` (locking/single)."""
        if self.locking is None and self.single is None:
            return "default"
        lock = self.locking.name if self.locking is not None else "-"
        single = self.single.name if self.single is not None else "-"
        return f"{lock}/{single}"

    def first_unfit(self, text: str) -> int:
        """Index of the first character that does not fit, or -1."""
        m = self._unfit_re.search(text)
        return -1 if m is None else m.start()

    def unfit_chars(self, text: str) -> list[str]:
        """Every character (with repeats) that does not fit."""
        return self._unfit_re.findall(text)

    def unfit_positions(self, text: str) -> list[int]:
        """Indices of every character that does not fit."""
        return [m.start() for m in self._unfit_re.finditer(text)]

    def try_encode(self, text: str) -> bytes | None:
        """Unpacked septets of ``text``, or ``None`` if a character does not fit."""
        try:
            raw = codecs.charmap_encode(text, "strict", self._encoding_map)[0]
        except UnicodeEncodeError:
            return None
        if 0 in raw:  # U+0000 is not a GSM character
            return None
        return _finish(raw)

    def encode(self, text: str) -> bytes:
        """Unpacked septets; raises :class:`GsmEncodeError` naming the first unfit position."""
        out = self.try_encode(text)
        if out is None:
            pos = self.first_unfit(text)
            raise GsmEncodeError(
                f"character at position {pos} ({describe_char(text[pos])}) "
                f"is not in the GSM 7 bit alphabet {self.name}",
                pos,
            )
        return out

    def decode(self, septets: bytes) -> str:
        """Text of unpacked septets (TS 23.038 §6.2.1.1: an unknown ESC code shows the basic character)."""
        basic = self._decode_basic
        shift = self._decode_single
        out: list[str] = []
        i = 0
        n = len(septets)
        while i < n:
            code = septets[i] & 0x7F
            if code == ESC:
                if i + 1 >= n:
                    break  # a dangling ESC is not a character
                nxt = septets[i + 1] & 0x7F
                ch = shift.get(nxt)
                if ch is None:
                    ch = " " if nxt == ESC else basic[nxt]
                out.append(ch)
                i += 2
            else:
                out.append(basic[code])
                i += 1
        return "".join(out)


DEFAULT = Alphabet(None, None)


@lru_cache(maxsize=256)
def alphabet(locking: str | None = None, single: str | None = None) -> Alphabet:
    """The compiled alphabet for national language names (``None`` = default tables)."""
    lock_lang = _language(locking, "locking") if locking else None
    single_lang = _language(single, "single") if single else None
    if lock_lang is None and single_lang is None:
        return DEFAULT
    return Alphabet(lock_lang, single_lang)


def _language(name: str, kind: str) -> NationalLanguage:
    lang = NATIONAL_LANGUAGES.get(name)
    if lang is None:
        raise ValueError(f"unknown national language {name!r}; known: {sorted(NATIONAL_LANGUAGES)}")
    if (lang.locking if kind == "locking" else lang.single) is None:
        raise ValueError(f"national language {name!r} has no {kind} shift table")
    return lang


# -- shared final step and the default alphabet's fast path -------------------------------

_ASCII_BYTES = bytes(range(128))


def _build_finish_table() -> bytes:
    table = bytearray(range(128)) + bytearray(c & 0x7F for c in range(128, 256))
    table[ESC] = 0  # the parked '@' (code 0)
    return bytes(table)


_FINISH = _build_finish_table()
_MARK_CLEAR = bytes(range(128)) + bytes(c & 0x7F for c in range(128, 256))


def _expand_marks(raw: bytes, table: bytes) -> bytes:
    """Put ESC before every marker octet ``0x80 | code``, then translate with ``table``.

    The ESC is inserted as 0x9B, which the translate turns into 0x1B like any
    marker; one ``replace`` per *distinct* marker present (usually one or two).
    """
    for mark in set(raw.translate(None, _ASCII_BYTES)):
        raw = raw.replace(bytes((mark,)), bytes((0x9B, mark)))
    return raw.translate(table)


def _finish(raw: bytes) -> bytes:
    """Charmap output → septets: restore code 0, expand single shift markers to ESC + code."""
    if raw.isascii():
        return raw.translate(_FINISH)
    return _expand_marks(raw, _FINISH)


def _build_ascii_table() -> bytes:
    """ASCII → septet (or 0x80|code for extension characters, 0xFF if not in the alphabet)."""
    table = bytearray([0xFF]) * 256
    for code, ch in DEFAULT_EXTENSION.items():
        if ord(ch) < 128:
            table[ord(ch)] = 0x80 | code
    for code, ch in enumerate(DEFAULT_BASIC):
        if code != ESC and ord(ch) < 128:
            table[ord(ch)] = code
    return bytes(table)


_ASCII_TO_GSM = _build_ascii_table()


def encode_default(text: str) -> bytes | None:
    """Unpacked septets in the default alphabet + extension table, or ``None`` if it does not fit.

    ASCII text goes through one ``bytes.translate`` (plus an ESC insertion when
    an extension character occurs); other text is screened with one regex
    search, then encoded by the compiled charmap.
    """
    if text.isascii():
        septets = text.encode("ascii").translate(_ASCII_TO_GSM)
        if septets.isascii():
            return septets
        if 0xFF in septets:
            return None
        return _expand_marks(septets, _MARK_CLEAR)
    if DEFAULT._unfit_re.search(text) is not None:
        return None
    return DEFAULT.try_encode(text)


def encode(text: str, locking: str | None = None, single: str | None = None) -> bytes:
    """Unpacked septets of ``text`` (one per octet); raises :class:`GsmEncodeError` if it does not fit."""
    if locking is None and single is None:
        out = encode_default(text)
        if out is not None:
            return out
    return alphabet(locking, single).encode(text)


def decode(septets: bytes, locking: str | None = None, single: str | None = None) -> str:
    """Text of unpacked septets in the given tables."""
    return alphabet(locking, single).decode(septets)


def septet_count(text: str) -> int | None:
    """Septets ``text`` needs in the default alphabet (escapes count 2), ``None`` if it does not fit."""
    out = encode_default(text)
    return None if out is None else len(out)


# -- packing (TS 23.038 §6.1.2.1.1) --------------------------------------------------------


@lru_cache(maxsize=16)
def _gather_stages(lanes_log2: int) -> tuple[tuple[int, int, int], ...]:
    """Masks that squeeze 2**lanes_log2 octet lanes of 7 useful bits into one run of septets.

    Each stage pairs neighbouring lanes: the upper lane's bits move down next
    to the lower lane's, doubling lane width; log2(lanes) big-int stages, all
    in C, instead of a Python loop over septets.
    """
    lanes = 1 << lanes_log2
    stages = []
    width, useful = 8, 7
    while width < 8 * lanes:
        pair = 2 * width
        unit = (1 << useful) - 1
        low = 0
        for k in range(lanes * 8 // pair):
            low |= unit << (pair * k)
        stages.append((low, low << width, width - useful))
        width, useful = pair, useful * 2
    return tuple(stages)


def pack(septets: bytes, fill_bits: int = 0, max_octets: int | None = None) -> bytes:
    """Pack unpacked septets into octets, LSB first, after ``fill_bits`` zero bits.

    ``fill_bits`` aligns the septets after a UDH (TS 23.040 §9.2.3.24). When the
    last octet would have 7 spare bits, they carry a CR instead of zeros so a
    receiver does not read a spurious ``@`` (TS 23.038 §6.1.2.3.1). For the same
    reason a wanted CR that ends exactly on an octet boundary would be taken for
    that padding and dropped, so a second CR follows it (the spec's rule: CR CR
    means the same as CR) — unless that octet would not fit in ``max_octets``,
    where the receiver counts septets anyway (a full 140-octet part).
    """
    if not septets:
        return b""
    total_bits = fill_bits + 7 * len(septets)
    nbytes = (total_bits + 7) // 8
    if nbytes * 8 - total_bits == 7:
        septets = septets + b"\r"
    elif (
        total_bits % 8 == 0
        and septets[-1] == _CR
        and (max_octets is None or nbytes < max_octets)
    ):
        septets = septets + b"\r"
        total_bits += 7
        nbytes += 1
    value = int.from_bytes(septets, "little")
    for low, high, shift in _gather_stages((len(septets) - 1).bit_length()):
        value = (value & low) | ((value & high) >> shift)
    return (value << fill_bits).to_bytes(nbytes, "little")


def unpack(data: bytes, fill_bits: int = 0, count: int | None = None) -> bytes:
    """Unpack octets into unpacked septets (the inverse of :func:`pack`).

    Without ``count``, as many septets as fit are returned, minus a trailing CR
    that exactly fills the last octet (the padding :func:`pack` adds). The
    gather stages of :func:`pack` run backwards: each moves the upper half of
    every lane pair up to its own lane, so no Python loop runs per septet.
    """
    avail_bits = len(data) * 8 - fill_bits
    if avail_bits < 7:
        return b""
    n = avail_bits // 7 if count is None else min(count, avail_bits // 7)
    value = (int.from_bytes(data, "little") >> fill_bits) & ((1 << (7 * n)) - 1)
    lanes_log2 = (n - 1).bit_length()
    for low, high, shift in reversed(_gather_stages(lanes_log2)):
        value = (value & low) | ((value << shift) & high)
    out = value.to_bytes(1 << lanes_log2, "little")[:n]
    if count is None and out[-1] == _CR and n * 7 == avail_bits:
        out = out[:-1]
    return out
