"""The User Data Header of an SMS part (3GPP TS 23.040 §9.2.3.24), parsed.

Why it looks like this: the inbound path (deliver_sm of a mobile-originated
message) must know, before it can decode the text, where the user data
starts, whether the part belongs to a concatenated message and which national
shift tables the sender used. That is all this module extracts; everything
else in a header (application ports, special SMS indication, EMS formatting…)
is skipped, as TS 23.040 §9.2.3.24 tells a receiver to do with information
elements it does not understand.

Layout: UDHL (one octet: the octets that follow, not counting itself), then
information elements, each IEI (one octet), IEDL (one octet) and IEDL octets
of data. The user data starts at ``1 + UDHL``.

Rules (receiver side, TS 23.040 §9.2.3.24):

* A header that claims more octets than the message holds, or an element
  whose data runs past the header's end, is malformed: :class:`UdhError`.
  So is a concatenation or shift element with the wrong IEDL (its fields
  could not be read).
* A concatenation element whose total is 0, or whose sequence number is 0 or
  greater than the total, is ignored (§9.2.3.24.1 / .8): the part is then
  treated as a message of its own.
* An element that occurs more than once: the last occurrence wins (§9.2.3.24).
* Language ids are returned as numbers (TS 23.038 §6.2.1.2.4); an id this
  build has no table for decodes with the default tables (see ``decoder``).

The error messages name offsets and lengths, never the content.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "NO_UDH",
    "Concat",
    "UdhError",
    "UserDataError",
    "UserDataHeader",
    "fill_bits",
    "parse_udh",
]

ESM_UDHI = 0x40  # SMPP 3.4 §5.2.12: esm_class bit 6, short_message starts with a UDH

IEI_CONCAT_8 = 0x00  # §9.2.3.24.1: reference (1 octet), total, sequence
IEI_CONCAT_16 = 0x08  # §9.2.3.24.8: reference (2 octets, big-endian), total, sequence
IEI_SINGLE_SHIFT = 0x24  # §9.2.3.24.15: national language single shift, language id
IEI_LOCKING_SHIFT = 0x25  # §9.2.3.24.16: national language locking shift, language id


class UserDataError(ValueError):
    """Structurally invalid user data (a header or payload that cannot be read).

    The message names offsets and lengths, never content.
    """


class UdhError(UserDataError):
    """A malformed User Data Header."""


class Concat(msgspec.Struct, frozen=True):
    """Concatenation of a part: ``reference`` (8 or 16 bit), ``total`` parts, this one's ``sequence`` (1-based)."""

    reference: int
    total: int
    sequence: int


class UserDataHeader(msgspec.Struct, frozen=True):
    """What a UDH says about its part.

    ``payload_offset`` is where the user data starts in the short_message
    (``1 + UDHL``; 0 without a header). ``single_shift`` / ``locking_shift``
    are national language ids (TS 23.038 §6.2.1.2.4), ``None`` for the
    default tables.
    """

    payload_offset: int = 0
    concat: Concat | None = None
    single_shift: int | None = None
    locking_shift: int | None = None


NO_UDH = UserDataHeader()  # a part without a header (esm_class without UDHI)


def parse_udh(short_message: bytes, udhi: bool | int) -> UserDataHeader:
    """The header of ``short_message``, or :data:`NO_UDH` when ``udhi`` is false.

    ``udhi`` may be given as ``esm_class & 0x40``. Raises :class:`UdhError`
    when the header does not fit the message or an element does not fit the
    header (see the module rules).
    """
    if not udhi:
        return NO_UDH
    size = len(short_message)
    if size == 0:
        raise UdhError("UDHI is set but the message is empty")
    end = 1 + short_message[0]
    if end > size:
        raise UdhError(f"UDH length {end - 1} runs past the end of a {size}-octet message")
    concat: Concat | None = None
    single: int | None = None
    locking: int | None = None
    i = 1
    while i < end:
        if i + 2 > end:
            raise UdhError(f"UDH element at offset {i} has no length octet")
        iei = short_message[i]
        length = short_message[i + 1]
        data = i + 2
        i = data + length
        if i > end:
            raise UdhError(
                f"UDH element 0x{iei:02X} at offset {data - 2} with length {length} "
                f"runs past the header's end at {end}"
            )
        if iei == IEI_CONCAT_8:
            _expect(iei, length, 3)
            total, seq = short_message[data + 1], short_message[data + 2]
            concat = Concat(short_message[data], total, seq) if 0 < seq <= total else None
        elif iei == IEI_CONCAT_16:
            _expect(iei, length, 4)
            total, seq = short_message[data + 2], short_message[data + 3]
            ref = (short_message[data] << 8) | short_message[data + 1]
            concat = Concat(ref, total, seq) if 0 < seq <= total else None
        elif iei == IEI_SINGLE_SHIFT:
            _expect(iei, length, 1)
            single = short_message[data]
        elif iei == IEI_LOCKING_SHIFT:
            _expect(iei, length, 1)
            locking = short_message[data]
    return UserDataHeader(end, concat, single, locking)


def _expect(iei: int, length: int, wanted: int) -> None:
    if length != wanted:
        raise UdhError(f"UDH element 0x{iei:02X} has length {length}, expected {wanted}")


def fill_bits(payload_offset: int) -> int:
    """Fill bits between a UDH of ``payload_offset`` octets and packed septets (§9.2.3.24).

    Packed GSM 7 bit user data starts on a septet boundary counted from the
    start of the UDH, so 0..6 zero bits follow the header.
    """
    return (7 - payload_offset * 8 % 7) % 7
