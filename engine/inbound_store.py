"""Inbound messages into Redis: reassembly, the inbound stream, opt-out keywords.

Why it looks like this: the receipt sink hands over every non-receipt
deliver_sm / data_sm of a flush; this module turns them into parts
(``engine.inbound.read_part``, no I/O) and stores the whole batch with one
``inbound.lua`` call, which publishes what is complete. Only then does the
sink answer deliver_sm_resp, so a part is acknowledged after it is stored.
What the script published is *settled* afterwards: opt-out / opt-in keywords
change the client's suppression list (and write the audit stream), an
optional confirmation reply is pushed as an ordinary job, and the client's
inbound webhook gets the message. Settling is kept apart from storing: when
Redis fails in between, the parts are not stored twice (which would publish
them twice); the settling is retried and the SMSC is still not answered.

A periodic sweep (``sweep``, from the engine's maintenance tick) publishes
sets whose wait passed as ``partial``.

Personal data: the text and the numbers are in the inbound stream (the
contract), never in a log line or a metric; Redis key names carry the
sender's keyed hash only. Every entry has ``from_hash`` (for erasure and
export to find a subject's messages without reading numbers) and
``retention_until`` (the message retention); the stream is trimmed to that
retention by ``engine/stream_trim.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, WatchError

from engine.config import ClientSettings, Settings
from engine.hook_chain import chain_for
from engine.inbound import (
    OPT_OUT,
    InboundPart,
    KeywordTable,
    client_numbers,
    read_part,
    sender_hasher,
)
from engine.keys import Keys, correlation_shard, shard_keys, shard_of
from engine.metrics import Metrics
from engine.scripts import Script, inbound_call, inbound_sweep_call, payload_json
from privacy_hooks import KeyedHasher
from privacy_hooks.audit import AuditLog

__all__ = [
    "InboundStore",
    "Published",
    "client_waiting_parts",
    "erase_client_waiting_parts",
    "erase_waiting_parts",
    "reassembly_ttl_s",
    "waiting_parts",
]

log = logging.getLogger("sendgate.inbound")

Published = list[str]
"""What the scripts return per published message: entry id, from, to, text,
carrier, client, parts, partial, ts, from_hash."""

_FIELDS = ("from", "to", "text", "carrier", "client", "parts", "partial", "ts", "from_hash")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class InboundStore:
    """Stores inbound parts in batches and settles what they complete."""

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        metrics: Metrics,
        forward: Callable[[str, dict[str, str]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.metrics = metrics
        # Shards: a message's parts go to shard crc32("<carrier>:<sender hash>") mod N
        # (all parts of one message together, for the reassembly in inbound.lua).
        self.shards: tuple[Keys, ...] = shard_keys(settings.redis.prefix, settings.redis.shards)
        self.keys = self.shards[0]
        self.forward = forward
        self._numbers = client_numbers(settings.clients)
        secret = settings.privacy.hash_secret.encode()
        self._hash_sender = sender_hasher(KeyedHasher(secret), secret)
        self._packed = {c.name: c.encoding.packed for c in settings.carriers}
        inbound = settings.inbound
        self.keywords = KeywordTable(inbound.opt_out_keywords, inbound.opt_in_keywords, settings.clients)
        self._clients: dict[str, ClientSettings] = {c.id: c for c in settings.clients}
        self._wait_ms = int(inbound.reassembly_wait_s * 1000)
        self._ttl_s = reassembly_ttl_s(settings)
        self._script = Script("inbound")
        self._sweep = Script("inbound_sweep")
        self.audit = AuditLog(redis, self.keys.audit, settings.privacy.retention_days.audit)
        self._to_settle: list[Published] = []
        # the privacy hook chain (engine/hook_chain.py): custom hooks see each batch of
        # parts and of keyword suppression entries before it is written
        self.hooks = chain_for(settings)
        # With a history store the inbound stream is trimmed behind its archiver's group
        # (engine/stream_trim.py), never by the scripts' MAXLEN: 0 = none.
        self._maxlen = 0 if settings.history.enabled else settings.engine.streams_maxlen

    def _retention_until(self) -> int:
        return int(time.time()) + self.settings.privacy.retention_days.message * 86400

    def read(self, carrier: str, pdu: Any, now_ms: int) -> InboundPart:
        """The part a PDU carries (counted as malformed when its header could not be read)."""
        part, malformed = read_part(
            carrier, pdu, now_ms, self._numbers, self._hash_sender, packed=self._packed.get(carrier, False)
        )
        if malformed:
            self.metrics.inbound_malformed.labels(carrier).inc()
        return part

    async def store(self, parts: list[InboundPart]) -> None:
        """Store a batch of parts in one script call; what it completes is settled next."""
        if not parts:
            return
        retention_until = self._retention_until()
        if self.hooks.has_custom:
            # one deadline per call: the earliest a hook gives. A raising hook: nothing
            # stored, the SMSC not answered (it sends the parts again), tried again.
            records = [msgspec.structs.asdict(p) for p in parts]
            retention_until = min(self.hooks.on_store_batch("inbound", records, time.time()))
        n = len(self.shards)
        by_shard: dict[int, list[InboundPart]] = {0: parts} if n == 1 else {}
        if n > 1:
            for part in parts:
                by_shard.setdefault(correlation_shard(part.carrier, part.from_hash, n), []).append(part)
        for shard, some in by_shard.items():  # one call per shard the batch touches
            reply = await self._script(self.redis, *inbound_call(
                self.shards[shard], payload_json(some), self._wait_ms, self._ttl_s,
                self._maxlen, retention_until,
            ))
            self._to_settle.extend([[_text(v) for v in row] for row in reply])

    async def sweep(self, now_ms: int | None = None, limit: int = 500) -> int:
        """Publish sets whose reassembly wait passed, ``partial``; returns how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        swept = 0
        until = self._retention_until()
        calls = [inbound_sweep_call(keys, now_ms, limit, self._maxlen, until) for keys in self.shards]
        for reply in await self._sweep_all(calls):
            self._to_settle.extend([[_text(v) for v in row] for row in reply])
            swept = max(swept, len(reply))
        await self.settle()
        return swept

    async def _sweep_all(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """The shards' sweep calls: on one plain Redis in one pipelined round trip (each
        call one slot; a call refused with NOSCRIPT is made again alone, which loads the
        script); on a Cluster (no connection pool) one after the other."""
        if len(calls) == 1 or getattr(self.redis, "connection_pool", None) is None:
            return [await self._sweep(self.redis, *call) for call in calls]
        pipe = self.redis.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._sweep.sha, len(keys), *keys, *args)
        out: list[Any] = []
        for call, reply in zip(calls, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, NoScriptError):
                reply = await self._sweep(self.redis, *call)
            elif isinstance(reply, BaseException):
                raise reply
            out.append(reply)
        return out

    def has_work(self) -> bool:
        return bool(self._to_settle)

    async def settle(self) -> None:
        """Keywords, replies, webhooks and counts of what was published; kept on failure."""
        if not self._to_settle:
            return
        published, self._to_settle = self._to_settle, []
        changes: list[tuple[str, Published]] = []
        for row in published:
            action = self.keywords.action(row[5], row[3])
            if action:
                changes.append((action, row))
        if changes:
            try:
                await self._apply_keywords(changes)
            except BaseException:
                self._to_settle[:0] = published  # settled again later: every step is idempotent
                raise
        by_carrier: dict[str, int] = {}
        results: dict[tuple[str, str], int] = {}
        partial = 0
        for row in published:
            by_carrier[row[4]] = by_carrier.get(row[4], 0) + 1
            partial += row[7] == "1"
            outcome = (row[4], "partial" if row[7] == "1" else ("stored" if row[5] else "unassigned"))
            results[outcome] = results.get(outcome, 0) + 1
            client = self._clients.get(row[5])
            if client is not None and client.inbound_webhook and self.forward is not None:
                self.forward(client.inbound_webhook, {"id": row[0], **dict(zip(_FIELDS, row[1:], strict=True))})
        for carrier, n in by_carrier.items():
            self.metrics.inbound.labels(carrier).inc(n)
        for (carrier, result), n in results.items():
            self.metrics.inbound_results.labels(carrier, result).inc(n)
        if partial:
            self.metrics.inbound_partial.inc(partial)

    async def _apply_keywords(self, changes: list[tuple[str, Published]]) -> None:
        """Suppression list changes (one transaction), then their audit entries."""
        if self.hooks.has_custom:
            entries = [{"client": row[5], "subject_hash": row[9], "source": "keyword"}
                       for action, row in changes if action == OPT_OUT]
            if entries:
                self.hooks.on_store_batch("suppression", entries, time.time())  # raises HookFailed: retried
        n = len(self.shards)
        # (a transaction on one shard; across shards each step is idempotent anyway)
        pipe = self.redis.pipeline(transaction=n == 1)
        for action, row in changes:
            entry_id, sender, to, client, from_hash = row[0], row[1], row[2], row[5], row[9]
            keys = [k.suppression(client) for k in self.shards]  # every shard's copy
            if action == OPT_OUT:
                for key in keys:
                    pipe.sadd(key, from_hash)
                reply = self._clients[client].opt_out_reply if client in self._clients else ""
                if reply and sender.isdigit():
                    # An ordinary transactional job: sent, retried and recorded like any other.
                    # Its id comes from the inbound entry, so settling twice sends it once.
                    job = {"id": f"optout-{entry_id}", "to": sender, "text": reply, "client": client,
                           "kind": "transactional", "dlr": "0"}
                    if to:
                        job["from"] = to
                    pipe.xadd(self.shards[shard_of(job["id"], n)].jobs, job)  # type: ignore[arg-type]
            else:
                for key in keys:
                    pipe.srem(key, from_hash)
        await pipe.execute()
        for action, row in changes:
            self.metrics.opt_outs.labels(action).inc()
            await self.audit.record(
                "suppress_add" if action == OPT_OUT else "suppress_remove",
                client=row[5], subject=row[9], source="keyword", entry=row[0],
            )


def reassembly_ttl_s(settings: Settings) -> int:
    """How long a reassembly set's hash (and its tombstone) lives: twice the wait."""
    return max(1, int(settings.inbound.reassembly_wait_s * 2) + 1)


async def _read_sets(redis: Redis, names: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The reassembly sets ``names`` still waiting (not done), one pipelined round trip."""
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    out = []
    for name, raw in zip(names, await pipe.execute(), strict=True):
        fields = {_text(k): _text(v) for k, v in (raw or {}).items()}
        if fields and "done" not in fields:
            out.append((name, fields))
    return out


async def waiting_parts(redis: Redis, keys: Keys, subject_hash: str) -> list[tuple[str, dict[str, str]]]:
    """The reassembly sets of one sender still waiting for parts, by key (the per-sender
    index ``P:inbound:waiting:<hash>``, no scan): ``[(key, fields), …]``, each set's
    fields as stored (``p<seq>`` → the text of that part, ``from``, ``to``, …)."""
    members: Any = await redis.smembers(keys.inbound_waiting(subject_hash))
    names = sorted(_text(m) for m in members)
    if not names:
        return []
    return await _read_sets(redis, names)


async def client_waiting_keys(redis: Redis, keys: Keys, client: str) -> list[str]:
    """The reassembly sets still waiting whose message is for ``client``: read from the
    partial sweep's list (``P:inbound:due``: every set waiting, at most twice the
    reassembly wait's worth) and each set's ``client`` field; no scan."""
    members: Any = await redis.zrange(keys.inbound_due, 0, -1)
    names = [_text(m) for m in members]
    out: list[str] = []
    for i in range(0, len(names), 500):
        pipe = redis.pipeline(transaction=False)
        for name in names[i : i + 500]:
            pipe.hmget(name, "client", "done")
        for name, (owner, done) in zip(names[i : i + 500], await pipe.execute(), strict=True):
            if owner is not None and done is None and _text(owner) == client:
                out.append(name)
    return out


async def client_waiting_parts(redis: Redis, keys: Keys, client: str) -> list[tuple[str, dict[str, str]]]:
    """:func:`waiting_parts` of a client's messages (export ``--client``)."""
    names = await client_waiting_keys(redis, keys, client)
    if not names:
        return []
    return await _read_sets(redis, names)


async def erase_client_waiting_parts(redis: Redis, keys: Keys, client: str, ttl_s: int) -> int:
    """Delete the reassembly sets of ``client``'s messages (``erase --client``), each left as
    a tombstone as in :func:`erase_waiting_parts`; returns the sets removed."""
    names = await client_waiting_keys(redis, keys, client)
    if not names:
        return 0
    pipe = redis.pipeline(transaction=True)
    for name in names:
        pipe.delete(name)
        pipe.hset(name, "done", "erased")
        pipe.expire(name, ttl_s)
    pipe.zrem(keys.inbound_due, *names)
    replies = await pipe.execute()
    return sum(int(replies[i]) for i in range(0, 3 * len(names), 3))


async def erase_waiting_parts(redis: Redis, keys: Keys, subject_hash: str, ttl_s: int) -> int:
    """Delete the parts one sender has waiting for reassembly; returns the sets removed.

    Each set is replaced by the tombstone a published set leaves (``done``, the set's
    TTL), so a part of it that arrives later is answered and dropped, never published
    (engine/inbound.lua); the sets leave the partial sweep's list. One transaction,
    watched on the sender's index: a set that is created or completed meanwhile makes
    it run again.
    """
    index = keys.inbound_waiting(subject_hash)
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(index)
                members: Any = await pipe.smembers(index)
                names = [_text(m) for m in members]
                pipe.multi()  # type: ignore[no-untyped-call]
                for name in names:
                    pipe.delete(name)
                    pipe.hset(name, "done", "erased")
                    pipe.expire(name, ttl_s)
                if names:
                    pipe.zrem(keys.inbound_due, *names)
                pipe.delete(index)
                replies = await pipe.execute()
                return sum(int(replies[i]) for i in range(0, 3 * len(names), 3))
            except WatchError:
                continue
