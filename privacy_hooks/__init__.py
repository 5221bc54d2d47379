"""Privacy for sendgate: numbers out of logs, retention stamps, audit log, erasure.

* Masking: ``mask_number`` (``+45******78``), ``keyed_hash`` (HMAC-SHA256,
  32 hex chars), ``redact_text``.
* Logging: ``RedactingFilter``, ``JsonFormatter``, ``TextFormatter``,
  ``configure_logging``.
* Retention: ``RetentionPolicy`` (TTL and ``retention_until`` per record kind).
* Hooks: ``PrivacyHook`` protocol, ``BaseHook``, ``HookChain`` (the chain
  the engine calls per batch; ``HookFailed`` when a hook raises),
  ``default_chain`` (redaction, retention stamping, then custom hooks),
  ``load_hooks`` (``[privacy] hooks`` paths).
* ``AuditLog``: the audit stream, trimmed to its retention at each write.
* Erasure: ``erase_subject`` of a subject's hot Redis records, found by key
  from the history store's rows and the events not archived yet
  (``find_in_events``); see ``erasure``'s docstring.

Imports the standard library, redis, orjson (for the JSON log lines) and
engine.keys (the key names). Only the modules without redis are re-exported
here, so that importing ``privacy_hooks.masking`` does not load redis (and
asyncio with it): take ``AuditLog`` from ``privacy_hooks.audit`` and the
erasure names (``erase_subject``, ``find_in_events``, ``SubjectJob``,
``client_subject``, ``ErasureResult``, ``STRIPPED_FIELDS``) from
``privacy_hooks.erasure``.
"""

from .hooks import (
    EVENT_EDITABLE,
    HOOK_ATTEMPTS,
    STORE_KINDS,
    BaseHook,
    EngineEvent,
    HookChain,
    HookFailed,
    PrivacyHook,
    RedactionHook,
    RetentionHook,
    StoredRecord,
    default_chain,
    load_hooks,
)
from .logformat import JsonFormatter, TextFormatter, configure_logging, parse_level
from .masking import (
    HASH_HEX_LEN,
    KeyedHasher,
    keyed_hash,
    looks_like_number,
    mask_e164_digits,
    mask_number,
    normalise_number,
    redact_text,
)
from .redaction import NUMBER_FIELDS, REDACTED, TEXT_FIELDS, RedactingFilter, redact_record
from .retention import RECORD_KINDS, RecordKind, RetentionPolicy

__all__ = [
    "EVENT_EDITABLE",
    "HASH_HEX_LEN",
    "HOOK_ATTEMPTS",
    "NUMBER_FIELDS",
    "RECORD_KINDS",
    "REDACTED",
    "STORE_KINDS",
    "TEXT_FIELDS",
    "BaseHook",
    "EngineEvent",
    "HookChain",
    "HookFailed",
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
    "configure_logging",
    "default_chain",
    "keyed_hash",
    "load_hooks",
    "looks_like_number",
    "mask_e164_digits",
    "mask_number",
    "normalise_number",
    "parse_level",
    "redact_record",
    "redact_text",
]
