"""Shards on one Redis: what keeps their extra calls cheap (real Redis).

- `ShardHints`: a dict per carrier the record path writes into, taken per batch;
- `dlr.store.apply_stores`: a receipt batch's calls on several shards in one
  round trip, each call on its own shard's slot, and a failed round trip made
  again call by call without applying a receipt twice;
- the maintenance tick's schedule calls of every shard in one round trip,
  and its receipt expiry (`dlr.store.expire_stores`) and backlog sample
  (`engine.backlog.lane_backlog` of every shard) likewise.
"""

from __future__ import annotations

import socket
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from dlr.store import ReceiptRecord, ReceiptStore, apply_stores, expire_stores, put_correlation
from engine.backlog import lane_backlog
from engine.keys import Keys, cluster_slot, shard_keys, shard_of
from engine.metrics import Metrics
from engine.pipeline import Pipeline, ShardHints
from engine.receipt_sink import ReceiptSink
from tests.correlation import STAGED_END_MS, SUBMITTED_MS
from tests.dlr.test_store import _ReplyCutter
from tests.engine.harness import delete_prefix, make_settings

N = 4


def test_hints_are_a_dict_per_carrier_taken_per_batch_and_given_back() -> None:
    hints = ShardHints(limit=8)
    into = hints.of("c1")
    into.update({f"m{i}": i % N for i in range(6)})
    hints.of("c2")["m0"] = 3
    hints.trim()
    assert len(hints) == 7  # under the limit: nothing dropped
    taken = hints.take_many("c1", ["m5", "nope", "m0"])
    assert taken == [1, -1, 0]
    assert hints.take_many("c1", ["m5", "m0"]) == [-1, -1]  # taken once
    assert hints.take("c2", "m0") == 3  # per carrier: c1's m0 is not c2's
    assert hints.take_many("c3", ["m1"]) is None  # a carrier without hints
    hints.give_back("c1", ["m5", "nope", "m0"], taken)  # a failed batch puts its hints back
    assert hints.take_many("c1", ["m5", "nope", "m0"]) == [1, -1, 0]
    for i in range(20):
        into[f"x{i}"] = 0
    hints.trim()
    assert len(hints.of("c1")) == 4  # over the limit: the older ids went, the newest half stays
    assert hints.take("c1", "x19") == 0 and hints.take("c1", "m1") is None


async def _stage(r: Redis, keys: Keys, job_id: str, mid: str) -> None:
    """A submitted single-part job with a callback (general-form entry and job
    record, as record.lua writes them) on the shard of ``keys``."""
    await r.hset(keys.job(job_id), mapping={
        "ref": "r", "carrier": "acme", "client": "", "callback": "http://127.0.0.1/cb", "parts": 1,
        "message_ids": mid, "submitted_ms": SUBMITTED_MS, "state": "submitted", "dlr": "1",
        "retention_until": 1_900_000_000, "to_hash": "h",
    })
    await r.expire(keys.job(job_id), 3600)
    await put_correlation(r, keys, "acme", {mid: f"1:{SUBMITTED_MS}:{job_id}"}, STAGED_END_MS,
                          int(time.time() * 1000) + 3_600_000)


def _rec(mid: str) -> ReceiptRecord:
    return ReceiptRecord(mid, "delivered", True, "", SUBMITTED_MS + 5000)


async def test_apply_stores_applies_each_shards_batch_on_its_shard(redis_url: str, key_prefix: str) -> None:
    r = Redis.from_url(redis_url)
    shards = shard_keys(key_prefix, N)
    try:
        for k, keys in enumerate(shards):
            for i in range(3):
                await _stage(r, keys, f"j{k}-{i}", f"m{k}{i}")
        stores = [ReceiptStore(r, keys) for keys in shards]
        # each call's keys are on its own shard's slot
        for store in stores:
            assert len({cluster_slot(key) for key in store._script_keys}) == 1
        batches = [(stores[k], [_rec(f"m{k}{i}") for i in range(3)]) for k in range(N)]
        batches[1][1].append(_rec("m00"))  # shard 0's id tried on shard 1: unmatched there
        results = await apply_stores(r, "acme", batches)
        assert [res.applied for res in results] == [3, 3, 3, 3]
        assert results[1].unmatched == [_rec("m00")]
        for k, res in enumerate(results):
            assert sorted(e.job_id for e in res.finals) == [f"j{k}-{i}" for i in range(3)]
            published = [f[b"id"].decode() for _e, f in await r.xrange(shards[k].events)]
            assert sorted(published) == [f"j{k}-{i}" for i in range(3)]  # each on its own shard, once
    finally:
        await delete_prefix(r, key_prefix)
        await r.aclose()


async def test_apply_stores_after_a_lost_reply_applies_nothing_twice(redis_url: str, key_prefix: str) -> None:
    """The round trip's replies never come back (the connection is cut after the
    server ran every call): the calls are made again one by one, and get their
    first replies (the memo): every event handed back, each published once."""
    cutter = await _ReplyCutter(redis_url, b"apply").start()
    client = Redis.from_url(cutter.url)
    r = Redis.from_url(redis_url)
    shards = shard_keys(key_prefix, N)
    try:
        for k, keys in enumerate(shards):
            await _stage(r, keys, f"lost{k}", f"l{k}")
        stores = [ReceiptStore(client, keys) for keys in shards]
        assert (await stores[0].apply("acme", [_rec("nothing")])).unmatched  # the script is loaded
        cutter.armed = True
        results = await apply_stores(client, "acme", [(stores[k], [_rec(f"l{k}")]) for k in range(N)])
        assert cutter.cuts == 1
        assert [[e.job_id for e in res.finals] for res in results] == [[f"lost{k}"] for k in range(N)]
        assert all(res.applied == 1 and res.duplicates == 0 for res in results)
        for k in range(N):
            assert [f[b"id"] for _e, f in await r.xrange(shards[k].events)] == [f"lost{k}".encode()]
    finally:
        await client.aclose()
        await cutter.close()
        await delete_prefix(r, key_prefix)
        await r.aclose()


async def test_a_failed_correlate_keeps_its_hints(redis_url: str, key_prefix: str) -> None:
    """A receipt batch whose store call fails is kept and sent again as it was: its
    hints are put back, so the repeat makes the same calls (whose repeat is safe)."""
    settings = make_settings(redis_url, key_prefix, 1, redis={"shards": N})
    r = Redis.from_url(redis_url)
    shards = shard_keys(key_prefix, N)
    hints = ShardHints()
    try:
        for k, keys in enumerate(shards):
            await _stage(r, keys, f"h{k}", f"h{k}")
            hints.of("acme")[f"h{k}"] = k
        with socket.socket() as s:  # a port nothing listens on: this client's Redis is gone
            s.bind(("127.0.0.1", 0))
            gone = s.getsockname()[1]
        client = Redis.from_url(f"redis://127.0.0.1:{gone}/0")
        sink = ReceiptSink(settings, client, Metrics())
        sink.hints = hints
        records = [_rec(f"h{k}") for k in range(N)]
        with pytest.raises(RedisConnectionError):
            await sink.correlate("acme", records)
        assert len(hints) == N  # given back
        await client.aclose()
        sink = ReceiptSink(settings, r, Metrics())
        sink.hints = hints
        result = await sink.correlate("acme", records)
        assert result.applied == N and not result.unmatched and len(hints) == 0
        for k in range(N):
            assert [f[b"id"] for _e, f in await r.xrange(shards[k].events)] == [f"h{k}".encode()]
    finally:
        await delete_prefix(r, key_prefix)
        await r.aclose()


async def test_scheduled_jobs_of_every_shard_are_released_in_one_tick(redis_url: str, key_prefix: str) -> None:
    settings = make_settings(redis_url, key_prefix, 1, redis={"shards": N})
    r = Redis.from_url(redis_url)
    p = Pipeline(settings, r, {}, Metrics())
    shards = p.shards
    try:
        await p.ensure_groups()
        ids = {}
        for k in range(N):
            jid = next(f"s{i}" for i in range(1000) if shard_of(f"s{i}", N) == k and f"s{i}" not in ids)
            ids[jid] = k
        for jid, k in ids.items():
            lane = shards[k].jobs
            entry = (await r.xadd(lane, {"id": jid, "to": "+4501000001", "text": "later"})).decode()
            await r.xreadgroup(p.group, "c", {lane: ">"})
            await p._hold_scheduled(lane, [(entry, {b"id": jid.encode(), b"to": b"+4501000001", b"text": b"later"},
                                            time.time() - 1, jid)])
            assert await r.zcard(shards[k].scheduled) == 1
        assert await p.release_scheduled() == N
        for jid, k in ids.items():
            assert await r.zcard(shards[k].scheduled) == 0
            found = [f for _e, f in await r.xrange(shards[k].jobs) if f[b"id"] == jid.encode()]
            assert len(found) == 2 and found[-1][b"text"] == b"later"  # (acked) and back on its own shard's lane
        assert await p.release_scheduled() == 0
    finally:
        await delete_prefix(r, key_prefix)
        await r.aclose()


async def test_the_one_recorder_records_every_shards_batch_in_one_write(redis_url: str, key_prefix: str) -> None:
    # Shards on one Redis: one record call per shard's stream, packed in one write
    # (Pipeline._exchange). A call the script fails (here: shard 3's events key is
    # not a stream) keeps its outcomes for the next round; the others are recorded and acked.
    from engine.job import parse_job
    from engine.pipeline import _Batch, _InFlightJob

    settings = make_settings(redis_url, key_prefix, 1, redis={"shards": N})
    r = Redis.from_url(redis_url)
    p = Pipeline(settings, r, {}, Metrics())
    shards = p.shards
    try:
        await p.ensure_groups()
        k = next(iter(p._classes["sim"][0].values()))
        by_stream: dict[str, list[_InFlightJob]] = {}
        for s in range(N):
            lane = shards[s].jobs
            batch = _Batch(lane)
            for jid in [f"r{s}-{j}" for j in range(1000) if shard_of(f"r{s}-{j}", N) == s][:3]:
                fields = {b"id": jid.encode(), b"to": b"+4501000001", b"text": b"hi", b"dlr": b"0"}
                await r.xadd(lane, fields)  # type: ignore[arg-type]
            for _name, entries in await r.xreadgroup(p.group, "c", {lane: ">"}):
                for eid, fields in entries:
                    job = parse_job(fields, time.time())
                    ij = _InFlightJob(batch, eid.decode(), fields, job, "sim", p._segment(job, "sim"), k, 0)
                    ij.message_ids = [f"m-{job.id}"]
                    ij.to_hash = "h"
                    by_stream.setdefault(lane, []).append(ij)
        refused = shards[3].jobs
        await r.set(shards[3].events, "not a stream")
        p._to_record.update({stream: list(jobs) for stream, jobs in by_stream.items()})
        batches = p.metrics.batches._value.get()
        await p._record_shards()
        for s in range(3):
            events = await r.xrange(shards[s].events)
            assert sorted(f[b"id"] for _e, f in events) == sorted(ij.job.id.encode() for ij in by_stream[shards[s].jobs])
            assert all(f[b"event"] == b"submitted" for _e, f in events)
            assert (await r.xpending(shards[s].jobs, p.group))["pending"] == 0
        assert await r.get(shards[3].events) == b"not a stream"
        assert [ij.entry_id for ij in p._to_record[refused]] == [ij.entry_id for ij in by_stream[refused]]
        assert set(p._to_record) == {refused} and p._recorded == 9
        assert p.metrics.batches._value.get() == batches + 3
    finally:
        await delete_prefix(r, key_prefix)
        await r.aclose()


async def test_expire_stores_expires_each_shards_overdue_entries_on_its_shard(redis_url: str, key_prefix: str) -> None:
    r = Redis.from_url(redis_url)
    shards = shard_keys(key_prefix, N)
    try:
        for k, keys in enumerate(shards):
            for i in range(k + 1):  # shard k: k + 1 entries whose wait ended
                await _stage(r, keys, f"x{k}-{i}", f"x{k}{i}")
        stores = [ReceiptStore(r, keys) for keys in shards]
        assert await expire_stores(r, stores, STAGED_END_MS - 1) == [([], False)] * N  # not due yet
        results = await expire_stores(r, stores, STAGED_END_MS)
        assert [more for _finals, more in results] == [False] * N
        for k, (finals, _more) in enumerate(results):
            assert sorted(e.job_id for e in finals) == [f"x{k}-{i}" for i in range(k + 1)]
            assert all(e.event == "unknown" and e.final for e in finals)
            published = [f[b"id"].decode() for _e, f in await r.xrange(shards[k].events)]
            assert sorted(published) == [f"x{k}-{i}" for i in range(k + 1)]  # each on its own shard, once
        assert await expire_stores(r, stores, STAGED_END_MS) == [([], False)] * N
    finally:
        await delete_prefix(r, key_prefix)
        await r.aclose()


async def test_lane_backlog_of_every_shard_adds_up_their_lanes(redis_url: str, key_prefix: str) -> None:
    r = Redis.from_url(redis_url)
    shards = shard_keys(key_prefix, N)
    try:
        for k, keys in enumerate(shards):
            for stream in keys.lanes():
                await r.xgroup_create(stream, "g", id="0", mkstream=True)
            for _ in range(k + 1):
                await r.xadd(keys.jobs, {"n": "1"})  # normal lane: unread
            await r.xadd(keys.jobs_bulk, {"n": "1"})
            await r.xreadgroup("g", "c", {keys.jobs_bulk: ">"})  # bulk: read, not acked
        per_shard = [await lane_backlog(r, keys, "g") for keys in shards]
        assert per_shard[3] == {"high": 0, "normal": 4, "bulk": 1}
        assert await lane_backlog(r, shards, "g") == {"high": 0, "normal": 1 + 2 + 3 + 4, "bulk": N}
    finally:
        await delete_prefix(r, key_prefix)
        await r.aclose()
