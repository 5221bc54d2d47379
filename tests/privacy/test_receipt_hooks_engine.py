"""Receipt events through the privacy hook chain (issue #21, docs/contract.md §4 "Privacy
hooks"): the whole engine against a real Redis and the SMPP simulator over TCP.

With custom hooks, the events the correlation script composes from receipts, and the
receipt sweep's ``unknown``, are shown to ``on_store("job")`` / ``on_events`` before they
are published (staged, then published: engine/receipt_hooks.py); a raising hook publishes
nothing, the receipts are still answered, the batch retried, then parked with reason
``hook_failed``; a batch an engine left staged is published once by the recovery pass."""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

from dlr.store import ReceiptStore
from engine.hook_chain import chain_for
from engine.keys import Keys
from engine.metrics import Metrics
from engine.receipt_hooks import HookedReceiptStore, HookRetry
from privacy_hooks import HOOK_ATTEMPTS, configure_logging
from tests.correlation import STAGED_END_MS, SUBMITTED_MS, put_entry
from tests.dlr.test_store import events, rec, submit_job
from tests.engine.harness import make_settings, push, running, wait_events
from tests.privacy.hooks_for_tests import Recorder
from tests.privacy.test_hook_chain_engine import HOOKS, clean_root  # noqa: F401 (a fixture)

RECEIPT_FIELDS = {"id", "ref", "event", "carrier", "parts", "message_ids", "error", "ts", "retention_until"}


def _jobs(n: int, **extra: str) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    return [{"id": f"{run}-{i}", "to": f"+4503{i:06d}", "text": f"Hello number {i}", "dlr": "1", **extra}
            for i in range(n)]


def _decoded(entries: list[Any]) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _id, f in entries]


async def test_a_custom_hook_sees_every_receipt_event_as_written(redis_url: str, key_prefix: str) -> None:
    singles = _jobs(60, ref="r-single")  # one part, no callback: the fast-form entries
    multi = _jobs(20, ref="r-multi", text="x" * 200)  # two parts: a job record each
    jobs = singles + multi
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:Recorder"]}) as (eng, _s, _p, redis):
        hook = eng.pipeline.hooks.custom[0]
        assert isinstance(hook, Recorder)
        before = int(time.time())
        await push(redis, key_prefix, jobs)
        await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        written = _decoded(await redis.xrange(Keys(key_prefix).events))
        receipts = [ev for ev in written if ev["event"] == "delivered"]
        assert sorted(ev["id"] for ev in receipts) == sorted(j["id"] for j in jobs)
        seen = {(e["id"], e["event"]): e for e in hook.events}
        for ev in receipts:
            assert set(ev) == RECEIPT_FIELDS
            assert seen[(ev["id"], ev["event"])] == ev  # field for field, its deadline included
            assert ev["parts"] == ("2" if ev["ref"] == "r-multi" else "1")
            assert int(ev["retention_until"]) >= before + 120 * 86400  # the policy's, from on_store
        # on_store("job") saw each receipt event once, as a job record
        stored = [fields for kind, fields, _d in hook.stored if kind == "job" and fields.get("event") == "delivered"]
        # every staged batch published, none read again
        assert [getattr(s, "rereads", None) for s in eng.receipts.stores] == [0]
        assert await redis.exists(Keys(key_prefix).dlr_staged) == 0
        assert sorted(f["id"] for f in stored) == sorted(j["id"] for j in jobs)
        assert hook.batches < len(jobs) / 4  # per batch, not per receipt


async def test_with_shards_every_receipt_event_goes_through_the_hooks(redis_url: str, key_prefix: str) -> None:
    """Shards: receipts hinted to several shards at once (``apply_stores``) still go
    through each shard's hooked store, not pipelined past the hooks."""
    jobs = _jobs(40, ref="r-s")
    hooks = {"hooks": [f"{HOOKS}:TagReceiptRef"]}
    async with running(redis_url, key_prefix, privacy=hooks, redis={"shards": 2}) as (_eng, _s, _p, redis):
        await push(redis, key_prefix, jobs, shards=2)
        by_job = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, shards=2, timeout_s=60)
        for job in jobs:
            assert [(e["event"], e["ref"]) for e in by_job[job["id"]]] == [
                ("submitted", "r-s"), ("delivered", "receipt-r-s"),
            ]


async def test_a_hook_edit_of_a_receipt_event_is_what_is_written(redis_url: str, key_prefix: str) -> None:
    jobs = _jobs(30, ref="order-7") + _jobs(10, ref="order-7", text="y" * 200)
    async with running(redis_url, key_prefix, privacy={"hooks": [f"{HOOKS}:TagReceiptRef"]}) as (_e, _s, _p, redis):
        await push(redis, key_prefix, jobs)
        by_job = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        for job in jobs:
            assert [(e["event"], e["ref"]) for e in by_job[job["id"]]] == [
                ("submitted", "order-7"), ("delivered", "receipt-order-7"),
            ]


async def test_a_raising_hook_on_receipts_writes_nothing_then_parks_them(
    redis_url: str, key_prefix: str, clean_root: None  # noqa: F811
) -> None:
    jobs = _jobs(12)
    hooks = {"hooks": [f"{HOOKS}:RaisingOnReceipts"]}
    stream = io.StringIO()
    settings = make_settings(redis_url, key_prefix, 1, privacy=hooks)
    configure_logging("debug", "json", stream=stream, log_filter=chain_for(settings).log_filter())
    async with running(redis_url, key_prefix, privacy=hooks) as (eng, sim, _p, redis):
        k = Keys(key_prefix)
        await push(redis, key_prefix, jobs)
        await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False)  # submitted: recorded
        deadline = time.monotonic() + 30
        parked: list[dict[str, str]] = []
        while len(parked) < len(jobs) and time.monotonic() < deadline:
            parked = _decoded(await redis.xrange(k.dlr_unmatched))
            if len(parked) < len(jobs):
                await eng.pipeline.recorded_barrier(0.2)
        assert len(parked) == len(jobs)
        assert {p["reason"] for p in parked} == {"hook_failed"}
        assert {p["event"] for p in parked} == {"delivered"}
        assert {p["carrier"] for p in parked} == {"sim"}
        # nothing of a receipt was published, and the staged batch is gone with its parking
        assert {e["event"] for e in _decoded(await redis.xrange(k.events))} == {"submitted"}
        assert await redis.exists(k.dlr_staged) == 0
        # the SMSC's receipts were all answered (its window does not fill)
        assert sim.stats.receipts == len(jobs) and sim.stats.dlr_resps == len(jobs)
        assert eng.metrics.hook_failures._value.get() >= HOOK_ATTEMPTS
        assert eng.receipts.hook_retry is not None and not eng.receipts.hook_retry.waiting
    text = stream.getvalue()
    assert "privacy hook RaisingOnReceipts failed in on_event" in text
    assert "4502999123" not in text and "2999123" not in text
    for job in jobs:
        assert job["to"][1:] not in text and job["to"][-6:] not in text


async def test_the_receipt_sweep_shows_its_unknown_events_to_the_hooks(redis_url: str, key_prefix: str) -> None:
    """No receipt comes (the simulator sends none): at the end of a short receipt wait
    the sweep's ``unknown`` goes through the hooks, edited as they leave it."""
    from connectors.simulator import SimulatorConfig

    jobs = _jobs(15)
    hooks = {"hooks": [f"{HOOKS}:Recorder", f"{HOOKS}:TagReceiptRef"]}
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), privacy=hooks,
                       carrier={"dlr_wait_h": 0.001}) as (eng, _s, _p, redis):
        recorder = eng.pipeline.hooks.custom[0]
        await push(redis, key_prefix, jobs)
        by_job = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, timeout_s=30)
        seen = {(e["id"], e["event"]): e for e in recorder.events}
        for job in jobs:
            last = by_job[job["id"]][-1]
            assert last["event"] == "unknown" and last["error"] == "dlr_timeout"
            assert last["ref"] == "receipt-"  # TagReceiptRef's edit (the jobs have no ref)
            shown = seen[(job["id"], "unknown")]  # Recorder ran before TagReceiptRef
            assert shown == {**last, "ref": ""}


# ----------------------------------------------------------------- the store, directly


async def _hooked(redis: Any, prefix: str, hook_paths: list[str]) -> tuple[HookedReceiptStore, HookRetry, Metrics]:
    settings = make_settings("redis://unused", prefix, 1, privacy={"hooks": hook_paths})
    metrics = Metrics()
    woken: list[int] = []
    retry = HookRetry(metrics, lambda: woken.append(1))
    store = HookedReceiptStore(redis, prefix).attach(chain_for(settings), retry, metrics)
    return store, retry, metrics


async def test_a_raising_sweep_publishes_nothing_and_its_batch_is_published_later(
    redis_client: Any, key_prefix: str
) -> None:
    r = redis_client
    await put_entry(r, key_prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
    await submit_job(r, key_prefix, "multi", "acme", ["m1", "m2"])
    store, retry, metrics = await _hooked(r, key_prefix, [f"{HOOKS}:RaisingOnReceipts"])
    assert await store.expire_overdue(STAGED_END_MS) == ([], False)
    assert metrics.hook_failures._value.get() == 1
    assert await events(r, key_prefix) == []
    assert len(retry.waiting) == 1 and await r.hlen(Keys(key_prefix).dlr_staged) == 1  # held, staged
    # another engine's recovery pass (this one stopped) publishes it through its own hooks
    good, good_retry, _m = await _hooked(r, key_prefix, [f"{HOOKS}:TagReceiptRef"])
    published: list[Any] = []
    assert await good_retry.recover([good], lambda _c, result, _ms: published.append(result), force=True) == 1
    assert sorted(e.job_id for res in published for e in res.finals) == ["f1", "multi"]
    assert sorted(e["ref"] for e in await events(r, key_prefix)) == ["receipt-r-1", "receipt-ref-1"]
    assert await r.exists(Keys(key_prefix).dlr_staged) == 0
    # the first engine's retry now finds the batch gone: nothing published twice
    await retry.run(lambda _c, _r, _ms: None)
    assert len(await events(r, key_prefix)) == 2


async def test_a_batch_left_staged_by_a_stopped_engine_is_published_once(redis_url: str, key_prefix: str) -> None:
    """An engine stops between the two steps (the first step called directly: the
    receipts are applied, their events staged, nothing published); a starting engine's
    recovery pass shows them to its hooks and publishes them, exactly once."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        await put_entry(r, key_prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
        await submit_job(r, key_prefix, "multi", "acme", ["m1", "m2"])
        stopped = ReceiptStore(r, key_prefix)
        counts, batch = await stopped.stage("acme", [rec("f1"), rec("m1"), rec("m2", "undeliverable", "011")])
        assert counts.applied == 3 and batch is not None
        assert await events(r, key_prefix) == []
        hooks = {"hooks": [f"{HOOKS}:Recorder", f"{HOOKS}:TagReceiptRef"]}
        async with running(redis_url, key_prefix, privacy=hooks) as (eng, _s, _p, redis):
            recorder = eng.pipeline.hooks.custom[0]
            by_job = await wait_events(redis, key_prefix, {"f1", "multi"}, timeout_s=20)
            assert [(e["event"], e["ref"]) for e in by_job["f1"]] == [("delivered", "receipt-r-1")]
            assert [(e["event"], e["ref"]) for e in by_job["multi"]] == [("undeliverable", "receipt-ref-1")]
            assert {(e["id"], e["event"]) for e in recorder.events} >= {("f1", "delivered"), ("multi", "undeliverable")}
            assert await redis.exists(Keys(key_prefix).dlr_staged) == 0
            # the stopped engine's publish, had it come back, finds nothing: published once
            assert await stopped.publish_staged(batch) == 0
            assert sorted(e["id"] for e in await events(r, key_prefix) if e["id"] in ("f1", "multi")) == [
                "f1", "multi",
            ]
    finally:
        await r.aclose()


async def test_an_erasure_between_the_steps_drops_the_subject_from_the_batch(redis_client: Any, key_prefix: str) -> None:
    r = redis_client
    await put_entry(r, key_prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
    await put_entry(r, key_prefix, "acme", "f2", f"={SUBMITTED_MS}\x1fF2\x1fsecret\x1ff2")
    store, _retry, _m = await _hooked(r, key_prefix, [f"{HOOKS}:Recorder"])
    _counts, batch = await store.stage("acme", [rec("f1"), rec("f2")])
    assert batch is not None
    assert await ReceiptStore(r, key_prefix).erase_staged(["f2"]) == 1  # the erasure, meanwhile
    result = await store.publish_batch(batch, 1, compact=False)
    assert result is not None and [e.job_id for e in result.finals] == ["f1"]
    assert store.rereads == 1
    assert [e["id"] for e in await events(r, key_prefix)] == ["f1"]
    assert await r.exists(Keys(key_prefix).dlr_staged) == 0


async def test_the_default_chain_keeps_the_one_call_path(redis_client: Any, key_prefix: str) -> None:
    """Without custom hooks the sink's stores are the plain ones (one script call per
    batch, the script without the two-step modes); with one, every shard's is hooked."""
    from engine.receipt_sink import ReceiptSink

    plain = ReceiptSink(make_settings("redis://unused", key_prefix, 1, redis={"shards": 2}), redis_client, Metrics())
    assert plain.hook_retry is None and {type(s) for s in plain.stores} == {ReceiptStore}
    hooked = ReceiptSink(make_settings("redis://unused", key_prefix, 1, redis={"shards": 2},
                                       privacy={"hooks": [f"{HOOKS}:Recorder"]}), redis_client, Metrics())
    assert hooked.hook_retry is not None
    assert [type(s) for s in hooked.stores] == [HookedReceiptStore, HookedReceiptStore]
    assert hooked.store is hooked.stores[0] and [s.keys for s in hooked.stores] == [s.keys for s in plain.stores]


async def test_a_held_receipt_through_the_hooks_is_dated_after_its_submit(redis_url: str, key_prefix: str) -> None:
    """With custom hooks (stage, then publish) a receipt held because it came before its
    submit was recorded is dated when its retry stages it: after its submitted event."""
    from connectors.simulator import SimulatorConfig

    jobs = _jobs(30)
    cfg = SimulatorConfig(dlr=True, receipt_before_resp=True, latency_ms=20.0)  # the resp 20 ms after the receipt
    async with running(
        redis_url, key_prefix, cfg, receipt_hold_s=10.0, privacy={"hooks": [f"{HOOKS}:Recorder"]}
    ) as (_eng, _s, _p, redis):
        await push(redis, key_prefix, jobs)
        by_job = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        for job in jobs:
            submitted, delivered = by_job[job["id"]]
            assert (submitted["event"], delivered["event"]) == ("submitted", "delivered")
            assert int(delivered["ts"]) >= int(submitted["ts"]), int(submitted["ts"]) - int(delivered["ts"])
