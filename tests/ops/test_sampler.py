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
    without reading entries; a backlog is counted up to LAG_COUNT (not 10,000
    entries every sample), beyond that estimated."""
    from engine.ops_sampler import LAG_COUNT

    redis = Redis(connection_pool=redis_client.connection_pool)
    parse = redis.response_callbacks["XINFO GROUPS"]
    redis.set_response_callback(
        "XINFO GROUPS", lambda r, **kw: [{k: v for k, v in g.items() if k != "lag"} for g in parse(r, **kw)]
    )
    keys = Keys(key_prefix)
    high, normal, bulk = keys.lanes()
    pipe = redis.pipeline(transaction=False)
    for stream, n in ((high, 5), (normal, LAG_COUNT + 500), (bulk, 7)):
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
    # LAG_COUNT + 497 unread: counted to the bound, then estimated from the ids'
    # times (added within a few ms here: at least the count, at most the length)
    assert LAG_COUNT <= got[0].lag <= LAG_COUNT + 500 and got[0].pending == 3


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


def test_unread_estimate_shares_the_length_out_by_the_ids_times() -> None:
    from engine.backlog import unread_estimate

    # 5,000 entries one per ms, the group at the 1,000th: 4,000 after it (the rate is even)
    assert abs(unread_estimate(2000, 5000, "1000000-0", "1004999-0", "1000999-0") - 4000) <= 1
    assert unread_estimate(2000, 5000, "1000000-0", "1004999-0", "0-0") == 5000  # never read: all of it
    assert unread_estimate(2000, 5000, "1000000-0", "1000000-9", "1000000-3") == 5000  # no spread in time
    assert unread_estimate(2000, 5000, "1000000-0", "1004999-0", "1004990-0") == 2000  # at least the count
    assert unread_estimate(2000, 5000, None, None, "1000999-0") == 2000  # the stream went meanwhile


async def test_a_long_tail_is_counted_up_to_lag_count_then_estimated(redis_client: Any, key_prefix: str) -> None:
    """Redis < 7 (or a lag Redis cannot compute): past LAG_COUNT the tail is not read
    back but estimated; it was capped at 10,000 before (a 12,000 backlog read 10,000)."""
    from engine.ops_sampler import LAG_COUNT

    redis: Redis = redis_client
    keys = Keys(key_prefix)
    await redis.xgroup_create(keys.jobs, "g", id="0", mkstream=True)
    base = int(time.time() * 1000) - 60_000
    pipe = redis.pipeline(transaction=False)
    for i in range(12_000):  # one entry per 4 ms: an even rate
        pipe.xadd(keys.jobs, {"n": "x"}, id=f"{base + 4 * i}-0")
    await pipe.execute()
    sampler = OpsSampler(redis, keys, "g", Metrics(), ["sim"], slow_every=1)
    assert await sampler._count_after(keys.jobs, None) == 12_000  # never read: the length
    read: Any = await redis.xreadgroup("g", "c1", {keys.jobs: ">"}, count=3000)
    position = read[0][1][-1][0]
    assert abs(await sampler._count_after(keys.jobs, position) - 9000) <= 2
    await redis.xreadgroup("g", "c1", {keys.jobs: ">"}, count=12_000 - 3000 - LAG_COUNT + 1)
    last: Any = await redis.xinfo_groups(keys.jobs)
    assert await sampler._count_after(keys.jobs, last[0]["last-delivered-id"]) == LAG_COUNT - 1  # counted


async def test_the_sample_estimates_a_long_lane_when_redis_gives_no_lag(redis_client: Any, key_prefix: str) -> None:
    """Through sample_once: an entry deleted after the group's position leaves Redis 7
    without a `lag` too (6.2 never has one), so the sampler counts or estimates."""
    redis: Redis = redis_client
    keys = Keys(key_prefix)
    await redis.xgroup_create(keys.jobs, "g", id="0", mkstream=True)
    base = int(time.time() * 1000) - 60_000
    pipe = redis.pipeline(transaction=False)
    for i in range(12_001):
        pipe.xadd(keys.jobs, {"n": "x"}, id=f"{base + 4 * i}-0")
    await pipe.execute()
    await redis.xdel(keys.jobs, f"{base + 4 * 12_000}-0")  # the newest: 12,000 left, all unread
    groups: Any = await redis.xinfo_groups(keys.jobs)
    assert groups[0].get("lag") is None
    sampler = OpsSampler(redis, keys, "g", Metrics(), ["sim"], slow_every=1)
    await sampler.sample_once()
    assert sampler.lanes["normal"].lag == 12_000
    assert 59 <= sampler.lanes["normal"].oldest_age_s <= 70
