"""The text of a received SMS part: user data → ``str`` per SMPP data_coding.

Why it looks like this: an inbound message (deliver_sm of a mobile-originated
message) arrives as short_message octets, an esm_class and a data_coding, and
the engine wants its text. :func:`decode_text` takes the octets and the
:class:`~engine.text.udh.UserDataHeader` that :func:`~engine.text.udh.parse_udh`
read from them, and returns the text after the header. The common case (160
unpacked septets without escapes, or 70 UCS-2 units) runs in C: one
``codecs.charmap_decode`` over a 256-entry table per alphabet, built once at
import from the same TS 23.038 tables the encoder uses; an ESC costs one
``bytes.find`` and a dict lookup.

data_coding (SMPP 3.4 §5.2.19; TS 23.038 §4 for the values SMPP leaves to it):

==============  ===============================================================
0x00            SMSC default alphabet: GSM 7 bit, unpacked (one septet per
                octet) unless ``packed=True`` (septets packed LSB first, after
                the UDH's fill bits, TS 23.040 §9.2.3.24)
0x01            IA5 (CCITT T.50) / ASCII; an octet above 0x7F → U+FFFD
0x03            ISO-8859-1 (Latin-1)
0x06 / 0x07     ISO-8859-5 (Cyrillic) / ISO-8859-8 (Latin/Hebrew)
0x08            UCS-2, big-endian; surrogate pairs are joined (UTF-16), a lone
                surrogate → U+FFFD; an odd octet count raises
0x10-0x7F       TS 23.038 general data coding, as some SMSCs pass TP-DCS
                through: alphabet bits 3-2 (00 GSM 7 bit, 10 UCS-2); compressed
                (bit 5) or 8-bit → ``None``
0xC0-0xDF       message waiting groups, GSM 7 bit
0xE0-0xEF       message waiting group, UCS-2
0xF0-0xFF       data coding / message class: bit 2 clear → GSM 7 bit, set → 8-bit
0x02 / 0x04     8-bit binary: ``None`` (not text; keep the octets)
others          JIS, pictograms, music codes, KS C 5601, reserved: ``None``
==============  ===============================================================

``None`` is the marker for "this is not text we decode": the caller keeps the
octets (for example as hex) instead. Errors are raised only for structurally
invalid input (:class:`UserDataError`: a UCS-2 payload of odd length);
characters we cannot map decode to U+FFFD, never raise.

GSM 7 bit rules (TS 23.038 §6.2.1): national locking and single shift tables
apply when the UDH names them (IE 0x25 / 0x24); a language id without a table
here decodes with the default table (§6.2.1.2.4). ESC + a code the single
shift table lacks shows the basic table's character (§6.2.1.1 note), ESC ESC
a space, a dangling ESC at the end nothing. An unpacked octet with the high
bit set is not a septet: U+FFFD.

Packed septets say nothing of their count when the last one ends exactly on
an octet boundary: a final CR there is taken for the padding CR of
TS 23.038 §6.1.2.3.1 and dropped (a sender that wants a final CR must double
it; sendgate's own packer does, except in a full part where the second CR
does not fit — the one loss the property tests document).
"""

from __future__ import annotations

import codecs

from engine.text.gsm7 import unpack
from engine.text.gsm7_tables import (
    DEFAULT_BASIC,
    DEFAULT_EXTENSION,
    ESC,
    NATIONAL_LANGUAGES,
)
from engine.text.udh import NO_UDH, UserDataError, UserDataHeader, fill_bits

__all__ = [
    "GSM7",
    "UCS2",
    "UserDataError",
    "alphabet_of",
    "decode_septets",
    "decode_text",
]

REPLACEMENT = "\ufffd"

# Names of the alphabets data_coding selects (None: not text we decode).
GSM7 = "gsm7"
ASCII = "ascii"
LATIN1 = "latin-1"
UCS2 = "ucs2"
CYRILLIC = "iso8859-5"
HEBREW = "iso8859-8"


def _alphabet_table() -> tuple[str | None, ...]:
    """data_coding (0..255) → alphabet name, per the table in the module docstring."""
    table: list[str | None] = [None] * 256
    for dc in range(0x10, 0x80):  # TS 23.038 §4 general data coding (00xx) / auto-deletion (01xx)
        if not dc & 0x20:  # bit 5: compressed text is not decoded
            table[dc] = {0x00: GSM7, 0x08: UCS2}.get(dc & 0x0C)
    for dc in range(0xC0, 0xE0):  # message waiting indication: discard / store, GSM 7 bit
        table[dc] = GSM7
    for dc in range(0xE0, 0xF0):  # message waiting indication: store, UCS-2
        table[dc] = UCS2
    for dc in range(0xF0, 0x100):  # data coding / message class: bit 2 is the alphabet
        table[dc] = None if dc & 0x04 else GSM7
    # SMPP 3.4 §5.2.19 owns 0x00-0x0E (0x0F is reserved in both).
    table[0x00] = GSM7
    table[0x01] = ASCII
    table[0x03] = LATIN1
    table[0x06] = CYRILLIC
    table[0x07] = HEBREW
    table[0x08] = UCS2
    return tuple(table)


_ALPHABET_OF = _alphabet_table()


def alphabet_of(data_coding: int) -> str | None:
    """The alphabet :func:`decode_text` uses for ``data_coding``, ``None`` when it returns ``None``.

    ``"gsm7"``, ``"ucs2"``, ``"ascii"``, ``"latin-1"``, ``"iso8859-5"`` or
    ``"iso8859-8"``.
    """
    return _ALPHABET_OF[data_coding & 0xFF]


# -- GSM 7 bit tables, built once -----------------------------------------------------------


def _charmap(basic: str) -> str:
    """256-entry decoding table: septets 0..0x7F from ``basic``, anything above → U+FFFD.

    The ESC slot is never looked up (escapes are cut out before decoding) and
    unassigned national cells already hold U+FFFD.
    """
    return basic[:ESC] + REPLACEMENT + basic[ESC + 1 : 128] + REPLACEMENT * 128


_DEFAULT_CHARMAP = _charmap(DEFAULT_BASIC)
# language id (TS 23.038 §6.2.1.2.4; None: no shift IE) → decoding table / single shift table
_LOCKING: dict[int | None, str] = {None: _DEFAULT_CHARMAP}
_SINGLE: dict[int | None, dict[int, str]] = {None: DEFAULT_EXTENSION}
for _lang in NATIONAL_LANGUAGES.values():
    if _lang.locking is not None:
        _LOCKING[_lang.language_id] = _charmap(_lang.locking)
    if _lang.single is not None:
        _SINGLE[_lang.language_id] = _lang.single
del _lang
_ESC_BYTE = bytes((ESC,))


def decode_septets(
    septets: bytes, locking_shift: int | None = None, single_shift: int | None = None
) -> str:
    """Text of unpacked septets (one per octet) in the tables of the given language ids.

    ``None`` or an id without a table here selects the default alphabet /
    extension table. Never raises.
    """
    basic = _LOCKING.get(locking_shift, _DEFAULT_CHARMAP)
    if _ESC_BYTE not in septets:
        return codecs.charmap_decode(septets, "strict", basic)[0]
    # Escapes: one decode with ESC kept as U+001B, split on it, and each piece's first
    # character (the code after the ESC, read in the basic table) swapped for its
    # extension character: ~0.1 µs an escape instead of ~0.5 in the loop below, which
    # stays for what this cannot tell apart (ESC ESC, a dangling ESC, a code whose
    # basic character is not unique: U+FFFD cells, octets above 0x7F).
    escapes = _ESCAPES.get((locking_shift, single_shift))
    if escapes is None:
        escapes = _escapes(locking_shift, single_shift)
    pieces = codecs.charmap_decode(septets, "strict", escapes[0])[0].split("\x1b")
    table = escapes[1]
    out = [pieces[0]]
    for piece in pieces[1:]:
        ch = table.get(piece[:1])
        if ch is None:
            return _decode_escapes(septets, basic, _SINGLE.get(single_shift, DEFAULT_EXTENSION))
        out.append(ch)
        out.append(piece[1:])
    return "".join(out)


def _escapes(locking_shift: int | None, single_shift: int | None) -> tuple[str, dict[str, str]]:
    """(decoding table with ESC as U+001B, {basic character: the character ESC + its
    code stands for}) of a pair of language ids; built once per pair."""
    basic = _LOCKING.get(locking_shift, _DEFAULT_CHARMAP)
    shift = _SINGLE.get(single_shift, DEFAULT_EXTENSION)
    seen: dict[str, int] = {}
    for code in range(128):
        seen[basic[code]] = seen.get(basic[code], 0) + 1
    table = {
        basic[code]: shift.get(code, basic[code])  # §6.2.1.1: unknown extension → the basic character
        for code in range(128)
        if code != ESC and seen[basic[code]] == 1 and basic[code] != REPLACEMENT
    }
    pair = (basic[:ESC] + "\x1b" + basic[ESC + 1 :], table)
    # kept per pair of ids that have tables (another id reads the default's): bounded
    if (locking_shift is None or locking_shift in _LOCKING) and (single_shift is None or single_shift in _SINGLE):
        _ESCAPES[(locking_shift, single_shift)] = pair
    return pair


_ESCAPES: dict[tuple[int | None, int | None], tuple[str, dict[str, str]]] = {}


def _decode_escapes(septets: bytes, basic: str, shift: dict[int, str]) -> str:
    """Septets with escapes, one at a time (every case of the module docstring)."""
    out: list[str] = []
    n = len(septets)
    i = 0
    while True:
        j = septets.find(_ESC_BYTE, i)
        if j < 0:
            out.append(codecs.charmap_decode(septets[i:], "strict", basic)[0])
            return "".join(out)
        out.append(codecs.charmap_decode(septets[i:j], "strict", basic)[0])
        if j + 1 >= n:  # a dangling ESC is not a character
            return "".join(out)
        code = septets[j + 1]
        ch = shift.get(code)
        if ch is None:  # §6.2.1.1: unknown extension → basic character; ESC ESC → space
            ch = " " if code == ESC else basic[code]
        out.append(ch)
        i = j + 2


def decode_text(
    short_message: bytes,
    data_coding: int,
    udh: UserDataHeader = NO_UDH,
    *,
    packed: bool = False,
) -> str | None:
    """The text after the UDH of ``short_message``, or ``None`` when it is not text we decode.

    ``udh`` is what :func:`~engine.text.udh.parse_udh` returned for the same
    octets (its ``payload_offset`` and shift tables are used). ``packed``
    says GSM 7 bit septets are packed (the carrier's setting; SMPP does not
    carry it). Raises :class:`UserDataError` for a UCS-2 payload of odd
    length; see the module docstring for every data_coding.
    """
    alphabet = _ALPHABET_OF[data_coding & 0xFF]
    offset = udh.payload_offset
    data = short_message[offset:] if offset else short_message
    if alphabet == GSM7:
        if packed:
            data = unpack(data, fill_bits(offset))
        return decode_septets(data, udh.locking_shift, udh.single_shift)
    if alphabet == UCS2:
        if len(data) & 1:
            raise UserDataError(f"UCS-2 user data has an odd length ({len(data)} octets)")
        return data.decode("utf-16-be", "replace")
    if alphabet is None:
        return None
    return data.decode(alphabet, "replace")
