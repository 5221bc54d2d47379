"""Erasure of a subject's hot records in Redis: find them by key, hide them now, make them disappear on time.

Why no index: Redis keeps only hot state (docs/INTERNALS.md, "Redis keeps hot
state"). A finished job leaves nothing in Redis but its idempotency mark, which
holds no personal data; months of message records live in the history store,
which has indexes by number (keyed hash) and by client. So a subject's jobs
are found in two places, neither of them a scan of the keyspace:

* the history store (the engine's side, ``engine/erase.py``: rows by
  ``to_hash`` or ``client``), passed in as ``jobs``;
* the events not archived yet: ``XRANGE`` of the events stream from the
  archiver group's position (``events_from``), bounded by the archive lag.
  The first event of a job carries ``to_hash`` and ``client``
  (engine/record.lua, claim.lua); later events of the same job are matched by
  its id. :func:`find_in_events` does this.

For every job found, by key, in one MULTI/EXEC per batch:

- its raw payload, if the lane still holds it (acked entries wait a minute
  for the trimmer): found by job id in the lanes (``XRANGE``, bounded by what
  the group has not acked plus a minute), deleted at once in both modes: it
  holds the number and the text in clear;
- default (policy): its job record, if it has one (jobs with several parts or
  a callback, until their final event and a grace), is hidden — ``HSET
  erased 1, erased_at, retention_until`` and ``HDEL`` of ``STRIPPED_FIELDS`` —
  and re-stamped (``retention_until``; its TTL, shorter, is kept); its correlation entries lose the ``ref`` they carry (fast
  form), so no later receipt event publishes it;
- ``immediate=True`` (``sendgate erase --now``): the job record and its
  correlation entries are deleted;
- in both modes the job's entries in the events stream go (``XDEL``): they
  hold its ref, and its first event the number's hash and mask (by policy the
  engine writes them to the history store first, where the row is hidden).

Then one audit entry (action ``erase``; the subject as its keyed hash) and the
hook chain's ``on_erase``. The history rows themselves are the engine's to
hide or delete (``engine/erase.py``), since this layer knows no database.

Idempotency marks (fields of ``P:marks:<generation>:<bucket>``) hold no personal data and are left to
expire (``[engine] idempotency_hours``): deleting them early could let a
reclaimed job be sent twice. The receipt path never re-creates an erased job
record (correlate.lua only updates a record that exists).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from engine.keys import Keys

from .audit import AuditLog
from .hooks import HookChain
from .masking import HASH_HEX_LEN
from .retention import RetentionPolicy

__all__ = [
    "STRIPPED_FIELDS",
    "ErasureResult",
    "SubjectJob",
    "client_subject",
    "erase_subject",
    "find_in_events",
]

#: Job record fields removed when a record is hidden: who, what, and where from.
STRIPPED_FIELDS: tuple[str, ...] = (
    "to",
    "from",
    "text",
    "ref",
    "callback",
    "payload",
    "to_hash",
    "to_mask",
    "client",
)

# A job's correlation entries (dlr/store.py: hash fields in the carrier's
# buckets, P:dlr:c:<carrier>:<end_ms>, listed in KEYS[1] = P:dlr:idx:<carrier>),
# found by probing the carrier's buckets. ARGV[1] = bucket key prefix
# ("P:dlr:c:<carrier>:"), ARGV[2] = "delete" (drop the entries) or "hide": a
# single-part entry carries the job's ref for the receipt's event
# (dlr/correlate.lua fast path), "=<head>US<message_ids>US<ref>US<job id>", and
# keeps everything but the ref. ARGV[3..] = the normalised ids.
_ERASE_ENTRIES = r"""
local buckets = redis.call('ZRANGE', KEYS[1], 0, -1)
local ids = {}
for i = 3, #ARGV do
    ids[#ids + 1] = ARGV[i]
end
for _, bucket_end in ipairs(buckets) do
    local bucket = ARGV[1] .. bucket_end
    local vals = redis.call('HMGET', bucket, unpack(ids))
    for i, id in ipairs(ids) do
        local entry = vals[i]
        if entry then
            if ARGV[2] == 'delete' then
                redis.call('HDEL', bucket, id)
            elseif string.byte(entry, 1) == 61 then
                local s1 = string.find(entry, '\31', 2, true)
                local s2 = s1 and string.find(entry, '\31', s1 + 1, true)
                local s3 = s2 and string.find(entry, '\31', s2 + 1, true)
                if s3 and s3 > s2 + 1 then
                    redis.call('HSET', bucket, id, string.sub(entry, 1, s2) .. string.sub(entry, s3))
                end
            end
        end
    end
end
return 0
"""

_SUBJECT = re.compile(rf"^(?:[0-9a-f]{{{HASH_HEX_LEN}}}|client:[^\s]{{1,128}})$")


def _keys(prefix: str | Keys) -> Keys:
    return prefix if isinstance(prefix, Keys) else Keys(prefix)


def client_subject(client_id: str) -> str:
    """The subject of a whole client account: ``client:<id>``."""
    return f"client:{client_id}"


def _check_subject(subject: str) -> None:
    if not _SUBJECT.match(subject):
        # Never echo it: a caller passing a number in clear is the very mistake.
        raise ValueError(
            f"erasure subject must be a {HASH_HEX_LEN}-char keyed hash or 'client:<id>'"
        )


@dataclass(slots=True)
class SubjectJob:
    """One job of the subject, with what finds its hot records by key."""

    job_id: str
    carrier: str = ""
    message_ids: str = ""
    """Comma-joined, as the events carry them."""
    dlr_ids: tuple[str, ...] = ()
    """The normalised ids its correlation entries are keyed by (empty: ``message_ids``)."""
    events: list[str] = field(default_factory=list)
    """Its entries in the events stream (entry ids), when found there."""


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What ``erase_subject`` did."""

    subject: str
    immediate: bool
    records: int  # job records hidden (or deleted) in Redis: jobs still awaiting receipts
    missing: int  # jobs found without a job record in Redis (finished, or never had one)
    payloads: int  # raw payload entries deleted from the jobs streams
    retention_until: int  # unix s when the hidden records disappear (now, if immediate)
    audit_id: str
    events: int = 0  # events stream entries deleted
    history_rows: int = 0  # history store rows hidden or deleted (engine/erase.py)
    jobs: int = 0  # jobs of the subject found (the caller's, and in the events stream)
    entries: int = 0  # waiting / held jobs, dead letters, inbound messages removed (engine/subject_records.py)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def find_in_events(
    redis: Redis, prefix: str | Keys, subject: str, start: str = "-", *, job_ids: Iterable[str] = (),
    page: int = 1000,
) -> tuple[dict[str, SubjectJob], list[tuple[Any, Any]]]:
    """The subject's jobs among the events from ``start`` on (the archiver group's
    position: what is not archived yet), and those jobs' entries as read.

    A job is the subject's when its first event (which carries ``to_hash`` and
    ``client``) is in the range, or its id is one of ``job_ids`` (found
    elsewhere); its other events are matched by job id. Returns ``({job id:
    SubjectJob}, [(entry id, fields), ...])``.
    """
    _check_subject(subject)
    k = _keys(prefix)
    by_client = subject.startswith("client:")
    want_field, want = (b"client", subject[len("client:"):].encode()) if by_client else (b"to_hash", subject.encode())
    jobs: dict[str, SubjectJob] = {}
    known = set(job_ids)
    entries: list[tuple[Any, Any]] = []
    lower = start
    while True:
        chunk: Any = await redis.xrange(k.events, min=lower, max="+", count=page)
        if not chunk:
            break
        for entry_id, fields in chunk:
            jid = _s(fields.get(b"id", b""))
            if not jid:
                continue
            job = jobs.get(jid)
            if job is None and (fields.get(want_field) == want or jid in known):
                job = jobs[jid] = SubjectJob(jid)
            if job is not None:
                job.events.append(_s(entry_id))
                job.carrier = job.carrier or _s(fields.get(b"carrier", b""))
                job.message_ids = job.message_ids or _s(fields.get(b"message_ids", b""))
                entries.append((entry_id, fields))
        if len(chunk) < page:
            break
        lower = "(" + _s(chunk[-1][0])
    return jobs, entries


async def erase_subject(
    redis: Redis,
    prefix: str | Keys,
    subject_hash: str,
    now_s: float,
    policy: RetentionPolicy,
    immediate: bool = False,
    *,
    jobs: Iterable[SubjectJob] = (),
    events_from: str | None = "-",
    normalize: Callable[[str, str], Sequence[str]] | None = None,
    history: Callable[[], Awaitable[int]] | None = None,
    audit: AuditLog | None = None,
    hooks: HookChain | None = None,
    requested_by: str = "",
    batch: int = 500,
    extra: Mapping[str, Any] | None = None,
) -> ErasureResult:
    """Erase the hot Redis records of a subject's jobs (see the module docstring).

    ``jobs``: jobs the caller found (the history store's rows); those among the
    events from ``events_from`` (None: none) are added. ``normalize(carrier,
    message_id)``: the ids the carrier's correlation entries are keyed by (its
    ``dlr_id_format``; default: as given). ``history``: the caller's step on its
    own store, run before the audit entry; returns the rows it touched. ``audit``
    defaults to ``AuditLog(redis, "<prefix>:audit", policy.audit)``; ``extra``: more
    fields for the audit entry (counts of what the caller removed itself).
    """
    _check_subject(subject_hash)
    k = _keys(prefix)
    ttl = policy.ttl_s("message")
    until = int(now_s) if immediate else int(now_s) + ttl
    found: dict[str, SubjectJob] = {}
    for job in jobs:
        found.setdefault(job.job_id, job)
    if events_from is not None:
        in_events, _entries = await find_in_events(redis, k, subject_hash, events_from)
        for jid, job in in_events.items():
            known = found.get(jid)
            if known is None:
                found[jid] = job
            else:
                known.events = job.events
                known.carrier = known.carrier or job.carrier
                known.message_ids = known.message_ids or job.message_ids
    ordered = list(found.values())
    payloads = await _delete_payloads(redis, k, {j.job_id for j in ordered})
    hot = events = 0
    for i in range(0, len(ordered), batch):
        h, e = await _erase_batch(redis, k, ordered[i : i + batch], now_s, until, immediate, normalize)
        hot += h
        events += e
    rows = await history() if history is not None else 0
    log = audit if audit is not None else AuditLog(redis, k.audit, policy.audit)
    audit_id = await log.record(
        "erase",
        subject=subject_hash,
        mode="now" if immediate else "policy",
        jobs=len(ordered),
        records=hot,
        missing=len(ordered) - hot,
        payloads=payloads,
        history_rows=rows,
        retention_until=until,
        requested_by=requested_by or None,
        **dict(extra or {}),
    )
    result = ErasureResult(
        subject_hash, immediate, hot, len(ordered) - hot, payloads, until, audit_id, events, rows, len(ordered)
    )
    if hooks is not None:
        hooks.on_erase(result)
    return result


async def _delete_payloads(redis: Redis, k: Keys, job_ids: set[str], page: int = 1000) -> int:
    """XDEL the raw entries of these jobs still in a lane (acked ones wait for the
    trimmer a minute; a lane holds little more than what is not acked yet)."""
    if not job_ids:
        return 0
    wanted = {j.encode() for j in job_ids}
    deleted = 0
    for lane in k.lanes():
        lower = "-"
        while True:
            chunk: Any = await redis.xrange(lane, min=lower, max="+", count=page)
            if not chunk:
                break
            ids = [eid for eid, fields in chunk if fields.get(b"id") in wanted]
            if ids:
                deleted += int(await redis.xdel(lane, *ids))
            if len(chunk) < page:
                break
            lower = "(" + _s(chunk[-1][0])
    return deleted


async def _erase_batch(
    redis: Redis,
    k: Keys,
    jobs: list[SubjectJob],
    now_s: float,
    until: int,
    immediate: bool,
    normalize: Callable[[str, str], Sequence[str]] | None,
) -> tuple[int, int]:
    """One batch of jobs: returns (job records found in Redis, events entries deleted)."""
    read = redis.pipeline(transaction=False)
    for job in jobs:
        read.hmget(k.job(job.job_id), "carrier", "message_ids", "dlr_ids", "state")
    rows: list[Any] = await read.execute()
    write = redis.pipeline(transaction=True)
    hot = 0
    xdel_at: list[int] = []  # positions of the events' XDEL replies in the transaction
    ops = 0
    for job, (carrier_b, message_ids_b, dlr_ids_b, state_b) in zip(jobs, rows, strict=True):
        has_record = state_b is not None  # every job record has its state
        carrier = _s(carrier_b) if carrier_b else job.carrier
        # Correlation entries are keyed by the *normalised* ids: the record's
        # ``dlr_ids`` when it has one, else the carrier's format applied.
        if dlr_ids_b:
            ids = [i for i in _s(dlr_ids_b).split(",") if i]
        elif job.dlr_ids:
            ids = list(job.dlr_ids)
        else:
            raw = [i for i in (_s(message_ids_b) if message_ids_b else job.message_ids).split(",") if i]
            ids = [n for i in raw for n in (normalize(carrier, i) if normalize else (i,))]
        if carrier and ids:
            # immediate: the entries go; default: their ref goes, see _ERASE_ENTRIES
            write.eval(
                _ERASE_ENTRIES, 1, k.correlation_index(carrier), k.correlation_buckets_of(carrier),
                "delete" if immediate else "hide", *ids,
            )
            ops += 1
        if has_record:
            hot += 1
            key = k.job(job.job_id)
            if immediate:
                write.delete(key)
                ops += 1
            else:
                # hidden; its TTL (the receipt wait and a grace) is left as it is: the
                # record goes sooner than the policy's deadline, which it carries
                write.hset(key, mapping={"erased": 1, "erased_at": int(now_s), "retention_until": until})
                write.hdel(key, *STRIPPED_FIELDS)
                ops += 2
        if job.events:
            write.xdel(k.events, *job.events)
            xdel_at.append(ops)
            ops += 1
    events = 0
    if ops:
        replies: list[Any] = await write.execute()
        events = sum(int(replies[pos]) for pos in xdel_at)
    return hot, events
