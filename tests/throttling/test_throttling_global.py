"""GlobalTokenBucket against a real Redis: the shared limit holds across instances."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

import throttling.global_bucket as global_bucket
from throttling.global_bucket import GlobalTokenBucket, tps_key


def _assert_rate_bound(events: list[tuple[float, int]], rate: float, burst: int) -> None:
    """Every window [t_i, t_j] of the merged grant history stays within rate*T + burst."""
    events = sorted(events)
    for i in range(len(events)):
        total = 0
        for j in range(i, len(events)):
            total += events[j][1]
            elapsed = events[j][0] - events[i][0]
            assert total <= rate * elapsed + burst, (i, j, total, elapsed)


def test_key_name() -> None:
    assert tps_key("sendgate", "acme") == "sendgate:tps:acme"


def test_sizing_reserves_lease_hold_from_capacity() -> None:
    client: Any = None
    bucket = GlobalTokenBucket(client, "k", 200.0, burst=20)
    assert (bucket.chunk, bucket.hold_s, bucket.capacity) == (10, 0.05, 10)
    small = GlobalTokenBucket(client, "k", 5.0)
    assert small.burst == 1 and small.capacity == 1 and small.chunk == 1


async def test_script_grants_capacity_then_reports_wait(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    bucket = GlobalTokenBucket(redis_client, tps_key(key_prefix, "acme"), 100.0, burst=10)
    assert bucket.capacity == 5  # burst 10 minus one 50 ms chunk held in leases
    assert await bucket._lease(50) == (5, 10)  # a fresh key is a full bucket
    granted, wait_ms = await bucket._lease(5, least=5)
    assert granted == 0  # fewer than the least worth granting have refilled
    assert 0 < wait_ms <= 50
    ttl = await redis_client.pttl(bucket.key)
    assert 0 < ttl <= 50 + 1000


async def test_noscript_falls_back_to_eval(
    redis_client: aioredis.Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(global_bucket, "_TAKE_SHA", "0" * 40)  # a script the server never saw
    bucket = GlobalTokenBucket(redis_client, tps_key(key_prefix, "acme"), 50.0, burst=10)
    assert await bucket.take(3) == 3
    assert bucket.lease_calls == 1


async def test_take_serves_surplus_locally(redis_client: aioredis.Redis, key_prefix: str) -> None:
    bucket = GlobalTokenBucket(redis_client, tps_key(key_prefix, "acme"), 1000.0, burst=100)
    assert bucket.chunk == 50
    assert await bucket.take(1) == 1
    assert bucket.stock == 49
    for _ in range(49):
        assert await bucket.take(1) == 1
    assert bucket.lease_calls == 1


async def test_unlimited_never_touches_redis() -> None:
    client: Any = None  # would fail on use
    bucket = GlobalTokenBucket(client, "unused", 0)
    assert await bucket.take(10_000) == 10_000
    assert bucket.try_take(7, time.monotonic()) == 7
    assert bucket.wait_s(7, time.monotonic()) == 0.0
    assert bucket.lease_calls == 0


async def test_try_take_is_fed_by_the_refill_task(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    bucket = GlobalTokenBucket(redis_client, tps_key(key_prefix, "acme"), 400.0, burst=40)
    bucket.start()
    try:
        now = time.monotonic()
        assert bucket.try_take(5, now) == 0  # nothing leased yet: the task is woken
        assert bucket.wait_s(5, now) > 0
        deadline = time.monotonic() + 2.0
        got = 0
        while got == 0 and time.monotonic() < deadline:
            await asyncio.sleep(bucket.wait_s(5, time.monotonic()))
            got = bucket.try_take(5, time.monotonic())
        assert got == 5
        assert bucket.lease_calls >= 1
    finally:
        await bucket.close()


async def test_idle_process_leases_nothing(redis_client: aioredis.Redis, key_prefix: str) -> None:
    bucket = GlobalTokenBucket(redis_client, tps_key(key_prefix, "acme"), 100.0)
    bucket.start()
    for _ in range(20):
        await asyncio.sleep(0)
    await bucket.close()
    assert bucket.lease_calls == 0
    assert await redis_client.exists(bucket.key) == 0


async def test_fails_closed_without_redis() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        bucket = GlobalTokenBucket(client, "sgtest:tps:down", 100.0)
        with pytest.raises(RedisConnectionError):
            await bucket.take(1)
        bucket.start()
        assert bucket.try_take(1, time.monotonic()) == 0
        await bucket.close()
    finally:
        await client.aclose()


async def _pool_like_consumer(
    bucket: GlobalTokenBucket, until: float, events: list[tuple[float, int]], batch: int
) -> None:
    """Acts like a bind pool: try_take per tick, sleep wait_s when short."""
    while (now := time.monotonic()) < until:
        got = bucket.try_take(batch, now)
        if got:
            events.append((now, got))
        if got < batch:
            await asyncio.sleep(max(0.001, bucket.wait_s(batch, time.monotonic())))
        else:
            await asyncio.sleep(0)


async def _take_consumer(
    bucket: GlobalTokenBucket, until: float, events: list[tuple[float, int]], batch: int
) -> None:
    while time.monotonic() < until:
        got = await bucket.take(batch)
        events.append((time.monotonic(), got))


@pytest.mark.slow
async def test_two_instances_share_one_limit(redis_url: str, key_prefix: str) -> None:
    rate, burst = 300.0, 30
    key = tps_key(key_prefix, "acme")
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    buckets = [GlobalTokenBucket(c, key, rate, burst) for c in clients]
    events: list[tuple[float, int]] = []
    try:
        for b in buckets:
            b.start()
        start = time.monotonic()
        until = start + 1.5
        await asyncio.gather(
            _pool_like_consumer(buckets[0], until, events, 4),
            _pool_like_consumer(buckets[1], until, events, 7),
            _take_consumer(buckets[0], until, events, 3),
            _take_consumer(buckets[1], until, events, 5),
        )
        elapsed = time.monotonic() - start
    finally:
        for b in buckets:
            await b.close()
        for c in clients:
            await c.aclose()
    total = sum(n for _, n in events)
    assert total <= rate * elapsed + burst
    # The limit is used, not just respected: at least half of it got through
    # (a loaded CI machine delays the consumers; the bound above is the contract).
    assert total >= 0.5 * rate * 1.5, (total, [b.lease_calls for b in buckets])
    _assert_rate_bound(events, rate, burst)
    # Leasing in chunks keeps Redis cheap even with four contenders asking for
    # more than the limit: each script call that grants anything grants a chunk.
    assert sum(b.lease_calls for b in buckets) < total / 2


_WORKER = """
import asyncio, json, sys, time
import redis.asyncio as aioredis
from throttling.global_bucket import GlobalTokenBucket

async def main(url, key, rate, burst, start, until, batch):
    client = aioredis.Redis.from_url(url)
    bucket = GlobalTokenBucket(client, key, rate, burst)
    bucket.start()
    events = []
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    while (now := time.monotonic()) < until:
        got = bucket.try_take(batch, now)
        if got:
            events.append((now, got))
        if got < batch:
            await asyncio.sleep(max(0.001, bucket.wait_s(batch, time.monotonic())))
        else:
            await asyncio.sleep(0)
    await bucket.close()
    await client.aclose()
    print(json.dumps(events))

url, key, rate, burst, start, until, batch = sys.argv[1:]
asyncio.run(main(url, key, float(rate), int(burst), float(start), float(until), int(batch)))
"""


@pytest.mark.slow
async def test_two_processes_share_one_limit(redis_url: str, key_prefix: str) -> None:
    import json
    import os
    import sys

    rate, burst = 200.0, 20
    key = tps_key(key_prefix, "acme")
    # CLOCK_MONOTONIC is system-wide: both processes' timestamps share one axis.
    start = time.monotonic() + 1.5  # leaves time for the interpreters to start
    until = start + 1.5
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            redis_url,
            key,
            str(rate),
            str(burst),
            str(start),
            str(until),
            str(batch),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        for batch in (3, 8)
    ]
    try:
        outputs = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in procs)), timeout=30
        )
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    events = [tuple(e) for out, _ in outputs for e in json.loads(out)]
    total = sum(n for _, n in events)
    assert total <= rate * (until - start) + burst
    assert total >= 0.5 * rate * 1.5
    assert all(json.loads(out) for out, _ in outputs)  # both processes got a share
    _assert_rate_bound(events, rate, burst)


async def test_leased_tokens_expire_after_hold_s() -> None:
    client: Any = None  # only the local accounting is exercised
    bucket = GlobalTokenBucket(client, "k", 100.0, burst=20, hold_s=0.05)
    bucket._add_lease(10, requested_at=1.0)  # expires at 1.05
    bucket._add_lease(10, requested_at=1.03)  # expires at 1.08
    assert bucket.try_take(4, now=1.01) == 4
    assert bucket.stock == 16
    assert bucket.try_take(100, now=1.06) == 10  # the first lease's 6 left are gone
    assert bucket.expired == 6
    assert bucket.try_take(1, now=1.08) == 0  # the second one expired too (used up)
    assert bucket.stock == 0
    assert bucket.wait_s(5, now=1.08) == pytest.approx(0.05)  # missing 5 at 100/s


async def test_a_throttle_seen_by_one_instance_lowers_the_limit_of_both(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    """One cut per cooldown for the fleet; the other instance learns it at its next lease
    and its refill follows the lower limit."""
    from throttling.adaptive import AimdSettings

    aimd = AimdSettings(floor=10.0, step=10.0, hold_s=2.0, interval_s=1.0, cooldown_s=1.0)
    one, two = (GlobalTokenBucket.per_second(redis_client, key_prefix, "acme", 100.0, aimd) for _ in range(2))
    assert one.key == two.key == tps_key(key_prefix, "acme")
    assert one.limit_per_s(0.0) == 100.0 and not one.is_reduced()
    await one._cut()
    await two._cut()  # another engine's replies within the cooldown: no second cut
    assert (one.cuts, two.cuts) == (1, 0)
    now = time.monotonic()
    assert one.limit_per_s(now) == pytest.approx(50.0)
    assert two.limit_per_s(now) == pytest.approx(50.0)  # the cut it found in Redis
    fresh = GlobalTokenBucket.per_second(redis_client, key_prefix, "acme", 100.0, aimd)
    await fresh._lease(1)
    assert fresh.is_reduced() and fresh.limit_per_s(time.monotonic()) == pytest.approx(50.0)
    # The refill runs at the limit (50/s, sized: 46.6/s), not at the configured rate (~94/s).
    start = time.monotonic()
    total = 0
    while time.monotonic() - start < 1.0:
        total += await fresh.take(100)
    assert 10 <= total <= 50.0 * (time.monotonic() - start) + fresh.burst + 1
    # The key lives until the limit would be back at the ceiling (2 s + 5 steps of 1 s).
    assert (await redis_client.pttl(one.key)) > 6000


async def test_the_shared_limit_recovers_with_time_as_recovered_rate_says(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    from throttling.adaptive import AimdSettings, recovered_rate

    aimd = AimdSettings(floor=5.0, step=10.0, hold_s=2.0, interval_s=1.0)
    bucket = GlobalTokenBucket.per_second(redis_client, key_prefix, "acme", 100.0, aimd)
    server_now = await redis_client.time()
    t = server_now[0] + server_now[1] / 1e6
    await redis_client.hset(bucket.key, mapping={"ar": "30", "ac": repr(t - 4.5)})  # cut 4.5 s ago
    await bucket._lease(1)
    expected = recovered_rate(30.0, 4.5, 100.0, 10.0, 2.0, 1.0)
    assert expected == 60.0  # +10 at 2 s, 3 s and 4 s
    assert bucket.limit_per_s(time.monotonic()) == pytest.approx(expected)
    await redis_client.hset(bucket.key, mapping={"ac": repr(t - 60.0)})  # long recovered
    await bucket._lease(1)
    assert not bucket.is_reduced() and bucket.limit_per_s(time.monotonic()) == 100.0
    assert await redis_client.hget(bucket.key, "ar") is None  # the script cleared it


async def test_note_throttled_cuts_through_the_refill_task(
    redis_client: aioredis.Redis, key_prefix: str
) -> None:
    from throttling.adaptive import AimdSettings

    bucket = GlobalTokenBucket.per_second(redis_client, key_prefix, "acme", 40.0, AimdSettings(floor=4.0, step=4.0))
    bucket.start()
    try:
        bucket.note_throttled()
        bucket.note_throttled()  # within the cooldown: asked once
        deadline = time.monotonic() + 5
        while not bucket.is_reduced() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert (bucket.cut_calls, bucket.cuts) == (1, 1)
        assert bucket.limit_per_s(time.monotonic()) == pytest.approx(20.0)
    finally:
        await bucket.close()
