"""Server-side scripts: loaded once, called by SHA, reloaded after a flush; and
the one definition of what each script reads where.

A batch's Redis work is one or two script calls (docs/INTERNALS.md, "Where the time
goes"): a command per message through redis-py costs ~12 µs of Python CPU;
one EVALSHA per batch with a JSON payload costs a few µs per message.

Why the layouts live here: Python builds the scripts' KEYS, ARGV and payload
lists, and Lua reads them by position. Each position list is defined once
below (a :class:`~engine.keys.Positions`, or a msgspec ``array_like``
struct, which encodes as a list in field order); the loader prepends a
generated header, ``local LAYOUT_VERSION = '1'`` and ``local A_GROUP,
A_LAYOUT, ... = 1, 2, ...``, to the script text, so the script reads
``ARGV[A_NOW]`` and ``j[J_CARRIER]`` and the two sides cannot disagree.
Every call passes ``LAYOUT_VERSION`` and the script refuses another one
(a script text run by hand, or by a caller of another version).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from importlib import resources
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from dlr.store import CORR_ENTRY
from engine.inbound import InboundPart
from engine.keys import Keys, Positions, lua_header, marks_hash

__all__ = [
    "CANCEL_ARGS",
    "CANCEL_KEYS",
    "CLAIM_ARGS",
    "CLAIM_KEYS",
    "CLAIM_PACKED",
    "HANDBACK_ARGS",
    "HANDBACK_KEYS",
    "INBOUND_ARGS",
    "INBOUND_KEYS",
    "INBOUND_SWEEP_ARGS",
    "LAYOUT_VERSION",
    "MARKS_ARGS",
    "PARK_ARGS",
    "PARK_KEYS",
    "RECORD_ARGS",
    "RECORD_KEYS",
    "RECORD_PACKED",
    "RECORD_PACKED_SAME",
    "REQUEUE_ARGS",
    "REQUEUE_KEYS",
    "SCHEDULE_ARGS",
    "SCHEDULE_KEYS",
    "ClaimBatch",
    "ClaimJob",
    "ClaimList",
    "ClaimPacked",
    "DeadLetter",
    "HandbackEntry",
    "MarketingClaims",
    "Packed",
    "ParkEntry",
    "RecordBatch",
    "RecordJob",
    "RecordWait",
    "RequeueEntry",
    "Script",
    "cancel_call",
    "claim_call",
    "claim_mark",
    "claim_statuses",
    "handback_call",
    "inbound_call",
    "inbound_sweep_call",
    "marks_call",
    "park_call",
    "payload_json",
    "record_call",
    "requeue_call",
    "schedule_call",
    "script_header",
]

LAYOUT_VERSION = 11
"""Of every layout below; bump it on any change of one (1: the hand-numbered lists;
3: claims carry the suppression check, inbound scripts; 4: hot state only, no subject
indexes, the record call's token; 5: a claim carries the job's ref, park.lua and
cancel.lua, schedule.lua's id index; 6: the inbound scripts' per-sender index of
waiting parts; 7: the idempotency mark's value is the claiming entry as one integer,
claim.lua; 8: the packed lists of record.lua and claim.lua; 9: record.lua's payload
carries ``texts``, [history] keep_text; 10: claim.lua's packed marketing claims, per
suppression list; 11: idempotency marks as fields of bucketed hashes per generation,
engine/marks_lib.lua, cancel.lua's mark by prefix, marks.lua)."""


def _fields(lua_prefix: str, struct: type[msgspec.Struct]) -> Positions:
    return Positions(lua_prefix, struct.__struct_fields__)


# -- record.lua ---------------------------------------------------------------
RECORD_KEYS = Positions("K", ("jobs", "events", "due", "memo"))
RECORD_ARGS = Positions(
    "A", ("group", "layout", "payload", "now", "job_prefix", "bucket_prefix", "index_prefix", "packed", "packed_lens")
)

RECORD_PACKED = ("job_id", "message_ids", "ref", "to_hash", "to_mask", "corr",
                 "event", "carrier", "parts", "error", "client", "kind", "encoding")
"""A common job's outcome as record.lua reads it from ``ARGV[A_PACKED]`` (in this
order, see :class:`Packed`): a job whose correlation argument is "" or the fast
form (dlr.store.correlation_arg: single part, no callback), so no job record is
written and ``expect``, ``callback`` and ``dlr_ids`` are not needed. The fields
from ``event`` on (:data:`RECORD_PACKED_SAME`) are nearly always the same for
every job of a call: the script reads them as one string, and splits it only
when it differs from the job before's."""

RECORD_PACKED_SAME = RECORD_PACKED.index("event")
"""How many fields of :data:`RECORD_PACKED` come before the run that is usually
the same from job to job (``event`` ... ``encoding``)."""


class Packed:
    """Entries of ``width`` string fields for a script, without JSON: the fields
    concatenated in one string (``data``) and their lengths, one byte each, in
    another (``lens``). The script reads an entry's lengths with one
    ``string.byte`` and each field with one ``string.sub``: ~14 C calls per
    entry, where cjson decoding a list per entry costs ~1,000 instructions per
    field (mostly building tables), and a Lua pattern splitting on a separator
    ~90 per byte. An entry with a field of 256 bytes or more, or with any
    non-ASCII character (lengths count bytes), is refused (:meth:`add` returns
    False) and goes in the JSON payload instead."""

    __slots__ = ("_data", "_same", "_same_lens", "_same_text", "count", "lens", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self._data: list[str] = []
        self.lens = bytearray()
        self.count = 0
        self._same: tuple[str, ...] | None = None  # add_split's last run, its join and lengths
        self._same_text = ""
        self._same_lens: bytes | None = None

    def add(self, fields: Sequence[str]) -> bool:
        entry = "".join(fields)
        if not entry.isascii():
            return False
        try:
            self.lens.extend(map(len, fields))
        except ValueError:  # a field of 256 bytes or more
            del self.lens[self.count * self.width :]
            return False
        self._data.append(entry)
        self.count += 1
        return True

    def add_split(self, head: tuple[str, ...], same: tuple[str, ...]) -> bool:
        """:meth:`add` of ``head + same``: the same entry, bytes and answer, for a
        ``same`` that is usually equal to the call before's (record.lua's run from
        ``event`` on, :data:`RECORD_PACKED_SAME`): its join, lengths and ASCII check
        are made once per run of equal ones, not per entry."""
        if same != self._same:
            text = "".join(same)
            try:
                lens: bytes | None = bytes(map(len, same)) if text.isascii() else None
            except ValueError:  # a field of 256 bytes or more
                lens = None
            self._same, self._same_text, self._same_lens = same, text, lens
        same_lens = self._same_lens
        if same_lens is None:
            return False
        entry = "".join(head)
        if not entry.isascii():
            return False
        try:
            self.lens.extend(map(len, head))
        except ValueError:  # a field of 256 bytes or more
            del self.lens[self.count * self.width :]
            return False
        self.lens += same_lens
        self._data += (entry, self._same_text)
        self.count += 1
        return True

    def extend(self, other: Packed) -> None:
        """``other``'s entries after these (of the same width)."""
        self._data.extend(other._data)
        self.lens += other.lens
        self.count += other.count

    @property
    def data(self) -> str:
        return "".join(self._data)


class RecordJob(msgspec.Struct, array_like=True, gc=False):
    """One job's outcome as record.lua reads it (a list: ``j[J_CARRIER]``)."""

    job_id: str
    event: str
    carrier: str
    parts: int
    message_ids: str
    error: str
    ref: str
    client: str
    kind: str
    callback: str
    to_hash: str
    to_mask: str
    encoding: str
    corr: str | list[list[Any]]
    """"" (no receipt awaited), or dlr.store.correlation_arg: the fast form (the
    normalised id: no job record) or [[id, part], ...] (a job record for the receipts)."""
    expect: int
    dlr_ids: str


class RecordWait(msgspec.Struct, array_like=True, gc=False):
    """A carrier's correlation bucket for the batch (strings: Redis formats no number)."""

    end_ms: str
    expire_at_ms: str
    record_ttl: str
    """Seconds a job record written with this batch lives (the receipts read it)."""


class RecordBatch(msgspec.Struct, gc=False):
    """record.lua's payload (a JSON object: named)."""

    retention_until: int
    """Unix s: the history row's retention, carried by each job's first event."""
    waits: dict[str, RecordWait]
    jobs: list[RecordJob]
    acks: list[str]
    texts: dict[str, str] = msgspec.field(default_factory=dict)
    """[history] keep_text: job id -> its sealed text, base64 (engine/history/text_cipher.py),
    for every job of the call (in ``jobs`` or packed), carried by its first event as
    ``text_enc``; ``{}`` otherwise."""


# -- claim.lua ----------------------------------------------------------------
CLAIM_KEYS = Positions("K", ("jobs", "events", "dead"))
CLAIM_ARGS = Positions(
    "A", ("group", "layout", "payload", "now", "mark_ttl", "maxlen", "retry", "idem_prefix", "marks_prefix", "packed",
          "packed_lens",
          "marketing", "marketing_lens", "hashes", "marks_hashes"),
    rest="rest",
)


CLAIM_PACKED = ("job_id", "mark", "ref")
"""A job's claim as claim.lua reads it (:class:`Packed`; ``mark``: :func:`claim_mark`
of its entry id, the value its idempotency mark gets): a transactional job's
from ``ARGV[A_PACKED]``, answered last; a marketing job's from
``ARGV[A_MARKETING]``, answered after the payload's claims, with its number's
keyed hash in ``ARGV[A_HASHES]`` (:class:`MarketingClaims`). A claim that does
not pack goes in the payload (:class:`ClaimJob`)."""


def claim_mark(entry_id: str) -> str:
    """The idempotency mark a claim by stream entry ``entry_id`` takes (claim.lua's
    ``mark_of``, the same rule): ``<ms>-<seq>`` with a 13-digit ms and seq < 10^6 as
    the integer ``<ms><seq in 6 digits>``, any other id as ``s|<entry id>``. Packed
    claims carry it in place of the entry id (claim.lua derives the entry id only
    for a claim that is not new), so the script builds no mark per job."""
    n = len(entry_id)
    if 15 <= n <= 20 and entry_id[13] == "-" and entry_id[0] != "0":
        return entry_id.replace("-", _MARK_PAD[n], 1)
    return "s|" + entry_id


_MARK_PAD = {n: "0" * (20 - n) for n in range(15, 21)}
"""The zeros that pad a seq of n - 14 digits to 6, by the entry id's length n."""


class ClaimJob(msgspec.Struct, array_like=True, gc=False):
    job_id: str
    entry_id: str
    suppression: str = ""
    """A marketing job: its client's suppression list (``Keys.suppression``), else ""."""
    to_hash: str = ""
    """A marketing job: the keyed hash of its number, looked up in ``suppression``."""
    ref: str = ""
    """For the `cancelled` event of a job whose mark `sendgate cancel` took."""
    marks_hash: int = -1
    """engine.keys.marks_hash of ``job_id`` (its idempotency mark's bucket): filled in when not given."""

    def __post_init__(self) -> None:
        if self.marks_hash < 0:
            self.marks_hash = marks_hash(self.job_id)


class ClaimPacked(Packed):
    """Transactional claims for claim.lua (:data:`CLAIM_PACKED` entries, :class:`Packed`),
    with each job id's engine.keys.marks_hash (``marks_hashes``): claim.lua reads them
    4 bytes each from ``ARGV[A_MARKS_HASHES]`` (:func:`claim_call`), so it hashes nothing."""

    __slots__ = ("marks_hashes",)

    def __init__(self) -> None:
        super().__init__(len(CLAIM_PACKED))
        self.marks_hashes: list[int] = []

    def add(self, fields: Sequence[str]) -> bool:
        """One claim from (job_id, entry_id, ref): packed as (job_id, :func:`claim_mark`, ref)."""
        job_id, entry_id, ref = fields
        mark = claim_mark(entry_id)
        entry = job_id + mark + ref
        if not entry.isascii():
            return False
        try:
            self.lens.extend((len(job_id), len(mark), len(ref)))
        except ValueError:  # a field of 256 bytes or more
            del self.lens[self.count * self.width :]
            return False
        self._data.append(entry)
        self.count += 1
        self.marks_hashes.append(marks_hash(job_id))
        return True

    def extend(self, other: Packed) -> None:
        super().extend(other)
        if isinstance(other, ClaimPacked):
            self.marks_hashes += other.marks_hashes


class ClaimList(msgspec.Struct, array_like=True, gc=False):
    """A suppression list and how many of the packed marketing claims (``ARGV[A_MARKETING]``),
    the next ones in order, are checked against it."""

    list: str
    count: int


class MarketingClaims(Packed):
    """Marketing claims of one suppression list for claim.lua, without JSON:
    :data:`CLAIM_PACKED` entries (:class:`Packed`) and the numbers' keyed hashes,
    which must all have one width (``hash_width``; :meth:`add_claim` refuses
    another, and a claim that does not pack: it goes in the payload). Several
    lists' go in one call (:meth:`extend`), in the order of the payload's
    ``lists``: claim.lua reads the hashes of up to 1,000 claims at once and
    looks them up with one SMISMEMBER, then takes the claims' marks as for
    transactional ones."""

    __slots__ = ("hash_width", "hashes", "marks_hashes")

    def __init__(self, hash_width: int) -> None:
        super().__init__(len(CLAIM_PACKED))
        self.hash_width = hash_width
        self.hashes: list[str] = []
        self.marks_hashes: list[int] = []

    def add_claim(self, job_id: str, entry_id: str, ref: str, to_hash: str) -> bool:
        """:meth:`Packed.add` of (job_id, :func:`claim_mark` of entry_id, ref), with its hash
        (one call: the engine makes it per marketing job)."""
        mark = claim_mark(entry_id)
        entry = job_id + mark + ref
        if not entry.isascii() or len(to_hash) != self.hash_width or not to_hash.isascii():
            return False
        try:
            self.lens.extend((len(job_id), len(mark), len(ref)))
        except ValueError:  # a field of 256 bytes or more
            del self.lens[self.count * self.width :]
            return False
        self._data.append(entry)
        self.hashes.append(to_hash)
        self.marks_hashes.append(marks_hash(job_id))
        self.count += 1
        return True

    def extend(self, other: Packed) -> None:
        """``other``'s claims after these (hashes of the same width)."""
        super().extend(other)
        if isinstance(other, MarketingClaims):
            self.hashes += other.hashes
            self.marks_hashes += other.marks_hashes


class DeadLetter(msgspec.Struct, array_like=True, gc=False):
    """A dead letter to write; its original fields follow the named ARGV (``A_REST``)."""

    entry_id: str
    nfields: int
    code: str
    reason: str
    job_id: str
    ref: str
    event: str
    """"expired" or "rejected" to publish that event too (its error: the code), else ""."""
    client: str = ""
    kind: str = ""
    to_hash: str = ""
    to_mask: str = ""


class ClaimBatch(msgspec.Struct, gc=False):
    claims: list[ClaimJob]
    dead: list[DeadLetter]
    retention_until: int = 0
    """Unix s, carried by an `expired` event (the job's first) for the history row."""
    lists: list[ClaimList] = msgspec.field(default_factory=list)
    """The packed marketing claims' suppression lists, in their order (:data:`CLAIM_MARKETING`)."""


# -- requeue.lua, schedule.lua ------------------------------------------------
REQUEUE_KEYS = Positions("K", ("lane",))
REQUEUE_ARGS = Positions("A", ("group", "layout", "payload"), rest="rest")


class RequeueEntry(msgspec.Struct, array_like=True, gc=False):
    entry_id: str
    nfields: int


SCHEDULE_KEYS = Positions("K", ("scheduled",))
SCHEDULE_ARGS = Positions("A", ("now", "limit", "layout", "job_prefix", "id_prefix"))


# -- park.lua, cancel.lua -----------------------------------------------------
PARK_KEYS = Positions("K", ("source",))
"""Then the park streams (``ParkEntry.dest`` 1 is the first after ``source``)."""
PARK_ARGS = Positions("A", ("group", "layout", "payload"), rest="rest")


class ParkEntry(msgspec.Struct, array_like=True, gc=False):
    entry_id: str
    nfields: int
    dest: int
    """1-based index of the park stream among the KEYS after ``source``."""


# -- handback.lua ---------------------------------------------------------------
HANDBACK_KEYS = Positions("K", ("source",))
"""Then the park streams (``HandbackEntry.dest`` 1 is the first after ``source``)."""
HANDBACK_ARGS = Positions(
    "A", ("group", "layout", "consumer", "marks_prefix", "idem_prefix", "now", "window", "payload"), rest="rest"
)


class HandbackEntry(msgspec.Struct, array_like=True, gc=False):
    entry_id: str
    nfields: int
    dest: int
    """1-based index of the park stream among the KEYS after ``source``."""
    job_id: str
    """The job's id when it was claimed (its mark goes back with it), else ""."""
    mark: str = ""
    """A claimed job: the mark its claim took (``claim_mark`` of its entry id)."""
    marks_hash: int = 0
    """A claimed job: ``engine.keys.marks_hash`` of its id (its mark's bucket)."""


CANCEL_KEYS = Positions("K", ("held", "scheduled", "events"))
CANCEL_ARGS = Positions(
    "A", ("layout", "job_id", "mark_ttl", "now", "maxlen", "job_prefix", "idem_prefix", "marks_prefix", "marks_hash")
)

# -- marks.lua ------------------------------------------------------------------
MARKS_ARGS = Positions("A", ("layout", "mode", "prefix", "legacy_prefix", "now", "window", "value", "hashes"),
                       rest="ids")

# -- inbound.lua, inbound_sweep.lua ---------------------------------------------
INBOUND_KEYS = Positions("K", ("inbound", "due"))
INBOUND_ARGS = Positions(
    "A", ("layout", "payload", "wait_ms", "ttl_s", "maxlen", "retention_until", "parts_prefix", "waiting_prefix")
)
INBOUND_SWEEP_ARGS = Positions("A", ("layout", "now", "limit", "maxlen", "retention_until", "waiting_prefix"))

_HEADERS: dict[str, tuple[Positions, ...]] = {
    "record": (RECORD_KEYS, RECORD_ARGS, _fields("J", RecordJob), _fields("W", RecordWait), CORR_ENTRY,
               Positions("R", RECORD_PACKED)),
    "claim": (CLAIM_KEYS, CLAIM_ARGS, _fields("C", ClaimJob), _fields("D", DeadLetter), Positions("P", CLAIM_PACKED),
              _fields("L", ClaimList)),
    "requeue": (REQUEUE_KEYS, REQUEUE_ARGS, _fields("E", RequeueEntry)),
    "schedule": (SCHEDULE_KEYS, SCHEDULE_ARGS),
    "park": (PARK_KEYS, PARK_ARGS, _fields("E", ParkEntry)),
    "handback": (HANDBACK_KEYS, HANDBACK_ARGS, _fields("E", HandbackEntry)),
    "cancel": (CANCEL_KEYS, CANCEL_ARGS),
    "marks": (MARKS_ARGS,),
    "inbound": (INBOUND_KEYS, INBOUND_ARGS, _fields("P", InboundPart)),
    "inbound_sweep": (INBOUND_KEYS, INBOUND_SWEEP_ARGS),
}


payload_json = msgspec.json.Encoder().encode
"""A script payload as JSON (array_like structs encode as lists in field order)."""


# -- each script's KEYS and ARGV, built here only ------------------------------
def record_call(
    keys: Keys, stream: str, group: str, payload: bytes, now_ms: int, token: str, packed: Packed | None = None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of record.lua for the entries of ``stream``; ``token``: unique
    per call, the same when the call is repeated (a reply lost); ``packed``: the
    common jobs (``RECORD_PACKED``), the others in ``payload``."""
    return RECORD_KEYS.build(
        jobs=stream, events=keys.events, due=keys.dlr_due, memo=keys.record_memo(token)
    ), RECORD_ARGS.build(
        group=group, layout=LAYOUT_VERSION, payload=payload, now=now_ms, job_prefix=keys.job_prefix,
        bucket_prefix=keys.dlr_bucket_prefix, index_prefix=keys.dlr_index_prefix,
        packed=packed.data if packed else "", packed_lens=bytes(packed.lens) if packed else b"",
    )


def claim_call(
    keys: Keys, stream: str, group: str, payload: bytes, now_ms: int, mark_ttl_s: int, maxlen: int,
    retry: bool, dead_fields: Sequence[bytes] = (), packed: ClaimPacked | None = None,
    marketing: MarketingClaims | None = None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of claim.lua for the entries of ``stream``; ``marketing``: claims
    (their lists in the payload's ``lists``) answered after the payload's;
    ``packed``: transactional claims (``CLAIM_PACKED``) answered after those. Their
    marks hashes go in ``marks_hashes``, 4 bytes each (big-endian), marketing then packed."""
    hs = (marketing.marks_hashes if marketing else []) + (packed.marks_hashes if packed else [])
    return CLAIM_KEYS.build(jobs=stream, events=keys.events, dead=keys.dead), CLAIM_ARGS.build(
        group=group, layout=LAYOUT_VERSION, payload=payload, now=now_ms, mark_ttl=mark_ttl_s, maxlen=maxlen,
        retry="1" if retry else "0", idem_prefix=keys.idem_prefix, marks_prefix=keys.marks_prefix,
        packed=packed.data if packed else "",
        packed_lens=bytes(packed.lens) if packed else b"", marketing=marketing.data if marketing else "",
        marketing_lens=bytes(marketing.lens) if marketing else b"",
        hashes="".join(marketing.hashes) if marketing else "", marks_hashes=struct.pack(f">{len(hs)}I", *hs),
        rest=dead_fields,
    )


def requeue_call(stream: str, group: str, payload: bytes, fields: Sequence[bytes]) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of requeue.lua."""
    return REQUEUE_KEYS.build(lane=stream), REQUEUE_ARGS.build(
        group=group, layout=LAYOUT_VERSION, payload=payload, rest=fields
    )


def schedule_call(keys: Keys, now_ms: int, limit: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of schedule.lua."""
    return SCHEDULE_KEYS.build(scheduled=keys.scheduled), SCHEDULE_ARGS.build(
        now=now_ms, limit=limit, layout=LAYOUT_VERSION, job_prefix=keys.scheduled_prefix,
        id_prefix=keys.scheduled_id_prefix,
    )


def park_call(
    source: str, dests: Sequence[str], group: str, payload: bytes, fields: Sequence[bytes]
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of park.lua: entries of ``source`` to the park streams ``dests``."""
    return [*PARK_KEYS.build(source=source), *dests], PARK_ARGS.build(
        group=group, layout=LAYOUT_VERSION, payload=payload, rest=fields
    )


def handback_call(
    keys: Keys, source: str, dests: Sequence[str], group: str, consumer: str, payload: bytes, fields: Sequence[bytes],
    window_s: int, now_ms: int,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of handback.lua: entries of ``source`` (of the shard of ``keys``)
    to the park streams ``dests``, claimed ones with their marks given back
    (``window_s`` the idempotency window and ``now_ms`` pick the marks' generations)."""
    return [*HANDBACK_KEYS.build(source=source), *dests], HANDBACK_ARGS.build(
        group=group, layout=LAYOUT_VERSION, consumer=consumer, marks_prefix=keys.marks_prefix,
        idem_prefix=keys.idem_prefix, now=now_ms, window=window_s, payload=payload, rest=fields,
    )


def cancel_call(keys: Keys, job_id: str, mark_ttl_s: int, now_ms: int, maxlen: int) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of cancel.lua."""
    return CANCEL_KEYS.build(
        held=keys.scheduled_id(job_id), scheduled=keys.scheduled, events=keys.events
    ), CANCEL_ARGS.build(
        layout=LAYOUT_VERSION, job_id=job_id, marks_hash=marks_hash(job_id), mark_ttl=mark_ttl_s, now=now_ms, maxlen=maxlen,
        job_prefix=keys.scheduled_prefix, idem_prefix=keys.idem_prefix, marks_prefix=keys.marks_prefix,
    )


def marks_call(
    keys: Keys, mode: str, job_ids: Sequence[str], window_s: int, now_ms: int, value: str = ""
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of marks.lua: ``mode`` ``get`` (each id's mark, "" for none) or
    ``take`` (``value`` as each id's mark where it has none; 1 taken, 0 not)."""
    start = now_ms // 1000 // window_s * window_s  # the current generation's meta key: the call's slot
    return [keys.marks_generation(start)], MARKS_ARGS.build(
        layout=LAYOUT_VERSION, mode=mode, prefix=keys.marks_prefix, legacy_prefix=keys.idem_prefix, now=now_ms,
        window=window_s, value=value, hashes=" ".join(str(marks_hash(i)) for i in job_ids),
        ids=job_ids,
    )


def inbound_call(
    keys: Keys, payload: bytes, wait_ms: int, ttl_s: int, maxlen: int, retention_until: int
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of inbound.lua."""
    return INBOUND_KEYS.build(inbound=keys.inbound, due=keys.inbound_due), INBOUND_ARGS.build(
        layout=LAYOUT_VERSION, payload=payload, wait_ms=wait_ms, ttl_s=ttl_s, maxlen=maxlen,
        retention_until=retention_until, parts_prefix=keys.inbound_parts_prefix,
        waiting_prefix=keys.inbound_waiting_prefix,
    )


def inbound_sweep_call(
    keys: Keys, now_ms: int, limit: int, maxlen: int, retention_until: int
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of inbound_sweep.lua."""
    return INBOUND_KEYS.build(inbound=keys.inbound, due=keys.inbound_due), INBOUND_SWEEP_ARGS.build(
        layout=LAYOUT_VERSION, now=now_ms, limit=limit, maxlen=maxlen, retention_until=retention_until,
        waiting_prefix=keys.inbound_waiting_prefix,
    )


def script_header(name: str) -> str:
    """The generated Lua the loader puts before ``engine/<name>.lua``: the layout's
    names, then the check that refuses a caller of another layout version (every
    engine script passes it as ``ARGV[A_LAYOUT]``)."""
    return lua_header(LAYOUT_VERSION, *_HEADERS[name]) + (
        "if ARGV[A_LAYOUT] ~= LAYOUT_VERSION then\n"
        f"  return redis.error_reply('{name}.lua: argument layout ' .. tostring(ARGV[A_LAYOUT]) .. "
        "', this script reads ' .. LAYOUT_VERSION .. ' (caller and script from different versions)')\n"
        "end\n"
    )


_MARKS_USERS = frozenset({"claim", "cancel", "marks", "handback"})
"""The scripts that read or write idempotency marks: engine/marks_lib.lua goes before them."""

CLAIM_STATUSES = b"01234"
"""claim.lua's status digits (new, duplicate, reclaimed, suppressed, cancelled)."""
_CLAIM_DIGITS = bytes.maketrans(CLAIM_STATUSES, bytes(range(len(CLAIM_STATUSES))))


def claim_statuses(reply: Any) -> list[int]:
    """claim.lua's reply as its statuses, one int (0-4) per candidate in order.

    The script answers one bulk string, a digit per candidate (no RESP integer per
    job: ~700 instructions a call less in Redis); read here with one
    ``bytes.translate`` in C. A list of integers (a script of an earlier version)
    reads as before. Anything but the five digits is refused: a status this code
    does not know must never be taken for "new" (sent)."""
    if isinstance(reply, str):
        reply = reply.encode()
    if isinstance(reply, bytes):
        if reply.translate(None, CLAIM_STATUSES):
            raise ValueError(f"claim.lua: a reply not of status digits ({len(reply)} bytes)")
        return list(reply.translate(_CLAIM_DIGITS))
    statuses = [int(x) for x in reply]
    if any(not 0 <= x < len(CLAIM_STATUSES) for x in statuses):
        raise ValueError("claim.lua: a status out of range")
    return statuses


_REPLIES: dict[str, Any] = {"claim": claim_statuses}
"""What a script's reply is read as by :class:`Script` (the others: as redis-py gives it)."""


class Script:
    """One Lua script from the engine package, run with EVALSHA (EVAL on NOSCRIPT).
    Calling it gives the reply as redis-py reads it, or for claim.lua its statuses
    (:func:`claim_statuses`)."""

    __slots__ = ("name", "read", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        files = resources.files("engine")
        text = files.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        lib = files.joinpath("marks_lib.lua").read_text(encoding="utf-8") if name in _MARKS_USERS else ""
        self.source = script_header(name) + lib + text
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.read = _REPLIES.get(name)

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            reply = await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            reply = await redis.eval(self.source, len(keys), *keys, *args)
        return reply if self.read is None else self.read(reply)
