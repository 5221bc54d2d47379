"""Read the common receipt straight from its deliver_sm body (sans-IO).

Why this exists
---------------
Receipts arrive at the rate messages are sent. On the general path each one
is decoded into a ``DeliverSm`` (22 fields), travels as a session event
through the bind, the pool and the engine to the receipt sink, and is parsed
there (:func:`dlr.receipt_parse.receipt_outcome`) and its id normalised
(:func:`dlr.ids.normalize_receipt_id`). Most of that cost is Python calls
and objects, not reading bytes.

Nearly every SMSC sends its receipts in one layout: an empty service_type
and schedule/validity, the Appendix B text body, and exactly the two TLVs
``receipted_message_id`` and ``message_state`` (in that order) after it.
:func:`scan_receipt` reads that layout with one regular expression over the
body (one pass, the ``err:`` value included) and returns just what correlation needs: ``(message_id, event,
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

The ``err:`` field: a short_message that is exactly the Appendix B line
(lower-case keys, an alphanumeric id, 3-digit counts, 10- or 12-digit
dates, a 7-letter state) up to ``text:`` has it read by an optional group of
the same expression, anchored at the short_message's start, which cannot
disagree with the general rule there: no other ``err:`` or ``text:`` can occur before it. Any other text
is searched by :func:`dlr.receipt_parse.find_err`, the general path's own
function.
"""

from __future__ import annotations

import re
from typing import Final

from connectors.constants import ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION, ESM_TYPE_MASK

from .ids import HEX_DIGITS
from .receipt_parse import (
    EVENT_BY_MESSAGE_STATE,
    INTERMEDIATE_EVENTS,
    MAX_ID_LEN,
    error_field,
    find_err,
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
    # 3: the err: value when the short_message starts with the Appendix B line up to
    # "text:", exactly as most SMSCs write it (only alphanumerics between the keys, so
    # no "err:" or "text:" (any case) can occur before the ones matched: find_err would
    # read the same); it holds no NUL, so it ends before the TLVs, inside short_message
    rb"(?:id:[0-9A-Za-z]{0,65} sub:[0-9]{3} dlvrd:[0-9]{3} submit date:[0-9]{10,12} done date:[0-9]{10,12}"
    rb" stat:[A-Z]{7} err:([0-9A-Za-z]{1,32}) [Tt][Ee][Xx][Tt]:)?"
    rb".*"  # the rest of short_message (not captured: a group here costs 0.2 µs)
    rb"\x00\x1e\x00(.)([^\0]*)\0"  # receipted_message_id TLV: 4 length, 5 value, its NUL
    rb"\x04\x27\x00\x01(.)\Z",  # message_state TLV: 6 value; the end of the body
    re.DOTALL,
)

# err: value -> the error field it gives ("" for all zeros), for the values seen
_ERROR: Final[dict[bytes, str]] = {}
_ERROR_CACHE_MAX: Final = 1024

# esm_class octet -> True for an intermediate notification, False for a
# delivery receipt; other message types (mobile-originated, ...) are absent.
_KIND: Final[dict[bytes, bool]] = {
    bytes((esm,)): (esm & ESM_TYPE_MASK) == ESM_INTERMEDIATE_NOTIFICATION
    for esm in range(256)
    if (esm & ESM_TYPE_MASK) in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION)
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
    esm, sm_length, value, id_length, raw_id, state = m.groups()
    intermediate = _KIND.get(esm)
    event = _EVENT.get(state)
    if intermediate is None or event is None:
        return None
    sm_start = m.end(2)
    sm_end = m.start(4) - 3  # where the TLVs start
    if sm_start + sm_length[0] != sm_end or id_length[0] != len(raw_id) + 1:
        return None  # short_message does not end where the TLVs start
    message_id = raw_id.decode("latin-1").strip(" \t\r\n")  # (no NUL in it)
    if not message_id or len(message_id) > MAX_ID_LEN:
        return None
    if HEX_DIGITS.issuperset(message_id):  # normalize_receipt_id, inline
        message_id = message_id.lower().lstrip("0") or "0"
    if value is not None:
        error = _ERROR.get(value)
        if error is None:
            error = error_field(value.decode("latin-1"))
            if len(_ERROR) < _ERROR_CACHE_MAX:
                _ERROR[value] = error
    else:
        error = error_field(find_err(body[sm_start:sm_end]) if sm_end > sm_start else "")
    return (
        message_id,
        event,
        not (intermediate or event in _INTERMEDIATE),
        error,
    )
