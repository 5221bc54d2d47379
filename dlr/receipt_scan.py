"""Read the common receipt straight from its deliver_sm body (sans-IO).

Why this exists
---------------
Receipts arrive at the rate messages are sent. On the general path each one
is decoded into a ``DeliverSm`` (22 fields), travels as a session event
through the bind, the pool and the engine to the receipt sink, and is parsed
there (:func:`dlr.receipt.receipt_outcome`) and its id normalised
(:func:`dlr.ids.normalize_receipt_id`). Most of that cost is Python calls
and objects, not reading bytes.

Nearly every SMSC sends its receipts in one layout: an empty service_type
and schedule/validity, the Appendix B text body, and exactly the two TLVs
``receipted_message_id`` and ``message_state`` (in that order) after it.
:func:`scan_receipt` reads that layout with one regular expression over the
body and returns just what correlation needs: ``(message_id, event,
is_final, error)``, the id already normalised. A session given it as its
``claim_deliver`` hook (:class:`connectors.session.Session`) reports such
deliver_sm in runs (:class:`connectors.session.ClaimedDelivers`), without a
``DeliverSm`` object or an event per receipt.

The rule: **same answer or no answer.** Anything outside that layout
(other TLVs, a data_sm, a mobile-originated message, a message_state
without an event, an empty or over-long id, a bad sm_length) returns
``None`` and goes the general way, which decides, reports errors and parks
what it cannot read. Where this returns a value, it is the value the general
path gives (``tests/dlr/test_receipt_scan.py`` checks this against
``decode_body`` + ``receipt_outcome`` + ``normalize_receipt_id`` on
generated bodies).

The ``err:`` field is searched by :func:`dlr.receipt._find_err`, the
general path's own function, over the short_message. (Capturing it in the
same expression for the canonical Appendix B line cost more than the
search: 0.65 µs against 0.86 µs, with a fallback still needed.)
"""

from __future__ import annotations

import re
from typing import Final

from .ids import _HEX_DIGITS
from .receipt import (
    _ESM_DELIVERY_RECEIPT,
    _ESM_INTERMEDIATE,
    _ESM_TYPE_MASK,
    _MAX_ID_LEN,
    EVENT_BY_MESSAGE_STATE,
    INTERMEDIATE_EVENTS,
    _find_err,
)

__all__ = ["ScannedReceipt", "scan_receipt"]

#: ``(message_id, event, is_final, error)``: the id normalised, as the sink stores it.
ScannedReceipt = tuple[str, str, bool, str]

# deliver_sm body, SMPP 3.4 §4.6.1, in the receipt layout (DOTALL: "." is any octet):
_RECEIPT: Final = re.compile(
    rb"\0"  # service_type: empty
    rb"..[^\0]{0,20}\0"  # source_addr_ton, _npi, source_addr (C-string, at most 21 octets)
    rb"..[^\0]{0,20}\0"  # dest_addr_ton, _npi, destination_addr
    rb"(.)"  # 1: esm_class
    rb"..\0\0"  # protocol_id, priority_flag, schedule_delivery_time "", validity_period ""
    rb"...."  # registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
    rb"(.)"  # 2: sm_length; short_message starts at end(2)
    rb".*"  # short_message (not captured: a group here costs 0.2 µs)
    rb"\x00\x1e\x00(.)([^\0]*)\0"  # receipted_message_id TLV: 3 length, 4 value, its NUL
    rb"\x04\x27\x00\x01(.)\Z",  # message_state TLV: 5 value; the end of the body
    re.DOTALL,
)

# esm_class octet -> True for an intermediate notification, False for a
# delivery receipt; other message types (mobile-originated, ...) are absent.
_KIND: Final[dict[bytes, bool]] = {
    bytes((esm,)): (esm & _ESM_TYPE_MASK) == _ESM_INTERMEDIATE
    for esm in range(256)
    if (esm & _ESM_TYPE_MASK) in (_ESM_DELIVERY_RECEIPT, _ESM_INTERMEDIATE)
}
# message_state octet -> event; states without an event are absent.
_EVENT: Final[dict[bytes, str]] = {bytes((state,)): event for state, event in EVENT_BY_MESSAGE_STATE.items()}
_INTERMEDIATE: Final = INTERMEDIATE_EVENTS


def scan_receipt(body: bytes) -> ScannedReceipt | None:
    """``(message_id, event, is_final, error)`` of a deliver_sm body in the common
    receipt layout, or ``None`` for anything else (see the module doc)."""
    m = _RECEIPT.match(body)
    if m is None:
        return None
    esm, sm_length, id_length, raw_id, state = m.groups()
    intermediate = _KIND.get(esm)
    event = _EVENT.get(state)
    if intermediate is None or event is None:
        return None
    sm_start = m.end(2)
    sm_end = m.start(3) - 3  # where the TLVs start
    if sm_start + sm_length[0] != sm_end or id_length[0] != len(raw_id) + 1:
        return None  # short_message does not end where the TLVs start
    message_id = raw_id.decode("latin-1").strip(" \t\r\n")  # (no NUL in it)
    if not message_id or len(message_id) > _MAX_ID_LEN:
        return None
    if _HEX_DIGITS.issuperset(message_id):  # normalize_receipt_id, inline
        message_id = message_id.lower().lstrip("0") or "0"
    err = _find_err(body[sm_start:sm_end]) if sm_end > sm_start else ""
    error = "err:" + err if err and err.strip("0") else ""
    return (
        message_id,
        event,
        not (intermediate or event in _INTERMEDIATE),
        error,
    )
