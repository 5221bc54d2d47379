"""Stream trimming by position (engine/stream_trim.py) against a real Redis: lanes never
past what the engine's group has not acked, events never past what the archiver has not
acked unless older than events_keep_hours (counted), a few minutes kept for readers."""

from __future__ import annotations

import time
from typing import Any

from engine.config import settings_from_mapping
from engine.keys import Keys
from engine.metrics import Metrics
from engine.stream_trim import group_low_id, trim_streams
from tests.engine.harness import delete_prefix


def _settings(redis_url: str, prefix: str, **engine: Any) -> Any:
    return settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": prefix}, "engine": engine}, env={}
    )


async def test_lanes_keep_what_the_group_has_not_acked(redis_client: Any, redis_url: str, key_prefix: str) -> None:
    k = Keys(key_prefix)
    try:
        ids = [(await redis_client.xadd(k.jobs, {"id": f"j{i}"})).decode() for i in range(6)]
        await redis_client.xgroup_create(k.jobs, "sendgate", id="0")
        await redis_client.xreadgroup("sendgate", "c", {k.jobs: ">"}, count=4)  # j0..j3 delivered
        await redis_client.xack(k.jobs, "sendgate", ids[0], ids[2], ids[3])  # j1 still pending
        assert await group_low_id(redis_client, k.jobs, "sendgate") == ids[1]
        await trim_streams(redis_client, _settings(redis_url, key_prefix), approximate=False)
        left = [f[b"id"] for _i, f in await redis_client.xrange(k.jobs)]
        assert left == [b"j1", b"j2", b"j3", b"j4", b"j5"]  # from the pending one on; j4, j5 undelivered
        await redis_client.xack(k.jobs, "sendgate", ids[1])
        await redis_client.xreadgroup("sendgate", "c", {k.jobs: ">"}, count=10)
        await redis_client.xack(k.jobs, "sendgate", ids[4], ids[5])
        await trim_streams(redis_client, _settings(redis_url, key_prefix), approximate=False)
        assert await redis_client.xlen(k.jobs) == 0
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_events_wait_for_the_archiver_within_their_bounds(
    redis_client: Any, redis_url: str, key_prefix: str
) -> None:
    k = Keys(key_prefix)
    now = int(time.time() * 1000)
    metrics = Metrics()
    try:
        old = [(await redis_client.xadd(k.events, {"id": f"o{i}"}, id=f"{now - 10 * 3_600_000 + i}-0")).decode()
               for i in range(3)]
        recent = [(await redis_client.xadd(k.events, {"id": f"r{i}"}, id=f"{now - 60_000 + i}-0")).decode()
                  for i in range(3)]
        await redis_client.xgroup_create(k.events, "archiver", id="0")
        await redis_client.xreadgroup("archiver", "a", {k.events: ">"}, count=2)
        await redis_client.xack(k.events, "archiver", old[0], old[1])
        # archived: o0, o1; the archiver has not o2 nor the recent ones: they stay
        settings = _settings(redis_url, key_prefix, events_min_keep_s=0, events_keep_hours=24)
        await trim_streams(redis_client, settings, approximate=False, metrics=metrics)
        assert [f[b"id"] for _i, f in await redis_client.xrange(k.events)] == [b"o2", b"r0", b"r1", b"r2"]
        # past events_keep_hours they go, archived or not, and are counted
        short = _settings(redis_url, key_prefix, events_min_keep_s=0, events_keep_hours=1)
        await trim_streams(redis_client, short, approximate=False, metrics=metrics)
        assert [f[b"id"] for _i, f in await redis_client.xrange(k.events)] == [b"r0", b"r1", b"r2"]
        assert metrics.events_trimmed_unarchived._value.get() == 1
        # archived, but younger than events_min_keep_s: kept for readers without a group
        await redis_client.xreadgroup("archiver", "a", {k.events: ">"}, count=10)
        await redis_client.xack(k.events, "archiver", *recent)
        keep = _settings(redis_url, key_prefix, events_min_keep_s=300, events_keep_hours=24)
        await trim_streams(redis_client, keep, approximate=False)
        assert await redis_client.xlen(k.events) == 3
        await trim_streams(redis_client, settings, approximate=False)
        assert await redis_client.xlen(k.events) == 0
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_inbound_is_trimmed_only_behind_its_archiver(redis_client: Any, redis_url: str, key_prefix: str) -> None:
    """With a history store: past the message retention entries go; over streams_maxlen
    only what the inbound archiver's group acknowledged goes, never one it has not."""
    k = Keys(key_prefix)
    now = int(time.time() * 1000)
    try:
        expired = (await redis_client.xadd(k.inbound, {"n": "expired"}, id=f"{now - 200 * 86_400_000}-0")).decode()
        ids = [(await redis_client.xadd(k.inbound, {"n": f"m{i}"})).decode() for i in range(8)]
        await redis_client.xgroup_create(k.inbound, "archiver-inbound", id="0")
        await redis_client.xreadgroup("archiver-inbound", "a", {k.inbound: ">"}, count=5)  # expired, m0..m3
        await redis_client.xack(k.inbound, "archiver-inbound", expired, ids[0], ids[1], ids[3])  # m2 still pending
        settings = _settings(redis_url, key_prefix, streams_maxlen=3)
        await trim_streams(redis_client, settings, approximate=False)
        left = [f[b"n"] for _i, f in await redis_client.xrange(k.inbound)]
        assert left == [b"m2", b"m3", b"m4", b"m5", b"m6", b"m7"]  # more than maxlen: m2 on is not archived
        # under streams_maxlen nothing archived goes before the retention
        await redis_client.xack(k.inbound, "archiver-inbound", ids[2])
        await trim_streams(redis_client, _settings(redis_url, key_prefix, streams_maxlen=100), approximate=False)
        assert await redis_client.xlen(k.inbound) == 6
        # without a history store: the retention and streams_maxlen, archived or not
        no_history = settings_from_mapping({"redis": {"url": redis_url, "prefix": key_prefix},
                                            "engine": {"streams_maxlen": 3}, "history": {"enabled": False}}, env={})
        await trim_streams(redis_client, no_history, approximate=False)
        assert await redis_client.xlen(k.inbound) == 6  # (the scripts' MAXLEN ~ caps it then, not the trimmer)
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_the_minute_trim_keeps_up_with_a_busy_stream(
    redis_client: Any, redis_url: str, key_prefix: str, monkeypatch: Any
) -> None:
    """An approximate XTRIM evicts at most its LIMIT (by default 10,000 entries): one
    call a minute fell behind a million events a minute and the events stream grew for
    the whole soak. The trimmer repeats while a call takes its full LIMIT (a smaller
    LIMIT here, so that a few thousand entries show it)."""
    import engine.stream_trim as stream_trim

    monkeypatch.setattr(stream_trim, "TRIM_LIMIT", 500)
    k = Keys(key_prefix)
    now = int(time.time() * 1000)
    n = 6_000
    try:
        pipe = redis_client.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(k.events, {"id": f"e{i}"}, id=f"{now - 3_600_000 + i}-0")
        await pipe.execute()
        await redis_client.xgroup_create(k.events, "archiver", id="$")  # all archived
        settings = _settings(redis_url, key_prefix, events_min_keep_s=0, events_keep_hours=24)
        await trim_streams(redis_client, settings, approximate=True)
        left = await redis_client.xlen(k.events)
        assert left < 200, left  # whole nodes only: at most the one holding the bound, not 5,500
    finally:
        await delete_prefix(redis_client, key_prefix)
