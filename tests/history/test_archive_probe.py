"""The soak's archive probe (bench/archive_probe.py) against a real archiver and
PostgreSQL, on the embedded Redis 6.2 (no ``entries-read``, ``lag``, ``entries-added``)
and on the test Redis (``REDIS_URL``: the machine's 7.0): the events archived in an
interval, the lag, and ``caught_up`` false while the archive is behind.

Until session 22 the probe read XINFO GROUPS' ``entries-read`` alone: on 6.2 every
interval read 0 archived and 0 lag, and ``caught_up`` was true however far behind
(session 21's soak: the archive stopped at midnight and the probe did not say)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bench.archive_probe import COUNT_CAP, ArchiveProbe
from engine.embedded_redis import EmbeddedRedis
from engine.history.archiver import Archiver
from engine.history.postgres import PostgresHistory
from tests.history.events import event_fields

pytestmark = pytest.mark.slow

JOBS = 1500  # a submitted and a delivered event each


@pytest.fixture(scope="module")
def redis_62() -> Iterator[str]:
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(params=["embedded", "test"])
async def redis(request: pytest.FixtureRequest, redis_62: str) -> AsyncIterator[Redis]:
    url = redis_62 if request.param == "embedded" else str(request.getfixturevalue("redis_url"))
    client = Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def stream(redis: Redis) -> AsyncIterator[str]:
    name = f"sgtest-{uuid.uuid4().hex[:12]}:events"
    yield name
    await redis.delete(name)


async def _push(redis: Redis, stream: str) -> list[bytes]:
    t = int(time.time() * 1000) - 60_000  # added a minute ago (the ids): the oldest unarchived is that old
    pipe = redis.pipeline(transaction=False)
    for i in range(JOBS):
        pipe.xadd(stream, event_fields(f"p{i}", "submitted", t + i, first=True, client="probe"),  # type: ignore[arg-type]
                  id=f"{t + i}-0")
        pipe.xadd(stream, event_fields(f"p{i}", "delivered", t + i + 5), id=f"{t + i}-1")  # type: ignore[arg-type]
    return list(await pipe.execute())


@pytest.mark.parametrize("reader", ["whole", "behind", "none"])
async def test_the_probe_counts_what_was_archived_and_what_is_behind(
    redis: Redis, stream: str, pg_dsn: str, reader: str
) -> None:
    """``reader``: what the caller's own reader has seen of the stream (the soak reads
    every event): all of it, only its first 1,000 (the probe counts the rest), or no
    reader (the stream's length)."""
    version = (await redis.info("server"))["redis_version"]
    store = PostgresHistory(pg_dsn)
    await store.migrate()
    archiver = Archiver(redis, store, [stream], consumer="a1", batch_size=1000, block_ms=10, read_ahead=False)
    await archiver.ensure_groups()  # (the stream, empty)
    seen: dict[str, tuple[int, Any]] = {stream: (0, None)}
    probe = ArchiveProbe(redis, pg_dsn, [stream], "archiver", None, seen=None if reader == "none" else lambda: seen)
    await probe.start()
    try:
        ids = await _push(redis, stream)
        seen[stream] = (len(ids), ids[-1]) if reader == "whole" else (1000, ids[999])
        while archiver.archived < 2000:
            await archiver.archive_once(0)
        # 300 more read by the archiver's consumer and not acked yet (pending: in hand)
        await redis.xreadgroup("archiver", "a1", {stream: ">"}, count=300)
        s = await probe.sample()
        assert (s["archived"], s["lag"], s["added"]) == (2000, 1000, 2 * JOBS), (version, s)
        assert s["behind_s"] >= 59  # the oldest of the 1,000: pushed a minute ago
        assert s["pg_us"] is not None and s["pg_cpu_s"] >= 0
        behind = await probe.total(0.0)
        assert (behind["caught_up"], behind["lag"], behind["archived"]) == (False, 1000, 2000), (version, behind)

        again = Archiver(redis, store, [stream], consumer="a1", batch_size=1000, block_ms=10, read_ahead=False)
        assert await again.drain() == 1000  # its pending 300 (as after a restart), then the 700 unread
        s = await probe.sample()
        assert (s["archived"], s["lag"], s["behind_s"]) == (1000, 0, 0.0), (version, s)
        assert s["added"] == 0
        idle = await probe.sample()
        assert idle["archived"] == 0 and idle["child_us"] is None and idle["pg_us"] is None  # not totals per "1"
        done = await probe.total(0.0)
        assert (done["caught_up"], done["lag"], done["archived"]) == (True, 0, 2 * JOBS), (version, done)
    finally:
        await probe.close()
        await store.close()


async def test_a_backlog_past_the_count_is_estimated(redis: Redis, stream: str, pg_dsn: str) -> None:
    """Unread entries past `COUNT_CAP` (a far-behind archive): estimated from the ids'
    times, within 1 %, as the archiver's lag() does; never read whole each sample."""
    n = COUNT_CAP + 10_000
    t = int(time.time() * 1000) - 600_000
    for lo in range(0, n, 5000):
        pipe = redis.pipeline(transaction=False)
        for i in range(lo, min(n, lo + 5000)):
            pipe.xadd(stream, {"id": f"b{i}", "event": "submitted", "ts": str(t + i)}, id=f"{t + i}-1")
        await pipe.execute()
    await redis.xgroup_create(stream, "archiver", id="0")
    probe = ArchiveProbe(redis, pg_dsn, [stream], "archiver", None, seen=lambda: {stream: (n, f"{t + n - 1}-1")})
    await probe.start()
    try:
        got: Any = await probe.total(0.0)
        assert not got["caught_up"] and abs(got["lag"] - n) <= n // 100, got
    finally:
        await probe.close()
