"""Events stream entries → one history delta per job (sans-IO: no Redis, no database).

The archiver reads a batch of ``<prefix>:events`` entries (flat fields ``id``,
``ref``, ``event``, ``carrier``, ``parts``, ``message_ids``, ``error``, ``ts``;
the first event of a job also ``client``, ``kind``, ``to_hash``, ``to_mask``,
``encoding``, ``retention_until``, and with ``[history] keep_text`` its sealed
``text_enc``, base64: engine/history/text_cipher.py) and folds them into one `JobDelta` per job
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
  value), ``parts`` the last non-zero; ``text_enc`` (sealed bytes) the first
  stored, never on a row hidden by an erasure.

``day`` (the partition of the row) is the UTC day of the job's first event;
the store moves a delta onto the day of an existing row of the same job.
"""

from __future__ import annotations

from binascii import a2b_base64
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any

import msgspec

__all__ = ["FINAL_EVENTS", "FINAL_EVENTS_B", "HistoryRow", "JobDelta", "deltas_from_entries", "ms_to_day"]

#: Events after which a job's state does not change any more (docs/contract.md §2.4, events stream).
FINAL_EVENTS = frozenset(
    {"delivered", "undeliverable", "expired", "rejected", "deleted", "unknown", "failed", "cancelled"}
)
FINAL_EVENTS_B = frozenset(e.encode() for e in FINAL_EVENTS)  # as the events stream holds them
_DAY_MS = 86_400_000


def ms_to_day(ms: int) -> int:
    """Days since 1970-01-01 (UTC) of a unix time in ms."""
    return ms // _DAY_MS


# JobDelta layout: one list per job (a list literal is the cheapest object
# CPython builds; the fold runs once per event on the engine's loop).
_JOB_ID, _FIRST_MS, _REF, _CLIENT, _KIND, _CARRIER, _PARTS, _ENCODING, _MESSAGE_IDS = range(9)
_TO_HASH, _TO_MASK, _ERROR, _RETENTION, _SUBMITTED_MS, _FINAL_STATE, _FINAL_MS, _EVENTS, _ERRORS = range(9, 18)
_HAS_FIRST = 18
_TEXT_ENC = 19  # bytes (sealed text, engine/history/text_cipher.py) or None


class JobDelta(list):  # type: ignore[type-arg]
    """What one batch says about one job; merged into its row by the store.

    A list underneath (see the layout above) with read-only named accessors.
    """

    __slots__ = ()

    job_id: str = property(itemgetter(_JOB_ID))  # type: ignore[assignment]
    first_ms: int = property(itemgetter(_FIRST_MS))  # type: ignore[assignment]
    ref: str = property(itemgetter(_REF))  # type: ignore[assignment]
    client: str = property(itemgetter(_CLIENT))  # type: ignore[assignment]
    kind: str = property(itemgetter(_KIND))  # type: ignore[assignment]
    carrier: str = property(itemgetter(_CARRIER))  # type: ignore[assignment]
    parts: int = property(itemgetter(_PARTS))  # type: ignore[assignment]
    encoding: str = property(itemgetter(_ENCODING))  # type: ignore[assignment]
    message_ids: str = property(itemgetter(_MESSAGE_IDS))  # type: ignore[assignment]
    to_hash: str = property(itemgetter(_TO_HASH))  # type: ignore[assignment]
    to_mask: str = property(itemgetter(_TO_MASK))  # type: ignore[assignment]
    error: str = property(itemgetter(_ERROR))  # type: ignore[assignment]
    retention_until: int = property(itemgetter(_RETENTION))  # type: ignore[assignment]
    submitted_ms: int | None = property(itemgetter(_SUBMITTED_MS))  # type: ignore[assignment]
    final_state: str = property(itemgetter(_FINAL_STATE))  # type: ignore[assignment]
    final_ms: int | None = property(itemgetter(_FINAL_MS))  # type: ignore[assignment]
    events: dict[str, int] = property(itemgetter(_EVENTS))  # type: ignore[assignment]
    #: The batch holds the job's first event (it carried the describing fields):
    #: its row, if any, is on `day` or later (engine/history/postgres.py).
    has_first: bool = property(itemgetter(_HAS_FIRST))  # type: ignore[assignment]
    #: ``[history] keep_text``: the sealed text (never the text), else None.
    text_enc: bytes | None = property(itemgetter(_TEXT_ENC))  # type: ignore[assignment]

    @property
    def errors(self) -> dict[str, str]:
        return self[_ERRORS] or {}

    @property
    def day(self) -> int:
        """UTC day (days since the epoch) of the earliest event seen."""
        return int(self[_FIRST_MS]) // _DAY_MS

    def __repr__(self) -> str:  # ids and states only: no hash, no mask
        return f"JobDelta({self[_JOB_ID]!r}, events={self[_EVENTS]!r}, final={self[_FINAL_STATE]!r})"


# The order the engine writes an event's fields in (engine/record.lua,
# dlr/receipts.lua): entries in exactly this layout are unpacked by position,
# anything else (another order, a missing or an extra field) goes through a
# dict: the same answer either way, the first ~2x cheaper.
_LAYOUT = (b"id", b"ref", b"event", b"carrier", b"parts", b"message_ids", b"error", b"ts")
_LAYOUT_FIRST = (*_LAYOUT, b"client", b"kind", b"to_hash", b"to_mask", b"encoding", b"retention_until")
_KEYS_SHORT = list(_LAYOUT)
_KEYS_FIRST = list(_LAYOUT_FIRST)
_KEYS_FIRST_TEXT = [*_LAYOUT_FIRST, b"text_enc"]  # [history] keep_text


_FIRST_ONLY = _LAYOUT_FIRST[len(_LAYOUT):]


def _by_name(f: Mapping[bytes, bytes]) -> list[bytes | None]:
    """The values of `_LAYOUT_FIRST` from any field order (None: absent), or just
    those of `_LAYOUT` when no field of a first event is there."""
    g = f.get
    if any(k in f for k in _FIRST_ONLY):
        return [g(k) for k in _LAYOUT_FIRST]
    return [g(k) for k in _LAYOUT]


def deltas_from_entries(entries: Iterable[tuple[Any, Any]]) -> list[JobDelta]:
    """Fold stream entries into one delta per job.

    An entry is ``(entry_id, fields)`` with fields either a mapping of bytes
    (redis-py's parsed reply) or the flat ``[name, value, name, value, …]`` list
    of the raw reply (what the archiver reads: no dict per entry). Entries
    without ``id`` or ``event``, or with a field the engine would not write
    (a ``ts`` that is no number, bytes that are not UTF-8), are skipped, so no
    entry can stop the archive.
    """
    out: dict[bytes, JobDelta] = {}
    get_delta = out.get
    final_b = FINAL_EVENTS_B
    short, first, first_text = _KEYS_SHORT, _KEYS_FIRST, _KEYS_FIRST_TEXT
    for _eid, f in entries:
        text_b = None
        if f.__class__ is list:
            n = len(f)
            if n == 16 and f[0::2] == short:
                jid, ref, ev, carrier, parts, mids, error, ts_b = f[1::2]
                describe = None
            elif n == 28 and f[0::2] == first:
                describe = f[1::2]
                jid, ref, ev, carrier, parts, mids, error, ts_b = describe[:8]
            elif n == 30 and f[0::2] == first_text:
                describe = f[1::2]
                jid, ref, ev, carrier, parts, mids, error, ts_b = describe[:8]
                text_b = describe[14]
            else:
                if n % 2:  # not name/value pairs: no entry the engine writes
                    continue
                it = iter(f)
                fd = dict(zip(it, it, strict=True))
                text_b = fd.get(b"text_enc")
                describe = _by_name(fd)
                jid, ref, ev, carrier, parts, mids, error, ts_b = describe[:8]
                if len(describe) == 8:
                    describe = None
        elif f is None:  # an entry deleted while pending (a reread after XDEL): nothing to fold
            continue
        else:
            text_b = f.get(b"text_enc")
            describe = _by_name(f)
            jid, ref, ev, carrier, parts, mids, error, ts_b = describe[:8]
            if len(describe) == 8:
                describe = None
        if not jid or not ev:
            continue
        try:  # every conversion first, so a malformed entry changes nothing
            ts = int(ts_b) if ts_b else 0
            event = ev.decode()
            ref_s = ref.decode() if ref else ""
            carrier_s = carrier.decode() if carrier else ""
            parts_i = int(parts) if parts else 0
            mids_s = mids.decode() if mids else ""
            error_s = error.decode() if error else ""
            if describe is None:
                client = kind = to_hash = to_mask = encoding = ""
                retention_i = 0
            else:
                c, k, h, m, e, r = describe[8:14]
                client = c.decode() if c else ""
                kind = k.decode() if k else ""
                to_hash = h.decode() if h else ""
                to_mask = m.decode() if m else ""
                encoding = e.decode() if e else ""
                retention_i = int(r) if r else 0
            job_id = jid.decode()
            text_enc = a2b_base64(text_b, strict_mode=True) if text_b else None
        except ValueError:  # not written by the engine (UnicodeDecodeError is one too)
            continue
        final = ev in final_b
        d = get_delta(jid)
        if d is None:  # the common case (a job's only event in the batch): one list, no stores
            out[jid] = JobDelta([
                job_id, ts, ref_s, client, kind, carrier_s, parts_i, encoding, mids_s, to_hash, to_mask,
                error_s, retention_i if retention_i > 0 else 0, ts if ev == b"submitted" else None,
                event if final else "", ts if final else None, {event: ts},
                {event: error_s} if error_s else None, describe is not None, text_enc,
            ])
            continue
        if ts < d[_FIRST_MS]:
            d[_FIRST_MS] = ts
        d[_EVENTS][event] = ts
        if ref_s:
            d[_REF] = ref_s
        if carrier_s:
            d[_CARRIER] = carrier_s
        if parts_i:
            d[_PARTS] = parts_i
        if mids_s:
            d[_MESSAGE_IDS] = mids_s
        if error_s:
            d[_ERROR] = error_s
            if d[_ERRORS] is None:
                d[_ERRORS] = {}
            d[_ERRORS][event] = error_s
        if final:
            if d[_FINAL_MS] is None or ts >= d[_FINAL_MS]:
                d[_FINAL_MS] = ts
                d[_FINAL_STATE] = event
        elif ev == b"submitted" and (d[_SUBMITTED_MS] is None or ts < d[_SUBMITTED_MS]):
            d[_SUBMITTED_MS] = ts
        if text_enc is not None and d[_TEXT_ENC] is None:
            d[_TEXT_ENC] = text_enc
        if describe is not None:
            # The first event of a job describes it; later events do not repeat it.
            d[_HAS_FIRST] = True
            if client:
                d[_CLIENT] = client
            if kind:
                d[_KIND] = kind
            if to_hash:
                d[_TO_HASH] = to_hash
            if to_mask:
                d[_TO_MASK] = to_mask
            if encoding:
                d[_ENCODING] = encoding
            if retention_i > d[_RETENTION]:
                d[_RETENTION] = retention_i
    return list(out.values())


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
