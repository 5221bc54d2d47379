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
from engine.keys import Keys
from engine.metrics import Metrics
from engine.scripts import Script, inbound_call, inbound_sweep_call, payload_json
from privacy_hooks import KeyedHasher
from privacy_hooks.audit import AuditLog

__all__ = ["InboundStore", "Published"]

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
        self.keys = Keys(settings.redis.prefix)
        self.forward = forward
        self._numbers = client_numbers(settings.clients)
        secret = settings.privacy.hash_secret.encode()
        self._hash_sender = sender_hasher(KeyedHasher(secret), secret)
        self._packed = {c.name: c.encoding.packed for c in settings.carriers}
        inbound = settings.inbound
        self.keywords = KeywordTable(inbound.opt_out_keywords, inbound.opt_in_keywords, settings.clients)
        self._clients: dict[str, ClientSettings] = {c.id: c for c in settings.clients}
        self._wait_ms = int(inbound.reassembly_wait_s * 1000)
        self._ttl_s = max(1, int(inbound.reassembly_wait_s * 2) + 1)
        self._script = Script("inbound")
        self._sweep = Script("inbound_sweep")
        self.audit = AuditLog(redis, self.keys.audit, settings.privacy.retention_days.audit)
        self._to_settle: list[Published] = []
        # the privacy hook chain (engine/hook_chain.py): custom hooks see each batch of
        # parts and of keyword suppression entries before it is written
        self.hooks = chain_for(settings)

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
        reply = await self._script(self.redis, *inbound_call(
            self.keys, payload_json(parts), self._wait_ms, self._ttl_s, self.settings.engine.streams_maxlen,
            retention_until,
        ))
        self._to_settle.extend([[_text(v) for v in row] for row in reply])

    async def sweep(self, now_ms: int | None = None, limit: int = 500) -> int:
        """Publish sets whose reassembly wait passed, ``partial``; returns how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        reply = await self._sweep(self.redis, *inbound_sweep_call(
            self.keys, now_ms, limit, self.settings.engine.streams_maxlen, self._retention_until(),
        ))
        self._to_settle.extend([[_text(v) for v in row] for row in reply])
        await self.settle()
        return len(reply)

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
        pipe = self.redis.pipeline(transaction=True)
        jobs = self.keys.jobs
        for action, row in changes:
            entry_id, sender, to, client, from_hash = row[0], row[1], row[2], row[5], row[9]
            key = self.keys.suppression(client)
            if action == OPT_OUT:
                pipe.sadd(key, from_hash)
                reply = self._clients[client].opt_out_reply if client in self._clients else ""
                if reply and sender.isdigit():
                    # An ordinary transactional job: sent, retried and recorded like any other.
                    # Its id comes from the inbound entry, so settling twice sends it once.
                    job = {"id": f"optout-{entry_id}", "to": sender, "text": reply, "client": client,
                           "kind": "transactional", "dlr": "0"}
                    if to:
                        job["from"] = to
                    pipe.xadd(jobs, job)  # type: ignore[arg-type]
            else:
                pipe.srem(key, from_hash)
        await pipe.execute()
        for action, row in changes:
            self.metrics.opt_outs.labels(action).inc()
            await self.audit.record(
                "suppress_add" if action == OPT_OUT else "suppress_remove",
                client=row[5], subject=row[9], source="keyword", entry=row[0],
            )
