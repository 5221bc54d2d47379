"""Custom privacy hooks the tests plug in through ``[privacy] hooks`` (by their import path)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from privacy_hooks import BaseHook, StoredRecord
from privacy_hooks.erasure import ErasureResult


class Recorder(BaseHook):
    """Remembers every record, event, erasure and export it is shown."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, dict[str, Any], int]] = []  # kind, fields, deadline seen
        self.events: list[dict[str, Any]] = []
        self.batches = 0
        self.erased: list[ErasureResult] = []
        self.exported: list[tuple[str, int]] = []
        self.logs = 0

    def on_log(self, record: logging.LogRecord) -> bool:
        self.logs += 1
        return True

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        self.batches += 1
        for r in records:
            self.stored.append((r.kind, dict(r.fields or {}), r.retention_until))

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        self.events.extend(dict(e) for e in events)

    def on_erase(self, result: ErasureResult) -> None:
        self.erased.append(result)

    def on_export(self, subject: str, records: Sequence[Mapping[str, Any]]) -> None:
        self.exported.append((subject, len(records)))


class OneHour(BaseHook):
    """A client's own, shorter deadline: job outcomes and dead letters kept one hour."""

    def on_store(self, record: StoredRecord) -> None:
        if record.kind in ("job", "dead_letter", "scheduled_job"):
            record.retention_until = int(record.now_s) + 3600


class TagRef(BaseHook):
    """Edits an event field the engine takes back (``ref``)."""

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        event["ref"] = "hooked-" + str(event.get("ref", ""))


class Raising(BaseHook):
    """Fails on every event, with the number in its exception text (which must not leak)."""

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        raise ValueError(f"refusing event to {event.get('to_mask')} for {event.get('id')}")


class RaisingOnLog(BaseHook):
    def on_log(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("log hook broken")


class RaisingOnExport(BaseHook):
    def on_export(self, subject: str, records: Sequence[Mapping[str, Any]]) -> None:
        raise PermissionError("export not allowed for " + subject)


class NeedsArgument(BaseHook):
    def __init__(self, required: str) -> None:
        self.required = required


class NotAHook:
    pass


def _is_receipt_event(event: MutableMapping[str, Any]) -> bool:
    """An event the correlation script composes (a receipt's, the sweep's): no number's hash."""
    return "to_hash" not in event


class TagReceiptRef(BaseHook):
    """Edits ``ref`` of receipt events only."""

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        if _is_receipt_event(event):
            event["ref"] = "receipt-" + str(event.get("ref", ""))


class RaisingOnReceipts(BaseHook):
    """Fails on receipt events only, with a number in its exception text (which must not leak)."""

    def on_event(self, event: MutableMapping[str, Any]) -> None:
        if _is_receipt_event(event):
            raise ValueError(f"refusing receipt of {event.get('id')} for +4502999123")


class TagSomeRefs(BaseHook):
    """Edits ``ref`` of the submitted events of jobs whose id ends in an odd digit only."""

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        for event in events:
            if event.get("event") == "submitted" and str(event.get("id", ""))[-1:] in "13579":
                event["ref"] = "hooked-" + str(event.get("ref", ""))


class OddJobsOneHour(BaseHook):
    """Deadlines that differ within a batch: a job whose id ends in an odd digit kept one
    hour, the others two; also deletes the stamp from the events it is shown (the
    engine's stamp, not written back: the event keeps its deadline)."""

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        for r in records:
            if r.kind == "job" and r.fields is not None:
                odd = str(r.fields.get("id", ""))[-1:] in "13579"
                r.retention_until = int(r.now_s) + (3600 if odd else 7200)

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        for e in events:
            e.pop("retention_until", None)
