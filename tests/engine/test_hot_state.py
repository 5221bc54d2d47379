"""Redis keeps only hot state: after a run, what is left per finished job is its
idempotency mark (a TTL within the idempotency window), and nothing else per job
once the streams are trimmed behind the engine's group and the history archiver.

The whole engine against a real Redis and the simulator over TCP (receipts on),
the archiver writing to a SQLite history store, then one exact trim pass as the
engine's trimmer runs it (engine/stream_trim.py).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from connectors.simulator import SimulatorConfig
from engine.keys import Keys
from engine.marks import read_marks
from engine.stream_trim import trim_streams
from tests.engine.harness import mark_bucket, push, running, wait_events

GRACE_S = 30


async def test_a_finished_job_leaves_only_its_idempotency_mark(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    single = [{"id": f"{run}-s{i}", "to": f"+45010{i:05d}", "text": f"code {i}"} for i in range(40)]
    long_text = "a message of several parts " * 12
    special = [
        {"id": f"{run}-multi", "to": "+4501099001", "text": long_text},
        {"id": f"{run}-cb", "to": "+4501099002", "text": "with callback", "callback": "http://127.0.0.1:9/cb"},
        {"id": f"{run}-nodlr", "to": "+4501099003", "text": "no receipt", "dlr": "0"},
    ]
    jobs = single + special
    async with running(
        redis_url, key_prefix, SimulatorConfig(dlr=True), events_min_keep_s=0, record_grace_s=GRACE_S,
        idempotency_hours=24,
        webhooks={"allow_private": True},  # the callback job's URL is on 127.0.0.1 (refused by default)
    ) as (engine, _sim, _proxy, redis):
        k = Keys(key_prefix)
        await push(redis, key_prefix, jobs)
        await wait_events(redis, key_prefix, {j["id"] for j in jobs if j.get("dlr") != "0"})
        await wait_events(redis, key_prefix, {f"{run}-nodlr"}, final=False)  # final at `submitted`
        assert engine.archiver is not None and await engine.archiver.wait_caught_up(10.0)
        trimmed = {(t.stream, t.rule): t.removed for t in await trim_streams(redis, engine.settings, approximate=False)}
        assert trimmed[(k.events, "archived by group archiver")] > 0

        keys = {key.decode() async for key in redis.scan_iter(match=f"{key_prefix}:*", count=1000)}
        rows = Counter(d.pattern for d in (k.describe(key) for key in keys) if d is not None)
        assert all(k.describe(key) for key in keys), sorted(key for key in keys if not k.describe(key))

        # per job: its idempotency mark, a field of a bucket hash of the current generation,
        # which lives to the end of the next one (engine/marks_lib.lua): 24 h to 48 h + 300 s from now
        assert all(await read_marks(redis, k, [j["id"] for j in jobs], 24 * 3600))
        assert rows["P:marks:<generation>"] == 1 and 1 <= rows["P:marks:<generation>:<bucket>"] <= len(jobs)
        assert rows["P:marks:<generation>:made"] == 1  # the bitmap of buckets made
        marks = 0
        for key in keys:
            if k.describe(key).pattern.startswith("P:marks:<"):  # type: ignore[union-attr]
                assert 24 * 3600 < await redis.ttl(key) <= 48 * 3600 + 300
                if key.count(":") > k.marks_prefix.count(":") and not key.endswith(":made"):
                    marks += await redis.hlen(key)
        assert marks == len(jobs)
        # job records only for the jobs whose receipts read one, and only a grace after their final event
        records = sorted(key for key in keys if key.startswith(k.job_prefix))
        assert records == sorted([k.job(f"{run}-multi"), k.job(f"{run}-cb")])
        for key in records:
            assert 0 < await redis.ttl(key) <= GRACE_S
        # no subject index, no correlation entry left (every receipt came), streams trimmed
        assert not any(":subject:" in key for key in keys)
        assert rows["P:dlr:c:<carrier>:<end ms>"] == 0
        parks = [k.park(c.name, lane) for c in engine.settings.carriers for lane in ("high", "normal", "bulk")]
        for stream in (*k.lanes(), k.events, k.inbound, *parks):
            assert await redis.xlen(stream) == 0, stream
        # what else is there is per call or per window, not per job: the duplicate
        # window's spans (carrier message ids for 10 min), record-call tokens and kept
        # receipt replies for callbacks (2 min)
        per_call = {"P:dlr:dup:<carrier>:<span>", "P:record:<token>", "P:dlr:call:<token>", "P:dlr:idx:<carrier>", "P:dlr:due"}
        # (park streams are per carrier and lane, like the lanes: empty, checked above)
        # (P:inbound: the inbound archiver's group, on a stream it creates empty; no message came in)
        # (and the shard's registry of park streams: a member per park stream, none per job)
        streams = {"P:jobs", "P:jobs:high", "P:jobs:bulk", "P:events", "P:inbound", "P:park:<carrier>:<lane>", "P:parks"}
        # (and P:marks:legacy: a first generation reads layout-10 marks for a window when some may exist)
        marks_rows = {"P:marks:<generation>", "P:marks:<generation>:<bucket>", "P:marks:<generation>:made",
                      "P:marks:legacy"}
        assert set(rows) - per_call - streams - marks_rows - {"P:job:<job id>"} == set()
        assert rows["P:record:<token>"] <= len(jobs)
        for key in keys:
            if key.startswith((k.dlr_dup_prefix, k.record_prefix, k.dlr_call_prefix)):
                assert 0 < await redis.pttl(key) <= 13 * 60_000

        # what one finished job costs: its mark, and nothing else under its id; its bucket, even
        # holding this one mark only, costs at most 150 B (a fuller one ~55 B per mark: bench/RESULTS.md)
        bucket = await mark_bucket(redis, k, f"{run}-s0", 24 * 3600)
        mark: Any = await redis.memory_usage(bucket)
        assert mark is not None and mark <= 150 * await redis.hlen(bucket)
        # a listpack, the claiming entry in it as one integer (claim.lua)
        assert await redis.object("encoding", bucket) in (b"listpack", b"ziplist")  # Redis 7, 6.2
        assert not await redis.exists(k.job(f"{run}-s0"))
