"""Delivery receipts: parsing, id normalisation, correlation, aggregation, webhooks.

Pure parts (``receipt_parse``, ``receipt_scan``, ``ids``, ``aggregate``) do no I/O; ``store`` talks to
Redis through one Lua script (``correlate.lua``) per batch; ``webhook`` forwards
status events to client callbacks. Of ``engine``, only ``engine.keys`` (the key
names) is imported.
"""

from dlr.aggregate import SEVERITY, aggregate, aggregate_error
from dlr.ids import ID_FORMATS, normalize_id
from dlr.receipt_parse import Receipt, ReceiptParseError, is_receipt, parse_receipt
from dlr.store import BatchResult, JobEvent, ReceiptRecord, ReceiptStore, UnmatchedBuffer
from dlr.webhook import WebhookForwarder, WebhookStats, sign, validate_callback_url

__all__ = [
    "ID_FORMATS",
    "SEVERITY",
    "BatchResult",
    "JobEvent",
    "Receipt",
    "ReceiptParseError",
    "ReceiptRecord",
    "ReceiptStore",
    "UnmatchedBuffer",
    "WebhookForwarder",
    "WebhookStats",
    "aggregate",
    "aggregate_error",
    "is_receipt",
    "normalize_id",
    "parse_receipt",
    "sign",
    "validate_callback_url",
]
