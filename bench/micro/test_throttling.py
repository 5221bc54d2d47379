"""Throttling micro benchmarks: what the bind pool pays per rate-limit decision.

Targets: ``TokenBucket.try_take`` ≤ 1 µs; ``GlobalTokenBucket.try_take``
from local stock ≤ 1.5 µs. One lease script call is the Redis cost per
*chunk* of tokens (default 50 ms of traffic, so ~20 calls/s per busy
process): the benchmark reports it per 200 calls, with a plain PING round
trip on the same client in ``extra_info`` for comparison.
Run: ``pytest bench/micro/test_throttling.py --benchmark-only``. The lease
benchmark uses ``REDIS_URL`` or an embedded Redis.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from throttling import AdaptiveRate, Backoff, TokenBucket
from throttling.global_bucket import GlobalTokenBucket, tps_key


def test_bucket_try_take_granted(benchmark: Any) -> None:
    bucket = TokenBucket(1e9, burst=10**9)
    clock = iter(range(1, 10**9))

    def take() -> int:
        return bucket.try_take(1, next(clock) * 1e-6)

    assert benchmark(take) == 1


def test_bucket_try_take_empty(benchmark: Any) -> None:
    bucket = TokenBucket(1.0, burst=1)
    bucket.try_take(1, 0.0)
    assert benchmark(bucket.try_take, 10, 0.5) == 0


def test_bucket_wait_s(benchmark: Any) -> None:
    bucket = TokenBucket(100.0)
    bucket.try_take(100, 0.0)
    assert benchmark(bucket.wait_s, 5, 0.01) > 0


def test_global_bucket_try_take_local_stock(benchmark: Any) -> None:
    client: Any = None  # the local path never touches Redis
    bucket = GlobalTokenBucket(client, "bench", 1000.0)
    bucket._add_lease(10**9, 10**9)

    def take() -> int:
        return bucket.try_take(1, 1.0)

    assert benchmark(take) == 1


def test_adaptive_on_success_steady(benchmark: Any) -> None:
    rate = AdaptiveRate(500.0)
    assert benchmark(rate.on_success, 10.0) == 500.0


def test_backoff_next_delay(benchmark: Any) -> None:
    backoff = Backoff(0.5, 30.0)

    def step() -> float:
        backoff.reset()
        return backoff.next_delay()

    assert benchmark(step) > 0


def test_global_lease_script_call(benchmark: Any, redis_url: str) -> None:
    """One EVALSHA lease (round trip included), measured as 200 calls per round."""
    import redis.asyncio as aioredis

    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(redis_url)
    key = tps_key(f"sgbench-{uuid.uuid4().hex[:8]}", "acme")
    bucket = GlobalTokenBucket(client, key, 1e7, burst=10**6)

    async def leases() -> int:
        total = 0
        for _ in range(200):
            granted, _wait = await bucket._lease(10)
            total += granted
        return total

    async def pings() -> float:
        start = loop.time()
        for _ in range(200):
            await client.ping()
        return (loop.time() - start) / 200

    try:
        ping_s = min(loop.run_until_complete(pings()) for _ in range(5))
        benchmark.extra_info["ping_us_same_client"] = round(ping_s * 1e6, 1)
        total = benchmark.pedantic(lambda: loop.run_until_complete(leases()), rounds=20)
        assert total > 0
        loop.run_until_complete(client.delete(key))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
