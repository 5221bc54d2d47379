"""The archiver's hold: a job's non-final events kept back until its final event comes (sans-IO).

Why: the store writes one row per job. When a job's ``submitted`` event and its
receipt's final event are archived in different rounds, the row is COPYed and
then UPDATEd (PostgreSQL: about twice the archive's CPU per job, child and
backends). Receipts come seconds after the submit (a busy box, a carrier that
takes its time), later than one round (``settle_ms``). So the archiver holds a
job's non-final events (``submitted`` with a receipt to come, ``enroute``,
``accepted``) until its final event is read, and writes them together: one
COPYed row.

Held entries were read and are not acknowledged: they stay in the group's
pending list (the trimmer keeps them, `Archiver.lag` counts them, a restart
reads them again with id ``0``). They are acknowledged with the batch that
writes them, after its commit.

Bounds:

- **time**: an entry is written once it is more than ``hold_ms`` older (by its
  entry id's milliseconds, Redis' clock) than the newest entry read; while reads
  bring nothing (a quiet stream) that "now" moves on with the wall clock, so a
  quiet stream's last jobs are written ``hold_ms`` later, not never. Entries
  already that old when read are never held (a backlog's, say);
- **count**: at most ``max_entries`` held; beyond, the oldest jobs are written.

A job's events leave the hold together (the job is one row), and in id order
before the batch's own entries of that stream (a job's held entries are older
than its new ones).

Cost per round: O(entries read), not O(entries held). Per stream a dict job id
-> its held entry (or entries, a `_Many` list, in id order), in the order the
jobs were first held, which is the id order of their first held entries: expiry
takes jobs from the dict's front until one is young enough; a job written
because its final came is popped where it is. The common round (jobs new to the
hold, one entry each) goes into the dict in one ``update`` (C), and the jobs a
round's finals release are found by a set intersection (C, over the smaller of
the two). (CPython's dict keeps the holes of popped jobs until it resizes, so the
walk from the front skips up to about twice the held jobs' slots, in C: ~0.1 ms a
round for 100,000.)
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import repeat
from operator import itemgetter
from typing import Any

from engine.history.record import FINAL_EVENTS_B

__all__ = ["EventHold"]

Batch = list[tuple[str, list[Any]]]

_entry_id = itemgetter(0)
_fields = itemgetter(1)
_job_of = itemgetter(1)  # the job id: a field list's second item (the engine's layout: ``id`` first)


class _Many(list):  # type: ignore[type-arg]
    """A job's held entries when it has more than one (a plain entry is a list too)."""

    __slots__ = ()


def _first_id(v: Any) -> Any:
    return v[0][0] if v.__class__ is _Many else v[0]


def _extend(out: list[Any], v: Any) -> int:
    if v.__class__ is _Many:
        out += v
        return len(v)
    out.append(v)
    return 1


class EventHold:
    """What the archiver holds back between rounds (see the module docstring).

    `split` takes a round's read (per stream, entries in id order, ids as bytes: the
    raw reply) and returns what to write now: the read's entries that are not held,
    with the held entries that leave the hold before them. `release_all` empties it."""

    def __init__(self, hold_ms: int, max_entries: int = 100_000) -> None:
        self.hold_ms = hold_ms
        self.max_entries = max_entries
        self.count = 0  # entries held now
        self.added = 0  # entries put on hold so far
        self._streams: dict[str, dict[bytes, Any]] = {}
        self._newest_ms: int | None = None  # the newest entry id's ms read so far
        self._newest_at = 0.0  # when (``now``, seconds) it was read

    def __len__(self) -> int:
        return self.count

    def oldest_id(self) -> Any:
        """The smallest entry id held (over the streams), or None."""
        fronts = [_first_id(next(iter(jobs.values()))) for jobs in self._streams.values() if jobs]
        return min(fronts) if fronts else None

    def holds(self, stream: str, entry_id: Any, job_id: Any) -> bool:
        """Whether this entry (id and job id, bytes or str) is held now."""
        jobs = self._streams.get(stream)
        if not jobs:
            return False
        v = jobs.get(job_id.encode() if isinstance(job_id, str) else job_id)
        if v is None:
            return False
        eid = entry_id.encode() if isinstance(entry_id, str) else entry_id
        return any(e[0] == eid for e in v) if v.__class__ is _Many else bool(v[0] == eid)

    def release_all(self, batch: Batch | None = None) -> Batch:
        """Everything held, each stream's before that stream's entries of ``batch`` (if any)."""
        out: dict[str, list[Any]] = {}
        for stream, jobs in self._streams.items():
            if jobs:
                got: list[Any] = []
                for v in jobs.values():
                    _extend(got, v)
                out[stream] = got
        self._streams.clear()
        self.count = 0
        if batch is None:
            return list(out.items())
        merged = [(stream, out.pop(stream) + es if stream in out else es) for stream, es in batch]
        merged += out.items()
        return merged

    def clear(self) -> None:
        """Forget what is held (the entries are pending: read again with id ``0``)."""
        self._streams.clear()
        self.count = 0

    def split(self, batch: Batch, now: float) -> Batch:
        """A round's read -> what to write now (per stream); holds the rest. ``now``:
        a monotonic clock in seconds (moves the hold's "now" on while reads bring nothing)."""
        newest = max((es[-1][0] for _s, es in batch if es), default=None)
        if newest is None:  # nothing read: "now" is the newest read, plus the time since
            if self._newest_ms is None or not self.count:
                return batch if any(es for _s, es in batch) else []
            stream_ms = self._newest_ms + int((now - self._newest_at) * 1000)
        else:
            ms = newest.partition(b"-")[0] if newest.__class__ is bytes else b""
            if len(ms) != 13 or not ms.isdigit():
                return self.release_all(batch)  # ids that are no raw reply's: nothing held
            stream_ms = int(ms)
            if self._newest_ms is None or stream_ms > self._newest_ms:
                self._newest_ms, self._newest_at = stream_ms, now
            else:  # (another stream's entries, older than the newest read before)
                stream_ms = self._newest_ms
        cutoff = b"%013d" % max(0, stream_ms - self.hold_ms)  # 13 digits compare as their times do
        final_b = FINAL_EVENTS_B
        out: dict[str, list[Any]] = {}
        streams = self._streams
        added = released = 0
        for stream, es in batch:
            if not es:
                continue
            jobs = streams.get(stream)
            if jobs is None:
                jobs = streams[stream] = {}
            i = bisect_left(es, cutoff, key=_entry_id)  # older than the bound: never held
            finals: set[bytes] = set()
            maybe: list[Any] = []
            for e in es[i:]:
                f = e[1]
                if f.__class__ is not list or len(f) < 6 or f[0] != b"id" or f[4] != b"event":
                    continue
                if f[5] in final_b:
                    finals.add(f[1])
                else:
                    maybe.append(e)
            now_out: list[Any] = []
            if jobs and finals:
                # the held jobs these finals end (C): look the finals up when fewer than the
                # jobs held, else intersect over the jobs (few held: receipts within a batch)
                if len(finals) <= len(jobs):
                    vals = list(filter(None, map(jobs.pop, finals, repeat(None))))
                else:
                    vals = list(map(jobs.pop, jobs.keys() & finals))
                if vals:  # (a job's own entries in id order; the jobs in any)
                    if _Many in set(map(type, vals)):
                        for v in vals:
                            released += _extend(now_out, v)
                    else:
                        now_out += vals
                        released += len(vals)
            hold = [e for e in maybe if e[1][1] not in finals] if finals else maybe
            if hold:
                out_ids = set(map(_entry_id, hold))
                now_out += es[:i]
                now_out += [e for e in es[i:] if e[0] not in out_ids]
                ids = list(map(_job_of, map(_fields, hold)))
                if len(set(ids)) == len(ids) and jobs.keys().isdisjoint(ids):
                    jobs.update(zip(ids, hold, strict=True))  # the usual round: new jobs, one entry each
                else:
                    for jid, e in zip(ids, hold, strict=True):
                        v = jobs.get(jid)
                        if v is None:
                            jobs[jid] = e
                        elif v.__class__ is _Many:
                            v.append(e)
                        else:
                            jobs[jid] = _Many((v, e))
                added += len(hold)
            elif now_out:
                now_out += es
            else:
                now_out = es
            out[stream] = now_out
        self.count += added - released
        self.added += added
        # time: jobs whose first held entry is past the bound, from each dict's front
        # (every stream: a quiet one's too)
        expired: dict[str, list[Any]] = {}
        for stream, jobs in streams.items():
            if not jobs:
                continue
            old: list[bytes] = []
            for jid, v in jobs.items():
                if _first_id(v) >= cutoff:
                    break
                old.append(jid)
            if old:
                gone: list[Any] = []
                pop = jobs.pop
                for jid in old:
                    self.count -= _extend(gone, pop(jid))
                expired[stream] = gone
        # count: the oldest jobs over the cap
        if self.count > self.max_entries:
            self._over_cap(expired)
        if expired:
            for stream, gone in expired.items():
                out[stream] = gone + out[stream] if stream in out else gone
        return list(out.items())

    def _over_cap(self, expired: dict[str, list[Any]]) -> None:
        """Write the oldest jobs (over the streams) until at most ``max_entries`` are held."""
        excess = self.count - self.max_entries
        front: list[tuple[Any, str, bytes, int]] = []
        for stream, jobs in self._streams.items():
            n = 0
            for jid, v in jobs.items():
                if n >= excess:
                    break
                k = len(v) if v.__class__ is _Many else 1
                front.append((_first_id(v), stream, jid, k))
                n += k
        front.sort()
        for _id, stream, jid, _k in front:
            if self.count <= self.max_entries:
                break
            self.count -= _extend(expired.setdefault(stream, []), self._streams[stream].pop(jid))
