"""Receipt events through the privacy hook chain: stage, then publish.

With custom privacy hooks (``[privacy] hooks``), the events the correlation
script composes from receipts (``delivered``, ``undeliverable``, ``enroute``…)
and the receipt sweep's ``unknown`` are shown to the chain before any of them
is published (docs/contract.md §4, "Privacy hooks"):

1. ``ReceiptStore.stage`` (``correlate.lua`` ``apply:stage``) does what one
   apply call does — entries consumed, job records updated, the duplicate
   window — but keeps the events it composes in ``P:dlr:staged`` (one field per
   batch, its call token) instead of publishing them, and returns them;
2. the chain runs over them: ``on_store("job", …)`` (each event's deadline,
   written as its ``retention_until``), then ``on_events`` (a hook's edits of
   ``EVENT_EDITABLE`` fields are written);
3. ``ReceiptStore.publish_staged`` (dlr/publish_staged.lua) XADDs them with
   the hooks' edits and deletes the batch, in one call: a batch is published
   once, whoever gets there first.

The receipts are answered once step 1 returned (their outcome is stored), even
if a hook fails. A hook that raises fails closed: nothing of the batch is
published, it stays staged and is tried again with backoff (0.1 s, doubling,
:class:`HookRetry`); after ``HOOK_ATTEMPTS`` tries its events are parked in
``P:dlr:unmatched`` with reason ``hook_failed`` (as receipts: carrier, message
ids, event, error, ts) and the batch is deleted: never published. Every failure
counts in ``sendgate_privacy_hook_failures_total`` and logs one warning naming
the hook's class and the point. A sweep whose hooks fail ends there (its batch
held the same way); the next maintenance tick sweeps on.

A batch left staged by an engine that stopped between the two steps is
published by the recovery pass (:meth:`HookRetry.recover`, on the maintenance
tick): at an engine's start every staged batch, then those staged more than
``STALE_MS`` ago and not held by this engine — through the hooks again. An
erasure drops the staged events of its jobs (``ReceiptStore.erase_staged``);
a publish of the value read before is refused and the batch read again.

With the default hooks only none of this runs: ``install`` leaves the sink's
stores as they are (the one-call path, no extra cost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, MutableMapping, Sequence
from itertools import repeat
from typing import Any

from dlr.store import BatchResult, JobEvent, ReceiptRecord, ReceiptStore, StagedBatch
from engine.metrics import Metrics
from privacy_hooks import EVENT_EDITABLE, HOOK_ATTEMPTS, HookChain, HookFailed

__all__ = ["HookRetry", "HookedReceiptStore", "ReceiptEvent", "hook_edits", "install", "receipt_events"]

log = logging.getLogger("sendgate.receipts")

_CHUNK = 1000
_BACKOFF_S = 0.1
_EARLY_S = 0.01  # a loop timer may fire up to its clock resolution early
STALE_MS = 30_000
"""A staged batch this old, not held by this engine, is another's that stopped: recovered."""
RECOVER_EVERY_S = 5.0
"""How often the maintenance tick looks for staged batches to recover."""
_REREADS = 5  # a batch changed by erasures while being published, read again at most


def _s(value: Any) -> str:
    """A hook-edited event field as the script takes it (a removed one is "")."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


Edits = list[tuple[int, list[tuple[str, str]]]]


_WRITES: list[ReceiptEvent] = []
"""The events written to (a hook's write) since :func:`hook_edits` began its batch."""


class ReceiptEvent(dict[str, Any]):
    """A receipt event as the hooks see it: a plain dict of its fields as composed. None
    of them holds a number or text in clear (``names_free``, like the engine's job
    views), so the redaction hook passes it without looking at its keys.

    Every way to change it through its methods notes the event (``_WRITES``), so
    :func:`hook_edits` compares only the events a hook wrote to with what they were
    (no copy of every event; usually none was written)."""

    __slots__ = ()
    names_free = True

    def __setitem__(self, key: str, value: Any) -> None:
        _WRITES.append(self)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        _WRITES.append(self)
        dict.__delitem__(self, key)

    def __ior__(self, other: Any) -> ReceiptEvent:  # type: ignore[override,misc]
        _WRITES.append(self)
        dict.update(self, other)
        return self

    def pop(self, *args: Any) -> Any:
        _WRITES.append(self)
        return dict.pop(self, *args)

    def popitem(self) -> tuple[str, Any]:
        _WRITES.append(self)
        return dict.popitem(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        _WRITES.append(self)
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        _WRITES.append(self)
        dict.update(self, *args, **kwargs)

    def clear(self) -> None:
        _WRITES.append(self)
        dict.clear(self)


def receipt_events(fields: Sequence[list[str]]) -> list[ReceiptEvent]:
    """The hooks' events of a staged batch's field lists (``StagedBatch.events``)."""
    return [ReceiptEvent(zip(it, it, strict=False)) for it in map(iter, fields)]


def hook_edits(
    chain: HookChain, events: Sequence[ReceiptEvent], now_s: float,
    fields: Sequence[Sequence[str]] | Callable[[], Sequence[Sequence[str]]],
) -> tuple[list[tuple[str, str]], Edits]:
    """Run the chain over staged receipt events (``on_store("job")``, then
    ``on_events``); return what the publish writes with them: the fields every event
    gets (their deadline, ``retention_until``, when they share one: the usual case) and
    per event its own (its deadline otherwise, and the ``EVENT_EDITABLE`` fields a hook
    changed, added or removed — removed: ""). ``fields``: each event's field list as
    staged (what it was before the hooks), or a function giving them (called only when a
    hook wrote to an event: ``StagedBatch.events`` is made on demand). Raises ``HookFailed``."""
    del _WRITES[:]
    try:
        views: list[MutableMapping[str, Any]] = list(events)
        deadlines = chain.on_store_batch("job", views, now_s)
        first = deadlines[0] if deadlines else 0
        shared = deadlines.count(first) == len(deadlines)
        set_field = dict.__setitem__  # the engine's stamp: not a hook's write
        if shared:  # one deadline: stamped in one C loop (map), no Python step per event
            deque(map(set_field, events, repeat("retention_until"), repeat(str(first))), maxlen=0)
        else:
            for ev, deadline in zip(events, deadlines, strict=True):
                set_field(ev, "retention_until", str(deadline))
        chain.on_events(views, names_free=True)  # ReceiptEvents only
        written = {id(ev) for ev in _WRITES}
    finally:
        del _WRITES[:]
    edits: Edits = []
    if shared and not written:  # the usual case: no hook wrote, one deadline
        return ([("retention_until", str(first))] if events else []), edits
    staged: Sequence[Sequence[str]] = ()
    if written:  # the events as staged, to compare the written ones with
        staged = fields() if callable(fields) else fields
    for i, ev in enumerate(events, 1):
        pairs = [] if shared else [("retention_until", str(deadlines[i - 1]))]
        if id(ev) in written:  # a hook wrote to it: compare with the event as staged
            it = iter(staged[i - 1])
            orig = dict(zip(it, it, strict=False))
            for field in EVENT_EDITABLE:
                before, after = orig.get(field), ev.get(field)
                if after is None and field in ev:  # set to None: written as ""
                    after = ""
                if after != before:
                    pairs.append((field, _s(after)))
        if pairs:
            edits.append((i, pairs))
    return ([("retention_until", str(first))] if shared and events else []), edits


Settle = Callable[[str, BatchResult, int], None]


class HookRetry:
    """Staged batches a hook failed on, waiting for their next try, and the recovery pass.

    Entries ``(due_s, attempt, store, batch)``; the sink's worker calls :meth:`run`
    when :meth:`due` (a timer wakes it at the next due time)."""

    def __init__(self, metrics: Metrics, wake: Callable[[], None]) -> None:
        self.metrics = metrics
        self.wake = wake
        self.waiting: list[tuple[float, int, HookedReceiptStore, StagedBatch]] = []
        self.stale_ms = STALE_MS
        self._next_recover = 0.0  # monotonic; 0: never recovered yet (the start: every batch)

    def __len__(self) -> int:
        return sum(len(w[3].kinds) for w in self.waiting)

    def holds(self, field: str) -> bool:
        return any(w[3].field == field for w in self.waiting)

    def hold(self, store: HookedReceiptStore, batch: StagedBatch, attempt: int) -> None:
        """Try ``batch`` again after the backoff of ``attempt`` (1: the first try failed)."""
        delay = _BACKOFF_S * 2 ** (attempt - 1)
        self.waiting.append((time.monotonic() + delay, attempt, store, batch))
        asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        """The timer of a held batch: wake the sink's worker, or wait on if it fired early."""
        if self.due():
            self.wake()
        elif self.waiting:
            left = min(w[0] for w in self.waiting) - time.monotonic()
            asyncio.get_running_loop().call_later(max(left, _EARLY_S), self._fire)

    def due(self) -> bool:
        now = time.monotonic() + _EARLY_S
        return any(w[0] <= now for w in self.waiting)

    async def run(self, settle: Settle) -> None:
        """Try the due batches again; ``settle`` publishes what a try published (the
        sink's ``_settle``). A Redis error keeps the batches not tried yet (and raises)."""
        now = time.monotonic() + _EARLY_S
        due = [w for w in self.waiting if w[0] <= now]
        self.waiting = [w for w in self.waiting if w[0] > now]
        try:
            while due:
                _, attempt, store, batch = due[0]
                result = await store.publish_batch(batch, attempt + 1, compact=True)
                del due[0]
                if result is not None:
                    settle(batch.carrier, result, int(time.time() * 1000))
        except BaseException:
            self.waiting += due
            raise

    async def recover(self, stores: Sequence[ReceiptStore], settle: Settle, *, force: bool = False) -> int:
        """Publish batches left in ``P:dlr:staged`` by an engine that stopped between the
        two steps (at the first call: every batch; then those older than ``stale_ms``)
        that this engine does not hold, through the hooks. At most every
        ``RECOVER_EVERY_S`` unless ``force``. Returns the batches tried."""
        now = time.monotonic()
        if not force and now < self._next_recover:
            return 0
        min_age = self.stale_ms if self._next_recover else 0
        self._next_recover = now + RECOVER_EVERY_S
        tried = 0
        for store in stores:
            if not isinstance(store, HookedReceiptStore):
                continue
            now_ms = int(time.time() * 1000)
            for batch in await store.staged_batches():
                if now_ms - batch.staged_ms < min_age or batch.field in store.busy or self.holds(batch.field):
                    continue
                tried += 1
                log.info("publishing %d receipt event(s) another step left staged", len(batch.kinds))
                result = await store.publish_batch(batch, 1, compact=True)
                if result is not None:
                    settle(batch.carrier, result, now_ms)
        return tried


class HookedReceiptStore(ReceiptStore):
    """A shard's receipt store whose events go through the privacy hook chain (module doc)."""

    one_call = False
    chain: HookChain
    retry: HookRetry
    metrics: Metrics
    busy: set[str]
    """Fields of the batches this store is publishing now (the recovery pass skips them)."""
    rereads: int
    """Publishes refused because an erasure changed the batch meanwhile, read again."""

    def attach(self, chain: HookChain, retry: HookRetry, metrics: Metrics) -> HookedReceiptStore:
        self.chain, self.retry, self.metrics = chain, retry, metrics
        self.busy = set()
        self.rereads = 0
        return self

    async def apply(
        self, carrier: str, receipts: Sequence[ReceiptRecord], *, compact: bool = False, now_ms: int | None = None
    ) -> BatchResult:
        result = BatchResult()
        for start in range(0, len(receipts), _CHUNK):
            # (now_ms None: each stage call's own time, the ts of the events it stages)
            counts, batch = await self.stage(
                carrier, list(receipts[start : start + _CHUNK]), compact=compact, now_ms=now_ms
            )
            _merge(result, counts)
            if batch is not None:
                published = await self.publish_batch(batch, 1, compact=compact)
                if published is not None:
                    _merge(result, published)
        return result

    async def publish_batch(self, batch: StagedBatch, attempt: int, *, compact: bool) -> BatchResult | None:
        """The hooks over a staged batch (``attempt``: its try, from 1), then its publish.
        Returns what was published as an apply's result (empty: the batch was gone,
        published by another engine or erased), or None: a hook failed, the batch is
        held for another try, or parked (``hook_failed``) after the last."""
        self.busy.add(batch.field)
        try:
            for _ in range(_REREADS):
                events = batch.event_dicts(ReceiptEvent)  # straight from the staged columns
                try:
                    common, edits = hook_edits(self.chain, events, time.time(), batch.event_lists)
                except HookFailed as err:
                    self.metrics.hook_failures.inc()
                    log.warning("%s; receipt events not published (attempt %d of %d)", err, attempt, HOOK_ATTEMPTS)
                    await self._hook_failed(batch, attempt)
                    return None
                n = await self.publish_staged(batch, edits, common)
                if n > 0:
                    return self.staged_result(batch, edits, common, compact=compact)
                if n == 0:
                    return BatchResult()
                self.rereads += 1  # changed by an erasure: read it again
                fresh = await self.staged_batch(batch.field)
                if fresh is None:
                    return BatchResult()
                fresh.carrier = batch.carrier
                batch = fresh
            raise RuntimeError("receipt events: a staged batch kept changing while being published")
        finally:
            self.busy.discard(batch.field)

    async def _hook_failed(self, batch: StagedBatch, attempt: int) -> None:
        if attempt < HOOK_ATTEMPTS:
            self.retry.hold(self, batch, attempt)
            return
        parked = await self.park_staged(batch, "hook_failed")
        if parked:
            for carrier, n in Counter(_carrier(f, batch.carrier) for f in batch.events).items():
                self.metrics.receipts_unmatched.labels(carrier).inc(n)
            log.warning("%d receipt event(s) parked after %d failed privacy hook tries", parked, attempt)

    async def expire_overdue(self, now_ms: int, limit: int = 1000) -> tuple[list[JobEvent], bool]:
        """The sweep staged, then published. A hook failure ends this sweep (returns no
        event, nothing more): its batch is held for another try, the next maintenance
        tick sweeps on."""
        batch, more = await self.stage_expire(now_ms, limit)
        if batch is None:
            return [], more
        result = await self.publish_batch(batch, 1, compact=False)
        if result is None:
            return [], False
        return result.finals, more


def _carrier(fields: list[str], default: str) -> str:
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == "carrier":
            return fields[i + 1]
    return default


def _merge(total: BatchResult, r: BatchResult) -> None:
    for name in ("applied", "duplicates", "late", "orphans", "corrupt"):
        setattr(total, name, getattr(total, name) + getattr(r, name))
    for name in ("unmatched", "finals", "intermediates", "fast_job_ids", "fast_events", "fast_submitted_ms"):
        getattr(total, name).extend(getattr(r, name))


def install(sink: Any, chain: HookChain) -> HookRetry | None:
    """With custom hooks: replace the sink's stores (one per shard) by hooked ones
    sharing one :class:`HookRetry`, and return it; None (nothing changed) without."""
    if not chain.has_custom:
        return None
    retry = HookRetry(sink.metrics, sink._wake.set)
    stores: list[ReceiptStore] = []
    for store in sink.stores:
        hooked = HookedReceiptStore(
            sink.redis, store.keys, stream_maxlen=store.stream_maxlen,
            duplicate_window_ms=store.duplicate_window_ms, record_grace_s=store.record_grace_s,
        )
        stores.append(hooked.attach(chain, retry, sink.metrics))
    sink.stores = stores
    sink.store = stores[0]
    return retry
