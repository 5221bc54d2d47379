"""The per-batch scripts are safe to repeat: a lost reply never duplicates an event or a dead letter."""

from __future__ import annotations

import time
from typing import Any

import orjson

from engine.scripts import Script
from tests.engine.harness import delete_prefix


async def _setup(redis: Any, prefix: str, n: int) -> list[str]:
    await redis.xgroup_create(f"{prefix}:jobs", "g", id="0", mkstream=True)
    ids = [(await redis.xadd(f"{prefix}:jobs", {"id": f"j{i}", "to": "4501", "text": "x"})).decode() for i in range(n)]
    await redis.xreadgroup("g", "c", {f"{prefix}:jobs": ">"}, count=n)
    return ids




async def test_claim_marks_duplicates_reclaims_and_repeats(redis_client: Any, key_prefix: str) -> None:
    claim = Script("claim")
    keys = [f"{key_prefix}:jobs", f"{key_prefix}:events", f"{key_prefix}:dead"]
    try:
        e = await _setup(redis_client, key_prefix, 3)
        first = orjson.dumps({"c": [["a", e[0]], ["a", e[1]]], "d": []})
        assert await claim(redis_client, keys, ["g", key_prefix, first, 1, 60, 1000, "0"]) == [0, 1]
        # Same entry again: a crashed consumer's mark (2), unless this is our own retry (0).
        again = orjson.dumps({"c": [["a", e[0]]], "d": []})
        assert await claim(redis_client, keys, ["g", key_prefix, again, 1, 60, 1000, "0"]) == [2]
        assert await claim(redis_client, keys, ["g", key_prefix, again, 1, 60, 1000, "1"]) == [0]
        # A dead letter is written once, however often the call is repeated.
        dead = orjson.dumps({"c": [], "d": [[e[2], 2, "bad_number", "why", "j2", "", ""]]})
        for _ in range(2):
            await claim(redis_client, keys, ["g", key_prefix, dead, 1, 60, 1000, "1", b"to", b"\xff"])
        entries = await redis_client.xrange(f"{key_prefix}:dead")
        assert len(entries) == 1 and entries[0][1][b"to"] == b"\xff" and entries[0][1][b"code"] == b"bad_number"
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_record_twice_writes_one_event_and_acks(redis_client: Any, key_prefix: str) -> None:
    record = Script("record")
    keys = [f"{key_prefix}:jobs", f"{key_prefix}:events", f"{key_prefix}:dlr:due"]
    try:
        e = await _setup(redis_client, key_prefix, 1)
        job = ["j0", "submitted", "sim", 1, "ab", "", "r", "", "", "1", "h" * 32, "ab", 1, "", e[0]]
        expire_at = str(int(time.time() * 1000) + 60_000)
        payload = orjson.dumps({"t": [1, 600], "w": {"sim": ["9", expire_at]}, "j": [job], "a": [e[0]]})
        for _ in range(2):
            await record(redis_client, keys, ["g", key_prefix, payload, 1000, 1000])
        events = await redis_client.xrange(f"{key_prefix}:events")
        assert [f[b"event"] for _i, f in events] == [b"submitted"]
        # single part without callback: the receipt's fast-path entry (dlr/correlate.lua)
        # in the bucket the payload named (its end 9), with the expiry given, listed twice
        assert await redis_client.hgetall(f"{key_prefix}:dlr:c:sim:9") == {b"ab": b"=1000\x1fab\x1fr\x1fj0"}
        assert 50_000 < await redis_client.pttl(f"{key_prefix}:dlr:c:sim:9") <= 60_000
        assert await redis_client.zrange(f"{key_prefix}:dlr:due", 0, -1, withscores=True) == [(b"9:sim", 9.0)]
        assert await redis_client.zrange(f"{key_prefix}:dlr:idx:sim", 0, -1, withscores=True) == [(b"9", 9.0)]
        assert (await redis_client.xpending(f"{key_prefix}:jobs", "g"))["pending"] == 0
        assert await redis_client.sismember(f"{key_prefix}:subject:{'h' * 32}", "j0")
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_record_caps_the_events_stream_once_per_call(redis_client: Any, key_prefix: str) -> None:
    """Events are added without MAXLEN and the stream trimmed (approximately, whole
    nodes) at the end of the call: the cap holds and the newest events stay."""
    record = Script("record")
    keys = [f"{key_prefix}:jobs", f"{key_prefix}:events", f"{key_prefix}:dlr:due"]
    try:
        e = await _setup(redis_client, key_prefix, 600)
        jobs = [[f"j{i}", "submitted", "sim", 1, f"m{i}", "", "", "", "", "0", "", "", 1, "", e[i]] for i in range(600)]
        payload = orjson.dumps({"t": [1, 600], "w": {}, "j": jobs, "a": e})
        assert await record(redis_client, keys, ["g", key_prefix, payload, 1000, 100]) == 600
        stream = f"{key_prefix}:events"
        assert 100 <= await redis_client.xlen(stream) < 600
        assert (await redis_client.xrevrange(stream, count=1))[0][1][b"id"] == b"j599"
        assert (await redis_client.xpending(f"{key_prefix}:jobs", "g"))["pending"] == 0
    finally:
        await delete_prefix(redis_client, key_prefix)
