"""Mobile-originated messages as an SMSC delivers them: text → deliver_sm parts.

Why it is here, and its own encoder: the simulator's inbound mode
(``Simulator.send_inbound``) must send what an independent SMSC sends —
single messages, concatenated ones with an 8- or 16-bit UDH reference or with
SAR TLVs, in GSM 7 bit or UCS-2 — so the engine's inbound path is tested
against bytes it did not produce itself. ``connectors`` may not import
``engine.text`` (layers), and an encoder written apart from the engine's is
the point: the two meet only in the tests.

GSM 7 bit is sent unpacked, one septet per octet (SMPP data_coding 0x00, as
SMSCs do); an escape pair is never split across parts. Part sizes are the
usual ones: 153 septets / 67 UCS-2 characters with an 8-bit UDH or SAR,
152 / 66 with a 16-bit UDH, 160 / 70 for a message of one part.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ["MoPart", "gsm7_septets", "mo_parts"]

# 3GPP TS 23.038 §6.2.1 default alphabet, code order (0x1B is the escape).
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = {"\x0c": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
              "|": 0x40, "€": 0x65}
_CODE = {ch: i for i, ch in enumerate(_BASIC) if i != 0x1B}

Encoding = Literal["gsm7", "ucs2"]
Concat = Literal["udh8", "udh16", "sar"]


class MoPart(NamedTuple):
    """One deliver_sm's worth: esm_class, data_coding, short_message and the SAR
    TLVs ``(ref, total, seq)`` (None when the part has a UDH or is alone)."""

    esm_class: int
    data_coding: int
    short_message: bytes
    sar: tuple[int, int, int] | None


def gsm7_septets(text: str) -> list[bytes]:
    """The septets of ``text``, one ``bytes`` per character (an escape pair for the
    extension table); ValueError for a character outside the default alphabet."""
    out: list[bytes] = []
    for ch in text:
        code = _CODE.get(ch)
        if code is not None:
            out.append(bytes((code,)))
            continue
        ext = _EXTENSION.get(ch)
        if ext is None:
            raise ValueError(f"character U+{ord(ch):04X} is not in the GSM 7 bit default alphabet")
        out.append(bytes((0x1B, ext)))
    return out


def _chunks(units: list[bytes], size: int) -> list[bytes]:
    """Units (characters) into chunks of at most ``size`` octets, never splitting one."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for u in units:
        if used + len(u) > size:
            chunks.append(b"".join(current))
            current, used = [], 0
        current.append(u)
        used += len(u)
    chunks.append(b"".join(current))
    return chunks


def mo_parts(text: str, *, encoding: Encoding = "gsm7", concat: Concat = "udh8", ref: int = 1) -> list[MoPart]:
    """The deliver_sm parts of ``text`` (one part when it fits a single message)."""
    if encoding == "gsm7":
        units, data_coding, single = gsm7_septets(text), 0x00, 160
        size = 152 if concat == "udh16" else 153
    else:
        raw = text.encode("utf-16-be")
        units = [raw[i : i + 2] for i in range(0, len(raw), 2)]  # a surrogate pair may split: SMSCs do that too
        data_coding, single = 0x08, 140
        size = 132 if concat == "udh16" else 134
    if sum(len(u) for u in units) <= single:
        return [MoPart(0, data_coding, b"".join(units), None)]
    chunks = _chunks(units, size)
    total = len(chunks)
    if total > 255:
        raise ValueError("more than 255 parts")
    parts: list[MoPart] = []
    for seq, chunk in enumerate(chunks, 1):
        if concat == "sar":
            parts.append(MoPart(0, data_coding, chunk, (ref & 0xFFFF, total, seq)))
        elif concat == "udh16":
            udh = bytes((6, 0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq))
            parts.append(MoPart(0x40, data_coding, udh + chunk, None))
        else:
            udh = bytes((5, 0x00, 3, ref & 0xFF, total, seq))
            parts.append(MoPart(0x40, data_coding, udh + chunk, None))
    return parts
