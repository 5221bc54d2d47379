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
    rb"\x00\x1e\x00(.)"  # receipted_message_id TLV: 4 its length
    # its value: 5 when it is already normalised (lower-case hex, no leading zero, at
    # most MAX_ID_LEN octets: normalize_receipt_id returns it unchanged), else 6;
    # either way all octets up to the NUL
    rb"(?:([1-9a-f][0-9a-f]{0,99})|([^\0]*))\0"
    rb"\x04\x27\x00\x01(.)\Z",  # message_state TLV: 7 value; the end of the body
    re.DOTALL,
)

# err: value -> the error field it gives ("" for all zeros), for the values seen
_ERROR: Final[dict[bytes, str]] = {}
_ERROR_CACHE_MAX: Final = 1024


def _outcomes(intermediate: bool) -> dict[bytes, tuple[str, bool]]:
    """message_state octet -> ``(event, is_final)`` for a receipt of that kind; states
    without an event are absent."""
    return {
        bytes((state,)): (event, not (intermediate or event in INTERMEDIATE_EVENTS))
        for state, event in EVENT_BY_MESSAGE_STATE.items()
    }


# esm_class octet -> its message_state table: a delivery receipt's or an intermediate
# notification's; other message types (mobile-originated, ...) are absent.
_RECEIPT_OUTCOMES: Final = _outcomes(False)
_INTERMEDIATE_OUTCOMES: Final = _outcomes(True)
_OUTCOMES: Final[dict[bytes, dict[bytes, tuple[str, bool]]]] = {
    bytes((esm,)): _INTERMEDIATE_OUTCOMES if (esm & ESM_TYPE_MASK) == ESM_INTERMEDIATE_NOTIFICATION else _RECEIPT_OUTCOMES
    for esm in range(256)
    if (esm & ESM_TYPE_MASK) in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION)
}


def scan_receipt(body: bytes) -> ScannedReceipt | None:
    """``(message_id, event, is_final, error)`` of a deliver_sm body in the common
    receipt layout, or ``None`` for anything else (see the module doc)."""
    m = _RECEIPT.match(body)
    if m is None:
        return None
    esm, sm_length, value, id_length, plain_id, raw_id, state = m.groups()
    outcomes = _OUTCOMES.get(esm)
    if outcomes is None:
        return None
    outcome = outcomes.get(state)
    if outcome is None:
        return None
    raw = plain_id if plain_id is not None else raw_id
    n = len(raw)
    # short_message ends where the TLVs start (10 octets of them besides the id's)
    if m.end(2) + sm_length[0] + 10 + n != len(body) or id_length[0] != n + 1:
        return None
    if plain_id is not None:
        message_id = plain_id.decode("latin-1")  # normalised already
    else:
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
        sm_start = m.end(2)
        sm_end = sm_start + sm_length[0]
        error = error_field(find_err(body[sm_start:sm_end]) if sm_end > sm_start else "")
    event, is_final = outcome
    return (message_id, event, is_final, error)
