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
-> its held entries (a list, in id order), and a FIFO (deque) of each job's first
held entry, oldest first: expiry pops from its front. A job written because its
final came leaves a stale record in the FIFO (recognised: its first entry is no
longer the job's, or the job is gone), skipped when it reaches the front, and
the FIFO is rebuilt from the dict (whose order is the same: insertion = id
order) when stale records outnumber live ones, so it holds no more than about
twice the held jobs' first entries (the records keep the entries alive).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from operator import itemgetter
from typing import Any

from engine.history.record import FINAL_EVENTS_B

__all__ = ["EventHold"]

Batch = list[tuple[str, list[Any]]]

_entry_id = itemgetter(0)


class _Stream:
    """One stream's held jobs: job id -> entries (id order), and the FIFO of first entries."""

    __slots__ = ("jobs", "queue")

    def __init__(self) -> None:
        self.jobs: dict[bytes, list[Any]] = {}
        self.queue: deque[Any] = deque()

    def expire(self, cutoff: bytes, out: list[Any]) -> int:
        """Move every job whose first held entry's id is below ``cutoff`` to ``out``; the entries moved."""
        q, jobs = self.queue, self.jobs
        n = 0
        while q and q[0][0] < cutoff:
            e = q.popleft()
            lst = jobs.get(e[1][1])
            if lst is not None and lst[0] is e:
                del jobs[e[1][1]]
                out += lst
                n += len(lst)
        return n

    def pop_oldest(self, out: list[Any]) -> int:
        """Move the oldest held job to ``out``; the entries moved (0: none held)."""
        q, jobs = self.queue, self.jobs
        while q:
            e = q.popleft()
            lst = jobs.get(e[1][1])
            if lst is not None and lst[0] is e:
                del jobs[e[1][1]]
                out += lst
                return len(lst)
        return 0

    def front(self) -> Any:
        """The id of the oldest held job's first entry (stale records dropped), or None."""
        q, jobs = self.queue, self.jobs
        while q:
            e = q[0]
            lst = jobs.get(e[1][1])
            if lst is not None and lst[0] is e:
                return e[0]
            q.popleft()
        return None

    def compact(self) -> None:
        if len(self.queue) > 2 * len(self.jobs) + 1024:
            self.queue = deque(lst[0] for lst in self.jobs.values())


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
        self._streams: dict[str, _Stream] = {}
        self._newest_ms: int | None = None  # the newest entry id's ms read so far
        self._newest_at = 0.0  # when (``now``, seconds) it was read

    def __len__(self) -> int:
        return self.count

    def oldest_id(self) -> Any:
        """The smallest entry id held (over the streams), or None."""
        fronts = [f for f in (s.front() for s in self._streams.values()) if f is not None]
        return min(fronts) if fronts else None

    def release_all(self, batch: Batch | None = None) -> Batch:
        """Everything held, each stream's before that stream's entries of ``batch`` (if any)."""
        out: dict[str, list[Any]] = {}
        for stream, st in self._streams.items():
            if st.jobs:
                # in id order: the jobs' first entries are in id order, a job's later ones may
                # interleave with other jobs' (a job's own order is what the fold needs)
                out[stream] = [e for lst in st.jobs.values() for e in lst]
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
            st = streams.get(stream)
            if st is None:
                st = streams[stream] = _Stream()
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
            jobs = st.jobs
            now_out: list[Any] = []
            if jobs and finals:
                pop = jobs.pop
                for jid in finals:
                    lst = pop(jid, None)
                    if lst is not None:
                        now_out += lst
                        released += len(lst)
            hold = [e for e in maybe if e[1][1] not in finals] if finals else maybe
            if hold:
                out_ids = set(map(_entry_id, hold))
                now_out += es[:i]
                now_out += [e for e in es[i:] if e[0] not in out_ids]
                append = st.queue.append
                get = jobs.get
                for e in hold:
                    jid = e[1][1]
                    lst = get(jid)
                    if lst is None:
                        jobs[jid] = [e]
                        append(e)
                    else:
                        lst.append(e)
                added += len(hold)
            elif now_out:
                now_out += es
            else:
                now_out = es
            out[stream] = now_out
        self.count += added - released
        self.added += added
        # time: jobs whose first held entry is past the bound (every stream: a quiet one's too)
        expired: dict[str, list[Any]] = {}
        for stream, st in streams.items():
            if st.queue and st.queue[0][0] < cutoff:
                gone: list[Any] = []
                self.count -= st.expire(cutoff, gone)
                if gone:
                    expired[stream] = gone
        # count: the oldest jobs over the cap
        if self.count > self.max_entries:
            while self.count > self.max_entries:
                oldest = min(((f, s) for s, st in streams.items() if (f := st.front()) is not None), default=None)
                if oldest is None:
                    break
                gone = expired.setdefault(oldest[1], [])
                self.count -= streams[oldest[1]].pop_oldest(gone)
        for st in streams.values():
            st.compact()
        if expired:
            for stream, gone in expired.items():
                out[stream] = gone + out[stream] if stream in out else gone
        return list(out.items())
