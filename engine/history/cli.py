"""``sendgate archive`` and ``sendgate history``: the archivers alone, and looking a job up.

``history`` answers support and data-subject questions from both places a
job can be: the history store (months) and Redis (hot: the job records of
jobs awaiting receipts, and the events not archived yet). Numbers are looked up by their keyed
hash (``[privacy] hash_secret``) and shown masked; the number given on the
command line is never printed. ``--to`` and ``--client`` also list the inbound
messages in the store from that number / to that client, each line marked
``inbound``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from engine.config import Settings
from engine.history import HistoryRow, HistoryStore, open_store
from engine.history.archiver import Archiver
from engine.history.inbound import InboundRow, inbound_table
from engine.redis_client import redis_from_settings

#: A job unread in a lane for longer than this (ms) means a burst: the archiver defers
#: (``[history] defer_s``). At a steady rate the engine reads each job within ms.
BURST_WAIT_MS = 1000

__all__ = ["archive_main", "archiver_for", "history_main", "inbound_archiver_for", "lookback_days", "store_for",
           "text_cipher_for"]


def lookback_days(settings: Settings) -> int:
    """How far back a receipt looks for its job's row: the longest receipt wait, plus a day."""
    waits = [settings.privacy.dlr_wait_h, *(c.dlr_wait_h for c in settings.carriers)]
    return math.ceil(max(waits) / 24) + 1


def store_for(settings: Settings) -> HistoryStore:
    return open_store(settings.history.url, lookback_days=lookback_days(settings))


def archiver_for(settings: Settings, redis: Redis, store: HistoryStore, registry: Any = None) -> Archiver:
    """The archiver of ``settings`` on the events stream."""
    from engine.backlog import oldest_unread_ms
    from engine.keys import shard_keys

    h = settings.history
    shards = shard_keys(settings.redis.prefix, settings.redis.shards)
    events = [k.events for k in shards]  # every shard's
    engine_group = settings.engine.group

    lanes = [stream for k in shards for stream in k.lanes()]

    async def busy() -> bool:
        """A burst: jobs have waited unread in some shard's lane for more than
        `BURST_WAIT_MS`. At a steady rate the engine reads each job as it comes, so jobs
        in hand (read, not yet recorded) do not count: the archiver then archives as it
        goes instead of deferring and catching up by turns."""
        return await oldest_unread_ms(redis, lanes, engine_group) > BURST_WAIT_MS

    return Archiver(
        redis, store, events, group=h.group, consumer=h.consumer,
        batch_size=h.batch_size, block_ms=h.block_ms, retention_days=settings.privacy.retention_days.message,
        claim_idle_ms=int(h.claim_idle_s * 1000), registry=registry, settle_ms=h.settle_ms,
        busy=busy, defer_s=h.defer_s, hold_ms=int(h.hold_s * 1000),
    )


def inbound_archiver_for(settings: Settings, redis: Redis, store: HistoryStore, registry: Any = None) -> Any:
    """The inbound archiver of ``settings`` on the inbound stream (engine/history/inbound_archiver.py)."""
    from engine.history.inbound_archiver import InboundArchiver, inbound_group
    from engine.inbound import client_numbers
    from engine.keys import shard_keys
    from privacy_hooks import KeyedHasher

    h = settings.history
    inbound = [k.inbound for k in shard_keys(settings.redis.prefix, settings.redis.shards)]  # every shard's
    return InboundArchiver(
        redis, store, inbound, group=inbound_group(h.group), consumer=h.consumer,
        batch_size=h.batch_size, block_ms=h.block_ms, retention_days=settings.privacy.retention_days.message,
        claim_idle_ms=int(h.claim_idle_s * 1000), registry=registry,
        own_numbers=client_numbers(settings.clients), hash_number=KeyedHasher(settings.privacy.hash_secret.encode()),
        retention_s=settings.privacy.retention_days.message * 86400, cipher=text_cipher_for(settings),
    )


def text_cipher_for(settings: Settings) -> Any:
    """The `TextCipher` of ``[history] keep_text`` (None when off)."""
    if not settings.history.keep_text:
        return None
    from engine.history.text_cipher import TextCipher

    return TextCipher.from_text(settings.history.text_key)


def _redis_url(settings: Settings) -> str:
    from engine.embedded_redis import announced_url

    return settings.redis.url or announced_url() or ""


async def archive_main(
    settings: Settings, *, once: bool = False, redis_url: str = "", started: Callable[[], Any] | None = None
) -> int:
    """Run the archiver until SIGTERM/SIGINT (``once``: until the stream is archived).

    ``started``: called once the group and the store's schema are there (or 5 s
    passed trying): the engine that spawned this process starts sending then."""
    url = redis_url or _redis_url(settings)
    if not url:
        print("sendgate archive: no Redis configured (REDIS_URL or [redis] url)", file=sys.stderr)
        return 2
    redis = redis_from_settings(settings, url)
    store = store_for(settings)
    archiver = archiver_for(settings, redis, store)
    inbound = inbound_archiver_for(settings, redis, store)
    try:
        if once:
            await archiver.ensure_groups()
            await inbound.ensure_groups()
            await store.migrate()
            await archiver.drain()
            await inbound.drain()
            print(f"archived {archiver.archived} event(s), {inbound.archived} inbound message(s)")
            return 0
        loop = asyncio.get_running_loop()

        def stop() -> None:
            archiver.stop()
            inbound.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop)
        # As the engine does (engine/app.py): a batch's fold builds ~10 objects an
        # event, and the default collector (a pass every 700) cost ~1 µs an event.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, *gc.get_threshold()[1:])
        if started is not None:
            with contextlib.suppress(Exception):  # run() retries whatever fails here
                async with asyncio.timeout(5.0):
                    await _warm_up(archiver, store)
            started()
        await asyncio.gather(archiver.run(), inbound.run())
        return 0
    finally:
        await archiver.close_reader()
        await inbound.close_reader()
        await store.close()
        await redis.aclose()


async def _warm_up(archiver: Archiver, store: HistoryStore) -> None:
    await archiver.ensure_groups()
    await store.migrate()


# -------------------------------------------------------------------- history
def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _redis_view(settings: Settings, *, job_id: str | None, subject: str | None) -> dict[str, dict[str, str]]:
    """What Redis holds of jobs the store may not have yet: by id, the job record (jobs
    awaiting receipts); by subject (hash / client:<id>), the jobs among the events not
    archived yet (from the archiver group's position: no index, no keyspace scan),
    each as its job record or else its latest event."""
    url = _redis_url(settings)
    if not url:
        return {}
    from engine.keys import shard_keys, shard_of
    from engine.stream_trim import group_low_id
    from privacy_hooks.erasure import find_in_events

    shards = shard_keys(settings.redis.prefix, settings.redis.shards)
    redis = redis_from_settings(settings, url, socket_connect_timeout=2)
    try:
        latest: dict[str, dict[str, str]] = {}
        if job_id:
            ids = [job_id]
        else:
            found_all: set[str] = set()
            for keys in shards:  # every shard's events
                start = await group_low_id(redis, keys.events, settings.history.group) or "-"
                found, entries = await find_in_events(redis, keys, subject or "", start)
                found_all |= set(found)
                for _eid, raw_fields in entries:
                    fields = {_text(k): _text(v) for k, v in raw_fields.items()}
                    seen = latest.setdefault(fields["id"], {})
                    seen.update({k: v for k, v in fields.items() if v})
                    seen["state"] = fields.get("event", "")
                    seen.setdefault("submitted_ms", fields.get("ts", ""))
            ids = sorted(found_all)
        out: dict[str, dict[str, str]] = {}
        for jid in ids[:1000]:
            raw: Any = await redis.hgetall(shards[shard_of(jid, len(shards))].job(jid))
            fields = {_text(k): _text(v) for k, v in raw.items()} if raw else latest.get(jid, {})
            if fields:
                for name in ("to", "text", "to_hash"):  # never shown, whatever a future record holds
                    fields.pop(name, None)
                out[jid] = fields
        return out
    except (OSError, RedisError) as err:
        print(f"sendgate history: redis not reachable ({type(err).__name__}); store only", file=sys.stderr)
        return {}
    finally:
        await redis.aclose()


def _merge(rows: list[HistoryRow], hot: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for r in rows:
        by_id[r.job_id] = {"job_id": r.job_id, "store": msgspec.to_builtins(r), "redis": None}
    for jid, fields in hot.items():
        by_id.setdefault(jid, {"job_id": jid, "store": None, "redis": None})["redis"] = fields

    def newest(item: dict[str, Any]) -> int:
        if item["store"]:
            return int(item["store"]["first_ms"])
        return int((item["redis"] or {}).get("submitted_ms") or 0)

    return sorted(by_id.values(), key=newest, reverse=True)


def _line(item: dict[str, Any]) -> str:
    s, r = item["store"], item["redis"] or {}
    if s:
        latest = max(s["events"].items(), key=lambda kv: kv[1])[0] if s["events"] else "-"
        state = s["final_state"] or latest
        events = " ".join(f"{e}@{_when(ts)}" for e, ts in sorted(s["events"].items(), key=lambda kv: kv[1]))
        head = (
            f"{item['job_id']}  {_when(s['first_ms'])}  {state}  to={s['to_mask'] or '-'}  "
            f"client={s['client'] or '-'}  ref={s['ref'] or '-'}  carrier={s['carrier'] or '-'}  "
            f"parts={s['parts']}  error={s['error'] or '-'}"
        )
        tail = f"    events: {events}"
        if r:
            tail += f"\n    redis: state={r.get('state', '-')}"
        return f"{head}\n{tail}"
    return (
        f"{item['job_id']}  {_when(int(r.get('submitted_ms') or 0))}  {r.get('state', '-')}  (redis only)  "
        f"client={r.get('client') or '-'}  ref={r.get('ref') or '-'}  carrier={r.get('carrier') or '-'}  "
        f"parts={r.get('parts') or '-'}  error={r.get('error') or '-'}"
    )


async def history_main(
    settings: Settings, *, job_id: str | None = None, ref: str | None = None, to: str | None = None,
    client: str | None = None, as_json: bool = False, limit: int = 100, show_text: bool = False,
) -> int:
    """Print what the store and Redis know of a job / ref / number / client, newest first.

    ``show_text``: also the message text kept by ``[history] keep_text``, opened with
    the configured key; an audit entry ``history_text`` (job ids and counts, never the
    text) is written first, and without it nothing is shown."""
    from privacy_hooks.masking import keyed_hash

    cipher = None
    if show_text:
        if not settings.history.text_key:
            print("sendgate history: --show-text needs the key ([history] text_key_file or "
                  "SENDGATE_HISTORY_TEXT_KEY)", file=sys.stderr)
            return 2
        from engine.history.text_cipher import TextCipher

        cipher = TextCipher.from_text(settings.history.text_key)

    to_hash = None
    if to is not None:
        try:
            to_hash = keyed_hash(settings.privacy.hash_secret, to)
        except ValueError:
            print("sendgate history: --to needs a phone number (digits)", file=sys.stderr)
            return 2
    store = store_for(settings)
    inbound: list[InboundRow] = []
    try:
        await store.migrate()
        if job_id is not None:
            row = await store.get(job_id)
            rows = [row] if row else []
            hot = await _redis_view(settings, job_id=job_id, subject=None)
        else:
            rows = await store.find(ref=ref, to_hash=to_hash, client=client, limit=limit)
            subject = to_hash if to_hash else (f"client:{client}" if client is not None else None)
            hot = await _redis_view(settings, job_id=None, subject=subject) if subject else {}
            if ref is not None:
                hot = {}  # Redis has no index by ref; the store answers
            if to_hash is not None or client is not None:
                # inbound messages from that number (or to that client), marked as inbound
                by = {"from_hash": to_hash} if to_hash is not None else {"client": client}
                inbound = await inbound_table(store).find(**by, limit=limit)
        texts: dict[str, str] = {}
        inbound_texts: dict[tuple[str, str], str] = {}
        if cipher is not None:
            code = await _open_texts(settings, store, cipher, rows, inbound, texts, inbound_texts)
            if code:
                return code
    finally:
        await store.close()
    items = _merge(rows, hot)[:limit]
    if cipher is not None:
        for item in items:
            item["text"] = texts.get(item["job_id"])
    if as_json:
        items += [{"inbound": msgspec.to_builtins(r), **({"text": inbound_texts.get((r.stream, r.entry_id))}
                   if cipher is not None else {})} for r in inbound]
        sys.stdout.write(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for item in items:
            print(_line(item))
            if cipher is not None:
                print(f"    text: {_shown(texts.get(item['job_id']))}")
        for r in inbound:
            print(_inbound_line(r))
            if cipher is not None:
                print(f"    text: {_shown(inbound_texts.get((r.stream, r.entry_id)))}")
        if not items and not inbound:
            print("no job found")
    return 0 if items or inbound else 1


def _shown(text: str | None) -> str:
    return "(not kept)" if text is None else orjson.dumps(text).decode()


async def _open_texts(
    settings: Settings, store: HistoryStore, cipher: Any, rows: list[HistoryRow], inbound: list[InboundRow],
    texts: dict[str, str], inbound_texts: dict[tuple[str, str], str],
) -> int:
    """Audit the access, then open the texts of ``rows`` / ``inbound`` into the dicts; an exit code."""
    from engine.history.texts import (
        TextOpenError,
        inbound_text_blobs,
        job_text_blobs,
        open_inbound_texts,
        open_job_texts,
    )

    blobs = await job_text_blobs(store, [r.job_id for r in rows])
    inbound_blobs = await inbound_text_blobs(store, [(r.stream, r.entry_id) for r in inbound])
    if not blobs and not inbound_blobs:
        return 0
    url = _redis_url(settings)
    if not url:
        print("sendgate history: --show-text writes an audit entry and needs Redis", file=sys.stderr)
        return 2
    from engine.keys import Keys
    from privacy_hooks.audit import AuditLog

    redis = redis_from_settings(settings, url, socket_connect_timeout=2)
    try:
        audit = AuditLog(redis, Keys(settings.redis.prefix).audit, settings.privacy.retention_days.audit)
        await audit.record("history_text", requested_by="cli", jobs=",".join(sorted(blobs))[:4000],
                           n_texts=len(blobs), n_inbound_texts=len(inbound_blobs))
    except (OSError, RedisError) as err:
        print(f"sendgate history: --show-text: the audit entry could not be written ({type(err).__name__}); "
              "no text shown", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()
    try:
        texts.update(open_job_texts(cipher, blobs))
        inbound_texts.update(open_inbound_texts(cipher, inbound_blobs))
    except TextOpenError as err:
        print(f"sendgate history: --show-text: {err}", file=sys.stderr)
        return 3
    return 0


def _inbound_line(r: InboundRow) -> str:
    partial = f" partial ({r.parts} of {r.total})" if r.partial else ""
    return (
        f"inbound {r.entry_id}  {_when(r.ts_ms)}  from={r.from_mask or '-'}  to={r.to or '-'}  "
        f"client={r.client or '-'}  carrier={r.carrier or '-'}  parts={r.parts}{partial}"
    )
