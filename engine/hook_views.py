"""The hooks' view of a recorded job's first event: a lazy mapping over the in-flight job.

Custom privacy hooks see each recorded job's first event as a
``MutableMapping`` (docs/contract.md §4, "Privacy hooks"). Building a
13-field dict per job for them cost ~13,600 instructions per job (most of
what a custom hook cost the engine: bench/RESULTS.md). A ``JobEventView``
holds the job and the batch's constants and makes a value only when a hook
reads it; a hook's writes and deletions go to a small overlay (``edits``),
and the engine writes the job as without hooks unless an overlay exists
(then it takes the editable fields, ``EVENT_EDITABLE``, from the view).

``retention_until`` is the deadline ``on_store`` gave (absent before it).
The keys and their order are those of the dict it replaces (``KEYS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from privacy_hooks import EngineEvent, mask_e164_digits

__all__ = ["KEYS", "JobEventView", "ViewBatch"]

KEYS = (
    "id", "ref", "event", "carrier", "parts", "message_ids", "error", "ts", "client", "kind",
    "to_hash", "to_mask", "encoding", "retention_until",
)
_DELETED: Any = object()


class ViewBatch:
    """What the views of one record batch share: its timestamp and the number hasher."""

    __slots__ = ("hash_number", "ts")

    def __init__(self, ts: str, hash_number: Callable[[str], str]) -> None:
        self.ts = ts
        self.hash_number = hash_number


class JobEventView(EngineEvent):
    """One job's first event as it will be written, computed on access (see the module doc).

    ``ij``: the in-flight job (engine/pipeline.py ``_InFlightJob``); ``edits``:
    None until a hook writes or deletes a key."""

    __slots__ = ("batch", "edits", "ij", "retention_until")
    ij: Any
    batch: ViewBatch
    edits: dict[str, Any] | None
    retention_until: Any

    def __init__(self, ij: Any, batch: ViewBatch) -> None:
        self.ij = ij
        self.batch = batch
        self.edits = None
        self.retention_until = None

    def __getitem__(self, key: str) -> Any:
        edits = self.edits
        if edits is not None and key in edits:
            value = edits[key]
            if value is _DELETED:
                raise KeyError(key)
            return value
        get = _GET.get(key)
        if get is None:
            raise KeyError(key)
        return get(self)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        edits = self.edits
        if edits is not None and key in edits:
            return edits[key] is not _DELETED
        if key == "retention_until":
            return self.retention_until is not None
        return key in _GET

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "retention_until":  # the engine's stamp, not an edit it writes back
            self.retention_until = value
            return
        if self.edits is None:
            self.edits = {}
        self.edits[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        if key == "retention_until":
            self.retention_until = None
            return
        if self.edits is None:
            self.edits = {}
        self.edits[key] = _DELETED

    def __iter__(self) -> Iterator[str]:
        edits = self.edits
        for key in KEYS:
            if key in self:
                yield key
        if edits is not None:
            for key, value in edits.items():
                if key not in _GET and value is not _DELETED:
                    yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"JobEventView(id={self.ij.job.id!r}, event={self.ij.event!r}, edited={self.edits is not None})"


def _to_hash(v: JobEventView) -> str:
    ij = v.ij
    if not ij.to_hash:
        ij.to_hash = v.batch.hash_number(ij.job.to)
    return str(ij.to_hash)


def _retention(v: JobEventView) -> Any:
    if v.retention_until is None:
        raise KeyError("retention_until")
    return v.retention_until


_GET: dict[str, Callable[[JobEventView], Any]] = {
    "id": lambda v: v.ij.job.id,
    "ref": lambda v: v.ij.job.ref,
    "event": lambda v: v.ij.event,
    "carrier": lambda v: v.ij.carrier,
    "parts": lambda v: str(v.ij.parts),
    "message_ids": lambda v: ",".join(v.ij.message_ids),
    "error": lambda v: v.ij.error,
    "ts": lambda v: v.batch.ts,
    "client": lambda v: v.ij.job.client,
    "kind": lambda v: v.ij.job.kind,
    "to_hash": _to_hash,
    "to_mask": lambda v: mask_e164_digits(v.ij.job.to),
    "encoding": lambda v: v.ij.seg.encoding,
    "retention_until": _retention,
}
