"""``sendgate erase`` and ``sendgate purge``: the data subject's rights and retention, on demand.

``erase --to NUMBER`` / ``--client ID`` covers every record of that subject,
found without scanning the keyspace: in the history store (rows by keyed hash
of the number, or by client) and among the events still in the stream (what
is not archived yet and a few minutes more: bounded by the archive lag and
``events_min_keep_s``). Then, by key, the hot Redis records of those jobs
(job records, correlation entries, raw job payloads still in a lane, their
events: privacy_hooks.erasure) and the store's rows. By default the records
are hidden at once and re-stamped to disappear one message retention after
the request (the rows: ``HistoryStore.hide``; the events found are written to
the store first, so the rows of those not archived yet exist to be hidden);
``--now`` deletes them at once. Either way
an audit entry is written, with the subject as its keyed hash — never the
number in clear.

An archiver batch read before an ``--now`` erasure and committed after it
would bring the subject's rows of that batch back (the events are gone from
Redis, the batch was in the archiver's hands). So ``HistoryStore.erase``
records the job ids it deleted, and those found in the events stream, in the
store's erasure ledger — in its own transaction, under the archivers' write
lock — and every archiver batch deletes its rows of ledgered jobs inside its
own transaction before it commits (engine/history/store.py). The store is
still erased a second time after Redis (nothing to do, normally).

``purge`` applies the streams' rules now (engine/stream_trim.py; records with
a TTL expire by themselves).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis

from dlr.ids import submit_normalizer
from dlr.store import ReceiptStore
from engine.config import Settings
from engine.history import HistoryStore, deltas_from_entries
from engine.history.inbound import inbound_table, records_from_entries
from engine.hook_chain import chain_for
from engine.inbound import client_numbers
from engine.inbound_store import erase_client_waiting_parts, erase_waiting_parts, reassembly_ttl_s
from engine.keys import Keys, shard_keys, shard_of
from engine.stream_trim import trim_streams
from engine.subject_records import FoundEntry, Matcher, find_entries, remove_found
from privacy_hooks import RetentionPolicy, keyed_hash, mask_number
from privacy_hooks.audit import AuditLog
from privacy_hooks.erasure import (
    ErasureResult,
    SubjectJob,
    client_subject,
    erase_subject,
    find_in_events,
)

__all__ = ["SubjectErasure", "dry_run_counts", "erase_main", "erase_subject_everywhere", "hot_window_ms", "purge_main", "redis_for", "retention_policy", "subject_of"]


def retention_policy(settings: Settings) -> RetentionPolicy:
    d = settings.privacy.retention_days
    return RetentionPolicy(
        message=d.message, payload=d.payload, activity_log=d.activity_log, audit=d.audit,
        dlr_wait_h=settings.privacy.dlr_wait_h,
    )


def hot_window_ms(settings: Settings) -> int:
    """How far back a job can still have hot records in Redis: its job record lives
    at most twice the longest receipt wait plus two bucket spans and the grace."""
    waits = [settings.privacy.dlr_wait_h, *(c.dlr_wait_h for c in settings.carriers)]
    wait_ms = int(max(waits) * 3_600_000)
    return 2 * wait_ms + 2 * (wait_ms // 64 + 1) + settings.engine.record_grace_s * 1000 + 3_600_000


def _normalizer(settings: Settings) -> Callable[[str, str], Sequence[str]]:
    """(carrier, message id) → the id its correlation entry is keyed by (``dlr_id_format``)."""
    formats = {c.name: submit_normalizer(c.dlr_id_format) for c in settings.carriers}

    def normalize(carrier: str, message_id: str) -> Sequence[str]:
        fn = formats.get(carrier)
        return (fn(message_id),) if fn else (message_id,)

    return normalize


def redis_for(settings: Settings) -> Redis:
    """The Redis of an admin command (erase, purge, export, close-client)."""
    if not settings.redis.url:
        raise SystemExit("sendgate: this command needs a Redis: set REDIS_URL or [redis] url")
    from engine.redis_client import redis_from_settings

    return redis_from_settings(settings)


_redis = redis_for


def subject_of(settings: Settings, to: str | None, client: str | None) -> tuple[str, str] | None:
    """(subject, label for output) of ``--to`` / ``--client``; None when ``to`` is no E.164 number.
    The label holds the number masked, never in clear."""
    from engine.job import normalise_number

    if to is not None:
        digits = normalise_number(to)
        if digits is None:
            return None
        return keyed_hash(settings.privacy.hash_secret.encode(), digits), mask_number("+" + digits)
    assert client is not None
    return client_subject(client), f"client {client}"


@dataclasses.dataclass(frozen=True, slots=True)
class SubjectErasure(ErasureResult):
    """`ErasureResult` with the subject's inbound messages: rows of the history store's
    ``inbound`` table hidden or deleted, and reassembly sets of parts removed."""

    inbound_rows: int = 0
    inbound_parts: int = 0


async def erase_subject_everywhere(
    redis: Redis,
    settings: Settings,
    subject: str,
    *,
    immediate: bool,
    store: HistoryStore | None,
    requested_by: str = "",
    now_s: float | None = None,
    include_suppression: bool = False,
) -> SubjectErasure:
    """Erase ``subject`` (a keyed hash, or ``client:<id>``) from the history store and
    the hot Redis records (see the module docstring). ``store``: None when there is no
    history store (``[history] enabled = false``): every event in the stream is read.
    ``include_suppression``: take the subject off the suppression lists too (only with
    ``immediate``; by default an opt-out outlives the erasure)."""
    now_s = time.time() if now_s is None else now_s
    now_ms = int(now_s * 1000)
    shards = shard_keys(settings.redis.prefix, settings.redis.shards)
    keys = shards[0]
    by_client = subject.startswith("client:")
    # Parts of the subject's messages waiting for reassembly first (by the sender's
    # index, or a client's from the sweep's list; no scan): gone, and never published
    # later; a set they complete before this is in the inbound stream, searched next.
    # On every shard ([redis] shards).
    ttl_s = reassembly_ttl_s(settings)
    parts_removed = 0
    for shard in shards:
        if by_client:  # the client's sets, from the partial sweep's list
            parts_removed += await erase_client_waiting_parts(redis, shard, subject[len("client:"):], ttl_s)
        else:
            parts_removed += await erase_waiting_parts(redis, shard, subject, ttl_s)
    # Then what could still be sent: waiting and held jobs (marked erased, so a copy an
    # engine holds is acked unsent), then their dead letters and inbound messages;
    # on every shard.
    found: list[FoundEntry] = []
    removed = 0
    for shard in shards:
        some = await find_entries(redis, shard, Matcher(subject, settings.privacy.hash_secret),
                                  [c.name for c in settings.carriers], [c.id for c in settings.clients])
        removed += await remove_found(redis, shard, some, settings.engine.group,
                                      max(1, int(settings.engine.idempotency_hours * 3600)))
        found += some
    kinds: dict[str, int] = {}
    for e in found:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    suppression_removed = 0
    if include_suppression and immediate:
        for shard in shards:  # every shard's copy of the lists
            suppression_removed += await _remove_from_suppression(redis, settings, shard, subject, found)
    policy = retention_policy(settings)
    until = int(now_s) + policy.ttl_s("message")
    key = {"client": subject[len("client:"):]} if by_client else {"to_hash": subject}
    inbound_key = {"client": subject[len("client:"):]} if by_client else {"from_hash": subject}
    rows = []
    if store is not None:
        await store.migrate()
        since = now_ms - max(hot_window_ms(settings), int(settings.engine.events_keep_hours * 3_600_000))
        rows = await store.find(**key, since_ms=since, hidden=True, limit=1_000_000)
    # Every event of the subject still in Redis (the stream holds what is not archived
    # yet, and a few minutes more): both modes delete them from Redis; by policy their
    # rows are written first (a merge: archived ones change nothing), so those not
    # archived yet are hidden too, and an archiver batch in flight merges into a hidden row.
    in_events: dict[str, SubjectJob] = {}
    entries: list[Any] = []
    for shard in shards:
        found_here, entries_here = await find_in_events(redis, shard, subject, "-", job_ids=[r.job_id for r in rows])
        in_events.update(found_here)
        entries += entries_here
    if store is not None and entries and not immediate:
        await store.write(deltas_from_entries(entries), now_ms)
    jobs = [*in_events.values(), *(SubjectJob(r.job_id, r.carrier, r.message_ids) for r in rows
                                   if r.job_id not in in_events)]
    job_ids = [j.job_id for j in jobs]  # every shard's: for the store's erasure ledger
    normalize = _normalizer(settings)
    # Receipt events staged for the privacy hooks, not published yet (dlr/store.py, "Two
    # steps"): dropped in both modes, like the subject's entries in the events stream.
    staged = 0
    for shard in shards:
        staged += await ReceiptStore(redis, shard).erase_staged(job_ids)

    async def history() -> int:
        if store is None:
            return 0
        if immediate:  # the job ids go into the store's erasure ledger too (closes an archiver race)
            return await store.erase(**key, job_ids=job_ids, now_ms=now_ms)
        return await store.hide(**key, now_ms=now_ms, retention_until=until)

    inbound_rows = 0
    if store is not None:
        # The subject's inbound messages in the store (the archiver's `inbound` table):
        # deleted, or by policy hidden, with those just taken from the stream written
        # first, so that they are held (hidden) to the retention like the rest.
        table = inbound_table(store)
        inbound_entries = [(e.key, e.entry_id) for e in found if e.kind == "inbound"]
        if immediate:  # the entries go into the inbound erasure ledger (an archiver batch in flight)
            inbound_rows = await table.erase(**inbound_key, entries=inbound_entries, now_ms=now_ms)
        else:
            taken = [(e.key, [(e.entry_id, e.fields)]) for e in found if e.kind == "inbound"]
            if taken:
                await table.write(records_from_entries(
                    taken, now_ms, own_numbers=client_numbers(settings.clients), retention_s=policy.ttl_s("message")))
            inbound_rows = await table.hide(**inbound_key, now_ms=now_ms, retention_until=until)

    # Shards: each job's hot records (job record, correlation entries, events) are on
    # its id's shard; the other shards first, without audit or history step, then
    # shard 0 with both (one audit entry, with the totals in the result).
    others = ErasureTotals()
    if len(shards) > 1:
        by_shard: dict[int, list[SubjectJob]] = {}
        for job in jobs:
            by_shard.setdefault(shard_of(job.job_id, len(shards)), []).append(job)
        jobs = by_shard.pop(0, [])
        for index, shard_jobs in sorted(by_shard.items()):
            part = await erase_subject(
                redis, shards[index], subject, now_s, policy, immediate=immediate, jobs=shard_jobs,
                events_from=None, normalize=normalize, audit=_SILENT_AUDIT,  # type: ignore[arg-type]
            )
            others.add(part)
    audit = AuditLog(redis, keys.audit, policy.audit)
    result = await erase_subject(
        redis, keys, subject, now_s, policy, immediate=immediate, jobs=jobs,
        events_from=None, normalize=normalize, history=history, audit=audit, requested_by=requested_by,
        hooks=chain_for(settings),
        extra={
            "waiting_jobs": kinds.get("waiting_job", 0), "scheduled_jobs": kinds.get("scheduled_job", 0),
            "dead_letters": kinds.get("dead_letter", 0), "inbound": kinds.get("inbound", 0),
            "inbound_history_rows": inbound_rows, "inbound_parts_waiting": parts_removed,
            "stream_entries_removed": removed, "staged_receipt_events": staged,
            "suppression": f"removed from {suppression_removed} list(s)" if include_suppression and immediate
            else "kept (an opt-out outlives erasure)",
            **({"shards": len(shards), "records_other_shards": others.records} if len(shards) > 1 else {}),
        },
    )
    result = others.into(result)
    if immediate and store is not None:
        await store.erase(**key, job_ids=job_ids, now_ms=now_ms)  # belt and braces: see the module doc
        await inbound_table(store).erase(**inbound_key, entries=inbound_entries, now_ms=now_ms)
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    return SubjectErasure(**{**fields, "entries": removed}, inbound_rows=inbound_rows, inbound_parts=parts_removed)


class _SilentAudit:
    """The audit of a shard's part of one erasure: the entry is written once, by shard 0's."""

    async def record(self, *_args: Any, **_fields: Any) -> str:
        return ""


_SILENT_AUDIT = _SilentAudit()


@dataclasses.dataclass
class ErasureTotals:
    """What the other shards' erase_subject calls did, added to shard 0's result."""

    records: int = 0
    missing: int = 0
    payloads: int = 0
    events: int = 0
    jobs: int = 0

    def add(self, r: ErasureResult) -> None:
        self.records += r.records
        self.missing += r.missing
        self.payloads += r.payloads
        self.events += r.events
        self.jobs += r.jobs

    def into(self, r: ErasureResult) -> ErasureResult:
        return dataclasses.replace(
            r, records=r.records + self.records, missing=r.missing + self.missing, payloads=r.payloads + self.payloads,
            events=r.events + self.events, jobs=r.jobs + self.jobs,
        )


async def _remove_from_suppression(
    redis: Redis, settings: Settings, keys: Keys, subject: str, found: list[FoundEntry]
) -> int:
    """``--include-suppression``: a number off every list known to hold it (the configured
    clients', the default one, those of its records); a client: its list deleted."""
    if subject.startswith("client:"):
        return int(await redis.delete(keys.suppression(subject[len("client:"):])))
    clients = {"", *(c.id for c in settings.clients), *(e.fields.get("client", "") for e in found)}
    pipe = redis.pipeline(transaction=True)
    for c in sorted(clients):
        pipe.srem(keys.suppression(c), subject)
    return sum(int(n) for n in await pipe.execute())


async def dry_run_counts(redis: Redis, settings: Settings, subject: str, store: HistoryStore | None) -> dict[str, int]:
    """What an erasure of ``subject`` would touch, per kind; changes nothing (no audit entry either)."""
    from engine.subject_access import collect

    rec = await collect(redis, settings, subject, store)
    return rec.counts()


async def erase_main(
    settings: Settings, *, to: str | None, client: str | None, now: bool, dry_run: bool = False,
    include_suppression: bool = False, now_s: float | None = None,
) -> int:
    """Erase one subject; prints a summary without the number in clear. ``dry_run``:
    print what would be erased, per kind, and change nothing."""
    from engine.history.cli import store_for

    found = subject_of(settings, to, client)
    if found is None:
        print("sendgate erase: --to is not an E.164 number")
        return 2
    if include_suppression and not now:
        print("sendgate erase: --include-suppression needs --now (by policy an opt-out outlives erasure)")
        return 2
    subject, label = found
    redis = redis_for(settings)
    store = store_for(settings) if settings.history.enabled else None
    try:
        if dry_run:
            counts = await dry_run_counts(redis, settings, subject, store)
            for kind, n in counts.items():
                print(f"{kind}\t{n}")
            kept = "" if include_suppression else " (suppression entries are kept)"
            print(f"dry run: {sum(counts.values())} record(s) of {label} would be erased{kept}; nothing changed")
            return 0
        result = await erase_subject_everywhere(redis, settings, subject, immediate=now, store=store,
                                                requested_by="cli", now_s=now_s,
                                                include_suppression=include_suppression)
        mode = "deleted" if now else "hidden, to disappear at retention"
        print(f"erased {label}: {result.jobs} record(s) {mode} ({result.history_rows} in the history store, "
              f"{result.records} in Redis), {result.payloads} raw payload(s) deleted, {result.entries} waiting or "
              f"held job(s), dead letter(s) and inbound message(s) removed, {result.inbound_rows} inbound "
              f"message(s) {mode} in the history store, {result.inbound_parts} message(s) in parts waiting for "
              f"reassembly removed; audit entry {result.audit_id}")
        return 0
    finally:
        if store is not None:
            await store.close()
        await redis.aclose()


async def purge_main(settings: Settings) -> int:
    """Trim the streams by their rules now."""
    redis = _redis(settings)
    try:
        trimmed = await trim_streams(redis, settings, approximate=False)
        for stream, rule, removed in trimmed:
            print(f"{stream}: {removed} entr{'y' if removed == 1 else 'ies'} removed ({rule})")
        audit = AuditLog(redis, Keys(settings.redis.prefix).audit, retention_policy(settings).audit)
        await audit.record(
            "purge", removed=sum(r for _s, _r, r in trimmed),
            # names without the prefix: "jobs=12,events=0,…" (a prefix is no subject, but may hold digits)
            streams=",".join(f"{stream.removeprefix(settings.redis.prefix + ':')}={removed}" for stream, _r, removed in trimmed),
        )
        return 0
    finally:
        await redis.aclose()
