"""Erasure primitives: find every record of a subject, hide it now, make it disappear on time.

Why an index: Redis cannot search hashes by field, and SCANning millions of
job records per request does not scale. So when a job is submitted, the
engine adds its id to a per-subject set; erasure reads that set.

What the submit side must write (per job, in the same script call as the
job record; ``P`` is the key prefix, ``H = keyed_hash(secret, to)``):

* ``SADD P:subject:H <job id>`` and ``EXPIRE P:subject:H <message ttl>``
  (every time: the index then lives as long as its newest record). For
  per-client erasure/closure also ``SADD P:subject:client:<client id>
  <job id>`` (``client_subject(client_id)``), same TTL.
* In the job record ``P:job:<job id>``: ``to_hash`` = ``H`` and, while the
  raw job entry stays in the jobs stream, ``src_key`` (the lane's stream
  key) and ``src_id`` (the entry id) so erasure can delete the raw payload,
  which holds the number and the text in clear.

``erase_subject(redis, prefix, subject, now_s, policy, immediate=False)``:

* walks the index in batches (SSCAN), and for each job id, in one
  MULTI/EXEC per batch:

  - deletes the raw payload entry (``XDEL src_key src_id``) at once, in both
    modes: it holds the number and the text in clear;
  - default: hides the record — ``HSET erased 1, erased_at, retention_until``
    and ``HDEL`` of the fields that identify the subject or carry content
    (``STRIPPED_FIELDS``) — and re-stamps it to disappear one message
    retention after the request (``EXPIRE``), per the policy;
  - ``immediate=True`` (``sendgate erase --now``): deletes the record and its
    DLR correlation entries (fields of ``P:dlr:c:<carrier>:<end_ms>``, dlr/store.py).

* then re-stamps the index (default) or deletes it (immediate), writes one
  audit entry (action ``erase``; the subject appears as its keyed hash) and
  calls the hook chain's ``on_erase``.

Idempotency marks (``P:idem:<job id>``) hold no personal data and are left to
expire: deleting them early could let a reclaimed job be sent twice. The
job records' writers must not re-create an erased record: the receipt path
should only update a job record that exists (``EXISTS`` in its script).
Jobs still waiting in a stream (not yet submitted) have no record yet; their
raw entries are erased only once indexed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    "client_subject",
    "erase_subject",
    "index_subject",
    "subject_key",
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
    "src_key",
    "src_id",
)

# "=<submitted_ms>US<message_ids>US<ref>US<job id>" -> "1:<submitted_ms>:<job id>", TTL kept.
# A job's correlation entries (dlr/store.py: hash fields in the carrier's
# buckets, P:dlr:c:<carrier>:<end_ms>, listed in KEYS[1] = P:dlr:idx:<carrier>),
# found by probing the carrier's buckets. ARGV[1] = bucket key prefix
# ("P:dlr:c:<carrier>:"), ARGV[2] = "delete" (drop the entries) or "hide": a
# single-part entry carries the job's ref for the receipt's event
# (dlr/correlate.lua fast path), "=<submitted>US<message_ids>US<ref>US<job id>",
# and becomes the general form "1:<submitted>:<job id>", so the receipt reads
# the hidden record instead. ARGV[3..] = the normalised ids.
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
                local s3 = s1 and string.find(entry, '\31', s1 + 1, true)
                s3 = s3 and string.find(entry, '\31', s3 + 1, true)
                if s3 then
                    redis.call('HSET', bucket, id,
                        '1:' .. string.sub(entry, 2, s1 - 1) .. ':' .. string.sub(entry, s3 + 1))
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


def subject_key(prefix: str | Keys, subject: str) -> str:
    """The subject index set: ``<prefix>:subject:<subject>``."""
    return _keys(prefix).subject(subject)


def client_subject(client_id: str) -> str:
    """The subject of a whole client account: ``client:<id>``."""
    return f"client:{client_id}"


def _check_subject(subject: str) -> None:
    if not _SUBJECT.match(subject):
        # Never echo it: a caller passing a number in clear is the very mistake.
        raise ValueError(
            f"erasure subject must be a {HASH_HEX_LEN}-char keyed hash or 'client:<id>'"
        )


async def index_subject(redis: Any, prefix: str | Keys, subject: str, job_id: str, ttl_s: int) -> None:
    """Add ``job_id`` to the subject's index (SADD + EXPIRE); ``redis`` may be a pipeline.

    The engine's submit script does the same two commands inline; this is for
    other writers and tests.
    """
    _check_subject(subject)
    key = subject_key(prefix, subject)
    res = redis.sadd(key, job_id)
    if hasattr(res, "__await__"):
        await res
    res = redis.expire(key, ttl_s)
    if hasattr(res, "__await__"):
        await res


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What ``erase_subject`` did."""

    subject: str
    immediate: bool
    records: int  # job records hidden (or deleted)
    missing: int  # ids in the index whose record had already expired
    payloads: int  # raw payload entries deleted from the jobs streams
    retention_until: int  # unix s when the hidden records disappear (now, if immediate)
    audit_id: str


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def erase_subject(
    redis: Redis,
    prefix: str | Keys,
    subject_hash: str,
    now_s: float,
    policy: RetentionPolicy,
    immediate: bool = False,
    *,
    audit: AuditLog | None = None,
    hooks: HookChain | None = None,
    requested_by: str = "",
    batch: int = 500,
) -> ErasureResult:
    """Erase every record indexed under ``subject_hash`` (see the module docstring).

    ``audit`` defaults to ``AuditLog(redis, "<prefix>:audit", policy.audit)``.
    """
    _check_subject(subject_hash)
    index = subject_key(prefix, subject_hash)
    ttl = policy.ttl_s("message")
    until = int(now_s) if immediate else int(now_s) + ttl
    records = missing = payloads = 0
    seen: set[str] = set()  # SSCAN may return a member twice
    cursor: int = 0
    while True:
        cursor, members = await redis.sscan(index, cursor, count=batch)
        job_ids = [job_id for job_id in map(_s, members) if job_id not in seen]
        seen.update(job_ids)
        if job_ids:
            r, m, p = await _erase_batch(redis, prefix, job_ids, now_s, ttl, until, immediate)
            records += r
            missing += m
            payloads += p
        if cursor == 0:
            break
    if immediate:
        await redis.delete(index)
    else:
        await redis.expire(index, ttl)
    log = audit if audit is not None else AuditLog(redis, _keys(prefix).audit, policy.audit)
    audit_id = await log.record(
        "erase",
        subject=subject_hash,
        mode="now" if immediate else "policy",
        records=records,
        missing=missing,
        payloads=payloads,
        retention_until=until,
        requested_by=requested_by or None,
    )
    result = ErasureResult(subject_hash, immediate, records, missing, payloads, until, audit_id)
    if hooks is not None:
        hooks.on_erase(result)
    return result


async def _erase_batch(
    redis: Redis,
    prefix: str | Keys,
    job_ids: list[str],
    now_s: float,
    ttl: int,
    until: int,
    immediate: bool,
) -> tuple[int, int, int]:
    k = _keys(prefix)
    keys = [k.job(job_id) for job_id in job_ids]
    read = redis.pipeline(transaction=False)
    for key in keys:
        read.hmget(key, "src_key", "src_id", "carrier", "message_ids", "dlr_ids")
        read.exists(key)
    rows: list[Any] = await read.execute()
    write = redis.pipeline(transaction=True)
    records = missing = 0
    xdel_at: list[int] = []  # positions of the XDEL replies in the transaction
    ops = 0
    for i, key in enumerate(keys):
        src_key, src_id, carrier, message_ids, dlr_ids = rows[2 * i]
        if not rows[2 * i + 1]:
            missing += 1
            continue
        records += 1
        if src_key and src_id:
            write.xdel(_s(src_key), _s(src_id))
            xdel_at.append(ops)
            ops += 1
        # Correlation entries are keyed by the *normalised* ids (``dlr_ids`` when
        # they differ from ``message_ids``).
        ids = [mid for mid in _s(dlr_ids or message_ids or b"").split(",") if mid]
        if carrier and ids:
            # immediate: the entries go; default: hidden, see _ERASE_ENTRIES
            write.eval(
                _ERASE_ENTRIES, 1, k.correlation_index(_s(carrier)), k.correlation_buckets_of(_s(carrier)),
                "delete" if immediate else "hide", *ids,
            )
            ops += 1
        if immediate:
            write.delete(key)
            ops += 1
        else:
            write.hset(
                key,
                mapping={"erased": 1, "erased_at": int(now_s), "retention_until": until},
            )
            write.hdel(key, *STRIPPED_FIELDS)
            write.expire(key, ttl)
            ops += 3
    payloads = 0
    if records:
        replies: list[Any] = await write.execute()
        # XDEL answers how many entries went (0 if the stream was trimmed already).
        payloads = sum(int(replies[pos]) for pos in xdel_at)
    return records, missing, payloads
