"""Receipts and inbound messages: deliver_sm in, events and webhooks out.

Every deliver_sm / data_sm a bind receives lands in `ReceiptSink.on_deliver`
(a plain call from the event loop), except receipts in the common layout:
the bind's session reads those itself (`dlr.receipt_scan.scan_receipt`) and
hands them over in runs, to `ReceiptSink.on_claimed`, already parsed.
Receipts are parsed at once and buffered;
one worker task wakes per loop tick with work, correlates the whole buffer
per carrier in one script call (`dlr.store.ReceiptStore.apply`), publishes
what the script returns (metrics, receipt latency, webhooks), and only then
answers the SMSC with deliver_sm_resp — so a receipt is acknowledged after it
is stored, and an SMSC whose link drops before that resends it.

A receipt that beats the record of its own submit_sm_resp comes back
unmatched; it waits in a bounded `UnmatchedBuffer` and is retried, then kept
in the unmatched stream with a reason. A receipt that cannot be parsed is
acknowledged, counted and kept in the invalid-receipts stream: never dropped,
never a reconnect.

Mobile-originated messages (not receipts) are read into parts at once
(``engine.inbound``) and stored by the same worker, one ``inbound.lua`` call
per flush that reassembles concatenated messages in Redis and publishes the
whole ones on the inbound stream; their deliver_sm_resp goes with the rest,
after the store call (engine/inbound_store.py).

Shards (``[redis] shards`` > 1): a job's correlation entries, its job record
and its events all live on the job's own shard (record.lua writes them there
with the job's outcome), so correlate.lua runs unchanged, a multipart job's
parts aggregate in one place whatever their message ids, and a job's receipt
events follow its ``submitted`` in the same stream. A receipt names only the
carrier and the message id, so a batch is correlated shard after shard, each
call with the receipts no earlier shard matched (one call per shard per batch,
never per receipt): on average (N+1)/2 lookups per receipt, no extra writes.
Receipts for this engine's own submits skip the probe: the pipeline's
`ShardHints` (set as ``hints`` by the app) says which shard it recorded each
message id on, and those go there first (every shard's part of the batch in
one round trip: `dlr.store.apply_stores`).
Receipts no shard matched are held and retried like today; parked unmatched
ones go to shard ``crc32("<carrier>:<message id>") mod N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from operator import attrgetter, itemgetter
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from connectors.pdu import DataSm, DeliverSm
from dlr.ids import normalize_receipt_id
from dlr.receipt_parse import ReceiptParseError, is_receipt, receipt_outcome
from dlr.receipt_scan import ScannedReceipt
from dlr.store import (
    BatchResult,
    JobEvent,
    ReceiptRecord,
    ReceiptStore,
    UnmatchedBuffer,
    apply_stores,
    expire_stores,
)
from dlr.webhook import WebhookForwarder
from engine import receipt_hooks
from engine.config import Settings
from engine.hook_chain import chain_for
from engine.inbound import InboundPart
from engine.inbound_store import InboundStore
from engine.keys import Keys, correlation_shard, shard_keys
from engine.metrics import Metrics

__all__ = ["ReceiptSink", "webhook_secret"]

log = logging.getLogger("sendgate.receipts")

_MESSAGE_ID = attrgetter("message_id")
_FIRST = itemgetter(0)  # of (sequence_number, receipt)

_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def webhook_secret(settings: Settings) -> bytes:
    """``[webhooks] secret``, or a key derived from ``privacy.hash_secret`` so the
    number-hashing key itself never has to be shared with webhook receivers."""
    if settings.webhooks.secret:
        return settings.webhooks.secret.encode()
    return hmac.new(settings.privacy.hash_secret.encode(), b"sendgate-webhook-signing", hashlib.sha256).digest()


class ReceiptSink:
    """Buffers deliver_sm per tick and stores them in one script call per carrier."""

    def __init__(self, settings: Settings, redis: Redis, metrics: Metrics) -> None:
        self.settings = settings
        self.redis = redis
        self.metrics = metrics
        self.shards: tuple[Keys, ...] = shard_keys(settings.redis.prefix, settings.redis.shards)
        self.keys = self.shards[0]
        # One store per shard (its correlation buckets, job records, events); `store` is shard 0's.
        self.stores = [
            ReceiptStore(redis, k, stream_maxlen=settings.engine.streams_maxlen, record_grace_s=settings.engine.record_grace_s)
            for k in self.shards
        ]
        self.store = self.stores[0]
        # Set by the app (shards > 1): the pipeline's ShardHints of its own submits.
        self.hints: Any = None
        hold_ms = int(settings.engine.receipt_hold_s * 1000)
        self.unmatched = {c.name: UnmatchedBuffer(retry_ms=min(500, hold_ms), max_wait_ms=hold_ms) for c in settings.carriers}
        self._receipts: dict[str, list[ReceiptRecord]] = defaultdict(list)
        self._stalled: list[tuple[str, list[ReceiptRecord]]] = []  # batches of a failed flush
        self._stalled_held: dict[str, list[ReceiptRecord]] = {}  # held receipts of a failed retry
        self._invalid: list[tuple[str, dict[str, Any], str]] = []
        self._inbound: list[InboundPart] = []
        # per bind: sequence numbers of the deliver_sm and data_sm to answer
        self._responders: dict[Any, tuple[list[int], list[int]]] = {}
        self._wake = asyncio.Event()
        self._retry_now = False
        # Custom privacy hooks: receipt events through the hook chain, staged then
        # published (engine/receipt_hooks.py; it replaces the stores). None with the defaults only.
        self.hook_retry = receipt_hooks.install(self, chain_for(settings))
        # Set by the app: waits until submit outcomes queued so far are recorded.
        self.barrier: Callable[[], Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None
        w = settings.webhooks
        self.webhooks = WebhookForwarder(
            webhook_secret(settings), redis, self.keys.callbacks_failed,
            concurrency=w.concurrency, max_attempts=w.max_attempts, timeout_s=w.timeout_s,
            stream_maxlen=settings.engine.streams_maxlen, allow_private=w.allow_private,
        )
        self.inbound = InboundStore(settings, redis, metrics, self.webhooks.forward)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._worker(), name="receipts")
        start = getattr(self.webhooks, "start", None)
        if start is not None:
            start()

    async def close(self) -> None:
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._flush_until_empty()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.webhooks.close(5.0)

    async def _flush_until_empty(self) -> None:
        while (self._responders or self._receipts or self._stalled or self._inbound or self._invalid
               or self.inbound.has_work()):
            await self._flush()

    # --------------------------------------------------------- from the pools
    def on_deliver(self, carrier: str, bind: Any, pdu: Any) -> None:
        esm_class = pdu.esm_class
        if is_receipt(esm_class):
            # deliver_sm and data_sm share the receipt TLVs; data_sm has no short_message
            body = (pdu.short_message if type(pdu) is DeliverSm else b"") or pdu.message_payload or b""
            try:
                message_id, event, is_final, error = receipt_outcome(
                    esm_class, body, pdu.receipted_message_id, pdu.message_state, pdu.network_error_code
                )
            except ReceiptParseError as err:
                raw = {"esm_class": str(esm_class), "short_message": body}
                self._invalid.append((carrier, raw, err.reason))
            else:
                # (a receipt's id is never converted, whatever the carrier's dlr_id_format)
                self._receipts[carrier].append(
                    ReceiptRecord(normalize_receipt_id(message_id), event, is_final, error, int(time.time() * 1000))
                )
        else:
            self._inbound.append(self.inbound.read(carrier, pdu, int(time.time() * 1000)))
        self._to_answer(bind)[1 if pdu.command_id == DataSm.command_id else 0].append(pdu.sequence_number)
        self._wake.set()

    def on_claimed(self, carrier: str, bind: Any, items: list[tuple[int, ScannedReceipt]]) -> None:
        """Receipts the bind's session read with `scan_receipt`: ``(sequence_number,
        (message_id, event, is_final, error))`` each, the id normalised."""
        now_ms = int(time.time() * 1000)
        self._receipts[carrier].extend(
            [ReceiptRecord(message_id, event, is_final, error, now_ms) for _, (message_id, event, is_final, error) in items]
        )
        self._to_answer(bind)[0].extend(map(_FIRST, items))
        self._wake.set()

    def _to_answer(self, bind: Any) -> tuple[list[int], list[int]]:
        """The bind's deliver_sm and data_sm sequence numbers still to answer."""
        waiting = self._responders.get(bind)
        if waiting is None:
            waiting = self._responders[bind] = ([], [])
        return waiting

    # ------------------------------------------------------------ the worker
    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as err:
                # Nothing was answered: the buffers are kept and retried.
                self.metrics.redis_errors.inc()
                log.warning("redis unavailable while storing receipts (%s); retrying", type(err).__name__)
                await asyncio.sleep(0.5)
                self._wake.set()
            except Exception:
                # Any other failure (a script error, a bug): the worker must not die,
                # or the SMSC's receipt window would fill. Buffers are kept; retry.
                log.exception("storing receipts failed; retrying in 1s")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _flush(self) -> None:
        if self._retry_now:
            self._retry_now = False
            await self._retry_held(everything=True)
        if self.hook_retry is not None and self.hook_retry.due():
            await self.hook_retry.run(self._settle)  # receipts a privacy hook failed on, again
        if self._receipts and self.barrier is not None:
            await self.barrier()
        # Batches a failed flush left come first, unchanged: a repeated store call
        # whose first reply was lost then gets that reply back (dlr/store.py).
        batches, self._stalled = self._stalled, []
        batches += self._receipts.items()
        self._receipts = defaultdict(list)
        responders, self._responders = self._responders, {}
        invalid, self._invalid = self._invalid, []
        inbound, self._inbound = self._inbound, []
        try:
            while invalid:
                carrier, raw, reason = invalid[0]
                await self.store.park_invalid(carrier, raw, reason)
                del invalid[0]
                self.metrics.receipts_invalid.labels(carrier).inc()
            if inbound:
                await self.inbound.store(inbound)
                inbound = []
            await self.inbound.settle()
            while batches:
                carrier, records = batches[0]
                await self._apply(carrier, records)
                del batches[0]
        except BaseException:
            # Keep what is not stored yet (and only that: a stored message is not
            # stored twice), and answer nothing early.
            self._stalled = batches
            for bind, (deliver, data) in self._responders.items():  # arrived meanwhile: after the others
                earlier = responders.setdefault(bind, ([], []))
                earlier[0].extend(deliver)
                earlier[1].extend(data)
            self._responders = responders
            self._invalid[:0] = invalid
            self._inbound[:0] = inbound
            raise
        for bind, (deliver, data) in responders.items():
            bind.respond_sequences(deliver, data, 0)

    async def correlate(self, carrier: str, records: list[ReceiptRecord]) -> BatchResult:
        """Correlate one carrier's receipts: on the one store, or by hint then shard
        after shard with what was not matched yet (see the module docstring)."""
        if len(self.stores) == 1:
            return await self.store.apply(carrier, records, compact=True)
        total = BatchResult()
        remaining = records
        tried = -1  # the one shard every receipt of `remaining` was tried on already
        hints = self.hints
        taken = hints.take_many(carrier, map(_MESSAGE_ID, records)) if hints is not None else None
        try:
            if taken is not None:
                remaining, tried = await self._correlate_hinted(carrier, records, taken, total)
            for index, store in enumerate(self.stores):
                if not remaining:
                    break
                if index == tried:
                    continue
                r = await store.apply(carrier, remaining, compact=True)
                self._add(total, r)
                remaining = r.unmatched
        except BaseException:
            # The batch is sent again as it was (a stalled batch, a held retry): with
            # its hints back it makes the same calls, whose repeats write nothing twice.
            if taken is not None:
                hints.give_back(carrier, map(_MESSAGE_ID, records), taken)
            raise
        total.unmatched = list(remaining)
        return total

    async def _correlate_hinted(
        self, carrier: str, records: list[ReceiptRecord], taken: list[int], total: BatchResult
    ) -> tuple[list[ReceiptRecord], int]:
        """Receipts for this engine's own submits, each to the shard its hint names:
        every shard's call in one round trip (`apply_stores`). Returns the receipts
        left (no hint, or not matched there) and the one shard they were all tried
        on (-1: none, or several)."""
        n = len(self.stores)
        first = taken[0]
        groups: dict[int, list[ReceiptRecord]] = {}
        unknown: list[ReceiptRecord] = []
        if taken.count(first) == len(taken):  # the whole batch on one shard (or none)
            if 0 <= first < n:
                groups[first] = records
            else:
                unknown = records
        else:  # one pass: a list per shard, the last one (index -1) for "no hint"
            lists: list[list[ReceiptRecord]] = [[] for _ in range(n + 1)]
            appends = [some.append for some in lists]
            for record, k in zip(records, taken, strict=True):
                appends[k if 0 <= k < n else n](record)  # -1: no hint
            groups = {k: some for k, some in enumerate(lists[:n]) if some}
            unknown = lists[n]
        if not groups:
            return records, -1
        remaining = list(unknown)
        for r in await apply_stores(self.redis, carrier, [(self.stores[k], some) for k, some in groups.items()],
                                    compact=True):
            self._add(total, r)
            remaining += r.unmatched
        return remaining, (next(iter(groups)) if not unknown and len(groups) == 1 else -1)

    @staticmethod
    def _add(total: BatchResult, r: BatchResult) -> None:
        """Add ``r``'s counts and events to ``total`` (not its unmatched)."""
        total.applied += r.applied
        total.duplicates += r.duplicates
        total.late += r.late
        total.orphans += r.orphans
        total.corrupt += r.corrupt
        total.finals += r.finals
        total.intermediates += r.intermediates
        total.fast_job_ids += r.fast_job_ids
        total.fast_events += r.fast_events
        total.fast_submitted_ms += r.fast_submitted_ms

    async def park_unmatched(self, carrier: str, records: list[ReceiptRecord], reason: str) -> None:
        """Keep receipts that matched nothing, on shard crc32("<carrier>:<message id>") mod N."""
        n = len(self.stores)
        if n == 1:
            await self.store.park_unmatched(carrier, records, reason)
            return
        by_shard: dict[int, list[ReceiptRecord]] = {}
        for r in records:
            by_shard.setdefault(correlation_shard(carrier, r.message_id, n), []).append(r)
        for shard, some in by_shard.items():
            await self.stores[shard].park_unmatched(carrier, some, reason)

    async def _apply(self, carrier: str, records: list[ReceiptRecord]) -> None:
        result = await self.correlate(carrier, records)
        for state, n in Counter([r.event for r in records]).items():
            self.metrics.receipts.labels(carrier, state).inc(n)
        self._settle(carrier, result, int(time.time() * 1000))

    def _settle(self, carrier: str, result: BatchResult, now_ms: int) -> None:
        """After a store call: hold what is still unmatched, publish the events."""
        if result.unmatched:
            held = self.unmatched[carrier]
            for r in result.unmatched:
                held.hold(r, now_ms)
        self._publish_fast(carrier, result, now_ms)
        self._publish(result.finals, now_ms)
        self._publish(result.intermediates, now_ms)

    def _publish_fast(self, carrier: str, result: BatchResult, now_ms: int) -> None:
        """`_publish` for the compact fast-path finals of one carrier's batch: no
        callback to forward, so just the counts and the receipt latency, in bulk."""
        if not result.fast_events:
            return
        hist = self.metrics.receipt_latency.get(carrier)
        if hist is not None:  # one observation per distinct submit time (a few per batch: its record calls)
            for ms, n in Counter(result.fast_submitted_ms).items():
                if ms:
                    hist.observe_counted(max(0.0, (now_ms - ms) / 1000), n)
        for event, n in Counter(result.fast_events).items():
            self.metrics.events.labels(event).inc(n)

    def _publish(self, events: list[JobEvent], now_ms: int) -> None:
        if not events:
            return
        by_event: dict[str, int] = {}
        latencies: dict[str, list[float]] = {}  # per carrier, observed once per batch
        forward = self.webhooks.forward
        for ev in events:
            by_event[ev.event] = by_event.get(ev.event, 0) + 1
            if ev.final and ev.submitted_ms:
                carrier = ev.fields.get("carrier", "")
                values = latencies.get(carrier)
                if values is None:
                    values = latencies[carrier] = []
                values.append(max(0.0, (now_ms - ev.submitted_ms) / 1000))
            if ev.callback:
                forward(ev.callback, ev.fields)
        for carrier, values in latencies.items():
            hist = self.metrics.receipt_latency.get(carrier)
            if hist is not None:
                hist.observe_many(values)
        for event, n in by_event.items():
            self.metrics.events.labels(event).inc(n)

    def retry_unmatched_soon(self) -> None:
        """New correlation entries were just recorded: retry held receipts at once
        (on the next tick of the worker) rather than on the maintenance tick."""
        if self._stalled_held or any(held.has_work() for held in self.unmatched.values()):
            self._retry_now = True
            self._wake.set()

    async def _retry_held(self, *, everything: bool) -> None:
        """Correlate held receipts again (all of them, or those whose retry time came);
        park the ones that waited longer than ``receipt_hold_s``.

        A retry that failed is sent again first and unchanged, like a stalled
        batch: if its reply was lost, the same call gets that reply back
        (dlr/store.py), so the callbacks of the events it published still go out.
        """
        now_ms = int(time.time() * 1000)
        for carrier, held in self.unmatched.items():
            stalled = self._stalled_held.pop(carrier, None)
            if stalled is not None:
                await self._apply_held(carrier, held, stalled, [], now_ms)
            if held.has_work():
                retry, expired = held.due(now_ms, everything=everything)
                await self._apply_held(carrier, held, retry, expired, now_ms)

    async def _apply_held(
        self, carrier: str, held: UnmatchedBuffer, retry: list[ReceiptRecord], expired: list[ReceiptRecord], now_ms: int
    ) -> None:
        try:
            if retry:
                result = await self.correlate(carrier, retry)
                retry = []  # handled: what is still unmatched is held again
                self._settle(carrier, result, now_ms)
            if expired:
                await self.park_unmatched(carrier, expired, "no matching submit within receipt_hold_s")
                self.metrics.receipts_unmatched.labels(carrier).inc(len(expired))
        except BaseException:
            # Redis went away mid-way: these receipts were answered to the SMSC
            # already, so they must not be dropped. The retry is kept as it was,
            # the ones to park go back into the buffer.
            if retry:
                self._stalled_held[carrier] = retry
                self._retry_now = True  # with the worker's next flush, not the next tick
            held.give_back(expired)
            raise

    # ----------------------------------------------------- periodic (engine)
    async def periodic(self) -> None:
        """Retry held receipts, park the ones that waited too long, sweep expiries
        (of receipts, and of inbound sets that waited for their parts long enough)."""
        await self._retry_held(everything=False)
        if self.hook_retry is not None:  # receipt events an engine left staged (privacy hooks)
            await self.hook_retry.recover(self.stores, self._settle)
        while await self.inbound.sweep() >= 500:
            pass
        stores = self.stores  # every shard's receipt deadlines: one round trip for all (expire_stores)
        while stores:
            # a now per round: it is the ts of the round's dlr_timeout events (written now)
            now_ms = int(time.time() * 1000)
            due = []
            for store, (finals, more) in zip(stores, await expire_stores(self.redis, stores, now_ms, 1000), strict=True):
                self._publish(finals, now_ms)
                if more:
                    due.append(store)
            stores = due
