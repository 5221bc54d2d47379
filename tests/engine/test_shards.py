"""Shards ([redis] shards = N) on one real Redis: routing, every engine on every
shard, wrong-shard jobs, receipts wherever they arrive, suppression and erasure
on every shard, and one Cluster slot per script call.

Real Redis (REDIS_URL), real simulator over TCP on 127.0.0.1, real engines
(in-process, and as a subprocess where one is killed).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig, start_simulator
from dlr.ids import normalize_receipt_id
from dlr.store import ReceiptRecord
from engine.app import Engine
from engine.config import ConfigError, settings_from_mapping
from engine.keys import Keys, cluster_slot, correlation_shard, shard_keys, shard_of
from engine.metrics import Metrics
from engine.pipeline import ShardHints
from engine.producer import Producer, SendJob
from engine.receipt_sink import ReceiptSink
from tests.engine.harness import (
    RecordingProxy,
    delete_prefix,
    make_settings,
    push,
    subprocess_env,
    wait_events,
)
from tests.engine.slots import watch_slots

N = 4


def _jobs(n: int, first: int = 0, **extra: str) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    # a destination per job: the proxy's record tells how often each was sent
    return [{"id": f"{run}-{i}", "to": f"+4503{i:06d}", "text": f"msg {i}", **extra} for i in range(first, first + n)]


def _ids_on_each_shard(per_shard: int) -> list[str]:
    """Job ids, ``per_shard`` of them routed to each of the N shards."""
    run = uuid.uuid4().hex[:8]
    found: dict[int, list[str]] = {k: [] for k in range(N)}
    i = 0
    while any(len(v) < per_shard for v in found.values()):
        jid = f"{run}-{i}"
        i += 1
        bucket = found[shard_of(jid, N)]
        if len(bucket) < per_shard:
            bucket.append(jid)
    return [jid for k in range(N) for jid in found[k]]


async def _until(predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def _lane_pending(redis: Redis, prefix: str) -> int:
    """Entries pending in the engines' group over every shard's lanes."""
    total = 0
    for k in shard_keys(prefix, N):
        for lane in k.lanes():
            with contextlib.suppress(Exception):
                total += int((await redis.xpending(lane, "sendgate"))["pending"])
    return total


# ----------------------------------------------------------------- routing
def test_shard_hints_are_bounded_and_taken_once() -> None:
    hints = ShardHints(limit=10)
    for i in range(25):
        hints.put("c", f"m{i}", i % 4)
    assert len(hints) <= 10
    assert hints.take("c", "m24") == 0 and hints.take("c", "m24") is None
    assert hints.take("c", "m0") is None  # the oldest went
    assert hints.take("other", "m23") is None


def test_the_routing_rule_and_the_default_layout() -> None:
    # crc32 of the id's UTF-8 bytes, mod N: the README's worked example
    assert zlib.crc32(b"order-42") == 1475806942
    assert shard_of("order-42", 4) == 2 == 1475806942 % 4
    assert shard_of(b"order-42", 4) == 2
    assert shard_of("ordre-é", 3) == zlib.crc32("ordre-é".encode()) % 3
    assert shard_of("anything", 1) == 0
    # shards = 1 (the default): exactly today's names, no hash tag
    settings = settings_from_mapping({"redis": {"prefix": "P"}}, env={})
    assert settings.redis.shards == 1
    (only,) = shard_keys("P", settings.redis.shards)
    assert only == Keys("P") and only.jobs == "P:jobs" and only.events == "P:events"
    four = shard_keys("P", 4)
    assert [k.jobs for k in four] == ["P:{0}:jobs", "P:{1}:jobs", "P:{2}:jobs", "P:{3}:jobs"]
    assert four[2].audit == "P:audit" and four[2].tps("c") == "P:tps:c"  # fleet-global stays
    # the Cluster slot rule (CRC16 of the hash tag), checked against Redis' documented values
    assert cluster_slot("foo") == 12182
    assert cluster_slot("{user1000}.following") == cluster_slot("{user1000}.followers") == cluster_slot("user1000")
    assert cluster_slot("foo{}{bar}") == cluster_slot("foo{}{bar}")  # empty tag: the whole key
    assert cluster_slot("foo{}{bar}") != cluster_slot("bar")
    assert len({cluster_slot(k) for k in (four[1].jobs, four[1].events, four[1].marks_bucket(1764806400, 7, 2048), four[1].park("c", "high"))}) == 1
    assert correlation_shard("acme", "abc", 1) == 0
    assert correlation_shard("acme", "abc", 4) == zlib.crc32(b"acme:abc") % 4


@pytest.mark.parametrize(("value", "fragment"), [(0, r"redis\.shards"), (-2, r"redis\.shards"), (100000, r"redis\.shards")])
def test_bad_shard_counts_name_the_key(value: int, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        settings_from_mapping({"redis": {"shards": value}}, env={})


def test_a_hash_tag_in_the_prefix_is_refused_with_shards() -> None:
    with pytest.raises(ConfigError, match=r"redis\.prefix"):
        settings_from_mapping({"redis": {"shards": 4, "prefix": "{sendgate}"}}, env={})
    assert settings_from_mapping({"redis": {"shards": 1, "prefix": "{sendgate}"}}, env={}).redis.shards == 1


async def test_the_producer_routes_by_id_and_reads_every_shard(redis_url: str, key_prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    producer = Producer(redis, key_prefix, shards=N)
    try:
        ids = _ids_on_each_shard(3)
        await producer.send_many([SendJob(id=jid, to="+4501000001", text="hi") for jid in ids])
        keys = shard_keys(key_prefix, N)
        for k in range(N):
            entries = await redis.xrange(keys[k].jobs)
            assert sorted(f[b"id"].decode() for _e, f in entries) == sorted(j for j in ids if shard_of(j, N) == k)
            assert producer.lane(SendJob(id=ids[3 * k], to="+4501000001", text="x", priority="high")) == keys[k].jobs_high
        for k in range(N):  # an event on every shard: events() yields them all
            await redis.xadd(keys[k].events, {"id": f"e{k}", "event": "submitted"})
        seen: list[str] = []

        async def follow() -> None:
            async for ev in producer.events(last_id="0", block_ms=50):
                seen.append(ev["id"])
                if len(seen) == N:
                    return

        await asyncio.wait_for(follow(), 10)
        assert sorted(seen) == [f"e{k}" for k in range(N)]
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


# ------------------------------------------------------- engines, every shard
async def test_two_engines_send_every_job_once_with_its_receipt_one_slot_per_call(redis_url: str, key_prefix: str) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    proxy = await RecordingProxy(sim.port).start()
    redis = Redis.from_url(redis_url)
    jobs = _jobs(400) + _jobs(40, 1000, text="Long message spread over several parts. " * 6)
    engines = [
        Engine(make_settings(redis_url, key_prefix, proxy.port, consumer=f"e{i}", redis={"shards": N}), redis_url)
        for i in range(2)
    ]
    try:
        async with watch_slots(redis_url, key_prefix) as watch:
            await push(redis, key_prefix, jobs, shards=N)
            for e in engines:
                await e.start()
            events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, shards=N, timeout_s=90)
            for e in engines:
                await e.close()
        # jobs spread over every shard, and both engines consumed
        per_shard = Counter(shard_of(j["id"], N) for j in jobs)
        assert set(per_shard) == set(range(N)) and min(per_shard.values()) > 40
        for job in jobs:
            assert [e["event"] for e in events[job["id"]]] == ["submitted", "delivered"], job["id"]
        # each sent once: single-part jobs by destination, long ones by parts on the wire
        sent = Counter(p.destination_addr for p in proxy.submits)
        assert all(sent[j["to"].lstrip("+")] == int(events[j["id"]][0]["parts"]) for j in jobs)
        assert sum(int(events[j["id"]][0]["parts"]) for j in jobs) == len(proxy.submits)
        # every job's events are on its own shard's stream, in order
        keys = shard_keys(key_prefix, N)
        for k in range(N):
            on_shard = {f[b"id"].decode() for _e, f in await redis.xrange(keys[k].events)}
            assert on_shard == {j["id"] for j in jobs if shard_of(j["id"], N) == k}
        assert await _lane_pending(redis, key_prefix) == 0
        assert all(e.metrics.jobs_wrong_shard._value.get() == 0 for e in engines)
        # one slot per script call and per stream read: what a Redis Cluster accepts
        assert watch.ended.is_set()  # the monitor saw everything up to the end
        assert len(watch.scripts()) > 20
        assert watch.violations() == []
        script_slots = {cluster_slot(k) for keys_ in watch.scripts() for k in keys_}
        assert {cluster_slot(f"{key_prefix}:{{{k}}}:jobs") for k in range(N)} <= script_slots
    finally:
        for e in engines:
            if not e.closing:
                await e.close()
        await proxy.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_a_job_on_the_wrong_shard_is_moved_and_sent_once(redis_url: str, key_prefix: str) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    proxy = await RecordingProxy(sim.port).start()
    redis = Redis.from_url(redis_url)
    keys = shard_keys(key_prefix, N)
    run = uuid.uuid4().hex[:8]
    wrong_job = {"id": f"{run}-w", "to": "+4504000001", "text": "pushed to the wrong shard"}
    # a move that crashed between its XADD and its ack: the job on its own shard and on another
    twice = {"id": f"{run}-t", "to": "+4504000002", "text": "moved halfway"}
    try:
        right = shard_of(wrong_job["id"], N)
        await redis.xadd(keys[(right + 1) % N].jobs, wrong_job)  # type: ignore[arg-type]
        right2 = shard_of(twice["id"], N)
        await redis.xadd(keys[right2].jobs, twice)  # type: ignore[arg-type]
        await redis.xadd(keys[(right2 + 2) % N].jobs_high, twice)  # type: ignore[arg-type]
        eng = Engine(make_settings(redis_url, key_prefix, proxy.port, redis={"shards": N}), redis_url)
        await eng.start()
        try:
            events = await wait_events(redis, key_prefix, {wrong_job["id"], twice["id"]}, shards=N)
            await _until(lambda: eng.metrics.jobs_wrong_shard._value.get() == 2)
            await asyncio.sleep(0.3)  # a second send would show by now
        finally:
            await eng.close()
        for jid in (wrong_job["id"], twice["id"]):
            assert [e["event"] for e in events[jid]] == ["submitted", "delivered"]
        sent = Counter(p.destination_addr for p in proxy.submits)
        assert sent == Counter({"4504000001": 1, "4504000002": 1})
        # gone from the wrong shards (acked and deleted), nothing pending anywhere
        assert await redis.xlen(keys[(right + 1) % N].jobs) == 0
        assert await redis.xlen(keys[(right2 + 2) % N].jobs_high) == 0
        assert await _lane_pending(redis, key_prefix) == 0
    finally:
        await proxy.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_a_blocked_shard_does_not_hold_up_the_others(redis_url: str, key_prefix: str) -> None:
    """Shard 2's reads hang (as on a Redis node that stopped answering): the jobs
    of shards 0, 1 and 3 are all sent meanwhile; shard 2's go once it answers."""
    sim = await start_simulator(SimulatorConfig(dlr=False))
    redis = Redis.from_url(redis_url)
    keys = shard_keys(key_prefix, N)
    ids = _ids_on_each_shard(25)
    jobs = [{"id": jid, "to": "+4505000001", "text": "x", "dlr": "0"} for jid in ids]
    eng = Engine(make_settings(redis_url, key_prefix, sim.port, redis={"shards": N}), redis_url)
    release = asyncio.Event()
    blocked = set(keys[2].lanes())
    real_read = eng.pipeline._read_lanes

    async def read(counts: dict[str, int]) -> Any:
        if blocked & set(counts):
            await release.wait()
        return await real_read(counts)

    eng.pipeline._read_lanes = read  # type: ignore[method-assign]
    try:
        await push(redis, key_prefix, jobs, shards=N)
        await eng.start()
        others = {j for j in ids if shard_of(j, N) != 2}
        events = await wait_events(redis, key_prefix, others, final=False, shards=N, timeout_s=30)
        assert set(events) == others  # nothing of shard 2 yet: its reader is stuck
        assert await redis.xlen(keys[2].events) == 0
        release.set()
        events = await wait_events(redis, key_prefix, set(ids), final=False, shards=N, timeout_s=30)
        assert all([e["event"] for e in events[j]] == ["submitted"] for j in ids)
    finally:
        release.set()
        await eng.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


def _write_config(path: Path, redis_url: str, prefix: str, port: int, consumer: str) -> Path:
    path.write_text("\n".join([
        "[redis]", f'url = "{redis_url}"', f'prefix = "{prefix}"', f"shards = {N}",
        "[engine]", "batch_size = 100", "block_ms = 20", f'consumer = "{consumer}"',
        "[admin]", 'listen = ""',
        "[logging]", 'level = "info"', 'format = "text"',
        "[[carriers]]", 'name = "sim"', f"port = {port}", 'system_id = "test"', 'password = "pw"',
        "binds = 2", "window = 16", 'routes = [""]',
    ]) + "\n")
    return path


async def test_killing_one_engine_loses_nothing_on_any_shard(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=False, latency_ms=50))
    proxy = await RecordingProxy(sim.port).start()
    redis = Redis.from_url(redis_url)
    jobs = _jobs(800, dlr="0")
    try:
        await push(redis, key_prefix, jobs, shards=N)
        env = subprocess_env()
        env.pop("REDIS_URL", None)
        victim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "run", "-c",
            str(_write_config(tmp_path / "v.toml", redis_url, key_prefix, proxy.port, "victim")),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await _until(lambda: len(proxy.submits) >= 150)
        victim.kill()  # SIGKILL: batches in hand on every shard, unrecorded
        await victim.wait()
        keys = shard_keys(key_prefix, N)
        pending_per_shard = []
        for k in keys:
            pending_per_shard.append(sum([int((await redis.xpending(lane, "sendgate"))["pending"]) for lane in k.lanes()]))
        assert sum(1 for p in pending_per_shard if p) >= 2, pending_per_shard  # the victim held work on several shards

        settings = make_settings(redis_url, key_prefix, proxy.port, consumer="rescuer", visibility_timeout_s=1.0,
                                 claim_interval_s=0.3, redis={"shards": N})
        rescuer = Engine(settings, redis_url)
        await rescuer.start()
        try:
            events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, shards=N, timeout_s=90)
        finally:
            await rescuer.close()
        outcomes: Counter[str] = Counter()
        for job in jobs:
            names = [e["event"] for e in events[job["id"]]]
            assert len(names) == 1, (job["id"], names)
            outcomes[names[0]] += 1
        assert set(outcomes) <= {"submitted", "unknown"}
        sent = Counter(p.destination_addr for p in proxy.submits)
        assert max(sent.values()) == 1
        assert outcomes["submitted"] > len(jobs) // 2
        assert await _lane_pending(redis, key_prefix) == 0
    finally:
        await proxy.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


# ---------------------------------------------------------------- receipts
async def test_receipts_match_wherever_they_arrive_multipart_across_shards(redis_url: str, key_prefix: str) -> None:
    """Jobs sent by one engine, their receipts (parts in any order) correlated by
    another engine's receipt sink that knows only carrier and message id."""
    sim = await start_simulator(SimulatorConfig(dlr=False))  # receipts come from the test
    redis = Redis.from_url(redis_url)
    jobs = _jobs(60, text="A multipart message whose parts get message ids of their own. " * 4)
    jobs += _jobs(60, 1000)
    settings = make_settings(redis_url, key_prefix, sim.port, redis={"shards": N})
    eng = Engine(settings, redis_url)
    try:
        await push(redis, key_prefix, jobs, shards=N)
        await eng.start()
        submitted = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, shards=N)
        await eng.close()
        mids = [(j["id"], m) for j in jobs for m in submitted[j["id"]][0]["message_ids"].split(",")]
        multipart = [j for j in jobs if int(submitted[j["id"]][0]["parts"]) > 1]
        assert len(multipart) == 60
        # the parts' message ids name different shards than their jobs' (what a
        # design keyed by carrier and message id would have to join)
        assert any(
            len({correlation_shard("sim", normalize_receipt_id(m), N) for m in submitted[j["id"]][0]["message_ids"].split(",")}) > 1
            for j in multipart
        )
        other = ReceiptSink(settings, redis, Metrics())  # another engine's sink
        # hints (what a sink knows of its own engine's submits): right for some ids,
        # wrong on purpose for others, none for the rest; all must match anyway
        other.hints = ShardHints()
        for i, (jid, m) in enumerate(mids):
            if i % 2:
                other.hints.put("sim", normalize_receipt_id(m), (shard_of(jid, N) + 1) % N)
            elif i % 3 == 0:
                other.hints.put("sim", normalize_receipt_id(m), shard_of(jid, N))
        now_ms = int(time.time() * 1000)
        records = [ReceiptRecord(normalize_receipt_id(m), "delivered", True, "", now_ms) for _jid, m in mids]
        records.reverse()  # last parts first
        result = await other.correlate("sim", records)
        assert result.unmatched == [] and result.applied == len(records)
        again = await other.correlate("sim", records[:10])  # an SMSC resending: duplicates, no event
        assert again.duplicates == 10 and again.applied == 0 and again.unmatched == []
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, shards=N)
        for job in jobs:
            assert [e["event"] for e in events[job["id"]]] == ["submitted", "delivered"]
        # unknown ids: unmatched on every shard, parked on their correlation shard
        stray = [ReceiptRecord(f"nope{i}", "delivered", True, "", now_ms) for i in range(8)]
        missed = await other.correlate("sim", stray)
        assert missed.unmatched == stray
        await other.park_unmatched("sim", stray, "test")
        keys = shard_keys(key_prefix, N)
        for k in range(N):
            parked = {f[b"message_id"].decode() for _e, f in await redis.xrange(keys[k].dlr_unmatched)}
            assert parked == {r.message_id for r in stray if correlation_shard("sim", r.message_id, N) == k}
    finally:
        if not eng.closing:
            await eng.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


# ------------------------------------------------------ suppression, erasure
async def test_stop_then_marketing_is_rejected_on_every_shard(redis_url: str, key_prefix: str) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=False))
    redis = Redis.from_url(redis_url)
    secret = "test-secret-for-shards-0123456789"
    producer = Producer(redis, key_prefix, hash_secret=secret, shards=N)
    try:
        assert await producer.suppress("+4506000001", "shop")
        keys = shard_keys(key_prefix, N)
        h = producer.suppression().hash("+4506000001")
        assert all([await redis.sismember(k.suppression("shop"), h) for k in keys])  # every shard's copy
        ids = _ids_on_each_shard(2)
        jobs = [{"id": jid, "to": "+4506000001", "text": "offer", "client": "shop", "kind": "marketing"} for jid in ids]
        settings = make_settings(redis_url, key_prefix, sim.port, redis={"shards": N}, clients=[{"id": "shop"}])
        settings = type(settings)(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                                     "privacy": type(settings.privacy)(**{
                                         **{f: getattr(settings.privacy, f) for f in settings.privacy.__struct_fields__},
                                         "hash_secret": secret})})
        eng = Engine(settings, redis_url)
        await push(redis, key_prefix, jobs, shards=N)
        await eng.start()
        try:
            events = await wait_events(redis, key_prefix, set(ids), shards=N)
        finally:
            await eng.close()
        for jid in ids:
            assert [(e["event"], e["error"]) for e in events[jid]] == [("rejected", "suppressed")]
        assert sim.stats.submits == 0
        for k in keys:
            dead = await redis.xrange(k.dead)
            assert len(dead) == 2 and all(f[b"code"] == b"suppressed" for _e, f in dead)
        # unsuppress reaches every copy too
        assert await producer.unsuppress("+4506000001", "shop")
        assert not any([await redis.sismember(k.suppression("shop"), h) for k in keys])
    finally:
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_erase_by_number_reaches_every_shard(redis_url: str, key_prefix: str) -> None:
    from engine.erase import erase_subject_everywhere
    from privacy_hooks import keyed_hash

    sim = await start_simulator(SimulatorConfig(dlr=False))
    redis = Redis.from_url(redis_url)
    ids = _ids_on_each_shard(3)
    jobs = [{"id": jid, "to": "+4507000001", "text": "hello", "dlr": "0"} for jid in ids]
    jobs += [{"id": f"keep-{i}", "to": "+4507000002", "text": "hello", "dlr": "0"} for i in range(8)]
    settings = make_settings(redis_url, key_prefix, sim.port, redis={"shards": N})
    try:
        await push(redis, key_prefix, jobs, shards=N)
        eng = Engine(settings, redis_url)
        await eng.start()
        try:
            await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, shards=N)
        finally:
            await eng.close()
        # and a job of the number still waiting, on a shard's lane
        waiting = next(f"wait-{i}" for i in range(100) if shard_of(f"wait-{i}", N) == 3)
        keys = shard_keys(key_prefix, N)
        await redis.xadd(keys[3].jobs, {"id": waiting, "to": "+4507000001", "text": "later"})
        subject = keyed_hash(settings.privacy.hash_secret.encode(), "4507000001")
        result = await erase_subject_everywhere(redis, settings, subject, immediate=True, store=None)
        # every job of the number found (its events on four shards); its raw payloads,
        # the waiting one among them, removed from every shard's lanes
        assert result.jobs == len(ids) and result.entries == len(ids) + 1
        for k in keys:
            assert not [f for _e, f in await redis.xrange(k.jobs) if f[b"to"] == b"+4507000001"]
        for k in keys:
            left = [f[b"id"].decode() for _e, f in await redis.xrange(k.events)]
            assert not any(jid in ids for jid in left)
        kept = [f[b"id"].decode() for k in keys for _e, f in await redis.xrange(k.events)]
        assert sorted(kept) == sorted(f"keep-{i}" for i in range(8))  # other numbers untouched
        audit = await redis.xrange(keys[0].audit)
        assert [f[b"action"] for _e, f in audit if f.get(b"action") == b"erase"] == [b"erase"]  # audited once
    finally:
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
