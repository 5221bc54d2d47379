"""The privacy hook interface, the default hooks and the chain the engine calls.

Why hooks: the policy decides *what* happens to personal data at a few
points — a log record is emitted, a record is stored, an event is
published, a subject is erased or exported — and operators may add their
own rules (e.g. a shorter deadline for one client's records, a field a
client must never see in events, a notice to a DPO system on erasure)
without touching the engine. So the engine calls one ``HookChain`` at those
points, and the chain runs each hook in order: the default hooks first,
then the operator's (``[privacy] hooks = ["pkg.module:Class", ...]``,
loaded by :func:`load_hooks`).

Hooks are plain synchronous calls on the event loop (no task or future per
message); anything slow belongs in a hook's own background worker. The
engine calls the chain **once per batch** (the batch methods below) just
before the one script call that writes the batch; a hook that only needs
single records overrides the single-record method and the batch method
loops over it.

Points, and what the engine does with the result:

* ``on_log(record) -> bool`` — from the logging filter of every handler;
  a hook may edit the record; ``False`` drops it. The defaults redact the
  record first, so a custom hook only ever sees it redacted.
* ``on_store(record: StoredRecord)`` / ``on_store_batch(records)`` — before
  records of one ``kind`` (:data:`STORE_KINDS`) are written. The retention
  hook stamps ``ttl_s`` / ``retention_until``; a later hook may change
  ``retention_until`` (the engine then stores that deadline: the
  ``retention_until`` field and, for keys, a TTL that ends by it) and may
  read ``fields`` (a copy of what is written; edits of ``fields`` are not
  written back, except through ``on_event`` for events).
* ``on_event(event)`` / ``on_events(events)`` — before status events are
  published; may edit the fields the engine takes back (:data:`EVENT_EDITABLE`).
* ``on_erase(result)`` — after an erasure finished (notification).
* ``on_export(subject, records)`` — before ``sendgate export`` prints the
  records of one subject (the subject as its keyed hash, the records as
  the JSON objects about to be printed); may not edit them.

**Failing closed.** An exception in a hook at ``on_store`` / ``on_event`` /
``on_export`` is raised by the chain as :class:`HookFailed`, naming the
hook's class and the point — never the exception's own message, which may
hold personal data. The engine then writes nothing of that batch, retries
it with backoff and, after :data:`HOOK_ATTEMPTS`, dead-letters its jobs
with code ``hook_failed`` (docs/contract.md). A log record a custom hook
fails on is dropped (it was redacted already; ``log_failures`` counts
them). ``on_erase`` is a notification: a failing hook is logged (class name
only) and the others still run.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from .masking import mask_number
from .redaction import NUMBER_FIELDS, TEXT_FIELDS, RedactingFilter, clean_record, redact_record
from .retention import RECORD_KINDS, RetentionPolicy

if TYPE_CHECKING:
    from .erasure import ErasureResult

__all__ = [
    "EVENT_EDITABLE",
    "HOOK_ATTEMPTS",
    "STORE_KINDS",
    "BaseHook",
    "EngineEvent",
    "HookChain",
    "HookFailed",
    "PrivacyHook",
    "RedactionHook",
    "RetentionHook",
    "StoredRecord",
    "default_chain",
    "load_hooks",
]

#: What the engine stores through ``on_store``, and the retention kind
#: (privacy_hooks/retention.py) whose policy gives its default deadline;
#: ``None``: kept without a deadline (deadline 0).
STORE_KINDS: dict[str, str | None] = {
    "job": "message",  # a job's outcome: its first event (the history row) and its record in Redis
    "dead_letter": "message",  # a dead-lettered job: its dead letter and its `rejected`/`expired` event
    "scheduled_job": "payload",  # a job held for send_at / quiet hours (its payload, in clear)
    "inbound": "message",  # an inbound message part (from, to, text)
    "suppression": None,  # a suppression entry (an opt-out is kept: docs/contract.md)
}

#: Event fields a hook's ``on_event`` edits are written back for (the rest are the engine's).
EVENT_EDITABLE = ("ref", "error", "client", "kind", "to_hash", "to_mask", "encoding")

_NAMED = TEXT_FIELDS | NUMBER_FIELDS

#: How often the engine tries a batch whose hook raised before it dead-letters the batch's jobs.
HOOK_ATTEMPTS = 5


class HookFailed(Exception):
    """A privacy hook raised: the batch is not written (fail closed).

    The message names the hook's class and the point, never the original
    exception's text (it may hold a number); ``hook`` is the class name."""

    def __init__(self, hook: str, point: str, error: str) -> None:
        super().__init__(f"privacy hook {hook} failed in {point} ({error})")
        self.hook = hook
        self.point = point
        self.error = error


class EngineEvent(MutableMapping[str, Any]):
    """Base of the engine's lazy event views (engine/hook_views.py): a mapping whose
    values are made on access from the job in hand. Its own fields never hold a
    number or text in clear (``names_free``), so the redaction hook passes it
    without looking at its keys."""

    __slots__ = ()
    names_free = True


class StoredRecord(msgspec.Struct):
    """A record about to be written: its kind, its fields (``None`` for a plain value), the stamps.

    (A msgspec Struct: made in C, one per record of a batch with custom hooks;
    attributes read and written like a dataclass's.)"""

    kind: str
    fields: MutableMapping[str, Any] | None
    now_s: float
    ttl_s: int = 0
    retention_until: int = 0


_RETENTION_UNTIL = attrgetter("retention_until")


@runtime_checkable
class PrivacyHook(Protocol):
    """What a privacy hook implements (derive from ``BaseHook`` to override only some)."""

    def on_log(self, record: logging.LogRecord) -> bool:
        """A log record is about to be emitted; return False to drop it."""
        ...

    def on_store(self, record: StoredRecord) -> None:
        """A record is about to be stored: stamp it (``retention_until``)."""
        ...

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        """A status event is about to be published; edit it in place."""
        ...

    def on_erase(self, result: ErasureResult) -> None:
        """A subject was erased."""
        ...


class BaseHook:
    """A hook that does nothing at every point; the batch methods loop over the single ones."""

    def on_log(self, record: logging.LogRecord) -> bool:
        return True

    def on_store(self, record: StoredRecord) -> None:
        return None

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        """Records of one kind stored by one call (default: ``on_store`` of each)."""
        for record in records:
            self.on_store(record)

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        return None

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        """Events published by one call (default: ``on_event`` of each)."""
        for event in events:
            self.on_event(event)

    def on_erase(self, result: ErasureResult) -> None:
        return None

    def on_export(self, subject: str, records: Sequence[Mapping[str, Any]]) -> None:
        return None


class RedactionHook(BaseHook):
    """Masks numbers and drops text in log records; does the same for event fields."""

    def on_log(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        return None  # redaction stamps nothing (not a call per record)

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        named = _NAMED
        for event in events:
            if getattr(event, "names_free", False):  # an engine view: made of no such field
                continue
            if not named.isdisjoint(event):  # the engine's own events never hold such a field
                self.on_event(event)

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
    """Stamps ``ttl_s`` and ``retention_until`` (also as a hash field) from the policy.

    ``record.kind`` is a store kind (:data:`STORE_KINDS`) or a retention kind
    (``message``, ``payload``, ``activity_log``, ``audit``, ``dlr``)."""

    __slots__ = ("policy",)

    def __init__(self, policy: RetentionPolicy) -> None:
        self.policy = policy

    def ttl_of(self, kind: str) -> int:
        """The policy's TTL for records of ``kind`` (0: kept without a deadline)."""
        if kind in RECORD_KINDS:
            return self.policy.ttl_s(kind)
        try:
            retention = STORE_KINDS[kind]
        except KeyError:
            raise ValueError(
                f"unknown record kind {kind!r} (expected one of "
                f"{', '.join((*STORE_KINDS, *RECORD_KINDS))})"
            ) from None
        return 0 if retention is None else self.policy.ttl_s(retention)

    def on_store(self, record: StoredRecord) -> None:
        ttl = self.ttl_of(record.kind)
        record.ttl_s = ttl
        record.retention_until = int(record.now_s) + ttl if ttl else 0
        if record.fields is not None and ttl:
            record.fields["retention_until"] = record.retention_until

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        return None  # retention reads no event (not a call per event)

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        if not records:
            return
        first = records[0]
        ttl = self.ttl_of(first.kind)
        now_s = first.now_s
        until = int(now_s) + ttl if ttl else 0  # one batch: usually one time for all
        for record in records:
            record.ttl_s = ttl
            if record.now_s == now_s:
                record.retention_until = until
            else:
                record.retention_until = int(record.now_s) + ttl if ttl else 0


class _ChainFilter(RedactingFilter):
    """The log filter of a chain: ``on_log`` of every hook. With the default hooks
    only, that is the redaction alone (the retention hook passes every record), so
    it is called directly: the same result without a loop per record."""

    def __init__(self, chain: HookChain) -> None:
        super().__init__()
        self._chain = chain
        if chain.defaults_only:  # (fixed when the chain is made)
            self.filter = clean_record  # type: ignore[method-assign,assignment]  # the redaction itself: one call

    def filter(self, record: logging.LogRecord) -> bool:
        if self._chain.defaults_only:
            return clean_record(record)  # redact_record's work, one call (returns True)
        return self._chain.on_log(record)


def _failed(hook: object, point: str, err: BaseException) -> HookFailed:
    return HookFailed(type(hook).__name__, point, type(err).__name__)


class HookChain:
    """Runs hooks in order at each point (see the module docstring).

    ``defaults``: how many of ``hooks`` are the defaults (``default_chain``
    gives 2); the rest, ``custom``, are the operator's. When there are none,
    ``has_custom`` is False and the engine may take the precomputed fast path
    (the defaults' result without calling them per batch)."""

    __slots__ = ("custom", "defaults", "defaults_only", "hooks", "log_failures", "stock")

    def __init__(self, hooks: Iterable[PrivacyHook], *, defaults: int = 0) -> None:
        self.hooks: tuple[PrivacyHook, ...] = tuple(hooks)
        self.defaults: tuple[PrivacyHook, ...] = self.hooks[:defaults]
        self.custom: tuple[PrivacyHook, ...] = self.hooks[defaults:]
        # exactly the default hooks: the log filter is the redaction alone
        self.defaults_only = not self.custom and [type(h) for h in self.hooks] == [RedactionHook, RetentionHook]
        self.log_failures = 0  # log records dropped because a custom hook raised on them
        # the chain starts with the stock defaults (exactly these classes): their batch
        # work is known -- redaction stamps nothing and passes names_free events, the
        # retention stamps one ttl/deadline per batch -- so it is done once per batch
        self.stock = len(self.hooks) >= 2 and type(self.hooks[0]) is RedactionHook and type(self.hooks[1]) is RetentionHook

    @property
    def has_custom(self) -> bool:
        """True when operator hooks are configured (they must see every record)."""
        return bool(self.custom)

    def names(self) -> list[str]:
        """The hooks' class names, in order."""
        return [type(h).__name__ for h in self.hooks]

    # ------------------------------------------------------------------ logs
    def on_log(self, record: logging.LogRecord) -> bool:
        """Run ``on_log`` of each hook; stop and drop at the first False.

        A custom hook that raises drops the record (it was redacted by the
        defaults already; nothing of it is written) and counts it."""
        for hook in self.hooks:
            try:
                if not hook.on_log(record):
                    return False
            except Exception:
                if hook in self.defaults:
                    raise
                self.log_failures += 1
                return False
        return True

    on_log_record = on_log

    def log_filter(self) -> logging.Filter:
        """A ``logging.Filter`` running ``on_log`` (pass to ``configure_logging(log_filter=…)``)."""
        return _ChainFilter(self)

    # ---------------------------------------------------------------- storing
    def on_store(
        self, kind: str, fields: MutableMapping[str, Any] | None, now_s: float
    ) -> StoredRecord:
        """Run ``on_store`` of each hook over a record of ``kind``; returns it stamped
        (``retention_until`` is the deadline). Raises ``HookFailed``."""
        record = StoredRecord(kind, fields, now_s)
        for hook in self.hooks:
            try:
                hook.on_store(record)
            except Exception as err:
                raise _failed(hook, "on_store", err) from None
        return record

    def deadline(self, kind: str, fields: MutableMapping[str, Any] | None, now_s: float) -> int:
        """The retention deadline (unix s; 0: none) of one record of ``kind`` stored at ``now_s``."""
        return self.on_store(kind, fields, now_s).retention_until

    def on_store_batch(
        self, kind: str, records: Sequence[MutableMapping[str, Any] | None], now_s: float
    ) -> list[int]:
        """The deadline of each of ``records`` (of one ``kind``, stored by one call):
        every hook's ``on_store_batch`` once. Raises ``HookFailed``."""
        hooks = self.hooks
        if self.stock and records:  # the records made as the stock defaults leave them (same result, no loop)
            retention = hooks[1]
            assert isinstance(retention, RetentionHook)
            try:
                ttl = retention.ttl_of(kind)
            except Exception as err:
                raise _failed(retention, "on_store", err) from None
            until = int(now_s) + ttl if ttl else 0
            # made in one C loop (map over the struct's constructor), no bytecode per record
            stored = list(map(StoredRecord, repeat(kind), records, repeat(now_s), repeat(ttl), repeat(until)))
            hooks = hooks[2:]
        else:
            stored = list(map(StoredRecord, repeat(kind), records, repeat(now_s)))
        for hook in hooks:
            batch = getattr(hook, "on_store_batch", None)
            try:
                if batch is not None:
                    batch(stored)
                else:
                    for record in stored:
                        hook.on_store(record)
            except Exception as err:
                raise _failed(hook, "on_store", err) from None
        return list(map(_RETENTION_UNTIL, stored))

    def stamp(self, kind: str, now_s: float) -> tuple[int, int]:
        """``(ttl_s, retention_until)`` for records of ``kind`` stored at ``now_s`` (once per batch)."""
        record = self.on_store(kind, None, now_s)
        return record.ttl_s, record.retention_until

    # ----------------------------------------------------------------- events
    def on_event(self, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """Run ``on_event`` of each hook; returns the (edited) event. Raises ``HookFailed``."""
        for hook in self.hooks:
            try:
                hook.on_event(event)
            except Exception as err:
                raise _failed(hook, "on_event", err) from None
        return event

    def on_events(self, events: Sequence[MutableMapping[str, Any]], *, names_free: bool = False) -> None:
        """Every hook's ``on_events`` once over the events of one call. Raises ``HookFailed``.

        ``names_free``: the caller knows every event is ``names_free`` (an engine view),
        so the stock redaction hook, which passes such events, is not called."""
        hooks = self.hooks[1:] if names_free and self.stock else self.hooks
        for hook in hooks:
            batch = getattr(hook, "on_events", None)
            try:
                if batch is not None:
                    batch(events)
                else:
                    for event in events:
                        hook.on_event(event)
            except Exception as err:
                raise _failed(hook, "on_event", err) from None

    # ------------------------------------------------------ subject requests
    def on_erase(self, result: ErasureResult) -> None:
        """Tell every hook about a finished erasure; one failing hook does not stop the others."""
        for hook in self.hooks:
            try:
                hook.on_erase(result)
            except Exception as err:
                logging.getLogger(__name__).error(
                    "privacy hook %s failed on erase (%s)", type(hook).__name__, type(err).__name__
                )

    def on_export(self, subject: str, records: Sequence[Mapping[str, Any]]) -> None:
        """Every hook's ``on_export`` before an export prints ``records``. Raises ``HookFailed``."""
        for hook in self.hooks:
            fn = getattr(hook, "on_export", None)
            if fn is None:
                continue
            try:
                fn(subject, records)
            except Exception as err:
                raise _failed(hook, "on_export", err) from None


def default_chain(
    policy: RetentionPolicy | None = None, custom: Iterable[PrivacyHook] = ()
) -> HookChain:
    """Redaction, then retention stamping with ``policy`` (default: the defaults of
    docs/contract.md §4), then ``custom`` hooks in order."""
    defaults: list[PrivacyHook] = [RedactionHook(), RetentionHook(policy or RetentionPolicy())]
    return HookChain([*defaults, *custom], defaults=len(defaults))


def load_hooks(paths: Sequence[str]) -> list[PrivacyHook]:
    """Instantiate ``"pkg.module:Class"`` hooks (no arguments), in order.

    A bad path, a module that does not import, a missing class or one that
    cannot be built raises ``ValueError`` naming ``privacy.hooks[i]``."""
    hooks: list[PrivacyHook] = []
    for i, path in enumerate(paths):
        where = f"privacy.hooks[{i}]"
        if not isinstance(path, str) or path.count(":") != 1:
            raise ValueError(f"{where}: expected 'pkg.module:Class', got {path!r}")
        module_name, _, class_name = path.partition(":")
        if not module_name or not class_name.isidentifier():
            raise ValueError(f"{where}: expected 'pkg.module:Class', got {path!r}")
        try:
            module = importlib.import_module(module_name)
        except Exception as err:
            raise ValueError(f"{where}: cannot import module {module_name!r} ({type(err).__name__}: {err})") from None
        cls = getattr(module, class_name, None)
        if cls is None or not isinstance(cls, type):
            raise ValueError(f"{where}: module {module_name!r} has no class {class_name!r}")
        try:
            hook = cls()
        except Exception as err:
            raise ValueError(f"{where}: {path} could not be created ({type(err).__name__}: {err})") from None
        missing = [m for m in ("on_log", "on_store", "on_event", "on_erase") if not callable(getattr(hook, m, None))]
        if missing:
            raise ValueError(
                f"{where}: {path} is not a privacy hook (no {', '.join(missing)}; derive from privacy_hooks.BaseHook)"
            )
        hooks.append(hook)
    return hooks
