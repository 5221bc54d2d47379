"""Delivery receipt parsing: TLVs first, the text body as a fallback.

Why this module looks the way it does
-------------------------------------
An SMSC reports the fate of a submitted message in a ``deliver_sm`` (or
``data_sm``) whose ``esm_class`` message-type bits say "SMSC delivery
receipt" (0x04) or "intermediate delivery notification" (0x20)
(SMPP 3.4 §5.2.12). The facts come in two places:

* optional TLVs (SMPP 3.4 §5.3.2.12 ``receipted_message_id``, §5.3.2.35
  ``message_state``, §5.3.2.31 ``network_error_code``) — unambiguous, so they
  win when present;
* the de-facto text body of SMPP 3.4 Appendix B,
  ``id:IIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
  stat:DDDDDDD err:E text:…`` — which every carrier bends: other field
  order, ``ID:``/``Text:`` casing, missing fields, 12-digit dates (with
  seconds), spaces after the colon, trailing junk, bytes that are not ASCII.

The parser is tolerant of all of that and strict about only two things: a
receipt must yield a message id and a state, otherwise it raises
:class:`ReceiptParseError`, whose reason never quotes the body (the body's
``text:`` holds the start of the customer's message).

Speed: receipts arrive at the rate messages are sent, so the body is scanned
with ``str.split`` / ``str.partition`` over a latin-1 decode (which cannot
fail and is the fastest codec), not with a per-field regex. ``text:`` is
cut off first: it is everything after ``text:`` to the end and may contain
colons and spaces that would otherwise look like fields. See
``bench/micro/test_receipt.py`` for the figures.
"""

from __future__ import annotations

import msgspec

# SMPP 3.4 §5.2.12 esm_class bits 5..2 (mask 0x3C) of a deliver_sm: the message type.
from connectors.constants import ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION, ESM_TYPE_MASK

__all__ = [
    "EVENT_BY_MESSAGE_STATE",
    "EVENT_BY_STAT",
    "FINAL_EVENTS",
    "INTERMEDIATE_EVENTS",
    "MAX_ID_LEN",
    "Receipt",
    "ReceiptParseError",
    "error_field",
    "find_err",
    "is_receipt",
    "parse_receipt",
    "receipt_outcome",
    "scan_body",
]

#: Receipt ``stat:`` words (upper-cased) to event names. The first of each
#: group is SMPP 3.4 Appendix B; the others are spellings seen from carriers.
EVENT_BY_STAT: dict[str, str] = {
    "DELIVRD": "delivered",
    "DELIVERED": "delivered",
    "EXPIRED": "expired",
    "EXPIRD": "expired",
    "DELETED": "deleted",
    "DELETD": "deleted",
    "UNDELIV": "undeliverable",
    "UNDELIVERABLE": "undeliverable",
    "UNDELIVERED": "undeliverable",
    "FAILED": "undeliverable",
    "ACCEPTD": "accepted",
    "ACCEPTED": "accepted",
    "UNKNOWN": "unknown",
    "REJECTD": "rejected",
    "REJECTED": "rejected",
    "ENROUTE": "enroute",
}

#: SMPP 3.4 §5.2.28 message_state values to event names.
EVENT_BY_MESSAGE_STATE: dict[int, str] = {
    1: "enroute",
    2: "delivered",
    3: "expired",
    4: "deleted",
    5: "undeliverable",
    6: "accepted",
    7: "unknown",
    8: "rejected",
}

#: Events that end a part's life at the SMSC.
FINAL_EVENTS = frozenset(
    {"delivered", "expired", "deleted", "undeliverable", "unknown", "rejected"}
)
#: Events that only report progress (the sendgate contract treats ACCEPTD as one).
INTERMEDIATE_EVENTS = frozenset({"enroute", "accepted"})

# Body keys (lower-cased, as they appear before the colon) to slots of the
# scan result. "submit date" is two tokens; the scanner joins "submit"/"done"
# with "date:".
_ID, _SUB, _DLVRD, _SUBMIT_DATE, _DONE_DATE, _STAT, _ERR = range(7)
_BODY_KEYS: dict[str, int] = {
    "id": _ID,
    "sub": _SUB,
    "dlvrd": _DLVRD,
    "submit date": _SUBMIT_DATE,
    "submit_date": _SUBMIT_DATE,
    "submitdate": _SUBMIT_DATE,
    "done date": _DONE_DATE,
    "done_date": _DONE_DATE,
    "donedate": _DONE_DATE,
    "stat": _STAT,
    "err": _ERR,
}
_NO_FIELDS: tuple[str, ...] = ("",) * 7

#: SMPP 3.4 §5.2.23: message ids are C-octet strings of at most 65 octets; we
#: allow some slack for carriers that pad, and refuse anything absurd.
MAX_ID_LEN = 100
# Cap on fields copied from the body into events (dates, sub, dlvrd, err).
_MAX_FIELD_LEN = 32


class ReceiptParseError(ValueError):
    """A deliver_sm that claims to be a receipt but cannot be read as one.

    ``reason`` is short, stable and never contains the receipt body.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Receipt(msgspec.Struct, frozen=True, gc=False):
    """One delivery receipt, as the SMSC reported it (ids not yet normalised)."""

    message_id: str
    """The SMSC's message id: ``receipted_message_id`` TLV, else the body's ``id:``."""
    stat: str
    """The state word as received (``DELIVRD``…), or the §5.2.28 name when only the TLV gave it."""
    event: str
    """delivered, expired, deleted, undeliverable, accepted, unknown, rejected or enroute."""
    is_final: bool
    """True unless the event is intermediate (enroute, accepted, or esm_class 0x20)."""
    error: str = ""
    """``err:034`` from the body, else ``net:TT:CCCC`` from network_error_code; empty when none."""
    submit_date: str = ""
    done_date: str = ""
    sub: str = ""
    dlvrd: str = ""
    intermediate: bool = False
    """True for an intermediate notification (esm_class 0x20) or an intermediate state."""


def is_receipt(esm_class: int) -> bool:
    """True when a deliver_sm/data_sm ``esm_class`` marks a delivery receipt.

    SMPP 3.4 §5.2.12: message type 0x04 (SMSC delivery receipt) or 0x20
    (intermediate delivery notification). Anything else is a mobile-originated
    message (or an SME acknowledgement), which is not ours to parse.
    """
    kind = esm_class & ESM_TYPE_MASK
    return kind in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION)


def scan_body(body: str) -> list[str]:
    """Split the Appendix B text body into its seven fields (first occurrence wins)."""
    cut = body.lower().find("text:")
    if cut >= 0:
        body = body[:cut]
    tokens = body.split()
    fields = ["", "", "", "", "", "", ""]
    seen = 0  # bit per slot already filled
    previous = ""
    count = len(tokens)
    i = 0
    while i < count:
        token = tokens[i]
        i += 1
        key, colon, value = token.partition(":")
        if not colon:
            previous = token
            continue
        key = key.lower()
        if key == "date":  # "submit date:…" / "done date:…"
            key = previous.lower() + " date"
        previous = token
        if not value and i < count and ":" not in tokens[i]:
            value = tokens[i]  # "id: 123" – a space after the colon
            i += 1
        slot = _BODY_KEYS.get(key)
        if slot is not None and not seen & (1 << slot):
            seen |= 1 << slot
            fields[slot] = (
                value if len(value) <= _MAX_FIELD_LEN or slot == _ID else value[:_MAX_FIELD_LEN]
            )
    return fields


def _clean_id(raw: str) -> str:
    return raw.strip(" \x00\t\r\n")


def _render_network_error(raw: bytes) -> str:
    """SMPP 3.4 §5.3.2.31: 1 octet network type + 2 octets error code, big-endian.

    Rendered ``net:TT:CCCC`` in decimal (type 03 = GSM, code e.g. a MAP error),
    zero padded; an error code of 0 means "no error" and gives "".
    """
    if len(raw) < 3:
        return ""
    code = (raw[1] << 8) | raw[2]
    if code == 0:
        return ""
    return f"net:{raw[0]:02d}:{code:04d}"


def parse_receipt(
    esm_class: int,
    short_message: bytes,
    receipted_message_id: str | None = None,
    message_state: int | None = None,
    network_error_code: bytes | None = None,
) -> Receipt:
    """Read one delivery receipt; TLVs win over the text body field by field.

    ``short_message`` is the body (for a data_sm, or a deliver_sm with an
    empty short_message, pass the ``message_payload`` TLV value instead).

    ``esm_class`` only decides whether this is an intermediate notification
    (0x20); the caller decides with :func:`is_receipt` whether a deliver_sm is
    a receipt at all. Raises :class:`ReceiptParseError` (nothing else) when no
    message id or no state can be found; the reason never quotes the body.
    """
    # latin-1 maps every byte to a code point: never raises, and the fields we
    # keep (id, state, dates, err) are ASCII on every carrier we know.
    fields: list[str] | tuple[str, ...] = (
        scan_body(bytes(short_message).decode("latin-1")) if short_message else _NO_FIELDS
    )

    message_id = _clean_id(receipted_message_id) if receipted_message_id else ""
    if not message_id:
        message_id = _clean_id(fields[_ID])
    if not message_id:
        raise ReceiptParseError("no message id")
    if len(message_id) > MAX_ID_LEN:
        raise ReceiptParseError("message id too long")

    event = EVENT_BY_MESSAGE_STATE.get(message_state) if message_state is not None else None
    stat = fields[_STAT]
    if event is None:
        if not stat:
            raise ReceiptParseError("no state")
        event = EVENT_BY_STAT.get(stat.upper(), "unknown")
    elif not stat:
        stat = event.upper()

    error = error_field(fields[_ERR])
    if not error and network_error_code:
        error = _render_network_error(network_error_code)

    intermediate = (esm_class & ESM_TYPE_MASK) == ESM_INTERMEDIATE_NOTIFICATION or event in INTERMEDIATE_EVENTS
    # Positional, in field order: message_id, stat, event, is_final, error,
    # submit_date, done_date, sub, dlvrd, intermediate.
    return Receipt(
        message_id,
        stat,
        event,
        not intermediate,
        error,
        fields[_SUBMIT_DATE],
        fields[_DONE_DATE],
        fields[_SUB],
        fields[_DLVRD],
        intermediate,
    )


def error_field(err: str) -> str:
    """A receipt's error field from its ``err:`` value: none when it is all zeros."""
    return "err:" + err if err and err.strip("0") else ""


def find_err(body: bytes) -> str:
    """The body's ``err:`` value, read exactly as `scan_body` reads it (first wins)."""
    head = body.lower()
    end = head.find(b"text:")
    if end < 0:
        end = len(head)
    at = head.find(b"err:", 0, end)
    while at > 0 and not head[at - 1 : at].isspace():
        at = head.find(b"err:", at + 1, end)
    if at < 0:
        return ""
    rest = body[at + 4 : end]
    if rest[:1].isspace():  # "err: 034": the next token, unless it is a key of its own
        value = rest.split(None, 1)
        token = value[0] if value else b""
        return "" if b":" in token else token.decode("latin-1")[:_MAX_FIELD_LEN]
    value = rest.split(None, 1)
    return value[0].decode("latin-1")[:_MAX_FIELD_LEN] if value else ""


def receipt_outcome(
    esm_class: int,
    short_message: bytes,
    receipted_message_id: str | None = None,
    message_state: int | None = None,
    network_error_code: bytes | None = None,
) -> tuple[str, str, bool, str]:
    """``(message_id, event, is_final, error)`` of a receipt: what correlation needs.

    The engine's hot path. When the SMSC sends both the receipted_message_id
    and message_state TLVs (most do), the body is only searched for its
    ``err:`` field instead of being split into all seven; otherwise this is
    `parse_receipt`. Same results, same `ReceiptParseError`.
    """
    if receipted_message_id and message_state is not None:
        event = EVENT_BY_MESSAGE_STATE.get(message_state)
        message_id = _clean_id(receipted_message_id)
        if event is not None and message_id and len(message_id) <= MAX_ID_LEN:
            error = error_field(find_err(bytes(short_message))) if short_message else ""
            if not error and network_error_code:
                error = _render_network_error(network_error_code)
            intermediate = (esm_class & ESM_TYPE_MASK) == ESM_INTERMEDIATE_NOTIFICATION or event in INTERMEDIATE_EVENTS
            return message_id, event, not intermediate, error
    r = parse_receipt(esm_class, short_message, receipted_message_id, message_state, network_error_code)
    return r.message_id, r.event, r.is_final, r.error
