"""Delivery receipts: parsing, id normalisation, correlation, aggregation, webhooks.

Pure parts (``receipt_parse``, ``receipt_scan``, ``ids``, ``aggregate``) do no I/O; ``store`` talks to
Redis through one Lua script (``correlate.lua``) per batch; ``webhook`` forwards
status events to client callbacks. Of ``engine``, only ``engine.keys`` (the key
names) is imported.

Only the pure parts are re-exported here: importing ``dlr.receipt_parse`` runs this
file first, and must not load redis or aiohttp. Import the I/O ones by their
path: ``dlr.store`` (``ReceiptStore``, ``BatchResult``, ``JobEvent``,
``ReceiptRecord``, ``UnmatchedBuffer``) and ``dlr.webhook``
(``WebhookForwarder``, ``WebhookStats``, ``sign``, ``validate_callback_url``).
"""

from dlr.aggregate import SEVERITY, aggregate, aggregate_error
from dlr.ids import ID_FORMATS, normalize_id
from dlr.receipt_parse import Receipt, ReceiptParseError, is_receipt, parse_receipt

__all__ = [
    "ID_FORMATS",
    "SEVERITY",
    "Receipt",
    "ReceiptParseError",
    "aggregate",
    "aggregate_error",
    "is_receipt",
    "normalize_id",
    "parse_receipt",
]
