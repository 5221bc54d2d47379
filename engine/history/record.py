"""Events stream entries → one history delta per job (sans-IO: no Redis, no database).

The archiver reads a batch of ``<prefix>:events`` entries (flat fields ``id``,
``ref``, ``event``, ``carrier``, ``parts``, ``message_ids``, ``error``, ``ts``;
the first event of a job also ``client``, ``kind``, ``to_hash``, ``to_mask``,
``encoding``, ``retention_until``) and folds them into one `JobDelta` per job
id, so a batch of 5,000 events becomes at most 5,000 rows and usually fewer
(a job's submitted and delivered often share a batch). The store then merges
each delta into the job's row with rules that make a replay change nothing:

- descriptive fields (ref, client, kind, carrier, encoding, message ids, hash
  and mask of the number): a non-empty new value wins, an empty one never
  blanks what is stored;
- ``events`` / ``errors`` are maps event → time (ms) / error code, merged key
  by key, so the same event applied twice is the same map;
- ``first_ms`` and ``submitted_ms`` keep the earliest, ``retention_until`` the
  latest, ``final_state`` follows the latest final event (ties keep the same
  value), ``parts`` the last non-zero.

``day`` (the partition of the row) is the UTC day of the job's first event;
the store moves a delta onto the day of an existing row of the same job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

__all__ = ["FINAL_EVENTS", "HistoryRow", "JobDelta", "deltas_from_entries", "ms_to_day"]

#: Events after which a job's state does not change any more (DESIGN.md, events stream).
FINAL_EVENTS = frozenset(
    {"delivered", "undeliverable", "expired", "rejected", "deleted", "unknown", "failed", "cancelled"}
)
_FINAL_B = frozenset(e.encode() for e in FINAL_EVENTS)
_DAY_MS = 86_400_000


def ms_to_day(ms: int) -> int:
    """Days since 1970-01-01 (UTC) of a unix time in ms."""
    return ms // _DAY_MS


class JobDelta:
    """What one batch says about one job; merged into its row by the store."""

    __slots__ = (
        "carrier", "client", "encoding", "error", "errors", "events", "final_ms", "final_state",
        "first_ms", "job_id", "kind", "message_ids", "parts", "ref", "retention_until",
        "submitted_ms", "to_hash", "to_mask",
    )

    def __init__(self, job_id: str, ts: int) -> None:
        self.job_id = job_id
        self.first_ms = ts
        self.ref = self.client = self.kind = self.carrier = self.encoding = ""
        self.message_ids = self.to_hash = self.to_mask = self.error = ""
        self.parts = 0
        self.retention_until = 0
        self.submitted_ms: int | None = None
        self.final_state = ""
        self.final_ms: int | None = None
        self.events: dict[str, int] = {}
        self.errors: dict[str, str] = {}

    @property
    def day(self) -> int:
        """UTC day (days since the epoch) of the earliest event seen."""
        return self.first_ms // _DAY_MS

    def __repr__(self) -> str:  # no number, only its hash prefix
        return f"JobDelta({self.job_id!r}, events={self.events!r}, final={self.final_state!r})"


def deltas_from_entries(entries: Iterable[tuple[Any, Mapping[bytes, bytes]]]) -> dict[str, JobDelta]:
    """Fold stream entries (``(entry_id, fields)``, fields as bytes) into one delta per job.

    Entries without ``id`` or ``event`` are skipped (nothing to file them under).
    """
    out: dict[str, JobDelta] = {}
    get_delta = out.get
    final_b = _FINAL_B
    for _eid, f in entries:
        jid_b = f.get(b"id")
        ev_b = f.get(b"event")
        if not jid_b or not ev_b:
            continue
        job_id = jid_b.decode()
        ts_b = f.get(b"ts")
        ts = int(ts_b) if ts_b else 0
        d = get_delta(job_id)
        if d is None:
            d = out[job_id] = JobDelta(job_id, ts)
        elif ts < d.first_ms:
            d.first_ms = ts
        event = ev_b.decode()
        d.events[event] = ts
        v = f.get(b"error")
        if v:
            d.error = d.errors[event] = v.decode()
        v = f.get(b"carrier")
        if v:
            d.carrier = v.decode()
        v = f.get(b"parts")
        if v and v != b"0":
            d.parts = int(v)
        v = f.get(b"message_ids")
        if v:
            d.message_ids = v.decode()
        v = f.get(b"ref")
        if v:
            d.ref = v.decode()
        if ev_b in final_b:
            if d.final_ms is None or ts >= d.final_ms:
                d.final_ms, d.final_state = ts, event
        elif ev_b == b"submitted" and (d.submitted_ms is None or ts < d.submitted_ms):
            d.submitted_ms = ts
        # The first event of a job describes it; later events do not repeat it.
        v = f.get(b"client")
        if v:
            d.client = v.decode()
        v = f.get(b"kind")
        if v:
            d.kind = v.decode()
        v = f.get(b"to_hash")
        if v:
            d.to_hash = v.decode()
        v = f.get(b"to_mask")
        if v:
            d.to_mask = v.decode()
        v = f.get(b"encoding")
        if v:
            d.encoding = v.decode()
        v = f.get(b"retention_until")
        if v:
            d.retention_until = max(d.retention_until, int(v))
    return out


class HistoryRow(msgspec.Struct, kw_only=True):
    """One job as the store holds it (times in unix ms; ``day`` ISO ``YYYY-MM-DD``)."""

    job_id: str
    day: str
    ref: str = ""
    client: str = ""
    kind: str = ""
    carrier: str = ""
    parts: int = 0
    encoding: str = ""
    message_ids: str = ""
    to_hash: str = ""
    to_mask: str = ""
    first_ms: int = 0
    submitted_ms: int | None = None
    final_state: str = ""
    final_ms: int | None = None
    error: str = ""
    events: dict[str, int] = msgspec.field(default_factory=dict)
    errors: dict[str, str] = msgspec.field(default_factory=dict)
    retention_until: int = 0
    updated_ms: int = 0

    @property
    def state(self) -> str:
        """The final state, else the latest event."""
        if self.final_state:
            return self.final_state
        return max(self.events.items(), key=lambda kv: kv[1])[0] if self.events else ""
