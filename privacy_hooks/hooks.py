"""The privacy hook interface and the default chain.

Why hooks: the policy decides *what* happens to personal data at four
points — a log record is emitted, a record is stored, an event is
published, a subject is erased — and operators may add their own rules
(e.g. drop a field a client must never see in events, or notify a DPO
system on erasure) without touching the engine. So the engine calls one
``HookChain`` at those points, and the chain runs each hook in order.

Hooks are plain synchronous calls on the event loop (no task or future per
message); anything slow belongs in a hook's own background worker.

Points, and what the engine does with the result:

* ``on_log(record) -> bool`` — from the logging filter of every handler;
  a hook may edit the record; ``False`` drops it.
* ``on_store(record: StoredRecord)`` — before a record is written. Hooks
  set ``ttl_s`` / ``retention_until`` and may edit ``fields`` (a hash's
  fields, or ``None`` for a plain value); the engine writes the fields and
  sets the TTL. ``HookChain.stamp(kind, now_s)`` gives ``(ttl_s,
  retention_until)`` for a whole batch at once (one call per batch).
* ``on_event(event)`` — before a status event is published; may edit it.
* ``on_erase(result)`` — after ``erase_subject`` finished (notification).

Defaults (``default_chain``): ``RedactionHook`` (log redaction; events lose
text fields and show numbers masked) then ``RetentionHook`` (stamps TTL and
``retention_until`` from the ``RetentionPolicy``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .masking import mask_number
from .redaction import NUMBER_FIELDS, TEXT_FIELDS, redact_record
from .retention import RetentionPolicy

if TYPE_CHECKING:
    from .erasure import ErasureResult

__all__ = [
    "BaseHook",
    "HookChain",
    "PrivacyHook",
    "RedactionHook",
    "RetentionHook",
    "StoredRecord",
    "default_chain",
]


@dataclass(slots=True)
class StoredRecord:
    """A record about to be written: its kind, its fields (``None`` for a plain value), the stamps."""

    kind: str
    fields: MutableMapping[str, Any] | None
    now_s: float
    ttl_s: int = 0
    retention_until: int = 0


@runtime_checkable
class PrivacyHook(Protocol):
    """What a privacy hook implements (derive from ``BaseHook`` to override only some)."""

    def on_log(self, record: logging.LogRecord) -> bool:
        """A log record is about to be emitted; return False to drop it."""
        ...

    def on_store(self, record: StoredRecord) -> None:
        """A record is about to be stored: stamp it, edit its fields."""
        ...

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        """A status event is about to be published; edit it in place."""
        ...

    def on_erase(self, result: ErasureResult) -> None:
        """A subject was erased."""
        ...


class BaseHook:
    """A hook that does nothing at every point."""

    def on_log(self, record: logging.LogRecord) -> bool:
        return True

    def on_store(self, record: StoredRecord) -> None:
        return None

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        return None

    def on_erase(self, result: ErasureResult) -> None:
        return None


class RedactionHook(BaseHook):
    """Masks numbers and drops text in log records; does the same for event fields."""

    def on_log(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        for key in [k for k in event if k in TEXT_FIELDS or k in NUMBER_FIELDS]:
            if key in TEXT_FIELDS:
                del event[key]
            else:
                value = event[key]
                text = value.decode() if isinstance(value, bytes) else str(value)
                if any(c.isdigit() for c in text):
                    event[key] = mask_number(text)


class RetentionHook(BaseHook):
    """Stamps ``ttl_s`` and ``retention_until`` (also as a hash field) from the policy."""

    __slots__ = ("policy",)

    def __init__(self, policy: RetentionPolicy) -> None:
        self.policy = policy

    def on_store(self, record: StoredRecord) -> None:
        ttl = self.policy.ttl_s(record.kind)
        record.ttl_s = ttl
        record.retention_until = int(record.now_s) + ttl
        if record.fields is not None:
            record.fields["retention_until"] = record.retention_until


class _ChainFilter(logging.Filter):
    def __init__(self, chain: HookChain) -> None:
        super().__init__()
        self._chain = chain

    def filter(self, record: logging.LogRecord) -> bool:
        return self._chain.on_log(record)


class HookChain:
    """Runs hooks in order at each point (see the module docstring)."""

    __slots__ = ("hooks",)

    def __init__(self, hooks: Iterable[PrivacyHook]) -> None:
        self.hooks: tuple[PrivacyHook, ...] = tuple(hooks)

    def on_log(self, record: logging.LogRecord) -> bool:
        """Run ``on_log`` of each hook; stop and drop at the first False."""
        return all(hook.on_log(record) for hook in self.hooks)

    def on_store(
        self, kind: str, fields: MutableMapping[str, Any] | None, now_s: float
    ) -> StoredRecord:
        """Run ``on_store`` of each hook over a record of ``kind``; returns it stamped."""
        record = StoredRecord(kind, fields, now_s)
        for hook in self.hooks:
            hook.on_store(record)
        return record

    def stamp(self, kind: str, now_s: float) -> tuple[int, int]:
        """``(ttl_s, retention_until)`` for records of ``kind`` stored at ``now_s`` (once per batch)."""
        record = self.on_store(kind, None, now_s)
        return record.ttl_s, record.retention_until

    def on_event(self, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Run ``on_event`` of each hook; returns the (edited) event."""
        for hook in self.hooks:
            hook.on_event(event)
        return event

    def on_erase(self, result: ErasureResult) -> None:
        """Tell every hook about a finished erasure; one failing hook does not stop the others."""
        for hook in self.hooks:
            try:
                hook.on_erase(result)
            except Exception:
                logging.getLogger(__name__).exception(
                    "privacy hook %s failed on erase", type(hook).__name__
                )

    def log_filter(self) -> logging.Filter:
        """A ``logging.Filter`` running ``on_log`` (pass to ``configure_logging(log_filter=…)``)."""
        return _ChainFilter(self)


def default_chain(policy: RetentionPolicy | None = None) -> HookChain:
    """Redaction, then retention stamping with ``policy`` (default: the defaults of docs/contract.md §4)."""
    return HookChain([RedactionHook(), RetentionHook(policy or RetentionPolicy())])
