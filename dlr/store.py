r"""Receipt correlation store: a batch of receipts in, job events out, one script call.

Why one Lua script per batch
----------------------------
Every receipt needs a lookup (carrier message id → job), a write on the job
record, maybe an event, and a delete. Done as separate redis-py commands that
is ~12 µs of Python per command; done inside ``dlr/correlate.lua`` it is one
EVALSHA per batch (docs/INTERNALS.md, "Where the time goes"), and the read-modify-write
of a multipart job is atomic, so two receipts of one job racing on two engine
processes still yield exactly one final event.

What the submit side must write
-------------------------------
The engine's record script (engine/record.lua) writes one correlation entry
per part that asked for a receipt, under the id normalised by
``normalize_id(id, fmt, side="submit")``, in one of two forms. The general
form, ``<part>:<submitted_ms>:<job id>``, for a job of several parts or with
a callback: such a job also gets a job record (``parts``, ``message_ids``,
``submitted_ms``, ``callback``, ``ref``, ``carrier``, ``state``), which its
receipts read and which lives the receipt wait (twice, plus two bucket spans
and the grace: the sweep may run late), then only ``record_grace_s`` after
the job's final event. Not written by the submit side: ``done`` and
``s:<n>``/``e:<n>`` (this script's; HINCRBY on a missing ``done`` starts
at 0). The fast form (below) for every other job: no job record at all.

Correlation entries live in *buckets*, one hash per carrier and span of
receipt deadlines (:func:`correlation_bucket`: the deadline, submit time plus
the carrier's ``dlr_wait`` capped by the message retention, rounded up to a
64th of that wait)::

    P:dlr:c:<carrier>:<end_ms>   hash   normalised id -> entry
    P:dlr:idx:<carrier>          zset   the carrier's bucket ends (member = score = end_ms)
    P:dlr:due                    zset   "<end_ms>:<carrier>" scored by end_ms

A batch writes its entries with one ``HSET`` per carrier, lowers the
bucket's expiry to its own (never raises it), and adds the bucket to both
sorted sets (:func:`put_correlation` writes the same layout outside a batch). Why buckets, not a key per entry plus a sorted set
of deadlines per job: a key with a TTL and a sorted-set member per job, each
written at submit and removed at the receipt, cost Redis about 12 µs per job
against about 5 for a hash field per part (script microbench, 1,000 ids per
call, 300k other keys; bench/RESULTS.md, "Session 6"). The bucket is the
deadline too: the expiry sweep (:meth:`ReceiptStore.expire_overdue`) takes
the buckets whose end passed from ``P:dlr:due``, gives the jobs of the
entries left in them their final event and deletes the bucket.

A receipt's lookup probes the carrier's buckets newest first with one
``HMGET`` per bucket for the ids not found yet; a receipt a few seconds after
its submit finds its entry in the newest, so a batch usually costs one
``HMGET``. A part's final receipt deletes its field (one ``HDEL`` per bucket
per call).

In addition, for jobs that asked for a receipt (``dlr`` = "1"):

* optional job field ``dlr_ids``: the comma-joined *normalised* ids in part
  order, when they differ from ``message_ids`` (erasure finds the entries by
  it, else by ``message_ids``).
* optional job field ``expect``: how many parts asked for a receipt when it
  is fewer than ``parts`` — the *last* ``expect`` parts (carriers configured
  to request a receipt on the last part only). The job is then final once
  those parts have theirs, and only their states are aggregated and listed
  in ``part_states``. Absent, 0 or ≥ ``parts``: every part.
* the job record (at least ``parts`` and ``state``) no later than its first
  general-form correlation entry; such an entry without a job record is
  retried like an unmatched receipt (an orphan).

The fast path (single-part jobs without callback)
-------------------------------------------------
Most jobs are one part and have no callback URL. For those the submit side
writes the correlation entry in a second form that carries what the receipt's
event needs::

    <normalised id> -> "=<submitted_ms>US<message_ids>US<ref>US<job id>"

(US = 0x1F; the job id is last and may hold anything; a ``ref`` or message id
holding US keeps the general form). The entry is self-sufficient: such a job
has no job record. A final receipt for it costs the script one command of its
own, the ``XADD`` of the event; the lookup (``HMGET``) and the retirement of
the entry (``HDEL`` and ``SADD``, below) serve the whole batch. An
intermediate receipt rewrites the entry with its state,
``=<submitted_ms>:<state>US…`` (one event per change of state), and the
expiry sweep gives an entry left at its deadline the event ``unknown``
(``dlr_timeout``) from the entry alone. Redis CPU per receipt:
bench/RESULTS.md. Erasure (``privacy_hooks.erasure``) blanks the ``ref`` of a
hidden job's fast entries, so it is not published.

Arguments are grouped: receipts sharing (final, event, error) travel as
one group followed by their ids, so the script parses nothing per receipt; the script
answers one status letter per receipt in argument order (``f`` for a fast-path
final, whose job id and ``submitted_ms`` come in a flat list), and whole
events only for the general path.

Keys this module writes besides the job record and ``P:events``:

* ``P:dlr:dup:<carrier>:<n>`` sets: a part's final receipt deletes its
  correlation entry and puts its normalised id in the carrier's set of the
  current *span*, a tenth of ``duplicate_window_ms`` (default 10 min) of Redis
  time (``TIME``: one clock for every engine). A receipt without entry whose
  id is in one of the carrier's spans of the last window is counted as a
  duplicate (SMSCs resend a deliver_sm whose resp they missed) instead of
  waiting and landing as unmatched. One ``SADD`` per call instead of a
  tombstone per receipt, and no key per receipt for Redis to expire; the
  members are the receipts' own arguments, so the script makes no string per
  receipt for them (layout 7: ~1k instructions per receipt less than layout
  6's ``<carrier>US<id>`` tokens, bench/RESULTS.md "luacost2"). A carrier's
  apply call that retires entries unlinks that carrier's spans that ended a
  window and a span ago (three of them), so their memory is freed off Redis's
  main thread; their TTL, a span later, frees them only when no such call
  came. The sets hold carrier message ids: no job id and no personal data.
  Needs Redis 6.2 (``SMISMEMBER``), as ``XAUTOCLAIM`` already does.

  The upgrade from layout 6 (and before): its spans, ``P:dlr:dup:<n>`` with every
  carrier's ``<carrier>US<id>``, are never written now but still read: a
  receipt found in none of its carrier's spans is looked up there too while
  one of the window's exists (one ``EXISTS`` of the window's names per call
  with such receipts; the tokens are made only then), so a receipt resent
  across the upgrade is still a duplicate. The sweep (``expire_overdue``)
  unlinks them as before; they are gone a window and two spans after the
  last layout-6 engine stopped. An engine of layout 6 still running beside
  one of layout 7 does not read the new spans (a receipt retired by the new
  engine and resent to the old one waits and is parked as unmatched: no
  event twice, none lost): stop them first, as for any layout bump.
* ``P:dlr:unmatched`` stream: receipts with no correlation entry after the
  caller's bounded wait (``park_unmatched``): ``carrier``, ``message_id``,
  ``event``, ``error``, ``ts``, ``reason``.
* ``P:dlr:invalid`` stream: receipts that could not be parsed
  (``park_invalid``): ``carrier``, ``reason``, ``ts`` and the raw fields, with
  the message text after ``text:`` and any address removed.

* ``P:dlr:call:<token>`` (2 min): the reply of an apply call that published an
  event for a job with a callback, kept under the call's token (a hash of its
  arguments). The same call sent again, as after a reply lost with its
  connection, gets that reply back instead of "duplicate" for every receipt,
  so the caller still forwards those events: webhooks are at least once. The
  engine resends a failed batch unchanged (``engine/receipt_sink.py``) for this.
  A call without such events keeps nothing; sent again, it counts its
  receipts as duplicates (their events are in ``P:events`` already).

The events stream is not trimmed here: the engine's trimmer
(engine/stream_trim.py) trims it behind the history archiver, once a minute.
``stream_maxlen`` caps the unmatched and invalid receipt streams.

Unmatched receipts
------------------
A receipt can overtake the bookkeeping of its own submit_sm_resp (the resp
is recorded with the next batch's script call). ``apply`` returns such
receipts in ``BatchResult.unmatched``; the caller keeps them in an
:class:`UnmatchedBuffer`, retries them after ``retry_ms``, and after
``max_wait_ms`` parks them with :meth:`ReceiptStore.park_unmatched`.

Stage, then publish (privacy hooks)
-----------------------------------
With custom privacy hooks the engine must show the events a batch composes
to the hooks before they are published (engine/receipt_hooks.py). Then it
runs the script with dlr/correlate_steps.lua inserted (its own SHA: the
one-call path's script is unchanged and pays nothing for it):
:meth:`ReceiptStore.stage` (``apply:stage``, at most 1,000 receipts) does
everything one apply call does — entries consumed, job records updated, the
duplicate window — but each event it composes is kept instead of XADDed:
all of the call's together, as one field of ``P:dlr:staged`` (the call's
token -> ``<Redis ms>:`` then cmsgpack of the events: a fast-path final as
three strings, its job id, ref and message ids, plus the receipt group's
fields once per run; any other event as its field list with its job's
callback and submit time), and returned in the reply. The hooks run over
them; :meth:`ReceiptStore.publish_staged` (dlr/publish_staged.lua) XADDs
them with the hooks' edits and ``HDEL``\ s the field in one call, only if
the field still holds the value the hooks saw (its length: an erasure only
ever drops events, ``erase_staged``): a batch is published once, by
whichever engine gets there first (the recovery pass,
``engine/receipt_hooks.py``). The same stage call sent again after its reply
was lost finds its field and answers it (``R``) instead of running. The
sweep the same way: :meth:`ReceiptStore.stage_expire` (``expire:stage``).
:meth:`ReceiptStore.park_staged` gives a batch up (a hook failing every
try): its events to ``P:dlr:unmatched``, reason ``hook_failed``, the field
deleted, in one call. Staged values hold msgpack: read them with a client
without ``decode_responses`` (the engine's).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dlr.aggregate import SEVERITY
from dlr.ids import normalize_id
from dlr.receipt_parse import Receipt, scan_body
from engine.keys import Keys, Positions, lua_header

__all__ = [
    "APPLY_ARGS",
    "ARGS",
    "BUCKETS_PER_WAIT",
    "CORR_ENTRY",
    "EXPIRE_ARGS",
    "GROUP",
    "KEYS_",
    "LAYOUT_VERSION",
    "STAGE_ARGS",
    "BatchResult",
    "JobEvent",
    "ReceiptRecord",
    "ReceiptStore",
    "StagedBatch",
    "UnmatchedBuffer",
    "apply_stores",
    "bucket_key",
    "correlation_arg",
    "correlation_bucket",
    "expire_stores",
    "pack_staged",
    "parse_staged",
    "publish_script",
    "put_correlation",
    "script_source",
]

# correlate.lua's KEYS and ARGV, named once: the script gets these positions as
# Lua constants (script_source) and Python builds its arguments with them.
LAYOUT_VERSION = 7
"""Of the layouts below and of what the script stores; bump it on any change of one (1:
the hand-numbered lists; 3: no events trim, the record grace, fast-form entries without
job record; 4: the two-step modes ``apply:plan``/``apply:commit``/``expire:plan``/
``expire:commit`` and COMMIT_ARGS; 5: the stage modes ``apply:stage``/``expire:stage`` and
STAGE_ARGS instead of the plan and commit modes and COMMIT_ARGS; 6: an apply call's
``now``, the events' ``ts``, instead of a ``ts`` per group of receipts; 7: the duplicate
window's spans per carrier, ``P:dlr:dup:<carrier>:<n>`` holding plain normalised ids,
instead of ``P:dlr:dup:<n>`` holding ``<carrier>US<id>`` (those are still read while they
live))."""
KEYS_ = Positions("K", ("events", "due"))
ARGS = Positions(
    "A", ("mode", "layout", "job_prefix", "bucket_prefix", "index_prefix", "dup_prefix", "call_prefix", "grace")
)
"""The arguments of both modes; each mode's own follow."""
APPLY_ARGS = Positions("AP", ("carrier", "window", "groups", "now", "token"), first=len(ARGS) + 1, rest="rest")
"""``token`` is last: it hashes the arguments before and after it except ``now``
(``_call_token``): a call sent again at a later time is the same call. ``now``: the
call's time (unix ms), the ``ts`` of the events it writes."""
EXPIRE_ARGS = Positions("EX", ("now", "limit", "window"), first=len(ARGS) + 1)
GROUP = Positions("G", ("final", "event", "error", "count"), first=0, rest="ids")
"""One group of receipts in an apply call's tail: offsets from the group's start."""
STAGE_ARGS = Positions("SG", ("key", "field"), first=0)
"""What a stage call adds after its mode's arguments (after the last group of an apply,
after ``window`` of an expire): the staging hash (``P:dlr:staged``) and the batch's field
in it (the call's token)."""
CORR_ENTRY = Positions("C", ("id", "part"))
"""A general-form correlation entry as ``engine/record.lua`` takes it (:func:`correlation_arg`)."""


def script_source(text: str | None = None, *, steps: bool = False) -> str:
    """correlate.lua as loaded: the generated header, then the script text
    (``text``: another version of it, for bench/instructions.py). ``steps``: with
    dlr/correlate_steps.lua inserted at its ``-- @steps`` line (the stage modes;
    the one-call path's script goes without them)."""
    here = Path(__file__).parent
    if text is None:
        text = (here / "correlate.lua").read_text(encoding="utf-8")
    if steps:
        text = text.replace(_STEPS_MARK, (here / "correlate_steps.lua").read_text(encoding="utf-8") + _STEPS_MARK, 1)
        return lua_header(LAYOUT_VERSION, KEYS_, ARGS, APPLY_ARGS, EXPIRE_ARGS, GROUP, STAGE_ARGS) + text
    return lua_header(LAYOUT_VERSION, KEYS_, ARGS, APPLY_ARGS, EXPIRE_ARGS, GROUP) + text


_STEPS_MARK = "-- @steps"
_SCRIPT_SOURCE = script_source()
_SCRIPT_SHA = hashlib.sha1(_SCRIPT_SOURCE.encode("utf-8")).hexdigest()
_SCRIPT_SHA_B = _SCRIPT_SHA.encode()
# The script of the two-step path (privacy hooks): its own SHA, loaded when first used.
_STEPS_SOURCE = script_source(steps=True)
_STEPS_SHA = hashlib.sha1(_STEPS_SOURCE.encode("utf-8")).hexdigest()
_STEPS_SHA_B = _STEPS_SHA.encode()
# The second call of stage-then-publish (privacy hooks): the staged events XADDed, with edits.
_PUBLISH_SOURCE = (Path(__file__).parent / "publish_staged.lua").read_text(encoding="utf-8")
_PUBLISH_SHA = hashlib.sha1(_PUBLISH_SOURCE.encode("utf-8")).hexdigest()

# erase_staged's compare-and-set: the batch's value replaced (or deleted: "") only
# if it is still what was read.
_SWAP_STAGED = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1
"""


# park_staged: the batch deleted and its events parked as receipts, only if it was there.
_PARK_STAGED = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
local n = 0
for i = 4, #ARGV, 5 do
    if tonumber(ARGV[2]) > 0 then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'carrier', ARGV[i], 'message_id', ARGV[i + 1],
            'event', ARGV[i + 2], 'error', ARGV[i + 3], 'ts', ARGV[i + 4], 'reason', ARGV[3])
    else
        redis.call('XADD', KEYS[2], '*', 'carrier', ARGV[i], 'message_id', ARGV[i + 1],
            'event', ARGV[i + 2], 'error', ARGV[i + 3], 'ts', ARGV[i + 4], 'reason', ARGV[3])
    end
    n = n + 1
end
return n
"""


def _event_id(fields: Sequence[str]) -> str:
    """An event's job id (its field list starts with ``id``)."""
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == "id":
            return fields[i + 1]
    return ""


# Receipts per script call: bounds how long one call holds Redis (~1-2 ms).
_CHUNK = 1000
# Fields of a parked invalid receipt that may hold a phone number.
_ADDRESS_FIELDS = frozenset(
    {"source_addr", "destination_addr", "dest_addr", "to", "from", "number", "msisdn"}
)
_MAX_RAW_LEN = 512
_SEP = "\x1f"  # ASCII unit separator, between the packed fields of one receipt


class ReceiptRecord(msgspec.Struct, frozen=True, gc=False):
    """A parsed receipt ready for correlation: its id already normalised."""

    message_id: str
    """Normalised with ``normalize_id(id, fmt, side="receipt")``."""
    event: str
    is_final: bool
    error: str = ""
    ts_ms: int = 0
    """When the receipt was received (unix ms): its ``ts`` in ``P:dlr:unmatched`` if it is
    parked. Not its event's ``ts``: that is when the event is written (the ``now`` of the
    script call that writes it), which for a held receipt is a retry's."""

    @classmethod
    def from_receipt(cls, receipt: Receipt, id_format: str, ts_ms: int) -> ReceiptRecord:
        """Build from a :class:`Receipt` with the carrier's ``dlr_id_format``."""
        return cls(
            normalize_id(receipt.message_id, id_format, side="receipt"),
            receipt.event,
            receipt.is_final,
            receipt.error,
            ts_ms,
        )


class JobEvent(msgspec.Struct, frozen=True, gc=False):
    """An event the script published for a job, with what the engine needs next."""

    job_id: str
    event: str
    final: bool
    callback: str
    """The job's callback URL ("" when none): forward ``fields`` there."""
    submitted_ms: int | None
    """Unix ms of the last submit_sm_resp (receipt latency = event ts - this)."""
    fields: dict[str, str]
    """Exactly the fields written to ``P:events`` when the job has a callback;
    otherwise only ``id``, ``event`` and ``carrier`` (a smaller script reply)."""


class BatchResult(msgspec.Struct):
    """Outcome of :meth:`ReceiptStore.apply` for one batch."""

    applied: int = 0
    duplicates: int = 0
    late: int = 0
    """Intermediate receipts for a part or job already final (ignored)."""
    orphans: int = 0
    """Correlation entry found but no job record (also listed in ``unmatched``, for a retry)."""
    corrupt: int = 0
    unmatched: list[ReceiptRecord] = msgspec.field(default_factory=list)
    finals: list[JobEvent] = msgspec.field(default_factory=list)
    intermediates: list[JobEvent] = msgspec.field(default_factory=list)
    # apply(compact=True): the final events of fast-path receipts, one entry per
    # event in each list, instead of a JobEvent each in ``finals`` (their fields
    # would be just id, event and carrier, and there is no callback).
    fast_job_ids: list[str] = msgspec.field(default_factory=list)
    fast_events: list[str] = msgspec.field(default_factory=list)
    fast_submitted_ms: list[int | None] = msgspec.field(default_factory=list)

    def fast_as_events(self, carrier: str) -> list[JobEvent]:
        """The compact fast-path finals as the JobEvents ``apply()`` gives by default."""
        return [
            _fast_final(job_id, event, submitted, carrier)
            for job_id, event, submitted in zip(
                self.fast_job_ids, self.fast_events, self.fast_submitted_ms, strict=True
            )
        ]


_D = TypeVar("_D", bound=dict[str, Any])


class StagedBatch:
    """Receipt events a stage call (``apply:stage`` / ``expire:stage``) applied and kept
    in ``P:dlr:staged`` instead of publishing them: the privacy hooks see them, then
    :meth:`ReceiptStore.publish_staged` publishes them with the hooks' edits.

    Held as the staged value's columns (``parse_staged``): ``kinds``, a letter per
    event, ``F`` a fast-path final, ``f`` final, ``i`` intermediate; the other events'
    (not ``F``) field lists, callbacks and submit times; the fast-path finals' job ids,
    refs and message ids, and their other fields per run of events sharing them
    (``runs``: ``(event, error, ts, carrier, count)``). The hooks' dicts are made
    straight from the columns (:meth:`event_dicts`); ``events`` (each event's
    field/value list as the one-call path would write it), ``callbacks`` and
    ``submitted`` (per event, "" for ``F``) are made when asked for (a batch parked,
    erased from, or published without its stage's reply). ``held``: for a batch this
    engine staged, the fast-path finals as the apply's reply gave them (added to the
    result once published)."""

    __slots__ = (
        "_events", "carrier", "fast_ids", "fast_mids", "fast_refs", "field", "held", "kinds", "length",
        "other_callbacks", "other_submitted", "others", "runs", "staged_ms",
    )

    def __init__(
        self, field: str, length: int, staged_ms: int, kinds: str, other_callbacks: list[str],
        other_submitted: list[str], others: list[list[str]], fast_ids: list[str], fast_refs: list[str],
        fast_mids: list[str], runs: list[tuple[str, str, str, str, int]], carrier: str = "",
        held: BatchResult | None = None,
    ) -> None:
        nf = kinds.count("F")
        if not (len(fast_ids) == len(fast_refs) == len(fast_mids) == nf == sum(run[4] for run in runs)) or not (
            len(others) == len(other_callbacks) == len(other_submitted) == len(kinds) - nf
        ):
            raise ValueError("staged receipt events: the columns do not match the kinds")
        self.field = field
        self.length = length
        """Of the staged value: the publish call refuses a value that changed (an erasure)."""
        self.staged_ms = staged_ms
        self.kinds = kinds
        self.other_callbacks = other_callbacks
        self.other_submitted = other_submitted
        self.others = others
        self.fast_ids = fast_ids
        self.fast_refs = fast_refs
        self.fast_mids = fast_mids
        self.runs = runs
        self.carrier = carrier
        self.held = held
        self._events: list[list[str]] | None = None

    @classmethod
    def of_events(
        cls, field: str, length: int, staged_ms: int, kinds: str, callbacks: list[str], submitted: list[str],
        events: list[list[str]],
    ) -> StagedBatch:
        """A batch of events given as field lists (``F`` ones in the fast path's order:
        id, ref, event, carrier, parts, message_ids, error, ts)."""
        others = [i for i, kind in enumerate(kinds) if kind != "F"]
        fast = [events[i] for i, kind in enumerate(kinds) if kind == "F"]
        runs: list[tuple[str, str, str, str, int]] = []
        for fields in fast:
            group = (fields[5], fields[13], fields[15], fields[7])
            if runs and runs[-1][:4] == group:
                runs[-1] = (*group, runs[-1][4] + 1)
            else:
                runs.append((*group, 1))
        return cls(
            field, length, staged_ms, kinds, [callbacks[i] for i in others], [submitted[i] for i in others],
            [events[i] for i in others], [f[1] for f in fast], [f[3] for f in fast], [f[11] for f in fast], runs,
        )

    def event_dicts(self, make: Callable[..., _D]) -> list[_D]:
        """Every event as a dict made by ``make`` (a dict type), its fields in the order
        written, straight from the columns (no field list per event first)."""
        ids, refs, mids = self.fast_ids, self.fast_refs, self.fast_mids
        if len(ids) == len(self.kinds):  # fast-path finals only: the usual batch
            out: list[_D] = []
            start = 0
            for event, error, ts, carrier, n in self.runs:
                end = start + n
                out += [
                    make(id=i, ref=r, event=event, carrier=carrier, parts="1", message_ids=m, error=error, ts=ts)
                    for i, r, m in zip(ids[start:end], refs[start:end], mids[start:end], strict=True)
                ]
                start = end
            return out
        out = []
        fast = self._fast_groups()
        others = iter(self.others)
        for kind in self.kinds:
            if kind == "F":
                i, r, m, (event, error, ts, carrier) = next(fast)
                out.append(make(id=i, ref=r, event=event, carrier=carrier, parts="1", message_ids=m, error=error, ts=ts))
            else:
                it = iter(next(others))
                out.append(make(zip(it, it, strict=False)))
        return out

    def _fast_groups(self) -> Iterator[tuple[str, str, str, tuple[str, str, str, str]]]:
        groups = [run[:4] for run in self.runs for _ in range(int(run[4]))]
        return iter(zip(self.fast_ids, self.fast_refs, self.fast_mids, groups, strict=True))

    @property
    def events(self) -> list[list[str]]:
        """Each event's field/value list as the one-call path would write it, in order."""
        if self._events is None:
            fast = self._fast_groups()
            others = iter(self.others)
            events: list[list[str]] = []
            for kind in self.kinds:
                if kind == "F":
                    job_id, ref, message_ids, (event, error, ts, carrier) = next(fast)
                    events.append(["id", job_id, "ref", ref, "event", event, "carrier", carrier, "parts", "1",
                                   "message_ids", message_ids, "error", error, "ts", ts])
                else:
                    events.append(next(others))
            self._events = events
        return self._events

    def event_lists(self) -> list[list[str]]:
        """``events`` (as a function: for ``hook_edits``, which asks only when a hook wrote)."""
        return self.events

    @property
    def callbacks(self) -> list[str]:
        """The job's callback URL per event ("" for ``F``; a new list per access)."""
        others = iter(self.other_callbacks)
        return ["" if kind == "F" else next(others) for kind in self.kinds]

    @property
    def submitted(self) -> list[str]:
        """The job's submit time (unix ms, as text) per event ("" for ``F``; a new list per access)."""
        others = iter(self.other_submitted)
        return ["" if kind == "F" else next(others) for kind in self.kinds]


_STAGED = msgspec.msgpack.Decoder(
    tuple[str, list[str], list[str], list[list[str]], list[str], list[str], list[str], list[str], list[str],
          list[str], list[str], list[int]]
)


def publish_script() -> str:
    """dlr/publish_staged.lua, the second call of stage-then-publish (for benches)."""
    return _PUBLISH_SOURCE


def parse_staged(field: str, value: bytes) -> StagedBatch:
    """A staged value (``<ms>:`` then cmsgpack of kinds, the other events' callbacks,
    submit times and field lists, the fast-path finals' values a list per field:
    dlr/correlate_steps.lua) as its columns (see :class:`StagedBatch`)."""
    colon = value.index(b":")
    body = memoryview(value)[colon + 1 :]
    try:
        kinds, callbacks, submitted, others, ids, refs, mids, *runs = _STAGED.decode(body)
    except msgspec.DecodeError:  # a value not UTF-8 (a job id of any bytes): decoded leniently
        kinds, callbacks, submitted, others, ids, refs, mids, *runs = _lenient_msgpack(bytes(body))
    return StagedBatch(field, len(value), int(value[:colon]), kinds, callbacks, submitted, others, ids, refs, mids,
                       list(zip(*runs, strict=True)))


def _lenient_msgpack(data: bytes) -> Any:
    """The msgpack subset cmsgpack writes for lists of strings and counts, strings
    decoded with replacement characters."""
    pos = 0

    def item() -> Any:
        nonlocal pos
        b = data[pos]
        pos += 1
        if b & 0xF0 == 0x90 or b in (0xDC, 0xDD):
            if b & 0xF0 == 0x90:
                n = b & 0x0F
            else:
                size = 2 if b == 0xDC else 4
                n = int.from_bytes(data[pos : pos + size], "big")
                pos += size
            return [item() for _ in range(n)]
        if b < 0x80:
            return b
        if b in (0xCC, 0xCD, 0xCE, 0xCF):
            size = 1 << (b - 0xCC)
            pos += size
            return int.from_bytes(data[pos - size : pos], "big")
        if b & 0xE0 == 0xA0:
            n = b & 0x1F
        elif b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
            size = {0xD9: 1, 0xC4: 1, 0xDA: 2, 0xC5: 2, 0xDB: 4, 0xC6: 4}[b]
            n = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:
            raise ValueError(f"staged receipt events: msgpack type {b:#x} not expected")
        text = data[pos : pos + n].decode("utf-8", "replace")
        pos += n
        return text

    return item()


def pack_staged(batch: StagedBatch) -> bytes:
    """A staged value again (after an erasure dropped events of it), as cmsgpack reads it."""
    body = msgspec.msgpack.encode([
        batch.kinds, batch.other_callbacks, batch.other_submitted, batch.others, batch.fast_ids, batch.fast_refs,
        batch.fast_mids, *([list(column) for column in zip(*batch.runs, strict=True)] or [[]] * 5),
    ])
    return b"%d:%b" % (batch.staged_ms, body)


def _fast_final(job_id: str, event: str, submitted_ms: int | None, carrier: str) -> JobEvent:
    """The final event of a fast-path receipt: no callback, fields id, event and carrier."""
    return JobEvent(job_id, event, True, "", submitted_ms, {"id": job_id, "event": event, "carrier": carrier})


def correlation_arg(
    normalised: Sequence[str], parts: int, expect: int, callback: str, ref: str, message_ids: str
) -> str | list[list[str | int]]:
    """What the record script takes as a submitted job's correlation entries.

    The fast form, just the normalised id, when the job is a single part
    without callback and neither ``ref`` nor ``message_ids`` holds US (0x1F):
    its entry then carries the event's fields (see "The fast path" above).
    Otherwise ``[[normalised id, part], ...]`` for the last ``expect`` parts.
    """
    if parts == 1 and not callback and _SEP not in ref and _SEP not in message_ids:
        return normalised[0]
    first = parts - expect
    # [id, part] in CORR_ENTRY's order (a test holds the two together)
    return [[normalised[i], i + 1] for i in range(first, parts)]


BUCKETS_PER_WAIT = 64
"""A carrier's correlation entries are spread over this many buckets per receipt
wait: the sweep gives an overdue job its event at most a 64th of the wait late."""


def correlation_bucket(now_ms: int, wait_ms: int, record_ttl_ms: int) -> tuple[int, int]:
    """``(end_ms, expire_at_ms)`` of the bucket for entries written at ``now_ms``.

    ``wait_ms``: the carrier's receipt wait, already capped by the message
    retention. The entries' deadline, ``now_ms + wait_ms``, is rounded up to
    the end of its span (``wait_ms / 64``), so a receipt is never given up
    early; when that would pass the job record's own expiry,
    ``now_ms + record_ttl_ms`` (a message retention shorter than the wait),
    it is rounded down instead. The expiry sweep deletes the bucket at its
    end; its TTL, one more wait later, frees it only when no engine swept for
    that long (entries of jobs left overdue then never get their ``unknown``
    event). The TTL never passes the record's expiry either: ``record.lua``
    only ever lowers a bucket's TTL, so it ends with the earliest record of
    its entries.
    """
    span = max(1, wait_ms // BUCKETS_PER_WAIT)
    record_end = now_ms + record_ttl_ms
    end = -(-(now_ms + wait_ms) // span) * span
    if end > record_end:
        end = record_end // span * span
    return end, min(end + wait_ms, record_end)


def _keys(prefix: str | Keys) -> Keys:
    return prefix if isinstance(prefix, Keys) else Keys(prefix)


def bucket_key(prefix: str | Keys, carrier: str, end_ms: int) -> str:
    """The correlation bucket ``P:dlr:c:<carrier>:<end_ms>`` (a hash: normalised id → entry)."""
    return _keys(prefix).correlation_bucket(carrier, end_ms)


async def put_correlation(
    redis: Any, prefix: str | Keys, carrier: str, entries: Mapping[str, str], end_ms: int, expire_at_ms: int
) -> None:
    """Write correlation entries in ``engine/record.lua``'s layout, outside a
    batch: for tools and tests that stage receipts without submitting (the
    engine's entries are written by that script). Unlike the script, it sets
    the bucket's expiry outright."""
    keys = _keys(prefix)
    bucket = keys.correlation_bucket(carrier, end_ms)
    pipe = redis.pipeline(transaction=True)
    pipe.hset(bucket, mapping=dict(entries))
    pipe.pexpireat(bucket, expire_at_ms)
    pipe.zadd(keys.correlation_index(carrier), {str(end_ms): end_ms})
    pipe.zadd(keys.dlr_due, {f"{end_ms}:{carrier}": end_ms})
    await pipe.execute()


# A fast-path final's event: the receipt's own, or unknown for a state that is not final.
_FINAL_STATE: dict[str, str] = {event: event for event in SEVERITY}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    return str(value)


def _texts(raw: Sequence[Any]) -> list[str]:
    """A reply's list of strings decoded: one join + decode + split in C (valid when
    no value held the separator, else one by one)."""
    if raw and isinstance(raw[0], bytes):
        values = b"\x1f".join(raw).decode("utf-8", "replace").split("\x1f")
        if len(values) == len(raw):
            return values
    return [_text(v) for v in raw]


def _fast_finals(raw: Any) -> tuple[list[str], list[int | None]]:
    """The apply reply's fast-path finals: their job ids and submit times (unix ms, None
    when there is none), in order. correlate.lua answers (job id, submit time) pairs in
    one string, NUL between values (a job id holds no NUL, engine/job.py; one bulk
    reply, not two per receipt), split here in C; a list of strings (a reply kept by a
    call of an earlier version) reads as it is."""
    if isinstance(raw, (bytes, str)):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        values = text.split("\x00") if text else []
    else:
        values = _texts(raw)
    return values[0::2], _submitted_ms(values[1::2])


def _submitted_ms(values: list[str]) -> list[int | None]:
    """Fast-path finals' submit times (unix ms; None when not a number) from the
    reply's strings. The receipts of a batch share a few (one per record call of
    their jobs): each distinct string is parsed once (int() of 13 digits costs
    ~1,100 instructions, a dict lookup ~150)."""
    parsed = {v: int(v) if v.isdigit() else None for v in set(values)}
    return list(map(parsed.__getitem__, values))


def _job_event(raw: Sequence[Any]) -> JobEvent:
    """Decode one script reply ``[kind, callback, submitted_ms, field, value, ...]``."""
    values = _texts(raw)
    fields = dict(zip(values[3::2], values[4::2], strict=False))
    submitted = values[2]
    return JobEvent(
        fields.get("id", ""),
        fields.get("event", ""),
        values[0] == "f",
        values[1],
        int(submitted) if submitted.isdigit() else None,
        fields,
    )


def _redact_body(body: bytes) -> bytes:
    """What of a raw receipt body may be kept: never the message text.

    The text after ``text:`` is cut. A body with no receipt field at all is
    more likely a mobile-originated message flagged as a receipt than a
    receipt, so only its length is kept.
    """
    cut = body.lower().find(b"text:")
    if cut >= 0:
        body = body[:cut] + b"text:<redacted>"
    elif not any(scan_body(body.decode("latin-1"))):
        return b"<%d bytes without receipt fields>" % len(body)
    return body[:_MAX_RAW_LEN]


class ReceiptStore:
    """Correlates receipts with jobs in Redis; see the module doc for the layout.

    ``redis`` is a ``redis.asyncio.Redis`` (``decode_responses`` either way);
    ``prefix`` the configured key prefix, or the :class:`~engine.keys.Keys`
    (of a shard) to work under.
    """

    one_call = True
    """Every batch in one script call (`apply_stores` may pipeline several stores'
    calls); False for a store whose apply takes more (privacy hooks)."""

    def __init__(
        self,
        redis: Any,
        prefix: str | Keys,
        *,
        stream_maxlen: int = 1_000_000,
        duplicate_window_ms: int = 600_000,
        record_grace_s: int = 300,
    ) -> None:
        self._redis = redis
        keys = _keys(prefix)
        self.keys = keys
        self.prefix = keys.prefix
        self.stream_maxlen = stream_maxlen
        self.duplicate_window_ms = duplicate_window_ms
        self.record_grace_s = record_grace_s
        self.events_key = keys.events
        self.due_key = keys.dlr_due
        self.unmatched_key = keys.dlr_unmatched
        self.invalid_key = keys.dlr_invalid
        self.staged_key = keys.dlr_staged
        self._script_keys = KEYS_.build(events=self.events_key, due=self.due_key)
        self._packed_keys = [k.encode() for k in self._script_keys]
        # What every packed call starts with (EVALSHA, sha, the keys), in RESP, and
        # the apply calls' constant arguments: built once, not per call (a batch
        # split over N shards makes N calls).
        start = [b"$7\r\nEVALSHA\r\n", b"$40\r\n%b\r\n" % _SCRIPT_SHA_B, b"$1\r\n%d\r\n" % len(self._packed_keys)]
        start += [b"$%d\r\n%b\r\n" % (len(k), k) for k in self._packed_keys]
        self._call_prefix = (len(start), b"".join(start))
        start[1] = b"$40\r\n%b\r\n" % _STEPS_SHA_B  # the two-step script's (custom privacy hooks)
        self._steps_prefix = (len(start), b"".join(start))
        self._apply_base: tuple[int, list[str | int], bytes] = (-1, [], b"")

    def _args(self, mode: str) -> list[str | int]:
        """The arguments of both modes (ARGS), for ``mode``."""
        k = self.keys
        return ARGS.build(
            mode=mode, layout=LAYOUT_VERSION, job_prefix=k.job_prefix, bucket_prefix=k.dlr_bucket_prefix,
            index_prefix=k.dlr_index_prefix, dup_prefix=k.dlr_dup_prefix, call_prefix=k.dlr_call_prefix,
            grace=str(self.record_grace_s),
        )

    async def _run(self, args: Sequence[str | int], steps: bool = False) -> list[Any]:
        keys = self._script_keys
        sha, source = (_STEPS_SHA, _STEPS_SOURCE) if steps else (_SCRIPT_SHA, _SCRIPT_SOURCE)
        try:
            result = await self._redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(source)
            result = await self._redis.evalsha(sha, len(keys), *keys, *args)
        return list(result)

    async def _run_packed(
        self, head: Sequence[str | int], tail: list[bytes], token: str | None = None, steps: bool = False
    ) -> list[Any]:
        """EVALSHA with ``head`` then ``tail`` as arguments, the command packed here.

        The apply call carries an argument per receipt; redis-py's generic
        packer costs ~0.7 µs per argument, this one ~0.15 (bytes in, one
        ``%`` format each). Same connection pool; like redis-py's own commands
        it tries once more on a new connection after a connection error, and
        loads the script on NOSCRIPT.
        """
        pool = getattr(self._redis, "connection_pool", None)
        if pool is None:  # not a plain redis.asyncio.Redis: the generic path
            return await self._run([*head, token or self._call_token(head, tail), *(t.decode() for t in tail)], steps)
        packed = self._packed(head, tail, token, steps)
        loaded = reconnected = False
        while True:
            conn = await pool.get_connection()
            try:
                await conn.send_packed_command(packed, check_health=False)
                return list(await conn.read_response())
            except NoScriptError:
                if loaded:
                    raise
                loaded = True
            except ResponseError:
                raise  # the connection is fine: a script error
            except (RedisConnectionError, RedisTimeoutError, OSError):
                # As redis-py does for its own commands: once more on a new
                # connection (a server restart, a killed client). Safe to repeat:
                # a receipt applied by a call whose reply was lost comes back
                # as a duplicate.
                await conn.disconnect()
                if reconnected:
                    raise
                reconnected = True
                continue
            except BaseException:
                # a cancelled exchange leaves the connection out of step
                await conn.disconnect()
                raise
            finally:
                await pool.release(conn)
            await self._redis.script_load(_STEPS_SOURCE if steps else _SCRIPT_SOURCE)

    @staticmethod
    def _resp(values: Sequence[str | int]) -> bytes:
        return b"".join(
            [b"$%d\r\n%b\r\n" % (len(p), p) for p in (v.encode() if isinstance(v, str) else b"%d" % v for v in values)]
        )

    def _apply_args(self) -> tuple[list[str | int], bytes]:
        """The apply calls' constant arguments (ARGS of mode "apply"), and in RESP."""
        grace, base, resp = self._apply_base
        if grace != self.record_grace_s:  # built once (again if the grace was changed)
            base = self._args("apply")
            self._apply_base = (self.record_grace_s, base, self._resp(base))
            return base, self._apply_base[2]
        return base, resp

    def _head_resp(self, head: Sequence[str | int]) -> bytes:
        """``head`` in RESP: its constant start (`_apply_args`) encoded once."""
        base, resp = self._apply_args()
        n = len(base)
        if head[:n] == base:
            return resp + self._resp(head[n:])
        return self._resp(head)  # the stage calls (mode apply:stage)

    def _call_token(self, head: Sequence[str | int], tail: list[bytes]) -> str:
        """The call's token (correlate.lua "memo"): the same batch sent again, as after
        a lost reply, has the same token and gets the first reply back. Over every
        argument but the last of ``head``, the call's ``now``: sent again later, it is
        still the same call."""
        body = b"".join([b"$%d\r\n%b\r\n" % (len(p), p) for p in tail])
        return hashlib.sha1(self._head_resp(head[:-1]) + body).hexdigest()

    def _packed(
        self, head: Sequence[str | int], tail: list[bytes], token: str | None = None, steps: bool = False
    ) -> bytes:
        """The whole EVALSHA of ``head``, the token (``token``, else one over the call's
        arguments but its ``now``: `_call_token`), then ``tail``, in RESP (see
        `_run_packed`); ``steps``: the two-step script's."""
        resp = self._head_resp(head[:-1])
        body = b"".join([b"$%d\r\n%b\r\n" % (len(p), p) for p in tail])
        if token is None:
            token = hashlib.sha1(resp + body).hexdigest()
        nprefix, prefix = self._steps_prefix if steps else self._call_prefix
        return b"".join(
            [b"*%d\r\n" % (nprefix + len(head) + 1 + len(tail)), prefix, resp, self._resp(head[-1:]),
             b"$40\r\n%b\r\n" % token.encode(), body]
        )

    def _apply_calls(
        self, carrier: str, receipts: Sequence[ReceiptRecord], now_ms: int
    ) -> list[tuple[list[str | int], list[bytes], list[ReceiptRecord]]]:
        """`apply`'s script calls, one per 1,000 receipts: (head, tail, the receipts in
        the order the script answers them)."""
        return [self._pack(carrier, receipts[start : start + _CHUNK], "apply", now_ms)
                for start in range(0, len(receipts), _CHUNK)]

    async def apply(
        self, carrier: str, receipts: Sequence[ReceiptRecord], *, compact: bool = False, now_ms: int | None = None
    ) -> BatchResult:
        """Correlate a batch of one carrier's receipts: one script call per 1,000.

        Final receipts set ``s:<n>``/``e:<n>`` once per part and, when the last
        part is in, publish the job's aggregated final event; intermediate
        ones publish ``enroute``/``accepted`` once per change of state.
        Receipts without a correlation entry come back in ``unmatched``.

        ``compact``: the final events of fast-path receipts come in
        ``fast_job_ids``/``fast_events``/``fast_submitted_ms`` instead of a
        JobEvent each in ``finals`` (the engine's hot path: it only counts them
        and observes their latency; ``BatchResult.fast_as_events`` converts).

        The events' ``ts`` is when they are written: ``now_ms`` (default: the clock
        when the calls are built, once per call to ``apply``), or a job's submit time
        when that is later (correlate.lua ``event_ts``). Never the receipts' own
        ``ts_ms`` (when they were received), which a held receipt keeps from its
        first try.
        """
        result = BatchResult()
        now = int(time.time() * 1000) if now_ms is None else now_ms
        for head, tail, ordered in self._apply_calls(carrier, receipts, now):
            self._read_apply(await self._run_packed(head, tail), carrier, ordered, result, compact)
        return result

    def _pack(
        self, carrier: str, chunk: Sequence[ReceiptRecord], mode: str, now_ms: int
    ) -> tuple[list[str | int], list[bytes], list[ReceiptRecord]]:
        """An apply call's arguments up to its token (``head``, ending with ``now``), its
        groups (``tail``) and the receipts in argument order."""
        # Receipts sharing (final, event, error) travel as one group, then only
        # their ids: the script parses nothing per receipt, and a batch makes few
        # groups (its events' ts is the call's, one argument).
        groups: dict[tuple[bool, str, str], list[ReceiptRecord]] = {}
        for r in chunk:
            key = (r.is_final, r.event, r.error)
            group = groups.get(key)
            if group is None:
                groups[key] = [r]
            else:
                group.append(r)
        # everything before the token (the last named argument: _run_packed adds it)
        base = self._apply_args()[0] if mode == "apply" else self._args(mode)  # (apply's: built once)
        head = base + APPLY_ARGS.build(
            carrier=carrier, window=self.duplicate_window_ms, groups=len(groups), now=now_ms,
            token="", rest=(),
        )[:-1]
        tail: list[bytes] = []
        ordered: list[ReceiptRecord] = []
        for (final, event, error), group in groups.items():
            tail += GROUP.build(
                final=b"1" if final else b"0", event=event.encode(), error=error.encode(),
                count=b"%d" % len(group), ids=[r.message_id.encode() for r in group],
            )
            ordered += group
        return head, tail, ordered

    def _read_apply(
        self, raw: list[Any], carrier: str, ordered: list[ReceiptRecord], result: BatchResult, compact: bool
    ) -> None:
        """Add an apply call's reply (statuses, fast-path finals, events) to ``result``."""
        statuses = _text(raw[0])
        nf = statuses.count("f")
        job_ids, submitted = _fast_finals(raw[1])
        if compact and nf == len(statuses) == len(job_ids):
            # every receipt applied on the fast path (the usual batch): in bulk
            result.applied += nf
            result.fast_job_ids += job_ids
            result.fast_events += [_FINAL_STATE.get(r.event, "unknown") for r in ordered]
            result.fast_submitted_ms += submitted
        elif compact and len(job_ids) == nf and len(ordered) == len(statuses):
            self._sort_compact(ordered, statuses, job_ids, submitted, result)
        else:
            self._sort_statuses(carrier, ordered, statuses, job_ids, submitted, result, compact)
        for item in raw[2:]:
            job_event = _job_event(item)
            (result.finals if job_event.final else result.intermediates).append(job_event)

    # ------------------------------------------------------ stage, then publish
    async def stage(
        self, carrier: str, receipts: Sequence[ReceiptRecord], *, compact: bool = False, now_ms: int | None = None
    ) -> tuple[BatchResult, StagedBatch | None]:
        """Step one of stage-then-publish (privacy hooks): apply at most 1,000 receipts
        as one call does, but keep their events in ``P:dlr:staged`` (under the call's
        token) instead of publishing them. Returns the counts and unmatched receipts
        (no event yet) and the staged batch (None: the call composed no event). The
        same batch sent again after a lost reply gets the batch its first call staged
        (its receipts then count as duplicates). The events' ``ts`` is the stage call's
        time (``now_ms`` as in :meth:`apply`), kept when they are published."""
        if len(receipts) > _CHUNK:
            raise ValueError(f"stage: at most {_CHUNK} receipts per call")
        now = int(time.time() * 1000) if now_ms is None else now_ms
        head, tail, ordered = self._pack(carrier, receipts, "apply:stage", now)
        token = self._call_token(head, tail)
        stage = STAGE_ARGS.build(key=self.staged_key.encode(), field=token.encode())
        raw = await self._run_packed(head, tail + stage, token, steps=True)
        result = BatchResult()
        if _text(raw[0]) == "R":  # staged by a first call whose reply was lost
            result.duplicates += len(ordered)
            return result, self._staged(token, raw[1], carrier, None)
        held = BatchResult()
        self._read_apply([raw[1], raw[2]], carrier, ordered, held, compact)
        result.applied, result.duplicates, result.late = held.applied, held.duplicates, held.late
        result.orphans, result.corrupt, result.unmatched = held.orphans, held.corrupt, held.unmatched
        held.unmatched = []
        return result, self._staged(token, raw[3], carrier, held)

    async def stage_expire(self, now_ms: int, limit: int = 1000) -> tuple[StagedBatch | None, bool]:
        """Step one of the sweep with privacy hooks: ``expire_overdue``'s work, its
        events staged (see :meth:`stage`); returns the batch and whether more is due."""
        args = self._args("expire:stage") + EXPIRE_ARGS.build(now=now_ms, limit=limit, window=self.duplicate_window_ms)
        field = f"x{now_ms}.{time.monotonic_ns()}"
        raw = await self._run([*args, *STAGE_ARGS.build(key=self.staged_key, field=field)], steps=True)
        if _text(raw[0]) == "R":
            return self._staged(field, raw[1], "", None), True
        return self._staged(field, raw[2], "", None), _text(raw[1]) == "1"

    @staticmethod
    def _staged(field: str, value: Any, carrier: str, held: BatchResult | None) -> StagedBatch | None:
        if not value:
            return None
        batch = parse_staged(field, value if isinstance(value, bytes) else str(value).encode())
        batch.carrier, batch.held = carrier, held
        return batch

    async def publish_staged(
        self, batch: StagedBatch, edits: Sequence[tuple[int, Sequence[tuple[str, str]]]] = (),
        common: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Step two: XADD the batch's events, each with ``common`` then its ``edits``
        (``(index from 1, [(field, value), ...])``), and delete the batch, in one call.
        Returns the events published; 0: the batch was gone (published already, or
        erased); -1: it changed since it was read (an erasure): read it again."""
        args: list[str | int] = [batch.field, batch.length, len(common), len(edits)]
        for field, value in common:
            args += [field, value]
        for index, pairs in edits:
            args += [index, len(pairs)]
            for field, value in pairs:
                args += [field, value]
        keys = (self.staged_key, self.events_key)
        try:
            return int(await self._redis.evalsha(_PUBLISH_SHA, 2, *keys, *args))
        except NoScriptError:
            await self._redis.script_load(_PUBLISH_SOURCE)
            return int(await self._redis.evalsha(_PUBLISH_SHA, 2, *keys, *args))

    def staged_result(
        self, batch: StagedBatch, edits: Sequence[tuple[int, Sequence[tuple[str, str]]]] = (),
        common: Sequence[tuple[str, str]] = (), *, compact: bool = False,
    ) -> BatchResult:
        """The events of a published batch as an apply's result gives them: the fast-path
        finals as the stage call answered them (a batch read back from Redis: from its
        events, without submit time), the others as JobEvents, with the fields written
        (``common`` and ``edits`` applied) when their job has a callback."""
        result = BatchResult()
        held = batch.held
        if held is not None:
            result.finals += held.finals
            result.fast_job_ids += held.fast_job_ids
            result.fast_events += held.fast_events
            result.fast_submitted_ms += held.fast_submitted_ms
            if batch.kinds.count("F") == len(batch.kinds):  # fast-path finals only: as answered
                return result
        by_index = dict(edits)
        for i, (kind, callback, submitted, fields) in enumerate(
            zip(batch.kinds, batch.callbacks, batch.submitted, batch.events, strict=True), 1
        ):
            if kind == "F" and held is not None:
                continue
            it = iter(fields)
            values = dict(zip(it, it, strict=False))
            if kind == "F":
                event = values.get("event", "")
                if compact:
                    result.fast_job_ids.append(values.get("id", ""))
                    result.fast_events.append(event)
                    result.fast_submitted_ms.append(None)
                else:
                    result.finals.append(_fast_final(values.get("id", ""), event, None, values.get("carrier", "")))
                continue
            if callback:
                values.update(common)
                values.update(by_index.get(i, ()))
            else:
                values = {"id": values.get("id", ""), "event": values.get("event", ""),
                          "carrier": values.get("carrier", "")}
            job_event = JobEvent(values["id"], values["event"], kind == "f", callback,
                                 int(submitted) if submitted.isdigit() else None, values)
            (result.finals if job_event.final else result.intermediates).append(job_event)
        return result

    async def staged_batch(self, field: str) -> StagedBatch | None:
        """One batch of ``P:dlr:staged`` as it is now (None: gone)."""
        value = await self._redis.hget(self.staged_key, field)
        return None if value is None else parse_staged(field, value if isinstance(value, bytes) else value.encode())

    async def staged_batches(self) -> list[StagedBatch]:
        """Every batch in ``P:dlr:staged`` (the recovery pass's work list: batches whose
        engine stopped between the two calls, or whose hooks keep failing)."""
        raw = await self._redis.hgetall(self.staged_key)
        return [parse_staged(_text(field), value if isinstance(value, bytes) else str(value).encode())
                for field, value in raw.items()]

    async def park_staged(self, batch: StagedBatch, reason: str) -> int:
        """Give up a staged batch: its events go to ``P:dlr:unmatched`` as receipts
        (``carrier``, ``message_id`` = the event's ``message_ids``, ``event``, ``error``,
        ``ts``, ``reason``) and the batch is deleted, in one call, only if it is still
        staged (not published by another engine meanwhile); nothing of it is
        published. Returns the events parked (0: the batch was gone)."""
        args: list[str | int] = [batch.field, self.stream_maxlen, reason]
        for fields in batch.events:
            values = dict(zip(fields[0::2], fields[1::2], strict=False))
            args += [values.get("carrier", batch.carrier), values.get("message_ids", ""), values.get("event", ""),
                     values.get("error", ""), values.get("ts", "")]
        return int(await self._redis.eval(_PARK_STAGED, 2, self.staged_key, self.unmatched_key, *args))

    async def erase_staged(self, job_ids: Iterable[str]) -> int:
        """Drop the staged events of these jobs (an erasure: like their entries in the
        events stream, they go in both modes). A batch left without events is deleted;
        one being published meanwhile is refused by the publish call (its length
        changed) and read again. Returns the events dropped."""
        wanted = set(job_ids)
        dropped = 0
        if not wanted:
            return 0
        for _ in range(10):
            raced = False
            for batch in await self.staged_batches():
                keep = [i for i, fields in enumerate(batch.events) if _event_id(fields) not in wanted]
                if len(keep) == len(batch.events):
                    continue
                old = await self._redis.hget(self.staged_key, batch.field)
                if old is None or len(old) != batch.length:
                    raced = True
                    continue
                callbacks, submitted = batch.callbacks, batch.submitted  # made per access: once here
                trimmed = StagedBatch.of_events(
                    batch.field, 0, batch.staged_ms, "".join(batch.kinds[i] for i in keep),
                    [callbacks[i] for i in keep], [submitted[i] for i in keep], [batch.events[i] for i in keep],
                )
                new = pack_staged(trimmed) if keep else b""
                if len(new) == len(old):  # the publish call tells a changed batch by its length
                    new = b" " + new  # (a space before the time: int() reads it the same)
                if int(await self._redis.eval(_SWAP_STAGED, 1, self.staged_key, batch.field, old, new)):
                    dropped += len(batch.events) - len(keep)
                else:
                    raced = True
            if not raced:
                break
        return dropped

    @staticmethod
    def _sort_compact(
        ordered: list[ReceiptRecord], statuses: str, job_ids: list[str], submitted: list[int | None],
        result: BatchResult,
    ) -> None:
        """`_sort_statuses` with ``compact``, in bulk: a count per status letter and
        one pass for each list (a batch with a few receipts off the fast path, say
        parts of a long message or receipts that beat their record, no longer takes
        a Python loop over every receipt)."""
        n = len(statuses)
        nf = statuses.count("f")
        if len(ordered) != n or len(job_ids) != nf or len(submitted) != nf:
            raise ValueError("correlate.lua: statuses, receipts and fast-path replies disagree")
        result.fast_job_ids += job_ids
        result.fast_submitted_ms += submitted
        na, nu, nd, nl, no = (statuses.count(c) for c in "audlo")
        result.applied += nf + na
        result.duplicates += nd
        result.late += nl
        result.orphans += no
        result.corrupt += n - nf - na - nu - nd - nl - no
        pairs = zip(ordered, statuses, strict=True)
        result.fast_events += [_FINAL_STATE.get(r.event, "unknown") for r, st in pairs if st == "f"]
        if nu or no:  # orphans are retried like unmatched receipts
            result.unmatched += [r for r, st in zip(ordered, statuses, strict=True) if st == "u" or st == "o"]

    @staticmethod
    def _sort_statuses(
        carrier: str,
        ordered: list[ReceiptRecord],
        statuses: str,
        job_ids: list[str],
        submitted: list[int | None],
        result: BatchResult,
        compact: bool,
    ) -> None:
        """Count each receipt's status into ``result``; a fast-path final ('f') gets
        its event (``job_ids`` and ``submitted`` hold its job id and submit time, in order)."""
        k = 0  # the next fast-path final's place in ``job_ids`` and ``submitted``
        for record, status in zip(ordered, statuses, strict=True):
            if status == "f":
                # applied on the fast path: the job's final event is the receipt's
                result.applied += 1
                job_id = job_ids[k]
                submitted_ms = submitted[k]
                k += 1
                state = _FINAL_STATE.get(record.event, "unknown")
                if compact:
                    result.fast_job_ids.append(job_id)
                    result.fast_events.append(state)
                    result.fast_submitted_ms.append(submitted_ms)
                else:
                    result.finals.append(_fast_final(job_id, state, submitted_ms, carrier))
            elif status == "a":
                result.applied += 1
            elif status == "u":
                result.unmatched.append(record)
            elif status == "d":
                result.duplicates += 1
            elif status == "l":
                result.late += 1
            elif status == "o":
                result.orphans += 1
                result.unmatched.append(record)
            else:
                result.corrupt += 1

    async def expire_overdue(self, now_ms: int, limit: int = 1000) -> tuple[list[JobEvent], bool]:
        """Give a final event to jobs whose correlation bucket ended by ``now_ms``.

        What is left in such a bucket are parts without a final receipt: they
        become ``unknown`` (so the job's event is ``unknown`` unless another
        part failed worse), and the event carries error ``dlr_timeout`` when no
        part had one. The bucket is deleted as it is read. One script call
        reads at most ``limit`` entries; returns the final events (for
        webhooks) and whether overdue buckets are left (call again).
        """
        raw = await self._run(
            self._args("expire")
            + EXPIRE_ARGS.build(now=now_ms, limit=limit, window=self.duplicate_window_ms)
        )
        return [_job_event(item) for item in raw[1:]], _text(raw[0]) == "1"

    async def park_unmatched(
        self, carrier: str, records: Iterable[ReceiptRecord], reason: str = "unmatched"
    ) -> int:
        """Keep receipts that never matched a job in ``P:dlr:unmatched``; returns the count."""
        pipe = self._redis.pipeline(transaction=False)
        count = 0
        now_ms = int(time.time() * 1000)
        for r in records:
            pipe.xadd(
                self.unmatched_key,
                {
                    "carrier": carrier,
                    "message_id": r.message_id,
                    "event": r.event,
                    "error": r.error,
                    "ts": r.ts_ms or now_ms,
                    "reason": reason,
                },
                maxlen=self.stream_maxlen or None,
                approximate=True,
            )
            count += 1
        if count:
            await pipe.execute()
        return count

    async def park_invalid(
        self, carrier: str, raw_fields: Mapping[str, str | bytes | int | None], reason: str
    ) -> None:
        """Keep an unparseable receipt in ``P:dlr:invalid`` with its reason.

        ``short_message``/``message_payload`` are stored with the text after
        ``text:`` removed (a body without any receipt field: its length only);
        address fields (``source_addr``, ``destination_addr``…) are dropped;
        other ``bytes`` values (TLVs) are stored as hex.
        """
        entry: dict[str, str | bytes | int] = {
            "carrier": carrier,
            "reason": reason,
            "ts": int(time.time() * 1000),
        }
        for name, value in raw_fields.items():
            if value is None or name in _ADDRESS_FIELDS or name in entry:
                continue
            if name in ("short_message", "message_payload"):
                body = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
                entry[name] = _redact_body(body)
            elif isinstance(value, bytes):
                entry[name] = value[:_MAX_RAW_LEN].hex()
            elif isinstance(value, str):
                entry[name] = value[:_MAX_RAW_LEN]
            else:
                entry[name] = value
        await self._redis.xadd(
            self.invalid_key, entry, maxlen=self.stream_maxlen or None, approximate=True
        )


async def apply_stores(
    redis: Any, carrier: str, batches: Sequence[tuple[ReceiptStore, Sequence[ReceiptRecord]]], *, compact: bool = False
) -> list[BatchResult]:
    """`ReceiptStore.apply` of several stores (the shards of one Redis), a result each.

    On a plain ``redis.asyncio.Redis`` every call of every store goes in one
    write and their replies are read in order: one round trip, each call still
    on its own store's slot. If that fails (a connection lost, NOSCRIPT, a
    script error) the connection is dropped and the stores' `apply` run one
    after the other: a call that went through gets its first reply back (its
    token, correlate.lua "memo"), so no receipt is applied twice. A client
    without a connection pool (Redis Cluster) runs the stores' calls at once.
    """
    if len(batches) == 1:
        store, records = batches[0]
        return [await store.apply(carrier, records, compact=compact)]
    pool = getattr(redis, "connection_pool", None)
    if not all(store.one_call for store, _r in batches):  # (privacy hooks: each store's own apply)
        return [await store.apply(carrier, records, compact=compact) for store, records in batches]
    if pool is None:
        done = await asyncio.gather(*(s.apply(carrier, r, compact=compact) for s, r in batches), return_exceptions=True)
        for item in done:
            if isinstance(item, BaseException):
                raise item
        return list(done)  # type: ignore[arg-type]
    now_ms = int(time.time() * 1000)  # the events' ts (ReceiptStore.apply), once for the round trip
    plan = [(store, store._apply_calls(carrier, records, now_ms)) for store, records in batches]
    packed = b"".join([store._packed(head, tail) for store, calls in plan for head, tail, _o in calls])
    replies: list[list[Any]] | None = None
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(packed, check_health=False)
        replies = [list(await conn.read_response()) for _store, calls in plan for _c in calls]
    except Exception:
        await conn.disconnect()  # replies may be left unread on it
    except BaseException:
        await conn.disconnect()  # a cancelled exchange leaves the connection out of step
        raise
    finally:
        await pool.release(conn)
    if replies is None:
        return [await store.apply(carrier, records, compact=compact) for store, records in batches]
    results = []
    raws = iter(replies)
    for store, calls in plan:
        result = BatchResult()
        for _head, _tail, ordered in calls:
            store._read_apply(next(raws), carrier, ordered, result, compact)
        results.append(result)
    return results


async def expire_stores(
    redis: Any, stores: Sequence[ReceiptStore], now_ms: int, limit: int = 1000
) -> list[tuple[list[JobEvent], bool]]:
    """`ReceiptStore.expire_overdue` of several stores (the shards of one Redis), a
    result each: on a plain ``redis.asyncio.Redis`` the stores' calls in one
    pipelined round trip (each on its own store's slot); a store whose call was
    refused with NOSCRIPT makes its call again alone (which loads the script). A
    client without a connection pool (Redis Cluster) calls the stores one by one."""
    if len(stores) == 1 or getattr(redis, "connection_pool", None) is None:
        return [await store.expire_overdue(now_ms, limit) for store in stores]
    pipe = redis.pipeline(transaction=False)
    for store in stores:
        keys = store._script_keys
        args = store._args("expire") + EXPIRE_ARGS.build(now=now_ms, limit=limit, window=store.duplicate_window_ms)
        pipe.evalsha(_SCRIPT_SHA, len(keys), *keys, *args)
    out: list[tuple[list[JobEvent], bool]] = []
    for store, raw in zip(stores, await pipe.execute(raise_on_error=False), strict=True):
        if isinstance(raw, NoScriptError):
            out.append(await store.expire_overdue(now_ms, limit))
            continue
        if isinstance(raw, BaseException):
            raise raw
        out.append(([_job_event(item) for item in raw[1:]], _text(raw[0]) == "1"))
    return out


class UnmatchedBuffer:
    """Holds unmatched receipts briefly, for a retry, then gives them up.

    Pure (no I/O, ``now_ms`` passed in). ``hold`` every record that ``apply``
    returned unmatched; ``due(now_ms)`` gives ``(retry, expired)``: records
    whose retry time came (feed them to the next ``apply`` and ``hold`` the
    ones still unmatched again: they keep their first-seen time) and records
    that waited ``max_wait_ms`` (park them with ``park_unmatched``). Bounded:
    beyond ``max_size`` the oldest record is expired early.
    """

    def __init__(
        self, retry_ms: int = 1000, max_wait_ms: int = 30_000, max_size: int = 100_000
    ) -> None:
        self.retry_ms = retry_ms
        self.max_wait_ms = max_wait_ms
        self.max_size = max_size
        # (retry at, first seen, record), in retry order (retry_ms is constant)
        self._queue: deque[tuple[int, int, ReceiptRecord]] = deque()
        # first-seen times of records handed out by due() for a retry
        self._retrying: dict[ReceiptRecord, int] = {}
        self._overflow: list[ReceiptRecord] = []

    def __len__(self) -> int:
        return len(self._queue)

    def has_work(self) -> bool:
        """Anything to retry or to park (records pushed out early included)."""
        return bool(self._queue or self._overflow)

    def give_back(self, expired: list[ReceiptRecord]) -> None:
        """Take back the records to park that ``due`` handed out when the caller
        could not park them (Redis unavailable): the next ``due`` returns them
        again. (A failed retry is resent unchanged by the caller instead.)"""
        self._overflow[:0] = expired

    def hold(self, record: ReceiptRecord, now_ms: int) -> None:
        """Keep a record for a retry at ``now_ms + retry_ms``."""
        first = self._retrying.pop(record, now_ms)
        self._queue.append((now_ms + self.retry_ms, first, record))
        if len(self._queue) > self.max_size:
            self._overflow.append(self._queue.popleft()[2])

    def due(self, now_ms: int, *, everything: bool = False) -> tuple[list[ReceiptRecord], list[ReceiptRecord]]:
        """Records to retry now, and records to park (waited too long).

        ``everything``: retry every held record now, whatever its retry time
        (the caller knows new correlation entries were just written).
        """
        retry: list[ReceiptRecord] = []
        expired, self._overflow = self._overflow, []
        if self._retrying:
            # forget retried records that matched (never held again) once they
            # would have expired anyway: bounds the map without a callback
            cutoff = now_ms - self.max_wait_ms
            self._retrying = {r: t for r, t in self._retrying.items() if t > cutoff}
        queue = self._queue
        while queue and (everything or queue[0][0] <= now_ms):
            _, first, record = queue.popleft()
            if now_ms - first >= self.max_wait_ms:
                expired.append(record)
            else:
                self._retrying[record] = first
                retry.append(record)
        return retry, expired
