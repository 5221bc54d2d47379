"""Events stream entries → PostgreSQL ``COPY`` text rows, one per job (sans-IO).

The PostgreSQL store writes a batch as COPY rows (engine/history/postgres.py).
`copy_rows` builds them straight from the bytes of the raw XREADGROUP reply:
no field is decoded to ``str`` (but the job id), no `JobDelta`, no record
tuple for asyncpg to encode field by field — each job's row is one
``b"\\t".join`` of the values as they came, the events map a JSON object
spliced from them. It folds a job's events with the same rules as
`engine.history.record.deltas_from_entries` (that module states them); a test
holds the two to the same rows.

COPY's text format gives meaning to four bytes: tab, newline, carriage return
and backslash (NULL is written as the control character 0x01, ``NULL``, so
that none of ours is a backslash). The engine's fields never hold them, so the
values go in as they are and the batch is checked as a whole (memchr, not a
look at each field): no newline or carriage return (one line per row, so no
value can forge a row), no backslash but the two of each bytea's ``\\x``,
UTF-8 throughout, and no quote in an event name or error (they go into JSON
strings). A batch that fails the check is folded the careful way:
`rows_from_deltas`, which escapes each field; so is a batch with a ``ts`` that
is not 13 ASCII digits (the engine stamps nothing else): times stay bytes, and
13 digits compare as their numbers do. What the check leaves to the
server makes the COPY fail with a data error — a tab inside a value (its line
has a field too many), a whole field equal to the NULL marker (NOT NULL), a
``parts`` Python reads as a number and PostgreSQL does not — and the
store then writes the batch the careful way too, where a malformed entry is
skipped as the fold has always skipped it. Either way a malformed entry cannot
stop the archive and cannot reach a row unescaped.

A row is the text of every column of ``COPY_COLUMNS`` but the last
(``updated_ms``), each followed by a tab: the store appends the commit's
time and the newline when it joins a group of rows into one COPY buffer.
"""

from __future__ import annotations

import datetime as dt
from binascii import a2b_base64, hexlify
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from engine.history.record import FINAL_EVENTS_B as _FINAL_B_SET
from engine.history.record import JobDelta, deltas_from_entries

__all__ = ["COPY_COLUMNS", "CopyBatch", "CopyJob", "copy_rows", "rows_from_deltas"]

#: The columns of a COPY row, in order (the stage table's too, engine/history/postgres.py).
COPY_COLUMNS = (
    "job_id", "day", "ref", "client", "kind", "carrier", "parts", "encoding", "message_ids",
    "to_hash", "to_mask", "first_ms", "submitted_ms", "final_state", "final_ms", "error",
    "events", "errors", "retention_until", "text_enc", "updated_ms",
)
_DAY_MS = 86_400_000
_EPOCH = dt.date(1970, 1, 1)
#: COPY's NULL: a control character no field of the engine holds (never a backslash,
#: so that a batch without a bytea has none: one memchr says so).
NULL = "\x01"
_NULL = NULL.encode()

#: One job's row: (job id (UTF-8), UTC day of its first event, the batch held its
#: first event, the COPY text of every column but ``updated_ms``, each ending in a tab).
CopyJob = tuple[bytes, int, bool, bytes]

_LAYOUT = (b"id", b"ref", b"event", b"carrier", b"parts", b"message_ids", b"error", b"ts")
_LAYOUT_FIRST = (*_LAYOUT, b"client", b"kind", b"to_hash", b"to_mask", b"encoding", b"retention_until")
_FIRST_ONLY = _LAYOUT_FIRST[len(_LAYOUT):]
# The names of the engine's layouts as lists: an entry's ``f[::2]`` is compared with
# them in one C call (no tuple built of locals, no name compared in bytecode).
_NAMES_SHORT = list(_LAYOUT)
_NAMES_FIRST = list(_LAYOUT_FIRST)
_NAMES_FIRST_TEXT = [*_LAYOUT_FIRST, b"text_enc"]

# Per-job state while folding: a list (the cheapest object to build) whose first 21
# items are the row's fields in COPY_COLUMNS order, ready to be joined (the last, b"",
# gives the row its closing tab), followed by the integers the merge compares.
_JID, _DAY, _REF, _CLIENT, _KIND, _CARRIER, _PARTS, _ENCODING, _MIDS, _HASH, _MASK = range(11)
_FIRST_B, _SUB_B, _FINAL_STATE, _FINAL_B, _ERROR, _EVENTS, _ERRORS, _RETENTION, _TEXT = range(11, 20)
_HAS_FIRST, _DAY_N = range(21, 23)
_EVEN, _ODD, _CUT, _ROW = slice(None, None, 2), slice(1, None, 2), slice(None, -1), slice(21)


class CopyBatch:
    """A folded batch for the PostgreSQL store: its rows, and the entries they came
    from (the careful fold's input when the server refuses a row)."""

    __slots__ = ("entries", "jobs")

    def __init__(self, jobs: list[CopyJob], entries: Sequence[tuple[Any, Any]] | None) -> None:
        self.jobs = jobs
        self.entries = entries

    def __len__(self) -> int:  # rows, as a list of deltas would say
        return len(self.jobs)


_days: dict[int, bytes] = {}
#: Event name -> ``{"name":`` (a job's first event in the batch opens its events
#: object) and ``,"name":`` (a later one), for names that go into a JSON string as
#: they are (the engine's dozen; remembered, up to 1,000 names).
_OPEN_KEYS: dict[bytes, bytes] = {}
_MORE_KEYS: dict[bytes, bytes] = {}


def _plain_name(name: bytes) -> bool:
    """Whether ``name`` is a JSON string's content as it is (no quote, backslash or
    control character, ASCII); remembered in the key maps when it is."""
    if b'"' in name or b"\\" in name or not name.isascii() or any(c < 0x20 for c in name):
        return False
    if len(_OPEN_KEYS) < 1000:
        _OPEN_KEYS[name] = b'{"' + name + b'":'
        _MORE_KEYS[name] = b',"' + name + b'":'
    return True


def _day_text(day: int) -> bytes:
    text = _days.get(day)
    if text is None:
        if len(_days) > 1000:
            _days.clear()
        text = _days[day] = (_EPOCH + dt.timedelta(days=day)).isoformat().encode()
    return text


# (jid, ref, event, carrier, parts, message_ids, error, ts, describe, client, kind,
#  to_hash, to_mask, encoding, retention_until, text_enc) of an entry read by name.
_Named = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes, bool,
               bytes, bytes, bytes, bytes, bytes, bytes, Any]


def _by_name(f: Any) -> _Named:
    """An entry's values by name: any field order, a missing or an extra field, or a
    mapping (a parsed reply); absent fields are empty."""
    if f.__class__ is list:
        it = iter(f)
        f = dict(zip(it, it, strict=True))
    g = f.get
    describe = any(k in f for k in _FIRST_ONLY)
    return (g(b"id") or b"", g(b"ref") or b"", g(b"event") or b"", g(b"carrier") or b"", g(b"parts") or b"",
            g(b"message_ids") or b"", g(b"error") or b"", g(b"ts") or b"", describe,
            g(b"client") or b"", g(b"kind") or b"", g(b"to_hash") or b"", g(b"to_mask") or b"",
            g(b"encoding") or b"", g(b"retention_until") or b"", g(b"text_enc"))


def copy_rows(entries: Sequence[tuple[Any, Any]]) -> CopyBatch:
    """Fold stream entries (``(entry_id, fields)``, fields the raw reply's flat
    ``[name, value, …]`` list or a mapping of bytes) into one COPY row per job.

    Entries without ``id`` or ``event``, or with a ``parts`` or ``retention_until``
    that is no integer or a ``text_enc`` that is no base64, are skipped (as
    `deltas_from_entries` skips them). When the batch's bytes fail the check of the
    module docstring, or an event's ``ts`` is not the 13 digits of a time in ms (the
    engine writes nothing else; ``int()`` would read more), the rows come from
    `rows_from_deltas` instead.

    Times stay bytes: 13 digits compare as their numbers do, so ``int()`` runs only
    for a day not seen yet (one range check an event otherwise). The engine's two
    layouts (a job's describing first event, a later event) have a path each, with
    nothing to decide that the layout already says; anything else takes the general
    path, which the same rules apply to.
    """
    out: dict[bytes, list[Any]] = {}
    get_state = out.get
    final_b = _FINAL_B_SET
    n8, n14, n15 = _NAMES_SHORT, _NAMES_FIRST, _NAMES_FIRST_TEXT
    open_keys, more_keys = _OPEN_KEYS, _MORE_KEYS
    join = b"".join
    even, odd, cut, row = _EVEN, _ODD, _CUT, _ROW  # slices made once (f[::2] builds one each time)
    null = _NULL
    # The UTC day of the last time that needed one: [day_lo, day_hi) as 13 digits.
    day_lo = day_hi = day_b = b""
    day_n = 0
    texts = 0
    safe = True  # every event name and error goes into a JSON string as it is
    for _eid, f in entries:
        names = f[even] if f.__class__ is list else None
        if names == n8:
            # A later event of a job (a receipt, an attempt): no describing field, no text.
            jid, ref, ev, carrier, parts, mids, error, ts_b = f[odd]
            if not jid or not ev:
                continue
            if len(ts_b) != 13 or not ts_b.isdigit():
                return _careful(entries)
            if parts != b"1":
                try:
                    if not parts or not int(parts):
                        parts = b""
                except ValueError:
                    continue
            s = get_state(jid)
            if s is None:
                okey = open_keys.get(ev)
                if okey is None:
                    if not _plain_name(ev):
                        safe = False
                    okey = b'{"' + ev + b'":'
                if not day_lo <= ts_b < day_hi:
                    day_n, day_b, day_lo, day_hi = _day_of(ts_b)
                if error:
                    errors = join((okey, b'"', error, b'"}'))
                    if b'"' in error:
                        safe = False
                else:
                    errors = b"{}"
                if ev in final_b:
                    out[jid] = [
                        jid, day_b, ref, b"", b"", carrier, parts or b"0", b"", mids, b"", b"",
                        ts_b, null, ev, ts_b, error, join((okey, ts_b, b"}")), errors, b"0", null, b"",
                        False, day_n,
                    ]
                else:
                    out[jid] = [
                        jid, day_b, ref, b"", b"", carrier, parts or b"0", b"", mids, b"", b"",
                        ts_b, ts_b if ev == b"submitted" else null, b"", null, error, join((okey, ts_b, b"}")),
                        errors, b"0", null, b"", False, day_n,
                    ]
                continue
            ckey = more_keys.get(ev)
            if ckey is None:
                if not _plain_name(ev):
                    safe = False
                ckey = b',"' + ev + b'":'
            if ts_b < s[_FIRST_B]:
                s[_FIRST_B] = ts_b
                if not day_lo <= ts_b < day_hi:
                    day_n, day_b, day_lo, day_hi = _day_of(ts_b)
                s[_DAY_N] = day_n
                s[_DAY] = day_b
            # A key twice in one JSON object: jsonb keeps the last, as the dict of the fold does.
            s[_EVENTS] = join((s[_EVENTS][cut], ckey, ts_b, b"}"))
            if ref:
                s[_REF] = ref
            if carrier:
                s[_CARRIER] = carrier
            if parts:
                s[_PARTS] = parts
            if mids:
                s[_MIDS] = mids
            if error:
                s[_ERROR] = error
                if b'"' in error:
                    safe = False
                e = s[_ERRORS]
                s[_ERRORS] = join((b"{", ckey[1:], b'"', error, b'"}')) if e == b"{}" else join(
                    (e[cut], ckey, b'"', error, b'"}'))
            if ev in final_b:
                if s[_FINAL_B] is null or ts_b >= s[_FINAL_B]:
                    s[_FINAL_B] = ts_b
                    s[_FINAL_STATE] = ev
            elif ev == b"submitted" and (s[_SUB_B] is null or ts_b < s[_SUB_B]):
                s[_SUB_B] = ts_b
            continue
        if names == n14:
            # A job's describing (first) event, without a text.
            (jid, ref, ev, carrier, parts, mids, error, ts_b, client, kind, to_hash, to_mask, encoding,
             retention) = f[odd]
            if not jid or not ev:
                continue
            if len(ts_b) != 13 or not ts_b.isdigit():
                return _careful(entries)
            try:
                if parts != b"1" and (not parts or not int(parts)):
                    parts = b""
                if not retention.isdigit():
                    retention = retention if retention and int(retention) > 0 else b"0"
            except ValueError:
                continue
            s = get_state(jid)
            if s is None:
                okey = open_keys.get(ev)
                if okey is None:
                    if not _plain_name(ev):
                        safe = False
                    okey = b'{"' + ev + b'":'
                if not day_lo <= ts_b < day_hi:
                    day_n, day_b, day_lo, day_hi = _day_of(ts_b)
                if error:
                    errors = join((okey, b'"', error, b'"}'))
                    if b'"' in error:
                        safe = False
                else:
                    errors = b"{}"
                if ev == b"submitted":
                    out[jid] = [
                        jid, day_b, ref, client, kind, carrier, parts or b"0", encoding, mids, to_hash, to_mask,
                        ts_b, ts_b, b"", null, error, join((okey, ts_b, b"}")), errors, retention, null, b"",
                        True, day_n,
                    ]
                elif ev in final_b:
                    out[jid] = [
                        jid, day_b, ref, client, kind, carrier, parts or b"0", encoding, mids, to_hash, to_mask,
                        ts_b, null, ev, ts_b, error, join((okey, ts_b, b"}")), errors, retention, null, b"",
                        True, day_n,
                    ]
                else:
                    out[jid] = [
                        jid, day_b, ref, client, kind, carrier, parts or b"0", encoding, mids, to_hash, to_mask,
                        ts_b, null, b"", null, error, join((okey, ts_b, b"}")), errors, retention, null, b"",
                        True, day_n,
                    ]
                continue
            describe = True
            text = null
        else:
            text_b = None
            if names == n15:
                (jid, ref, ev, carrier, parts, mids, error, ts_b, client, kind, to_hash, to_mask, encoding, retention,
                 text_b) = f[odd]
                describe = True
            else:
                (jid, ref, ev, carrier, parts, mids, error, ts_b, describe, client, kind, to_hash, to_mask, encoding,
                 retention, text_b) = _by_name(f)
            # A job's describing event (or an entry read by name): the general path.
            if not jid or not ev:
                continue
            if len(ts_b) != 13 or not ts_b.isdigit():
                return _careful(entries)
            try:  # every conversion first, so a malformed entry changes nothing
                if parts != b"1" and (not parts or not int(parts)):
                    parts = b""
                if describe and not retention.isdigit():
                    retention = retention if retention and int(retention) > 0 else b"0"
                text = b"\\\\x" + hexlify(a2b_base64(text_b, strict_mode=True)) if text_b else null
            except ValueError:
                continue
            s = get_state(jid)
            if s is None:  # the common case (a job's first event in the batch): one list, no stores
                okey = open_keys.get(ev)
                if okey is None:
                    if not _plain_name(ev):
                        safe = False
                    okey = b'{"' + ev + b'":'
                if not day_lo <= ts_b < day_hi:
                    day_n, day_b, day_lo, day_hi = _day_of(ts_b)
                if text is not null:
                    texts += 1
                if error:
                    errors = join((okey, b'"', error, b'"}'))
                    if b'"' in error:
                        safe = False
                else:
                    errors = b"{}"
                events = join((okey, ts_b, b"}"))
                if describe:
                    if ev == b"submitted":
                        out[jid] = [
                            jid, day_b, ref, client, kind, carrier, parts or b"0", encoding, mids, to_hash, to_mask,
                            ts_b, ts_b, b"", null, error, events, errors, retention, text, b"", True, day_n,
                        ]
                        continue
                    final = ev in final_b
                    out[jid] = [
                        jid, day_b, ref, client, kind, carrier, parts or b"0", encoding, mids, to_hash, to_mask,
                        ts_b, null, ev if final else b"", ts_b if final else null, error, events, errors, retention,
                        text, b"", True, day_n,
                    ]
                elif ev in final_b:
                    out[jid] = [
                        jid, day_b, ref, b"", b"", carrier, parts or b"0", b"", mids, b"", b"",
                        ts_b, null, ev, ts_b, error, events, errors, b"0", text, b"", False, day_n,
                    ]
                else:
                    out[jid] = [
                        jid, day_b, ref, b"", b"", carrier, parts or b"0", b"", mids, b"", b"",
                        ts_b, ts_b if ev == b"submitted" else null, b"", null, error, events, errors, b"0", text, b"",
                        False, day_n,
                    ]
                continue
        # A job's later event in the batch: merged into its state.
        ckey = more_keys.get(ev)
        if ckey is None:
            if not _plain_name(ev):
                safe = False
            ckey = b',"' + ev + b'":'
        if ts_b < s[_FIRST_B]:
            s[_FIRST_B] = ts_b
            if not day_lo <= ts_b < day_hi:
                day_n, day_b, day_lo, day_hi = _day_of(ts_b)
            s[_DAY_N] = day_n
            s[_DAY] = day_b
        s[_EVENTS] = join((s[_EVENTS][cut], ckey, ts_b, b"}"))
        if ref:
            s[_REF] = ref
        if carrier:
            s[_CARRIER] = carrier
        if parts:
            s[_PARTS] = parts
        if mids:
            s[_MIDS] = mids
        if error:
            s[_ERROR] = error
            if b'"' in error:
                safe = False
            e = s[_ERRORS]
            s[_ERRORS] = join((b"{", ckey[1:], b'"', error, b'"}')) if e == b"{}" else join(
                (e[cut], ckey, b'"', error, b'"}'))
        if ev in final_b:
            if s[_FINAL_B] is null or ts_b >= s[_FINAL_B]:
                s[_FINAL_B] = ts_b
                s[_FINAL_STATE] = ev
        elif ev == b"submitted" and (s[_SUB_B] is null or ts_b < s[_SUB_B]):
            s[_SUB_B] = ts_b
        if text is not null and s[_TEXT] is null:
            s[_TEXT] = text
            texts += 1
        if describe:
            s[_HAS_FIRST] = True
            if client:
                s[_CLIENT] = client
            if kind:
                s[_KIND] = kind
            if to_hash:
                s[_HASH] = to_hash
            if to_mask:
                s[_MASK] = to_mask
            if encoding:
                s[_ENCODING] = encoding
            if int(retention) > int(s[_RETENTION]):
                s[_RETENTION] = retention
    tab = b"\t".join
    jobs = [(jid, s[_DAY_N], s[_HAS_FIRST], tab(s[row])) for jid, s in out.items()]
    if not safe or not _copy_safe(jobs, texts):
        return _careful(entries)
    return CopyBatch(jobs, entries)


def _careful(entries: Sequence[tuple[Any, Any]]) -> CopyBatch:
    """The batch folded the careful way: every field escaped (no retry needed)."""
    return CopyBatch(rows_from_deltas(deltas_from_entries(entries)), None)


def _day_of(ts_b: bytes) -> tuple[int, bytes, bytes, bytes]:
    """The UTC day of a time in ms (13 digits): its number, its text, and its range
    [lo, hi) as 13 digits (a time in it compares as bytes)."""
    day = int(ts_b) // _DAY_MS
    return day, _day_text(day), b"%013d" % (day * _DAY_MS), b"%013d" % ((day + 1) * _DAY_MS)


def _copy_safe(jobs: list[CopyJob], texts: int) -> bool:
    """Whether rows built from raw values mean in COPY's text format what they say: one
    line each, every backslash ours, UTF-8. (A tab inside a value makes its line one
    field too long, which the server refuses: the store then writes the careful rows.)"""
    buf = b"".join([j[3] for j in jobs])
    if b"\n" in buf or b"\r" in buf or b"\x00" in buf:
        return False
    # The only backslashes: a bytea's "\\x", two each.
    if b"\\" in buf and buf.count(b"\\") != 2 * texts:
        return False
    if not buf.isascii():
        try:
            buf.decode()
        except UnicodeDecodeError:
            return False
    return True


# ------------------------------------------------------------------ careful path
# NUL: no PostgreSQL text holds one (not even escaped): it becomes U+FFFD, so an
# event that carries one (written before job validation refused them) cannot stop
# the archive.
_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", NULL: "\\x01", "\x00": "\ufffd"})


def _text(value: str) -> str:
    return value.translate(_ESCAPE)


def rows_from_deltas(deltas: Iterable[JobDelta]) -> list[CopyJob]:
    """The COPY rows of deltas, every field escaped (NUL replaced by U+FFFD)."""
    dumps = orjson.dumps
    jobs: list[CopyJob] = []
    for d in deltas:
        (job_id, first_ms, ref, client, kind, carrier, parts, encoding, mids, to_hash, to_mask, error, retention,
         submitted_ms, final_state, final_ms, events, errors, has_first, text_enc) = d
        day = first_ms // _DAY_MS
        row = "\t".join((
            _text(job_id), (_EPOCH + dt.timedelta(days=day)).isoformat(), _text(ref), _text(client), _text(kind),
            _text(carrier), str(parts), _text(encoding), _text(mids), _text(to_hash), _text(to_mask), str(first_ms),
            NULL if submitted_ms is None else str(submitted_ms), _text(final_state),
            NULL if final_ms is None else str(final_ms), _text(error), _text(dumps(events).decode()),
            _text(dumps(errors).decode()) if errors else "{}", str(retention),
            NULL if text_enc is None else "\\\\x" + text_enc.hex(), "",
        ))
        jobs.append((job_id.encode(), day, bool(has_first), row.encode()))
    return jobs
