"""Shared helpers for the segmentation tests: take a Part apart again."""

from __future__ import annotations

from engine.text import gsm7
from engine.text.gsm7_tables import NATIONAL_LANGUAGES
from engine.text.segmenter import Part, Segmented

LANG_BY_ID = {lang.language_id: name for name, lang in NATIONAL_LANGUAGES.items()}


def split_udh(part: Part) -> tuple[bytes, bytes]:
    """(UDH including its length octet, user data) of a part."""
    sm = part.short_message
    if part.esm_class & 0x40:
        return sm[: sm[0] + 1], sm[sm[0] + 1 :]
    return b"", sm


def udh_ies(udh: bytes) -> dict[int, bytes]:
    """Information elements of a UDH, by IEI."""
    out: dict[int, bytes] = {}
    i = 1
    while i < len(udh):
        iei, length = udh[i], udh[i + 1]
        out[iei] = udh[i + 2 : i + 2 + length]
        i += 2 + length
    return out


def languages(udh: bytes) -> tuple[str | None, str | None]:
    """(locking, single) national languages named by the UDH, None for default tables."""
    ies = udh_ies(udh)
    locking = LANG_BY_ID[ies[0x25][0]] if 0x25 in ies else None
    single = LANG_BY_ID[ies[0x24][0]] if 0x24 in ies else None
    return locking, single


def part_septets(part: Part, packed: bool = False) -> bytes:
    """Unpacked septets of a GSM-7 part.

    Packed data does not say how many septets it holds when the last one ends
    exactly on an octet boundary and is a CR (TS 23.038 §6.1.2.3.1), so the
    count is taken from the part's text (the septets themselves are still
    checked by decoding them).
    """
    udh, data = split_udh(part)
    if not packed:
        return data
    fill = (7 - len(udh) * 8 % 7) % 7
    count = len(gsm7.alphabet(*languages(udh)).encode(part.text))
    return gsm7.unpack(data, fill, count)


def decode_part(part: Part, packed: bool = False) -> str:
    """Text of a part, from its bytes (UDH shift IEs honoured)."""
    udh, data = split_udh(part)
    if part.data_coding == 0x08:
        return data.decode("utf-16-be")
    return gsm7.decode(part_septets(part, packed), *languages(udh))


def air_octets(part: Part, encoding: str) -> int:
    """Octets the part takes in TP-UD on the air (UDH + packed septets or UCS-2)."""
    udh, data = split_udh(part)
    if encoding == "gsm7":
        septets = len(data)
        return (len(udh) * 8 + (7 - len(udh) * 8 % 7) % 7 + 7 * septets + 7) // 8
    return len(udh) + len(data)


def joined(result: Segmented, packed: bool = False) -> str:
    return "".join(decode_part(p, packed) for p in result.parts)
