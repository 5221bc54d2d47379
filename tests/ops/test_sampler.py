"""engine/ops_sampler.py against a real Redis: lane backlog and oldest age from the
consumer group, receipts pending from the correlation buckets, dead-letter codes."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import generate_latest
from redis.asyncio import Redis

from engine.keys import Keys
from engine.metrics import Metrics
from engine.ops_sampler import OpsSampler
from tests.ops.live import samples, total


async def test_lane_backlog_and_oldest_age_come_from_the_group(redis_client: Any, key_prefix: str) -> None:
    redis: Redis = redis_client
    keys = Keys(key_prefix)
    now_ms = int(time.time() * 1000)
    # normal: 3 old entries read (pending), 2 newer unread; high: empty group; bulk: no stream at all
    await redis.xgroup_create(keys.jobs, "g", id="0", mkstream=True)
    await redis.xgroup_create(keys.jobs_high, "g", id="0", mkstream=True)
    for i, age_s in enumerate((90, 80, 70, 20, 10)):
        await redis.xadd(keys.jobs, {"n": str(i)}, id=f"{now_ms - age_s * 1000}-0")
    await redis.xreadgroup("g", "c1", {keys.jobs: ">"}, count=3)
    metrics = Metrics()
    sampler = OpsSampler(redis, keys, "g", metrics, ["sim"], slow_every=1)
    await sampler.sample_once()
    normal = sampler.lanes["normal"]
    assert (normal.lag, normal.pending, normal.backlog) == (2, 3, 5)
    assert 89 <= normal.oldest_age_s <= 95  # the oldest pending entry
    assert sampler.lanes["high"].as_dict() == {"backlog": 0, "lag": 0, "pending": 0, "oldest_age_s": 0.0}
    assert sampler.lanes["bulk"].backlog == 0
    assert sampler.redis_ok and sampler.redis_rtt_s is not None

    # The pending ones acked: the oldest is now the first unread one.
    pending = await redis.xpending_range(keys.jobs, "g", min="-", max="+", count=10)
    await redis.xack(keys.jobs, "g", *[p["message_id"] for p in pending])
    await sampler.sample_once()
    assert (sampler.lanes["normal"].lag, sampler.lanes["normal"].pending) == (2, 0)
    assert 19 <= sampler.lanes["normal"].oldest_age_s <= 25

    m = samples(generate_latest(metrics.registry).decode())
    assert total(m, "sendgate_lane_lag", lane="normal") == 2
    assert 19 <= total(m, "sendgate_lane_oldest_age_seconds", lane="normal") <= 25
    assert total(m, "sendgate_stream_lag", stream=keys.jobs) == 2
    assert total(m, "sendgate_redis_rtt_seconds") > 0


async def test_lag_counted_from_the_tail_when_redis_gives_none(redis_client: Any, key_prefix: str) -> None:
    """Redis < 7 has no `lag` in XINFO GROUPS: the entries after the group's last
    delivered id are counted (read as raw replies, no dict per entry)."""
    redis: Redis = redis_client
    keys = Keys(key_prefix)
    await redis.xgroup_create(keys.jobs, "g", id="0", mkstream=True)
    ids = [await redis.xadd(keys.jobs, {"n": str(i), "to": "x"}) for i in range(7)]
    await redis.xreadgroup("g", "c1", {keys.jobs: ">"}, count=3)
    sampler = OpsSampler(redis, keys, "g", Metrics(), ["sim"], slow_every=1)
    assert await sampler._count_after(keys.jobs, ids[2]) == 4
    assert await sampler._count_after(keys.jobs, ids[6]) == 0
    assert await sampler._count_after(keys.jobs, None) == 7


async def test_lag_without_redis_lag_is_settled_in_o1_or_counted_to_a_bound(
    redis_client: Any, key_prefix: str
) -> None:
    """Redis < 7 (XINFO GROUPS without `lag`, as the embedded 6.2 answers): a lane the
    group read to its end is 0 and one never read its length, from XINFO STREAM,
    without reading entries; a backlog is counted up to LAG_COUNT_MAX (not 10,000
    entries every sample)."""
    from engine.ops_sampler import LAG_COUNT_MAX

    redis = Redis(connection_pool=redis_client.connection_pool)
    parse = redis.response_callbacks["XINFO GROUPS"]
    redis.set_response_callback(
        "XINFO GROUPS", lambda r, **kw: [{k: v for k, v in g.items() if k != "lag"} for g in parse(r, **kw)]
    )
    keys = Keys(key_prefix)
    high, normal, bulk = keys.lanes()
    pipe = redis.pipeline(transaction=False)
    for stream, n in ((high, 5), (normal, LAG_COUNT_MAX + 500), (bulk, 7)):
        pipe.xgroup_create(stream, "g", id="0", mkstream=True)
        for i in range(n):
            pipe.xadd(stream, {"n": str(i)})
    await pipe.execute()
    await redis.xreadgroup("g", "c1", {high: ">"}, count=5)  # read to its end
    await redis.xreadgroup("g", "c1", {normal: ">"}, count=3)  # a backlog behind
    sampler = OpsSampler(redis, keys, "g", Metrics(), ["sim"], slow_every=1)
    got = await sampler._lanes([high, bulk], 0)
    assert [(s.lag, s.pending) for s in got] == [(0, 5), (7, 0)]
    assert sampler._raw is None  # no entry read to tell them
    got = await sampler._lanes([normal], 0)
    assert (got[0].lag, got[0].pending) == (LAG_COUNT_MAX, 3)


async def test_receipts_pending_and_recent_dead_letter_codes(redis_client: Any, key_prefix: str) -> None:
    redis: Redis = redis_client
    keys = Keys(key_prefix)
    for end, n in ((1000, 3), (2000, 4)):
        await redis.zadd(keys.correlation_index("sim"), {str(end): end})
        await redis.hset(keys.correlation_buckets_of("sim") + str(end), mapping={f"id{i}": "x" for i in range(n)})
    for code in ("bad_number", "bad_number", "expired"):
        await redis.xadd(keys.dead, {"to": "4520112233", "text": "secret", "code": code, "reason": "r"})
    sampler = OpsSampler(redis, keys, "g", Metrics(), ["sim", "other"], slow_every=1)
    await sampler.sample_once()
    assert sampler.receipts_pending == {"sim": 7, "other": 0}
    assert sampler.dead_codes == [("bad_number", 2), ("expired", 1)]
