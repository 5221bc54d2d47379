"""Privacy for sendgate: numbers out of logs, retention stamps, audit log, erasure.

* Masking: ``mask_number`` (``+45******78``), ``keyed_hash`` (HMAC-SHA256,
  32 hex chars), ``redact_text``.
* Logging: ``RedactingFilter``, ``JsonFormatter``, ``TextFormatter``,
  ``configure_logging``.
* Retention: ``RetentionPolicy`` (TTL and ``retention_until`` per record kind).
* Hooks: ``PrivacyHook`` protocol, ``BaseHook``, ``HookChain``,
  ``default_chain`` (redaction, retention stamping).
* ``AuditLog``: the audit stream, trimmed to its retention at each write.
* Erasure: ``erase_subject`` over the subject index (``subject_key``,
  ``index_subject``); what the engine must write is in ``erasure``'s docstring.

Imports the standard library, redis, orjson (for the JSON log lines) and
engine.keys (the key names).
"""

from .audit import AuditLog
from .erasure import (
    STRIPPED_FIELDS,
    ErasureResult,
    client_subject,
    erase_subject,
    index_subject,
    subject_key,
)
from .hooks import (
    BaseHook,
    HookChain,
    PrivacyHook,
    RedactionHook,
    RetentionHook,
    StoredRecord,
    default_chain,
)
from .logformat import JsonFormatter, TextFormatter, configure_logging, parse_level
from .masking import (
    HASH_HEX_LEN,
    KeyedHasher,
    keyed_hash,
    looks_like_number,
    mask_number,
    normalise_number,
    redact_text,
)
from .redaction import NUMBER_FIELDS, REDACTED, TEXT_FIELDS, RedactingFilter, redact_record
from .retention import RECORD_KINDS, RecordKind, RetentionPolicy

__all__ = [
    "HASH_HEX_LEN",
    "NUMBER_FIELDS",
    "RECORD_KINDS",
    "REDACTED",
    "STRIPPED_FIELDS",
    "TEXT_FIELDS",
    "AuditLog",
    "BaseHook",
    "ErasureResult",
    "HookChain",
    "JsonFormatter",
    "KeyedHasher",
    "PrivacyHook",
    "RecordKind",
    "RedactingFilter",
    "RedactionHook",
    "RetentionHook",
    "RetentionPolicy",
    "StoredRecord",
    "TextFormatter",
    "client_subject",
    "configure_logging",
    "default_chain",
    "erase_subject",
    "index_subject",
    "keyed_hash",
    "looks_like_number",
    "mask_number",
    "normalise_number",
    "parse_level",
    "redact_record",
    "redact_text",
    "subject_key",
]
