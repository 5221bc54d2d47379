"""Inbound (mobile-originated) messages: one received deliver_sm / data_sm → one part.

Why a module of its own, and sans-IO: this is the per-part step of the
inbound path (docs/contract.md §2.7), run for every MO part a bind receives,
so it must be cheap (≤ 5 µs per part, ``bench/micro/test_decoding.py``) and
testable without a socket or Redis. It reads what a part says about itself —
the concatenation (a UDH's 8- or 16-bit reference, or the SAR TLVs of SMPP
3.4 §5.3.2.22-24), the national shift tables the UDH names, the text per
data_coding (``engine.text``) — and decides nothing that needs the other
parts: reassembly happens in Redis (``engine/inbound.lua``), so parts that
arrive on different binds or engines meet.

Rules:

* A part belongs to a set keyed by carrier, the sender's keyed hash and
  ``<kind>.<reference>.<total>``: a UDH reference and a SAR reference of the
  same number are different sets, and so are two sets with different totals.
* A UDH that cannot be read (:class:`~engine.text.udh.UdhError`) is not a
  reason to lose the message: the part is published on its own, the header
  octets skipped as far as its length octet says (or not at all), and
  counted as ``malformed``.
* Octets that are not text we decode (8-bit binary data_coding) are
  published as ``text`` ""; the hex of the octets goes in ``data``.
* The sender is normalised to its digits (the keyed hash, ``from`` in the
  stream): a carrier that sends national formats gets them hashed as such.
* Opt-out / opt-in keywords match the *whole* text once trimmed and
  case-folded (``" Stop "`` is STOP, ``"stop please"`` is not).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from engine.text.decoder import decode_text
from engine.text.udh import NO_UDH, UserDataError, UserDataHeader, parse_udh

__all__ = [
    "OPT_IN",
    "OPT_OUT",
    "InboundPart",
    "KeywordTable",
    "client_numbers",
    "read_part",
    "sender_hasher",
]

OPT_OUT = "out"
OPT_IN = "in"


class InboundPart(msgspec.Struct, array_like=True, gc=False):
    """One received part, as ``engine/inbound.lua`` reads it (a list: ``p[P_TEXT]``).

    ``ref`` is "" for a message of one part; ``seq``/``total`` are 1-based.
    Strings throughout where Redis would format a number.
    """

    ref: str
    seq: int
    total: int
    text: str
    sender: str
    """The ``from``: the sender's digits (or the address as sent when it has none)."""
    to: str
    carrier: str
    client: str
    from_hash: str
    ts: str
    """Unix ms when the part arrived."""
    data: str = ""
    """Hex of the octets when they are not text (binary data_coding)."""


def client_numbers(clients: Iterable[Any]) -> dict[str, str]:
    """``[[clients]] numbers`` as ``{digits: client id}`` (config objects with ``id``/``numbers``)."""
    return {n.lstrip("+"): c.id for c in clients for n in c.numbers}


def sender_hasher(hasher: Callable[[str], str], secret: bytes, cache_size: int = 4096) -> Callable[[str], str]:
    """``hasher`` (``privacy_hooks.KeyedHasher``) for numbers, and a keyed hash of
    the text for an alphanumeric sender (which has no digits to hash).

    The parts of one message, and the messages of a conversation, come from
    the same few senders: the last ``cache_size`` hashes are kept (in this
    process's memory only), which saves the HMAC — about half the per-part
    cost — on a repeat.
    """
    cache: dict[str, str] = {}

    def hash_sender(sender: str) -> str:
        found = cache.get(sender)
        if found is not None:
            return found
        try:
            value = hasher(sender)
        except ValueError:
            value = "a" + hmac.new(secret, sender.encode(), hashlib.sha256).hexdigest()[:31]
        if len(cache) >= cache_size:
            cache.clear()
            if not cache_size:
                return value
        cache[sender] = value
        return value

    return hash_sender


def _digits(address: str) -> str:
    if address.isdigit():
        return address
    digits = "".join(ch for ch in address if "0" <= ch <= "9")
    return digits or address


def read_part(
    carrier: str,
    pdu: Any,
    now_ms: int,
    numbers: Mapping[str, str],
    hash_number: Callable[[str], str],
    *,
    packed: bool = False,
) -> tuple[InboundPart, bool]:
    """The part a deliver_sm / data_sm (not a receipt) carries; ``(part, malformed)``.

    ``numbers``: :func:`client_numbers`; ``hash_number``: the sender's keyed
    hash (:func:`sender_hasher`). Never raises on the PDU's content.
    """
    body = getattr(pdu, "short_message", b"") or pdu.message_payload or b""
    malformed = False
    try:
        udh = parse_udh(body, pdu.esm_class & 0x40)
    except UserDataError:
        malformed = True
        skip = 1 + body[0] if body and 1 + body[0] <= len(body) else 0
        udh = UserDataHeader(payload_offset=skip)
    try:
        text = decode_text(body, pdu.data_coding, udh, packed=packed)
    except UserDataError:  # an odd UCS-2 length: decode what pairs up
        malformed = True
        data = body[udh.payload_offset :]
        text = data[: len(data) & ~1].decode("utf-16-be", "replace")
    hex_data = ""
    if text is None:
        text = ""
        hex_data = body[udh.payload_offset :].hex()
    sender = _digits(pdu.source_addr)
    to = pdu.destination_addr.lstrip("+")
    from_hash = hash_number(sender)
    ref = ""
    seq = total = 1
    concat = udh.concat if udh is not NO_UDH else None
    if concat is not None and concat.total > 1:
        # (parse_udh does not say which element it read: a 16-bit one is IEI 0x08, IEDL 4)
        kind = "16" if concat.reference > 0xFF or body.find(b"\x08\x04", 1, udh.payload_offset) > 0 else "8"
        ref = f"{kind}.{concat.reference}.{concat.total}"
        seq, total = concat.sequence, concat.total
    else:
        sar_total = pdu.sar_total_segments
        sar_seq = pdu.sar_segment_seqnum
        if sar_total and sar_total > 1 and sar_seq and 0 < sar_seq <= sar_total and pdu.sar_msg_ref_num is not None:
            ref = f"sar.{pdu.sar_msg_ref_num}.{sar_total}"
            seq, total = sar_seq, sar_total
    return (
        InboundPart(ref, seq, total, text, sender, to, carrier, numbers.get(to, ""), from_hash, str(now_ms), hex_data),
        malformed,
    )


class KeywordTable:
    """Opt-out / opt-in keywords per client, matched trimmed and case-folded.

    ``defaults`` apply to the default client ``""`` and to clients that set
    none of their own (``None`` in the config).
    """

    __slots__ = ("_default", "_max_len", "_per_client")

    def __init__(self, default_out: Iterable[str], default_in: Iterable[str], clients: Iterable[Any] = ()) -> None:
        self._default = self._table(default_out, default_in)
        self._per_client: dict[str, dict[str, str]] = {}
        for c in clients:
            out = c.opt_out_keywords if c.opt_out_keywords is not None else default_out
            opt_in = c.opt_in_keywords if c.opt_in_keywords is not None else default_in
            self._per_client[c.id] = self._table(out, opt_in)
        self._max_len = max((len(w) for t in (self._default, *self._per_client.values()) for w in t), default=0)

    @staticmethod
    def _table(out: Iterable[str], opt_in: Iterable[str]) -> dict[str, str]:
        table = {w.strip().casefold(): OPT_IN for w in opt_in}
        table.update({w.strip().casefold(): OPT_OUT for w in out})  # a word in both lists opts out
        return table

    def action(self, client: str, text: str) -> str:
        """:data:`OPT_OUT`, :data:`OPT_IN` or "" for ``text`` sent to ``client``."""
        if len(text) > self._max_len + 64:  # surely no keyword, however much space around it
            return ""
        word = text.strip().casefold()
        if not word:
            return ""
        return self._per_client.get(client, self._default).get(word, "")
