"""``sendgate export``: the data subject's right of access — every record held about a number or a client.

Why its own module: export and erasure's ``--dry-run`` need the same
inventory (:func:`collect`), and erasure needs it without printing. The
inventory is found the way erasure finds it (engine/erase.py): the history
store's rows by keyed hash or client (hidden ones too: they are still held),
the events not archived yet, the job records of those jobs by key, and the
streams that hold the number in clear (engine/subject_records.py: a bounded
scan of the lanes, held jobs, dead letters and inbound messages), the
store's ``inbound`` rows by the sender's hash or client, and the parts of
the subject's messages waiting for reassembly (by the per-sender index). The
suppression lists that hold the subject's hash are asked by key: the
configured clients' lists, the default list, and the lists of clients seen
in the subject's records (a list of a client never configured nor seen is
not found).

The export prints JSON lines on stdout only — the subject's own data, in
clear, is the point of an access request — and logs none of it; the audit
entry (``export``) carries the subject as its keyed hash and counts per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from redis.asyncio import Redis

from engine.config import Settings
from engine.history import HistoryRow, HistoryStore
from engine.history.inbound import InboundRow, inbound_table
from engine.inbound_store import client_waiting_parts, waiting_parts
from engine.keys import Keys, shard_keys, shard_of
from engine.subject_records import FoundEntry, Matcher, find_entries
from privacy_hooks.audit import AuditLog
from privacy_hooks.erasure import SubjectJob, find_in_events

__all__ = ["KINDS", "SubjectRecords", "collect", "export_lines", "export_main"]

#: The kinds of record an export prints, in order.
KINDS = (
    "history_row", "job_record", "event", "waiting_job", "scheduled_job", "dead_letter", "inbound",
    "inbound_history_row", "inbound_part", "suppression",
)


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class SubjectRecords:
    """What is held about one subject (see the module docstring)."""

    subject: str
    rows: list[HistoryRow] = field(default_factory=list)
    event_jobs: dict[str, SubjectJob] = field(default_factory=dict)
    events: list[tuple[Any, Any]] = field(default_factory=list)
    job_records: dict[str, dict[str, str]] = field(default_factory=dict)
    entries: list[FoundEntry] = field(default_factory=list)
    inbound_rows: list[InboundRow] = field(default_factory=list)
    """Rows of the history store's ``inbound`` table (the subject as sender, or the client's)."""
    inbound_parts: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """Messages in parts waiting for reassembly: (key, fields) of each set."""
    texts: dict[str, str] = field(default_factory=dict)
    """[history] keep_text, the key configured: job id -> its text (or why it did not open)."""
    inbound_texts: dict[tuple[str, str], str] = field(default_factory=dict)
    """The same for inbound rows, by (stream, entry id)."""
    suppression: list[str] = field(default_factory=list)
    """The clients ("" = the default list) whose suppression list holds the subject
    (a client subject: its own list, if it has one)."""
    event_streams: list[str] = field(default_factory=list)
    """The events stream of each of ``events`` (its shard's), in the same order."""

    def job_ids(self) -> set[str]:
        return {r.job_id for r in self.rows} | set(self.event_jobs)

    def counts(self) -> dict[str, int]:
        """Records per kind (every kind of :data:`KINDS`, zeros too)."""
        out = dict.fromkeys(KINDS, 0)
        out["history_row"] = len(self.rows)
        out["job_record"] = len(self.job_records)
        out["event"] = len(self.events)
        for e in self.entries:
            out[e.kind] += 1
        out["inbound_history_row"] = len(self.inbound_rows)
        out["inbound_part"] = len(self.inbound_parts)
        out["suppression"] = len(self.suppression)
        return out


async def collect(
    redis: Redis, settings: Settings, subject: str, store: HistoryStore | None, *, since_ms: int | None = None,
    cipher: Any = None,
) -> SubjectRecords:
    """Everything held about ``subject`` (a keyed hash or ``client:<id>``); changes nothing.

    ``cipher`` (a `TextCipher`: [history] keep_text's key): the texts of its rows too."""
    shards = shard_keys(settings.redis.prefix, settings.redis.shards)
    keys = shards[0]
    rec = SubjectRecords(subject)
    by_client = subject.startswith("client:")
    client = subject[len("client:"):] if by_client else None
    if store is not None:
        await store.migrate()
        key = {"client": client} if by_client else {"to_hash": subject}
        rec.rows = await store.find(**key, since_ms=since_ms or 0, hidden=True, limit=1_000_000)
        by = {"client": client} if by_client else {"from_hash": subject}
        rec.inbound_rows = await inbound_table(store).find(**by, since_ms=since_ms or 0, hidden=True, limit=1_000_000)
        if cipher is not None:
            await _open_texts(rec, store, cipher)
    for shard in shards:  # every shard's waiting parts and events ([redis] shards)
        if by_client:
            assert client is not None
            rec.inbound_parts += await client_waiting_parts(redis, shard, client)
        else:
            rec.inbound_parts += await waiting_parts(redis, shard, subject)
        jobs_here, events_here = await find_in_events(redis, shard, subject, "-", job_ids=[r.job_id for r in rec.rows])
        rec.event_jobs.update(jobs_here)
        rec.events += events_here
        rec.event_streams += [shard.events] * len(events_here)
    ids = sorted(rec.job_ids())
    n = len(shards)
    for i in range(0, len(ids), 500):
        pipe = redis.pipeline(transaction=False)
        for jid in ids[i : i + 500]:
            pipe.hgetall(shards[shard_of(jid, n)].job(jid))
        for jid, fields in zip(ids[i : i + 500], await pipe.execute(), strict=True):
            if fields:
                rec.job_records[jid] = {_s(k): _s(v) for k, v in fields.items()}
    for shard in shards:
        rec.entries += await find_entries(redis, shard, Matcher(subject, settings.privacy.hash_secret),
                                          [c.name for c in settings.carriers], [c.id for c in settings.clients])
    if by_client:
        assert client is not None
        if await redis.exists(keys.suppression(client)):
            rec.suppression = [client]
    else:
        clients = {"", *(c.id for c in settings.clients), *(r.client for r in rec.rows)}
        clients |= {e.fields.get("client", "") for e in rec.entries}
        ordered = sorted(clients)
        pipe = redis.pipeline(transaction=False)
        for c in ordered:
            pipe.sismember(keys.suppression(c), subject)
        rec.suppression = [c for c, on in zip(ordered, await pipe.execute(), strict=True) if on]
    return rec


async def _open_texts(rec: SubjectRecords, store: HistoryStore, cipher: Any) -> None:
    from engine.history.text_cipher import TextOpenError, inbound_aad, job_aad
    from engine.history.texts import inbound_text_blobs, job_text_blobs

    for jid, blob in (await job_text_blobs(store, [r.job_id for r in rec.rows])).items():
        try:
            rec.texts[jid] = cipher.open(job_aad(jid), blob)
        except TextOpenError as err:
            rec.texts[jid] = f"(not opened: {err})"
    keys = [(r.stream, r.entry_id) for r in rec.inbound_rows]
    for key, blob in (await inbound_text_blobs(store, keys)).items():
        try:
            rec.inbound_texts[key] = cipher.open(inbound_aad(key[1]), blob)
        except TextOpenError as err:
            rec.inbound_texts[key] = f"(not opened: {err})"


def export_lines(rec: SubjectRecords, keys: Keys) -> list[bytes]:
    """One JSON object per record, each with its ``kind``; a row's kept text (if opened) as ``text``."""
    out: list[bytes] = []
    for row in rec.rows:
        obj: dict[str, Any] = {"kind": "history_row", "row": msgspec.to_builtins(row)}
        if row.job_id in rec.texts:
            obj["text"] = rec.texts[row.job_id]
        out.append(orjson.dumps(obj))
    for jid, fields in sorted(rec.job_records.items()):
        out.append(orjson.dumps({"kind": "job_record", "job_id": jid, "fields": fields}))
    streams = rec.event_streams or [keys.events] * len(rec.events)
    for (entry_id, fields), stream in zip(rec.events, streams, strict=True):
        out.append(orjson.dumps({"kind": "event", "stream": stream, "entry_id": _s(entry_id),
                                 "fields": {_s(k): _s(v) for k, v in fields.items()}}))
    for e in rec.entries:
        where = "key" if e.kind == "scheduled_job" else "stream"
        out.append(orjson.dumps({"kind": e.kind, where: e.key, "entry_id": e.entry_id, "fields": e.fields}))
    for r in rec.inbound_rows:
        obj = {"kind": "inbound_history_row", "row": msgspec.to_builtins(r)}
        if (r.stream, r.entry_id) in rec.inbound_texts:
            obj["text"] = rec.inbound_texts[(r.stream, r.entry_id)]
        out.append(orjson.dumps(obj))
    for key, fields in rec.inbound_parts:
        out.append(orjson.dumps({"kind": "inbound_part", "key": key, "fields": fields}))
    for c in rec.suppression:
        out.append(orjson.dumps({"kind": "suppression", "client": c, "list": keys.suppression(c),
                                 "subject_hash": rec.subject if not rec.subject.startswith("client:") else None}))
    return out


async def export_main(
    settings: Settings, *, to: str | None, client: str | None, write: Callable[[bytes], Any] | None = None,
) -> int:
    """Print every record of one subject as JSON lines; audit entry ``export``."""
    import sys

    from engine.erase import redis_for, subject_of
    from engine.history.cli import store_for
    from engine.hook_chain import chain_for
    from privacy_hooks import HookFailed

    found = subject_of(settings, to, client)
    if found is None:
        print("sendgate export: --to is not an E.164 number", file=sys.stderr)
        return 2
    subject, label = found
    out = write or sys.stdout.buffer.write
    redis = redis_for(settings)
    store = store_for(settings) if settings.history.enabled else None
    try:
        cipher = None
        if store is not None and settings.history.text_key:  # the subject's own texts, when kept
            from engine.history.text_cipher import TextCipher, cipher_available

            if cipher_available():
                cipher = TextCipher.from_text(settings.history.text_key)
        rec = await collect(redis, settings, subject, store, cipher=cipher)
        keys = Keys(settings.redis.prefix)
        lines = export_lines(rec, keys)
        chain = chain_for(settings)
        if chain.has_custom:
            # the operator's hooks see the records first; one that raises stops the export
            try:
                chain.on_export(subject, [orjson.loads(line) for line in lines])
            except HookFailed as err:
                print(f"sendgate export: {err}; nothing exported", file=sys.stderr)
                return 1
        for line in lines:
            out(line + b"\n")
        counts = rec.counts()
        audit = AuditLog(redis, keys.audit, settings.privacy.retention_days.audit)
        audit_id = await audit.record("export", subject=subject, requested_by="cli",
                                      **{f"n_{k}": v for k, v in counts.items()})
        total = sum(counts.values())
        print(f"exported {total} record(s) of {label}: "
              + ", ".join(f"{k}={v}" for k, v in counts.items() if v) + f"; audit entry {audit_id}", file=sys.stderr)
        return 0
    finally:
        if store is not None:
            await store.close()
        await redis.aclose()
