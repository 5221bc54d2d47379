"""The per-batch scripts are safe to repeat: a lost reply never duplicates an event or a dead letter."""

from __future__ import annotations

import time
from typing import Any

from engine.keys import Keys
from engine.scripts import (
    ClaimBatch,
    ClaimJob,
    DeadLetter,
    RecordBatch,
    RecordJob,
    RecordWait,
    Script,
    claim_call,
    payload_json,
    record_call,
)
from tests.engine.harness import delete_prefix


async def _setup(redis: Any, prefix: str, n: int) -> list[str]:
    await redis.xgroup_create(f"{prefix}:jobs", "g", id="0", mkstream=True)
    ids = [(await redis.xadd(f"{prefix}:jobs", {"id": f"j{i}", "to": "4501", "text": "x"})).decode() for i in range(n)]
    await redis.xreadgroup("g", "c", {f"{prefix}:jobs": ">"}, count=n)
    return ids




async def test_claim_marks_duplicates_reclaims_and_repeats(redis_client: Any, key_prefix: str) -> None:
    claim = Script("claim")
    k = Keys(key_prefix)

    def call(payload: bytes, retry: bool, fields: list[bytes] | None = None) -> tuple[list[str], list[Any]]:
        return claim_call(k, k.jobs, "g", payload, 1, 60, 1000, retry, fields or [])

    try:
        e = await _setup(redis_client, key_prefix, 3)
        first = payload_json(ClaimBatch(claims=[ClaimJob("a", e[0]), ClaimJob("a", e[1])], dead=[]))
        assert await claim(redis_client, *call(first, False)) == [0, 1]
        # Same entry again: a crashed consumer's mark (2), unless this is our own retry (0).
        again = payload_json(ClaimBatch(claims=[ClaimJob("a", e[0])], dead=[]))
        assert await claim(redis_client, *call(again, False)) == [2]
        assert await claim(redis_client, *call(again, True)) == [0]
        # A dead letter is written once, however often the call is repeated.
        letter = DeadLetter(entry_id=e[2], nfields=2, code="bad_number", reason="why", job_id="j2", ref="", event="")
        dead = payload_json(ClaimBatch(claims=[], dead=[letter]))
        for _ in range(2):
            await claim(redis_client, *call(dead, True, [b"to", b"\xff"]))
        entries = await redis_client.xrange(f"{key_prefix}:dead")
        assert len(entries) == 1 and entries[0][1][b"to"] == b"\xff" and entries[0][1][b"code"] == b"bad_number"
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_record_twice_writes_one_event_and_acks(redis_client: Any, key_prefix: str) -> None:
    record = Script("record")
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 1)
        job = RecordJob(
            job_id="j0", event="submitted", carrier="sim", parts=1, message_ids="ab", error="", ref="r", client="",
            callback="", dlr="1", to_hash="h" * 32, corr="ab", expect=1, dlr_ids="", entry_id=e[0],
        )
        expire_at = str(int(time.time() * 1000) + 60_000)
        payload = payload_json(RecordBatch(
            retention_until=1, job_ttl=600, waits={"sim": RecordWait(end_ms="9", expire_at_ms=expire_at)},
            jobs=[job], acks=[e[0]],
        ))
        for _ in range(2):
            await record(redis_client, *record_call(k, k.jobs, "g", payload, 1000, 1000))
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
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 600)
        jobs = [
            RecordJob(
                job_id=f"j{i}", event="submitted", carrier="sim", parts=1, message_ids=f"m{i}", error="", ref="",
                client="", callback="", dlr="0", to_hash="", corr="", expect=1, dlr_ids="", entry_id=e[i],
            )
            for i in range(600)
        ]
        payload = payload_json(RecordBatch(retention_until=1, job_ttl=600, waits={}, jobs=jobs, acks=e))
        assert await record(redis_client, *record_call(k, k.jobs, "g", payload, 1000, 100)) == 600
        stream = f"{key_prefix}:events"
        assert 100 <= await redis_client.xlen(stream) < 600
        assert (await redis_client.xrevrange(stream, count=1))[0][1][b"id"] == b"j599"
        assert (await redis_client.xpending(f"{key_prefix}:jobs", "g"))["pending"] == 0
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_a_script_refuses_another_argument_layout(redis_client: Any, key_prefix: str) -> None:
    """The header's LAYOUT_VERSION against the caller's: a mismatch is an error, not a misread."""
    import pytest
    from redis.exceptions import ResponseError

    from engine.scripts import LAYOUT_VERSION, RECORD_ARGS

    k = Keys(key_prefix)
    keys, args = record_call(k, k.jobs, "g", payload_json(RecordBatch(1, 600, {}, [], [])), 1000, 100)
    args[RECORD_ARGS.index("layout") - 1] = "1"
    with pytest.raises(ResponseError, match=rf"record\.lua: argument layout 1, this script reads {LAYOUT_VERSION}\b"):
        await Script("record")(redis_client, keys, args)
    assert not await redis_client.exists(k.events)


def test_correlation_entries_follow_their_positions() -> None:
    """dlr.store.correlation_arg builds [id, part] in CORR_ENTRY's order (record.lua reads C_ID, C_PART)."""
    from dlr.store import CORR_ENTRY, correlation_arg

    assert correlation_arg(["a", "b"], 2, 2, "http://x", "", "A,B") == [
        CORR_ENTRY.build(id="a", part=1), CORR_ENTRY.build(id="b", part=2)
    ]
