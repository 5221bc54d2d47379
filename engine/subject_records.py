"""A subject's records in Redis streams and held jobs: found by a bounded scan, removed by key.

Why a scan here, when erasure otherwise needs none: waiting jobs, held
(scheduled) jobs and dead letters carry the number in clear in ``to``, not
its keyed hash, and inbound messages carry ``from_hash``; nothing indexes
them. They live in a few streams and one sorted set whose size is bounded by
what is waiting (lanes: what the group has not acked plus a minute; the
scheduled set: jobs held for ``send_at``; dead letters and inbound: capped
near ``streams_maxlen`` and the retention). So an access or erasure request
reads those, page by page (``XRANGE``/``ZRANGE`` 1000 at a time), and
compares the keyed hash of each entry's ``to`` (``from_hash`` for inbound) or
its ``client`` — never the keyspace (``SCAN``). Cost: one read of each of
those streams per request, O(entries held); at ``streams_maxlen`` = 100,000
about a second of Redis time spread over 100 round trips, which an admin
command can afford and the send path never pays.

Removal (:func:`remove_found`): stream entries by ``XDEL`` (a waiting job
also ``XACK``-ed, in case an engine holds it unclaimed), a held job's hash
and its member of the scheduled set by ``DEL``/``ZREM``. A waiting or held
job's id gets the idempotency mark ``e`` (erased), taken NX (engine/marks.py): an engine
that read a copy before the ``XDEL`` finds a foreign mark when it claims it,
so claim.lua acks it as a duplicate — never sent, no event. A mark already
there (the job is being sent) is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from engine.job import normalise_number
from engine.keys import Keys
from engine.marks import take_marks_source
from engine.scripts import marks_call
from privacy_hooks import KeyedHasher

__all__ = ["ERASED_MARK", "FoundEntry", "Matcher", "find_entries", "remove_found", "waiting_streams"]

#: Idempotency mark of a job erased before it was sent (claim.lua: a foreign mark → duplicate, acked).
ERASED_MARK = "e"

_PAGE = 1000


def _flat(call: tuple[list[str], list[Any]]) -> list[Any]:
    """A script call's (KEYS, ARGV) as EVAL's arguments: numkeys, keys, args."""
    keys, args = call
    return [len(keys), *keys, *args]


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class FoundEntry:
    """One record of the subject: ``kind`` (waiting_job, scheduled_job, dead_letter, inbound),
    where it is (a stream and its entry id, or a held job's hash) and its fields."""

    kind: str
    key: str
    entry_id: str
    fields: dict[str, str]

    @property
    def job_id(self) -> str:
        return self.fields.get("id", "")


class Matcher:
    """Whether an entry is the subject's: by the keyed hash of a number field, or by ``client``."""

    def __init__(self, subject: str, hash_secret: str) -> None:
        self.client = subject[len("client:"):] if subject.startswith("client:") else None
        self.subject = subject
        self._hash = KeyedHasher(hash_secret.encode())

    def __call__(self, fields: dict[bytes, bytes], number_field: bytes = b"to", hash_field: bytes = b"") -> bool:
        if self.client is not None:
            return fields.get(b"client", b"") == self.client.encode()
        if hash_field:
            return fields.get(hash_field, b"") == self.subject.encode()
        raw = fields.get(number_field)
        if not raw:
            return False
        try:
            digits = normalise_number(raw.decode())
        except UnicodeDecodeError:
            return False
        return digits is not None and self._hash(digits) == self.subject


def waiting_streams(keys: Keys, carriers: Iterable[str] = (), clients: Iterable[str] = ()) -> list[str]:
    """The streams where jobs wait to be sent: the lanes, and the park streams of the
    configured carriers and clients (engine/pipeline.py's admission: ``P:park:<carrier>:
    <lane>[:<client>]``). A park stream of a carrier no longer configured is not read
    (an engine adopts it at start: docs/contract.md, Known gaps)."""
    from engine.admission import LANES

    out = list(keys.lanes())
    for carrier in carriers:
        for lane in LANES:
            out += [keys.park(carrier, lane, c) for c in ("", *clients)]
    return out


async def _scan_stream(
    redis: Redis, stream: str, kind: str, match: Callable[[dict[bytes, bytes]], bool]
) -> list[FoundEntry]:
    out: list[FoundEntry] = []
    lower = "-"
    while True:
        chunk: Any = await redis.xrange(stream, min=lower, max="+", count=_PAGE)
        if not chunk:
            break
        for entry_id, fields in chunk:
            if match(fields):
                out.append(FoundEntry(kind, stream, _s(entry_id), {_s(k): _s(v) for k, v in fields.items()}))
        if len(chunk) < _PAGE:
            break
        lower = "(" + _s(chunk[-1][0])
    return out


async def _scan_scheduled(redis: Redis, keys: Keys, match: Callable[[dict[bytes, bytes]], bool]) -> list[FoundEntry]:
    out: list[FoundEntry] = []
    start = 0
    while True:
        members: Any = await redis.zrange(keys.scheduled, start, start + _PAGE - 1)
        if not members:
            break
        pipe = redis.pipeline(transaction=False)
        for m in members:
            pipe.hgetall(keys.scheduled_job(_s(m)))
        for m, fields in zip(members, await pipe.execute(), strict=True):
            if fields and match(fields):
                out.append(FoundEntry("scheduled_job", keys.scheduled_job(_s(m)), _s(m),
                                      {_s(k): _s(v) for k, v in fields.items()}))
        if len(members) < _PAGE:
            break
        start += _PAGE
    return out


async def find_entries(
    redis: Redis, keys: Keys, match: Matcher, carriers: Iterable[str] = (), clients: Iterable[str] = (),
) -> list[FoundEntry]:
    """The subject's waiting (lanes, park streams of ``carriers`` x ``clients``) and held
    jobs, dead letters and inbound messages (see the module doc)."""
    found: list[FoundEntry] = []
    for stream in waiting_streams(keys, carriers, clients):
        found += await _scan_stream(redis, stream, "waiting_job", match)
    found += await _scan_scheduled(redis, keys, match)
    found += await _scan_stream(redis, keys.dead, "dead_letter", match)
    found += await _scan_stream(redis, keys.inbound, "inbound", lambda f: match(f, hash_field=b"from_hash"))
    return found


async def remove_found(redis: Redis, keys: Keys, found: Iterable[FoundEntry], group: str, mark_ttl_s: int) -> int:
    """Remove these records (see the module doc) in one transaction; returns how many went."""
    found = list(found)
    pipe = redis.pipeline(transaction=True)
    counted: list[int] = []
    n = 0
    erased = [e.job_id for e in found if e.kind in ("waiting_job", "scheduled_job") and e.job_id]
    if erased:  # their marks `e` (NX) first, in the same transaction
        pipe.eval(take_marks_source(), *_flat(marks_call(keys, "take", erased, mark_ttl_s,
                                                          int(time.time() * 1000), ERASED_MARK)))
        n += 1
    for e in found:
        if e.kind == "scheduled_job":
            pipe.delete(e.key, *((keys.scheduled_id(e.job_id),) if e.job_id else ()))
            counted.append(n)
            pipe.zrem(keys.scheduled, e.entry_id)
            n += 2
            continue
        if e.kind == "waiting_job":
            pipe.xack(e.key, group, e.entry_id)
            n += 1
        pipe.xdel(e.key, e.entry_id)
        counted.append(n)
        n += 1
    if not n:
        return 0
    # no raise: an XACK on a lane without the engine's group (no engine ever ran) is an error reply
    replies: list[Any] = await pipe.execute(raise_on_error=False)
    return sum(int(replies[i]) for i in counted if not isinstance(replies[i], Exception))
