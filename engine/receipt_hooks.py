"""Receipt events through the privacy hook chain: correlation in two steps.

With custom privacy hooks (``[privacy] hooks``), the events the correlation
script composes from receipts (``delivered``, ``undeliverable``, ``enroute``…)
and the receipt sweep's ``unknown`` are shown to the chain before anything of
them is written (docs/contract.md §4, "Privacy hooks"):

1. ``ReceiptStore.plan`` (``correlate.lua`` ``apply:plan``) resolves a chunk of
   receipts to their correlation entries and returns the events it would
   write, writing nothing;
2. the chain runs over them: ``on_store("job", …)`` (each event's deadline,
   written as its ``retention_until``), then ``on_events`` (a hook's edits of
   ``EVENT_EDITABLE`` fields are written);
3. ``ReceiptStore.commit`` writes them under the plan's call token, and the
   script refuses a chunk whose entries or job records changed since the plan
   (another engine applied a receipt of the same job meanwhile): the chunk is
   planned again, its events shown to the hooks again.

A hook that raises fails closed: nothing of the chunk is written, the sink
still answers the deliver_sm (the SMSC's window must not fill), and the
receipts the chunk matched wait in :class:`HookRetry`, tried again with
backoff (0.1 s, doubling); after ``HOOK_ATTEMPTS`` tries they are parked in
``P:dlr:unmatched`` with reason ``hook_failed``. Their correlation entries
stay until the receipt wait ends (the sweep then gives the jobs ``unknown``,
through the hooks too). A sweep whose hooks raise writes nothing; the next
maintenance tick sweeps again. Every failure counts in
``sendgate_privacy_hook_failures_total`` and logs one warning naming the
hook's class and the point.

With the default hooks only none of this runs: ``install`` leaves the sink's
stores as they are (today's one-call path, no extra cost).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from dlr.store import BatchResult, JobEvent, Plan, ReceiptRecord, ReceiptStore
from engine.metrics import Metrics
from privacy_hooks import EVENT_EDITABLE, HOOK_ATTEMPTS, HookChain, HookFailed

__all__ = ["HookRetry", "HookedReceiptStore", "hook_edits", "install"]

log = logging.getLogger("sendgate.receipts")

#: Plans refused in a row (their entries changed each time) before a chunk is left
#: to the sink's retry of a failed flush.
MAX_REPLANS = 5
_CHUNK = 1000
_BACKOFF_S = 0.1
_EARLY_S = 0.01  # a loop timer may fire up to its clock resolution early


def _s(value: Any) -> str:
    """A hook-edited event field as the script takes it (a removed one is "")."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


Edits = list[tuple[int, list[tuple[str, str]]]]


def hook_edits(
    chain: HookChain, events: list[dict[str, str]], now_s: float
) -> tuple[list[tuple[str, str]], Edits]:
    """Run the chain over planned receipt events (``on_store("job")``, then
    ``on_events``); return what the commit writes back: the fields every event gets
    (their deadline, ``retention_until``, when they share one: the usual case) and
    per event its own (its deadline otherwise, and the ``EVENT_EDITABLE`` fields a
    hook changed, added or removed — removed: ""). Raises ``HookFailed``."""
    originals = [tuple(map(e.get, EVENT_EDITABLE)) for e in events]  # None: absent
    views: list[MutableMapping[str, Any]] = list(events)
    deadlines = chain.on_store_batch("job", views, now_s)
    texts = [str(d) for d in deadlines]
    for ev, text in zip(events, texts, strict=True):
        ev["retention_until"] = text
    chain.on_events(views)
    shared = texts.count(texts[0]) == len(texts)
    edits: Edits = []
    for i, (ev, orig, text) in enumerate(zip(events, originals, texts, strict=True), 1):
        pairs = [] if shared else [("retention_until", text)]
        now = tuple(map(ev.get, EVENT_EDITABLE))
        if now != orig:  # a hook wrote an editable field (usually none did: one compare)
            for field, before, after in zip(EVENT_EDITABLE, orig, now, strict=True):
                if after is None and field in ev:  # set to None: written as ""
                    after = ""
                if after != before:
                    pairs.append((field, _s(after)))
        if pairs:
            edits.append((i, pairs))
    return ([("retention_until", texts[0])] if shared else []), edits


class HookRetry:
    """Receipts whose chunk a hook failed on, waiting for their next try.

    Entries ``(due_s, attempt, store, carrier, records)``; the sink's worker
    calls :meth:`run` when :meth:`due` (a timer wakes it at the next due time)."""

    def __init__(self, metrics: Metrics, wake: Callable[[], None]) -> None:
        self.metrics = metrics
        self.wake = wake
        self.waiting: list[tuple[float, int, HookedReceiptStore, str, list[ReceiptRecord]]] = []

    def __len__(self) -> int:
        return sum(len(w[4]) for w in self.waiting)

    def hold(self, store: HookedReceiptStore, carrier: str, records: list[ReceiptRecord], attempt: int) -> None:
        """Try ``records`` again after the backoff of ``attempt`` (1: the first try failed)."""
        delay = _BACKOFF_S * 2 ** (attempt - 1)
        self.waiting.append((time.monotonic() + delay, attempt, store, carrier, records))
        asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        """The timer of a held chunk: wake the sink's worker, or wait on if it fired early."""
        if self.due():
            self.wake()
        elif self.waiting:
            left = min(w[0] for w in self.waiting) - time.monotonic()
            asyncio.get_running_loop().call_later(max(left, _EARLY_S), self._fire)

    def due(self) -> bool:
        now = time.monotonic() + _EARLY_S
        return any(w[0] <= now for w in self.waiting)

    async def run(self, settle: Callable[[str, BatchResult, int], None]) -> None:
        """Try the due chunks again; ``settle`` publishes what a try wrote (the sink's
        ``_settle``). A Redis error keeps the chunks not tried yet (and raises)."""
        now = time.monotonic() + _EARLY_S
        due = [w for w in self.waiting if w[0] <= now]
        self.waiting = [w for w in self.waiting if w[0] > now]
        try:
            while due:
                _, attempt, store, carrier, records = due[0]
                result = await store.apply_chunk(carrier, records, compact=True, attempt=attempt + 1)
                del due[0]
                settle(carrier, result, int(time.time() * 1000))
        except BaseException:
            self.waiting += due
            raise


class HookedReceiptStore(ReceiptStore):
    """A shard's receipt store whose writes go through the privacy hook chain (module doc)."""

    chain: HookChain
    retry: HookRetry
    metrics: Metrics
    replans: int
    """Commits the script refused (entries changed since their plan), planned again."""

    def attach(self, chain: HookChain, retry: HookRetry, metrics: Metrics) -> HookedReceiptStore:
        self.chain, self.retry, self.metrics = chain, retry, metrics
        self.replans = 0
        return self

    async def apply(self, carrier: str, receipts: Sequence[ReceiptRecord], *, compact: bool = False) -> BatchResult:
        result = BatchResult()
        for start in range(0, len(receipts), _CHUNK):
            r = await self.apply_chunk(carrier, list(receipts[start : start + _CHUNK]), compact=compact, attempt=1)
            _merge(result, r)
        return result

    async def apply_chunk(
        self, carrier: str, records: list[ReceiptRecord], *, compact: bool, attempt: int
    ) -> BatchResult:
        """Plan, hooks, commit for one chunk (``attempt``: its try, from 1). A hook
        failure writes nothing: the chunk's matched receipts are held for another try,
        or parked (``hook_failed``) after the last."""
        for _ in range(MAX_REPLANS):
            plan = await self.plan(carrier, records, compact=compact)
            if plan.done:
                return self.planned_result(carrier, plan, compact=compact)
            hooked = self._through_hooks(plan, attempt)
            if hooked is None:
                return await self._hook_failed(carrier, plan, attempt, compact)
            committed = await self.commit(carrier, plan, hooked[1], common=hooked[0], compact=compact)
            if committed is not None:
                return committed
            self.replans += 1
        raise RuntimeError("receipt correlation: entries kept changing between plan and commit")

    def _through_hooks(self, plan: Plan, attempt: int) -> tuple[list[tuple[str, str]], Edits] | None:
        if not plan.events:
            return [], []
        try:
            return hook_edits(self.chain, plan.events, time.time())
        except HookFailed as err:
            self.metrics.hook_failures.inc()
            log.warning("%s; receipt events not written (attempt %d of %d)", err, attempt, HOOK_ATTEMPTS)
            return None

    async def _hook_failed(self, carrier: str, plan: Plan, attempt: int, compact: bool) -> BatchResult:
        """Nothing written: the unmatched go back to the sink as usual, the others are
        held for another try — or parked with reason ``hook_failed`` after the last."""
        result = BatchResult()
        held: list[ReceiptRecord] = []
        for record, status in zip(plan.ordered, plan.statuses, strict=True):
            if status in ("u", "o"):
                result.unmatched.append(record)
                if status == "o":
                    result.orphans += 1
            else:
                held.append(record)
        if held:
            if attempt >= HOOK_ATTEMPTS:
                await self.park_unmatched(carrier, held, "hook_failed")
                self.metrics.receipts_unmatched.labels(carrier).inc(len(held))
                log.warning("%d receipt(s) parked after %d failed privacy hook tries", len(held), attempt)
            else:
                self.retry.hold(self, carrier, held, attempt)
        return result

    async def expire_overdue(self, now_ms: int, limit: int = 1000) -> tuple[list[JobEvent], bool]:
        """The sweep in two steps. A hook failure writes nothing and ends this sweep
        (returns no event, nothing more): the next maintenance tick sweeps again."""
        for _ in range(MAX_REPLANS):
            plan = await self.plan_expire(now_ms, limit)
            if plan.writes == 0:
                return [], plan.more
            hooked = self._through_hooks(plan, 1)
            if hooked is None:
                return [], False
            done = await self.commit_expire(plan, hooked[1], hooked[0])
            if done is not None:
                return done
            self.replans += 1
        raise RuntimeError("receipt sweep: buckets kept changing between plan and commit")


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
