"""Carrier message-id normalisation, so a receipt finds its submit_sm_resp.

The SMSC names a message twice: in the ``submit_sm_resp`` ``message_id``
(SMPP 3.4 §4.4.2) and again in the receipt (``receipted_message_id`` TLV or
the body's ``id:``). The two should match byte for byte; in practice they do
not on a good share of carriers, which is why ``dlr_id_format`` exists per
carrier:

``as-is``
    The same id on both sides, up to cosmetics seen in the wild: surrounding
    blanks and NULs (C-octet strings padded by the SMSC), upper- versus
    lower-case hex digits, and leading zeros (``0000A1F3`` in the resp,
    ``a1f3`` in the receipt). An id made only of hex digits is lower-cased
    and loses its leading zeros ("0" stays "0"); any other id (base62,
    UUIDs with dashes, …) is kept exactly, case included.
``hex-to-dec``
    The submit_sm_resp id is hexadecimal and the receipt carries the same
    number in decimal (common on Logica/CMG-derived SMSCs, some Kannel
    set-ups and several aggregators, whose receipts follow Appendix B's
    "id: … decimal" wording).
``dec-to-hex``
    The opposite: a decimal submit_sm_resp id, a hexadecimal receipt id.

Which side is converted: the format names what the carrier does to the
*submit* id, so the conversion applies to the submit side only
(``side="submit"``) and both sides then get the ``as-is`` cosmetics. The
two strings cannot both be converted by one function: "6699" is valid
hex and valid decimal, so only the side tells which reading is meant. Both
sides call this one function, with the carrier's format and their side, and
the results are the correlation key (a field of the carrier's bucket, dlr/store.py).

Invalid input for a conversion (a "hex" id with other letters, an empty id)
falls back to the ``as-is`` normalisation: never raises, so one odd id never
stops a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

__all__ = ["HEX_DIGITS", "ID_FORMATS", "normalize_id", "normalize_receipt_id", "submit_normalizer"]

#: The accepted ``dlr_id_format`` values (for config validation).
ID_FORMATS = ("as-is", "hex-to-dec", "dec-to-hex")

#: The characters of a hexadecimal id, either case (``receipt_scan`` inlines the test).
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_STRIP = " \x00\t\r\n"
# Ids longer than this are not converted (no carrier uses 40-digit numbers;
# it also bounds the cost of int() on hostile input).
_MAX_CONVERT_LEN = 40


def _as_is(text: str) -> str:
    if text and HEX_DIGITS.issuperset(text):
        return text.lower().lstrip("0") or "0"
    return text


def normalize_receipt_id(raw: str) -> str:
    """``normalize_id(raw, fmt, side="receipt")`` for any ``fmt`` (a receipt's id is
    never converted): the engine's per-receipt call, without the dispatch
    (:func:`_as_is` inline: a call fewer per job recorded)."""
    text = raw.strip(_STRIP)
    if text and HEX_DIGITS.issuperset(text):
        return text.lower().lstrip("0") or "0"
    return text


def normalize_id(raw: str, fmt: str, *, side: Literal["submit", "receipt"]) -> str:
    """Return the canonical form of a carrier message id (see the module doc).

    ``fmt`` is the carrier's ``dlr_id_format``; ``side`` says where ``raw``
    came from: ``"submit"`` for a submit_sm_resp ``message_id`` (converted
    per ``fmt``), ``"receipt"`` for a receipt's id (never converted). An
    unknown ``fmt`` behaves as ``as-is``. ``side`` is required on purpose: a
    call that forgets it would silently never match on converting carriers.
    Never raises.
    """
    text = raw.strip(_STRIP)
    if side == "submit" and len(text) <= _MAX_CONVERT_LEN:
        if fmt == "hex-to-dec":
            if text and HEX_DIGITS.issuperset(text):
                return str(int(text, 16))
        elif fmt == "dec-to-hex" and text.isascii() and text.isdigit():
            return format(int(text), "x")
    return _as_is(text)


def submit_normalizer(fmt: str) -> Callable[[str], str]:
    """``normalize_id(·, fmt, side="submit")`` as one function per carrier (the
    engine's per-part call): for ``as-is`` (and unknown formats) that is
    :func:`normalize_receipt_id`, without the format dispatch."""
    if fmt in ("hex-to-dec", "dec-to-hex"):
        return partial(normalize_id, fmt=fmt, side="submit")
    return normalize_receipt_id
