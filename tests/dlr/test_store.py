"""ReceiptStore against a real Redis: the submit side's records written by hand
(per JOBRECORD.md), then receipts applied through the Lua script."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from dlr.aggregate import aggregate
from dlr.ids import normalize_id
from dlr.receipt_parse import parse_receipt
from dlr.store import (
    ReceiptRecord,
    ReceiptStore,
    UnmatchedBuffer,
    bucket_key,
    correlation_arg,
    correlation_bucket,
    put_correlation,
)
from engine.keys import Keys
from tests.correlation import DLR_WAIT_MS, STAGED_END_MS, SUBMITTED_MS, get_entry, put_entry


async def submit_job(
    r: Any,
    prefix: str,
    job_id: str,
    carrier: str,
    ids: list[str],
    *,
    fmt: str = "as-is",
    callback: str = "http://127.0.0.1/cb",  # with a callback the script returns whole events
    ref: str = "ref-1",
    end_ms: int = STAGED_END_MS,
) -> None:
    """Write what the engine's submit script writes once every part has its resp."""
    normalised = [normalize_id(i, fmt, side="submit") for i in ids]
    job_key = Keys(prefix).job(job_id)
    await r.hset(
        job_key,
        mapping={
            "ref": ref,
            "carrier": carrier,
            "client": "",
            "callback": callback,
            "parts": len(ids),
            "message_ids": ",".join(ids),
            "dlr_ids": ",".join(normalised),
            "submitted_ms": SUBMITTED_MS,
            "state": "submitted",
            "dlr": "1",
            "retention_until": 1_900_000_000,
            "to_hash": "h-0000",
        },
    )
    await r.expire(job_key, 3600)
    entries = {nid: f"{n}:{SUBMITTED_MS}:{job_id}" for n, nid in enumerate(normalised, start=1)}
    await put_correlation(r, prefix, carrier, entries, end_ms, await redis_now_ms(r) + 3_600_000)


async def dup_spans(r: Any, prefix: str, window: int = 600_000, carrier: str = "acme") -> dict[bytes, set[bytes]]:
    """The carrier's duplicate-window span sets (``P:dlr:dup:<carrier>:<n>``) that can
    exist now, with their members: found by name from Redis's clock (a SCAN of a shared
    Redis can take longer than a short test window)."""
    span = -(-window // 10)
    now = await redis_now_ms(r)
    found = {}
    for n in range((now - window) // span - 3, now // span + 1):
        key = Keys(prefix).dup_span(carrier, n).encode()
        members = await r.smembers(key)
        if members:
            found[key] = members
    return found


async def assert_retired(r: Any, prefix: str, carrier: str, mid: str) -> None:
    """The entry is gone and its id is in one of the carrier's duplicate spans, which
    expires within ~1.3 windows (correlate layout 7: the id itself, no carrier in it);
    nothing is written in layout 6's spans of every carrier."""
    assert await get_entry(r, prefix, carrier, mid) is None
    spans = [name for name, members in (await dup_spans(r, prefix, carrier=carrier)).items() if mid.encode() in members]
    assert len(spans) == 1
    assert 600_000 < await r.pttl(spans[0]) <= 600_000 * 13 // 10
    now = await redis_now_ms(r) // 60_000
    assert not any([await r.exists(Keys(prefix).dup_span_legacy(n)) for n in range(now - 12, now + 1)])


def rec(
    mid: str, event: str = "delivered", error: str = "", ts: int = SUBMITTED_MS + 5000
) -> ReceiptRecord:
    final = event not in ("enroute", "accepted")
    return ReceiptRecord(mid, event, final, error, ts)


async def events(r: Any, prefix: str) -> list[dict[str, str]]:
    entries = await r.xrange(Keys(prefix).events)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


@pytest.fixture
def store(redis_client: Any, key_prefix: str) -> ReceiptStore:
    return ReceiptStore(redis_client, key_prefix)


async def test_single_part_delivered(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await submit_job(
        redis_client, key_prefix, "job:1", "acme", ["abc123"], callback="http://127.0.0.1/cb"
    )
    # the event's ts is the call's time (now_ms), not the receipt's (ts_ms: when received)
    result = await store.apply("acme", [rec("abc123", ts=SUBMITTED_MS + 1)], now_ms=SUBMITTED_MS + 5000)
    assert result.applied == 1 and not result.unmatched
    assert len(result.finals) == 1
    final = result.finals[0]
    assert final.job_id == "job:1"
    assert final.event == "delivered"
    assert final.callback == "http://127.0.0.1/cb"
    assert final.submitted_ms == SUBMITTED_MS
    evs = await events(redis_client, key_prefix)
    assert evs == [
        {
            "id": "job:1",
            "ref": "ref-1",
            "event": "delivered",
            "carrier": "acme",
            "parts": "1",
            "message_ids": "abc123",
            "error": "",
            "ts": str(SUBMITTED_MS + 5000),
        }
    ]
    assert final.fields == evs[0]
    job = await redis_client.hgetall(f"{key_prefix}:job:job:1")
    assert job[b"state"] == b"delivered" and job[b"done"] == b"1" and job[b"s:1"] == b"delivered"
    # The correlation is gone: only its token is kept, in a duplicate span (no job id);
    # the bucket, now empty, is gone with it.
    await assert_retired(redis_client, key_prefix, "acme", "abc123")
    assert not await redis_client.exists(bucket_key(key_prefix, "acme", STAGED_END_MS))
    assert await redis_client.ttl(f"{key_prefix}:job:job:1") > 0  # retention kept


async def test_multipart_mixed_final_states(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await submit_job(redis_client, key_prefix, "j3", "acme", ["m1", "m2", "m3"])
    first = await store.apply("acme", [rec("m1"), rec("m3", "expired", "err:027")])
    assert first.applied == 2 and not first.finals
    assert await events(redis_client, key_prefix) == []
    second = await store.apply("acme", [rec("m2", "undeliverable", "err:034")])
    assert len(second.finals) == 1
    fields = second.finals[0].fields
    assert (
        fields["event"] == "undeliverable" == aggregate(["delivered", "undeliverable", "expired"])
    )
    assert fields["error"] == "err:034"
    assert fields["part_states"] == "delivered,undeliverable,expired"
    assert fields["parts"] == "3" and fields["message_ids"] == "m1,m2,m3"
    assert await events(redis_client, key_prefix) == [fields]
    job = await redis_client.hgetall(f"{key_prefix}:job:j3")
    assert job[b"e:3"] == b"err:027" and job[b"done"] == b"3" and job[b"state"] == b"undeliverable"


async def test_intermediate_enroute(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await submit_job(redis_client, key_prefix, "j-e", "acme", ["p1", "p2"])
    result = await store.apply("acme", [rec("p1", "enroute"), rec("p2", "enroute")])
    assert result.applied == 2 and not result.finals
    assert [e.event for e in result.intermediates] == ["enroute"]  # once per change of state
    evs = await events(redis_client, key_prefix)
    assert [e["event"] for e in evs] == ["enroute"]
    # the correlation entries stay until the final receipt
    assert await get_entry(redis_client, key_prefix, "acme", "p1") == b"1:%d:j-e" % SUBMITTED_MS
    assert await get_entry(redis_client, key_prefix, "acme", "p2") == b"2:%d:j-e" % SUBMITTED_MS
    result = await store.apply("acme", [rec("p1"), rec("p2")])
    assert [e.event for e in result.finals] == ["delivered"]
    assert "part_states" not in result.finals[0].fields
    # an intermediate arriving after the final is ignored, and counted
    await submit_job(redis_client, key_prefix, "j-late", "acme", ["q1"])
    await store.apply("acme", [rec("q1", "rejected")])
    await put_entry(redis_client, key_prefix, "acme", "q1", f"1:{SUBMITTED_MS}:j-late")
    late = await store.apply("acme", [rec("q1", "enroute")])
    assert late.late == 1 and not late.intermediates


async def test_fast_form_final_after_an_intermediate_keeps_the_submit_time(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """A fast-form entry whose head holds an intermediate's state (`=<ms>:enroute`), and one
    with an empty head: the final receipt's event and submit time come from the entry either
    way (correlate.lua reads the head without a search when it ends in a digit)."""
    await put_entry(redis_client, key_prefix, "acme", "g1", f"={SUBMITTED_MS}\x1fG1\x1fr-1\x1fg1")
    await put_entry(redis_client, key_prefix, "acme", "g2", f"={SUBMITTED_MS}\x1fG2\x1fr-2\x1fg2")
    await put_entry(redis_client, key_prefix, "acme", "g3", "=\x1fG3\x1fr-3\x1fg3")
    first = await store.apply("acme", [rec("g1", "enroute")])
    assert [e.event for e in first.intermediates] == ["enroute"]
    result = await store.apply("acme", [rec("g1"), rec("g2", "rejected", "err:1"), rec("g3")])
    by_id = {e.job_id: e for e in result.finals}
    assert {j: (e.event, e.submitted_ms) for j, e in by_id.items()} == {
        "g1": ("delivered", SUBMITTED_MS), "g2": ("rejected", SUBMITTED_MS), "g3": ("delivered", None)}
    published = [e for e in await events(redis_client, key_prefix) if e["event"] != "enroute"]
    assert sorted((e["id"], e["ref"], e["message_ids"], e["error"]) for e in published) == [
        ("g1", "r-1", "G1", ""), ("g2", "r-2", "G2", "err:1"), ("g3", "r-3", "G3", "")]
    for mid in ("g1", "g2", "g3"):
        assert await get_entry(redis_client, key_prefix, "acme", mid) is None


async def test_duplicate_receipt_counted_once(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await submit_job(redis_client, key_prefix, "jd", "acme", ["d1", "d2"])
    result = await store.apply("acme", [rec("d1"), rec("d1", "undeliverable")])
    assert result.applied == 1 and result.duplicates == 1 and not result.unmatched
    again = await store.apply("acme", [rec("d1")])
    assert again.duplicates == 1 and again.applied == 0
    job = await redis_client.hgetall(f"{key_prefix}:job:jd")
    assert job[b"done"] == b"1" and job[b"s:1"] == b"delivered"
    final = await store.apply("acme", [rec("d2")])
    assert [e.event for e in final.finals] == ["delivered"]
    assert len(await events(redis_client, key_prefix)) == 1


async def test_unknown_id_is_unmatched_then_parked(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    result = await store.apply("acme", [rec("nope-1")])
    assert result.unmatched == [rec("nope-1")] and result.applied == 0
    buffer = UnmatchedBuffer(retry_ms=100, max_wait_ms=250)
    for r in result.unmatched:
        buffer.hold(r, now_ms=1000)
    assert buffer.due(1050) == ([], [])
    retry, expired = buffer.due(1100)
    assert retry == [rec("nope-1")] and expired == []
    again = await store.apply("acme", retry)
    for r in again.unmatched:
        buffer.hold(r, now_ms=1100)  # keeps its first-seen time (1000)
    retry, expired = buffer.due(1300)
    assert retry == [] and expired == [rec("nope-1")]
    assert await store.park_unmatched("acme", expired, "no correlation entry") == 1
    entries = await redis_client.xrange(f"{key_prefix}:dlr:unmatched")
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"message_id"] == b"nope-1" and fields[b"reason"] == b"no correlation entry"
    assert fields[b"carrier"] == b"acme" and fields[b"event"] == b"delivered"


async def test_receipt_before_submit_record_matches_on_retry(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    first = await store.apply("acme", [rec("early")])
    assert first.unmatched
    await submit_job(redis_client, key_prefix, "j-early", "acme", ["early"])
    second = await store.apply("acme", first.unmatched)
    assert [e.job_id for e in second.finals] == ["j-early"]


@pytest.mark.parametrize(
    ("fmt", "resp_id", "receipt_id"),
    [
        ("hex-to-dec", "00A1B2C3", "10597059"),
        ("dec-to-hex", "10597059", "A1B2C3"),
        ("as-is", "ABCDEF01", "abcdef01"),
    ],
)
async def test_id_normalisation_end_to_end(
    redis_client: Any, key_prefix: str, store: ReceiptStore, fmt: str, resp_id: str, receipt_id: str
) -> None:
    await submit_job(redis_client, key_prefix, "jx", "hexco", [resp_id], fmt=fmt)
    body = f"id:{receipt_id} sub:001 dlvrd:001 submit date:2311010000 done date:2311010001 stat:DELIVRD err:000 text:x"
    receipt = parse_receipt(0x04, body.encode())
    result = await store.apply(
        "hexco", [ReceiptRecord.from_receipt(receipt, fmt, SUBMITTED_MS + 9)]
    )
    assert [e.job_id for e in result.finals] == ["jx"]
    assert result.finals[0].fields["message_ids"] == resp_id


async def test_expiry_sweep(redis_client: Any, key_prefix: str, store: ReceiptStore) -> None:
    await submit_job(
        redis_client, key_prefix, "old", "acme", ["o1", "o2"], callback="http://127.0.0.1/x"
    )
    await submit_job(redis_client, key_prefix, "old2", "acme", ["r1"])
    await submit_job(redis_client, key_prefix, "done", "acme", ["k1"])
    young_end = STAGED_END_MS + DLR_WAIT_MS
    await submit_job(redis_client, key_prefix, "young", "acme", ["y1"], end_ms=young_end)
    await store.apply("acme", [rec("o1"), rec("k1")])
    before = STAGED_END_MS - 1
    assert await store.expire_overdue(before) == ([], False)
    finals, more = await store.expire_overdue(STAGED_END_MS, limit=10)
    assert not more
    by_id = {e.job_id: e for e in finals}
    assert set(by_id) == {"old", "old2"}
    old = by_id["old"]
    assert old.event == "unknown" and old.final and old.callback == "http://127.0.0.1/x"
    assert old.fields["part_states"] == "delivered,unknown"
    assert old.fields["error"] == "dlr_timeout"
    assert by_id["old2"].fields["event"] == "unknown"
    # the ended bucket is gone with its entries, from both indexes; the young one stays
    assert not await redis_client.exists(bucket_key(key_prefix, "acme", STAGED_END_MS))
    assert await redis_client.zrange(f"{key_prefix}:dlr:due", 0, -1) == [f"{young_end}:acme".encode()]
    assert await redis_client.zrange(f"{key_prefix}:dlr:idx:acme", 0, -1) == [str(young_end).encode()]
    assert await get_entry(redis_client, key_prefix, "acme", "y1") is not None
    job = await redis_client.hgetall(f"{key_prefix}:job:old")
    assert job[b"state"] == b"unknown" and job[b"done"] == b"2"
    # a late receipt for the expired part finds nothing and does not re-open the job
    late = await store.apply("acme", [rec("o2")])
    assert late.applied == 0 and late.unmatched
    assert await redis_client.hget(f"{key_prefix}:job:old", "state") == b"unknown"
    young, more = await store.expire_overdue(young_end)
    assert [e.job_id for e in young] == ["young"] and not more
    assert await redis_client.zcard(f"{key_prefix}:dlr:due") == 0
    assert await store.expire_overdue(young_end + DLR_WAIT_MS) == ([], False)


async def test_expiry_sweep_gives_fast_entries_their_event_without_a_record(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """A fast-form entry left at its deadline: the event `unknown` (dlr_timeout) from the
    entry alone, with its ref and message ids; one that had an intermediate receipt too."""
    await record_with_bucket(redis_client, key_prefix, "f1", STAGED_END_MS, await redis_now_ms(redis_client) + 60_000)
    await put_entry(redis_client, key_prefix, "acme", "f2", f"={SUBMITTED_MS}\x1fF2\x1fr-2\x1ff2")
    first = await store.apply("acme", [rec("f2", "enroute")])
    assert [e.event for e in first.intermediates] == ["enroute"]
    assert await get_entry(redis_client, key_prefix, "acme", "f2") == b"=%d:enroute\x1fF2\x1fr-2\x1ff2" % SUBMITTED_MS
    await redis_client.delete(Keys(key_prefix).events)
    finals, more = await store.expire_overdue(STAGED_END_MS)
    assert not more
    by_id = {e.job_id: e for e in finals}
    assert set(by_id) == {"f1", "f2"} and by_id["f2"].submitted_ms == SUBMITTED_MS
    published = {e["id"]: e for e in await events(redis_client, key_prefix)}
    assert published["f2"] == {
        "id": "f2", "ref": "r-2", "event": "unknown", "carrier": "acme", "parts": "1", "message_ids": "F2",
        "error": "dlr_timeout", "ts": str(STAGED_END_MS),
    }
    assert published["f1"]["event"] == "unknown"
    assert not await redis_client.exists(Keys(key_prefix).job("f1"), Keys(key_prefix).job("f2"))
    assert not await redis_client.exists(bucket_key(key_prefix, "acme", STAGED_END_MS))


async def test_orphan_and_batch_over_chunk(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await put_entry(redis_client, key_prefix, "acme", "lost", f"1:{SUBMITTED_MS}:gone")
    result = await store.apply("acme", [rec("lost")])
    # retried like an unmatched receipt: the job record may be written a moment later
    assert result.orphans == 1 and result.unmatched == [rec("lost")]
    await redis_client.hset(f"{key_prefix}:job:gone", mapping={"parts": 1, "carrier": "acme"})
    result = await store.apply("acme", result.unmatched)
    assert [e.job_id for e in result.finals] == ["gone"]
    # corrupt correlation values and out-of-range parts are counted and left alone
    await put_entry(redis_client, key_prefix, "acme", "bad1", "garbage")
    await put_entry(redis_client, key_prefix, "acme", "bad2", f"7:{SUBMITTED_MS}:gone")
    await put_entry(redis_client, key_prefix, "acme", "bad3", f"0.5:{SUBMITTED_MS}:gone")
    result = await store.apply("acme", [rec("bad1"), rec("bad2"), rec("bad3")])
    assert result.corrupt == 3 and result.applied == 0
    # more receipts than one script call takes
    n = 1205
    pipe = redis_client.pipeline(transaction=False)
    for i in range(n):
        pipe.hset(
            f"{key_prefix}:job:b{i}",
            mapping={"parts": 1, "message_ids": f"x{i}", "ref": "", "carrier": "acme"},
        )
    await pipe.execute()
    entries = {f"x{i}": f"1:{SUBMITTED_MS}:b{i}" for i in range(n)}
    await put_correlation(redis_client, key_prefix, "acme", entries, STAGED_END_MS, await redis_now_ms(redis_client) + 60_000)
    result = await store.apply("acme", [rec(f"x{i}") for i in range(n)])
    assert result.applied == n and len(result.finals) == n
    assert await redis_client.xlen(f"{key_prefix}:events") == n + 1  # + the "gone" job


async def test_park_invalid_keeps_reason_without_text_or_number(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await store.park_invalid(
        "acme",
        {
            "short_message": b"sub:001 stat:??? Text:secret words here",
            "source_addr": "+4500000000",
            "esm_class": 4,
            "network_error_code": b"\x03\x00\x01",
        },
        "no message id",
    )
    entries = await redis_client.xrange(f"{key_prefix}:dlr:invalid")
    assert len(entries) == 1
    fields = entries[0][1]
    assert fields[b"reason"] == b"no message id" and fields[b"carrier"] == b"acme"
    assert b"secret" not in fields[b"short_message"]
    assert fields[b"short_message"].startswith(b"sub:001 stat:???")
    assert b"source_addr" not in fields
    assert fields[b"network_error_code"] == b"030001"


async def test_script_reloaded_after_flush(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await redis_client.script_flush()
    await submit_job(redis_client, key_prefix, "jf", "acme", ["f1"])
    result = await store.apply("acme", [rec("f1")])
    assert [e.event for e in result.finals] == ["delivered"]


async def test_apply_leaves_the_events_stream_to_the_trimmer(redis_client: Any, key_prefix: str) -> None:
    """Events of both paths stay in the stream however small ``stream_maxlen``: the
    script no longer trims it; the engine's trimmer does, behind the history
    archiver (engine/stream_trim.py), so no event goes before it is archived."""
    store = ReceiptStore(redis_client, key_prefix, stream_maxlen=100)
    pipe = redis_client.pipeline(transaction=False)
    entries = {}
    for i in range(600):
        job = f"s{i}"
        pipe.hset(f"{key_prefix}:job:{job}", mapping={"parts": 1, "state": "submitted", "carrier": "acme"})
        # two thirds on the fast path, the rest in the general form
        entries[job] = f"={SUBMITTED_MS}\x1f{job}\x1fr{i}\x1f{job}" if i % 3 else f"1:{SUBMITTED_MS}:{job}"
    await pipe.execute()
    await put_correlation(redis_client, key_prefix, "acme", entries, STAGED_END_MS, await redis_now_ms(redis_client) + 3_600_000)
    result = await store.apply("acme", [rec(f"s{i}") for i in range(600)])
    assert result.applied == 600
    assert len(result.finals) == 600
    stream = f"{key_prefix}:events"
    assert await redis_client.xlen(stream) == 600
    last = await redis_client.xrevrange(stream, count=1)
    assert last[0][1][b"id"] == b"s599"


async def test_works_with_decode_responses_client(redis_url: str, key_prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = ReceiptStore(client, key_prefix)
        await submit_job(client, key_prefix, "jé", "acme", ["u1", "u2"], ref="réf")
        result = await store.apply(
            "acme", [rec("u1", "enroute"), rec("u1", "rejected", "err:1"), rec("u2")]
        )
        assert [e.event for e in result.intermediates] == ["enroute"]
        [final] = result.finals
        assert (final.job_id, final.event, final.fields["ref"]) == ("jé", "rejected", "réf")
        assert final.fields["part_states"] == "rejected,delivered"
        assert final.submitted_ms == SUBMITTED_MS
    finally:
        await client.aclose()


def test_unmatched_buffer_is_bounded_and_forgets_matched_records() -> None:
    buffer = UnmatchedBuffer(retry_ms=10, max_wait_ms=100, max_size=2)
    for i in range(3):
        buffer.hold(rec(f"b{i}"), now_ms=0)
    assert len(buffer) == 2
    retry, expired = buffer.due(10)
    assert expired == [rec("b0")]  # pushed out early, not lost
    assert retry == [rec("b1"), rec("b2")]
    buffer.hold(rec("b2"), now_ms=20)  # b1 matched on its retry; b2 did not
    assert buffer.due(30) == ([rec("b2")], [])
    buffer.hold(rec("b2"), now_ms=90)
    assert buffer.due(100) == ([], [rec("b2")])  # first seen at 0
    assert buffer.due(1000) == ([], []) and len(buffer) == 0


async def test_expiry_sweep_honours_limit(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """A call reads about ``limit`` entries of a large bucket (HSCAN), says more is
    left, and the calls together give every overdue job exactly one event."""
    n = 600
    await record_submitted(redis_client, key_prefix, [(f"lim{i}", [f"l{i}"], "", "") for i in range(n)])
    seen: list[str] = []
    calls, more = 0, True
    while more:
        finals, more = await store.expire_overdue(STAGED_END_MS, limit=100)
        seen += [e.job_id for e in finals]
        calls += 1
        if calls == 1:
            assert more and 0 < len(finals) < n, (more, len(finals))
        assert calls < 50
    assert sorted(seen) == sorted(f"lim{i}" for i in range(n))
    assert not await redis_client.exists(bucket_key(key_prefix, "acme", STAGED_END_MS))
    assert await store.expire_overdue(STAGED_END_MS, limit=100) == ([], False)


async def test_park_invalid_keeps_no_free_text(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await store.park_invalid(
        "acme", {"message_payload": b"call me on 4500000000 tonight"}, "no message id"
    )
    [(_, fields)] = await redis_client.xrange(f"{key_prefix}:dlr:invalid")
    assert fields[b"message_payload"] == b"<29 bytes without receipt fields>"


async def test_receipt_on_last_part_only(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """``expect`` = 1 of 3 parts (registered_delivery on the last part only)."""
    for job_id, ids in (("last1", ["z1", "z2", "z3"]), ("last2", ["y1", "y2", "y3"])):
        await submit_job(redis_client, key_prefix, job_id, "acme", ids)
        await redis_client.hset(f"{key_prefix}:job:{job_id}", "expect", 1)
        await redis_client.hdel(bucket_key(key_prefix, "acme", STAGED_END_MS), ids[0], ids[1])
    result = await store.apply("acme", [rec("z3", "undeliverable", "err:001")])
    [final] = result.finals
    assert (final.job_id, final.event, final.fields["error"]) == (
        "last1",
        "undeliverable",
        "err:001",
    )
    assert final.fields["part_states"] == "undeliverable"
    assert final.fields["parts"] == "3"
    late = await store.apply("acme", [rec("z3", "enroute")])
    assert late.duplicates == 1  # its key was retired: this id's part is final
    # never answered: the sweep gives unknown from the awaited part alone
    [expired], _ = await store.expire_overdue(STAGED_END_MS)
    assert (expired.job_id, expired.event) == ("last2", "unknown")
    assert expired.fields["part_states"] == "unknown"
    job = await redis_client.hgetall(f"{key_prefix}:job:last2")
    assert job[b"done"] == b"1" and b"s:1" not in job and job[b"s:3"] == b"unknown"
    assert await get_entry(redis_client, key_prefix, "acme", "y3") is None


async def test_without_callback_the_reply_is_slim_but_the_event_whole(redis_client: Any, key_prefix: str) -> None:
    store = ReceiptStore(redis_client, key_prefix)
    await submit_job(redis_client, key_prefix, "slim", "acme", ["s1"], callback="")
    result = await store.apply("acme", [rec("s1", "undeliverable", "err:034")])
    (final,) = result.finals
    assert final.callback == "" and final.fields == {"id": "slim", "event": "undeliverable", "carrier": "acme"}
    assert final.submitted_ms == SUBMITTED_MS
    (_eid, published), = await redis_client.xrange(f"{key_prefix}:events")
    assert published[b"error"] == b"err:034" and published[b"message_ids"] == b"s1" and published[b"ref"] == b"ref-1"


async def record_submitted(
    r: Any, prefix: str, jobs: list[tuple[str, list[str], str, str]], now_ms: int = SUBMITTED_MS,
    *, keep_events: bool = False,
) -> None:
    """Run the engine's real record script for submitted jobs: (job id, raw ids, ref, callback)."""
    from engine.scripts import RecordBatch, RecordJob, RecordWait, Script, payload_json, record_call

    payload = []
    for job_id, ids, ref, callback in jobs:
        normalised = [normalize_id(i, "as-is", side="submit") for i in ids]
        payload.append(
            RecordJob(
                job_id=job_id, event="submitted", carrier="acme", parts=len(ids), message_ids=",".join(ids),
                error="", ref=ref, client="", kind="transactional", callback=callback, to_hash="", to_mask="",
                encoding="gsm7", corr=correlation_arg(normalised, len(ids), len(ids), callback, ref, ",".join(ids)),
                expect=len(ids), dlr_ids=",".join(normalised) if normalised != ids else "",
            )
        )
    # the bucket of now_ms's deadline; its key lives an hour of real time
    end_ms, _ = correlation_bucket(now_ms, DLR_WAIT_MS, 2 * DLR_WAIT_MS)
    expire_at = await redis_now_ms(r) + 3_600_000
    body = payload_json(RecordBatch(
        retention_until=now_ms // 1000 + 3600,
        waits={"acme": RecordWait(end_ms=str(end_ms), expire_at_ms=str(expire_at), record_ttl="3600")},
        jobs=payload, acks=[],
    ))
    keys = Keys(prefix)
    await Script("record")(r, *record_call(keys, keys.jobs, "sendgate", body, now_ms, os.urandom(8).hex()))
    if not keep_events:
        await r.delete(keys.events)  # keep only the receipts' events


async def record_with_bucket(r: Any, prefix: str, job_id: str, end_ms: int, expire_at_ms: int) -> None:
    """The record script for one single-part job, its bucket given outright."""
    from engine.scripts import RecordBatch, RecordJob, RecordWait, Script, payload_json, record_call

    job = RecordJob(
        job_id=job_id, event="submitted", carrier="acme", parts=1, message_ids=job_id, error="", ref="", client="",
        kind="transactional", callback="", to_hash="", to_mask="", encoding="gsm7", corr=job_id, expect=1, dlr_ids="",
    )
    body = payload_json(RecordBatch(
        retention_until=2_000_000_000,
        waits={"acme": RecordWait(end_ms=str(end_ms), expire_at_ms=str(expire_at_ms), record_ttl="3600")},
        jobs=[job], acks=[],
    ))
    keys = Keys(prefix)
    await Script("record")(r, *record_call(keys, keys.jobs, "sendgate", body, await redis_now_ms(r), os.urandom(8).hex()))


async def test_fast_path_entry_from_the_record_script(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """Single-part jobs without callback get an entry that carries their event's fields;
    the others keep the general entry. Both give the same events."""
    await record_submitted(
        redis_client,
        key_prefix,
        [
            ("fast", ["00AB12"], "r-fast", ""),
            ("with-cb", ["00AB13"], "r-cb", "http://127.0.0.1/cb"),
            ("odd-ref", ["00AB14"], "r\x1fodd", ""),
            ("two", ["00AB15", "00AB16"], "r-two", ""),
        ],
    )
    entry = lambda mid: get_entry(redis_client, key_prefix, "acme", mid)  # noqa: E731
    assert await entry("ab12") == b"=%d\x1f00AB12\x1fr-fast\x1ffast" % SUBMITTED_MS
    assert await entry("ab13") == b"1:%d:with-cb" % SUBMITTED_MS
    assert await entry("ab14") == b"1:%d:odd-ref" % SUBMITTED_MS
    assert await entry("ab16") == b"2:%d:two" % SUBMITTED_MS
    # one bucket for the batch: its end is the deadline rounded up to a 64th of the wait;
    # listed for the sweep and for the carrier's lookups
    assert SUBMITTED_MS + DLR_WAIT_MS <= STAGED_END_MS < SUBMITTED_MS + DLR_WAIT_MS * 65 // 64
    due = await redis_client.zrange(f"{key_prefix}:dlr:due", 0, -1, withscores=True)
    assert due == [(f"{STAGED_END_MS}:acme".encode(), float(STAGED_END_MS))]
    assert await redis_client.zrange(f"{key_prefix}:dlr:idx:acme", 0, -1) == [str(STAGED_END_MS).encode()]
    bucket = bucket_key(key_prefix, "acme", STAGED_END_MS)
    assert await redis_client.hlen(bucket) == 5
    assert 3_590_000 < await redis_client.pttl(bucket) <= 3_600_000

    result = await store.apply(
        "acme",
        [rec("ab12"), rec("ab13", "undeliverable", "err:034"), rec("ab14"), rec("ab15"), rec("ab16")],
        now_ms=SUBMITTED_MS + 5000,
    )
    assert result.applied == 5 and not result.unmatched
    by_id = {e.job_id: e for e in result.finals}
    assert set(by_id) == {"fast", "with-cb", "odd-ref", "two"}
    fast = by_id["fast"]
    assert (fast.event, fast.callback, fast.submitted_ms) == ("delivered", "", SUBMITTED_MS)
    assert fast.fields == {"id": "fast", "event": "delivered", "carrier": "acme"}
    published = {e["id"]: e for e in await events(redis_client, key_prefix)}
    assert published["fast"] == {
        "id": "fast", "ref": "r-fast", "event": "delivered", "carrier": "acme", "parts": "1",
        "message_ids": "00AB12", "error": "", "ts": str(SUBMITTED_MS + 5000),
    }
    assert published["odd-ref"]["ref"] == "r\x1fodd"
    assert published["with-cb"] == by_id["with-cb"].fields
    # the fast-path job never had a record; the others' records stay only the grace
    assert not await redis_client.exists(f"{key_prefix}:job:fast")
    for job_id in ("with-cb", "odd-ref", "two"):
        assert (await redis_client.hgetall(f"{key_prefix}:job:{job_id}"))[b"state"] == by_id[job_id].event.encode()
        assert 0 < await redis_client.ttl(f"{key_prefix}:job:{job_id}") <= 300
    assert not await redis_client.exists(bucket)  # every entry retired
    for i in range(2, 7):
        await assert_retired(redis_client, key_prefix, "acme", f"ab1{i}")
    # a receipt sent again is a duplicate, on either path
    again = await store.apply("acme", [rec("ab12"), rec("ab13"), rec("ab16", "enroute")])
    assert again.duplicates == 3 and again.applied == 0 and not again.unmatched
    assert len(await events(redis_client, key_prefix)) == 4


async def test_fast_path_same_id_twice_in_one_batch(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await record_submitted(redis_client, key_prefix, [("twice", ["t1"], "", "")])
    result = await store.apply("acme", [rec("t1"), rec("t1", "undeliverable"), rec("t1")])
    assert result.applied == 1 and result.duplicates == 2
    assert [e.event for e in result.finals] == ["delivered"]
    assert [e["event"] for e in await events(redis_client, key_prefix)] == ["delivered"]


async def test_fast_path_intermediate_then_final(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    await record_submitted(redis_client, key_prefix, [("inter", ["i1"], "r-i", "")])
    first = await store.apply("acme", [rec("i1", "enroute"), rec("i1", "accepted")])
    assert first.applied == 2 and [e.event for e in first.intermediates] == ["enroute", "accepted"]
    again = await store.apply("acme", [rec("i1", "accepted")])
    assert not again.intermediates  # one event per change of state
    final = await store.apply("acme", [rec("i1", "expired", "err:027")])
    [ev] = final.finals
    assert (ev.job_id, ev.event) == ("inter", "expired")
    published = await events(redis_client, key_prefix)
    assert [e["event"] for e in published] == ["enroute", "accepted", "expired"]
    assert published[-1]["error"] == "err:027" and published[0]["ref"] == "r-i"
    assert not await redis_client.exists(f"{key_prefix}:job:inter")  # the entry kept the state
    late = await store.apply("acme", [rec("i1", "enroute")])
    assert late.duplicates == 1 and not late.intermediates


async def test_fast_path_needs_no_job_record_and_writes_none(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """A fast-form entry is self-sufficient: its job has no record, the receipt gives
    the event from the entry alone and creates no record."""
    await put_entry(redis_client, key_prefix, "acme", "g1", f"={SUBMITTED_MS}\x1fG1\x1f\x1fghost")
    result = await store.apply("acme", [rec("g1")])
    assert result.applied == 1 and not result.orphans and not result.unmatched
    assert [e.job_id for e in result.finals] == ["ghost"]
    assert not await redis_client.exists(f"{key_prefix}:job:ghost")
    assert [(e["id"], e["event"], e["message_ids"]) for e in await events(redis_client, key_prefix)] == [
        ("ghost", "delivered", "G1")]
    # a general-form entry without its job record is still an orphan: retried, never recreated
    await put_entry(redis_client, key_prefix, "acme", "g3", f"1:{SUBMITTED_MS}:gone")
    orphan = await store.apply("acme", [rec("g3")])
    assert orphan.orphans == 1 and orphan.unmatched == [rec("g3")]
    assert not await redis_client.exists(f"{key_prefix}:job:gone")
    # a corrupt fast entry is counted and left alone
    await put_entry(redis_client, key_prefix, "acme", "g2", "=123\x1fno-job-id")
    assert (await store.apply("acme", [rec("g2")])).corrupt == 1


async def redis_now_ms(r: Any) -> int:
    seconds, micros = await r.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def until_redis_time(r: Any, target_ms: int) -> None:
    """Wait until Redis's clock (the one the duplicate spans use) reaches target_ms."""
    while (now := await redis_now_ms(r)) < target_ms:
        await asyncio.sleep((target_ms - now) / 1000)


async def test_duplicate_window_spans_then_unmatched(redis_client: Any, key_prefix: str) -> None:
    """A resent receipt is a duplicate while its key is in a span of the window, unmatched after."""
    window = 300
    store = ReceiptStore(redis_client, key_prefix, duplicate_window_ms=window)
    await record_submitted(redis_client, key_prefix, [("w1", ["w1"], "", ""), ("w2", ["w2"], "", "")])
    assert (await store.apply("acme", [rec("w1")])).applied == 1
    retired_at = await redis_now_ms(redis_client)
    [span] = (await dup_spans(redis_client, key_prefix, window)).keys()
    assert 0 < await redis_client.pttl(span) <= window + 3 * (window // 10)
    # a later call, in the same span or the next: the first key is still found
    later = await store.apply("acme", [rec("w1"), rec("w2"), rec("nope")])
    assert (later.duplicates, later.applied, later.unmatched) == (1, 1, [rec("nope")])
    # past the window (and the span it was retired in): no longer a duplicate
    await until_redis_time(redis_client, retired_at + window + window // 10 + 1)
    assert (await store.apply("acme", [rec("w1")])).unmatched == [rec("w1")]


async def test_sweep_unlinks_spans_past_their_use(redis_client: Any, key_prefix: str) -> None:
    """The sweep UNLINKs layout 6's spans (``P:dlr:dup:<n>``, every carrier's, left by an
    upgrade) that ended a window and a span ago (a span before their TTL), and leaves the
    ones a duplicate check may still read."""
    window, span = 600_000, 60_000
    store = ReceiptStore(redis_client, key_prefix, duplicate_window_ms=window)
    while True:
        before = (await redis_now_ms(redis_client) - window) // span
        for n in range(before - 4, before + 1):
            await redis_client.sadd(f"{key_prefix}:dlr:dup:{n}", f"{key_prefix}:dlr:acme:x{n}")
            await redis_client.expire(f"{key_prefix}:dlr:dup:{n}", 3600)
        await store.expire_overdue(SUBMITTED_MS)
        if (await redis_now_ms(redis_client) - window) // span == before:
            break  # no span boundary crossed meanwhile: the figures below hold
        for n in range(before - 4, before + 1):
            await redis_client.delete(f"{key_prefix}:dlr:dup:{n}")
    left = [n for n in range(before - 4, before + 1) if await redis_client.exists(f"{key_prefix}:dlr:dup:{n}")]
    assert left == [before - 4, before - 1, before]  # -2 and -3 unlinked; -4 is the TTL's


async def test_apply_unlinks_the_carriers_spans_past_their_use(redis_client: Any, key_prefix: str) -> None:
    """Layout 6: a carrier's apply call that retires an entry UNLINKs that carrier's spans
    that ended a window and a span ago (the three oldest past their use), and leaves the
    ones a duplicate check may still read and every other carrier's."""
    window, span = 600_000, 60_000
    keys = Keys(key_prefix)
    store = ReceiptStore(redis_client, key_prefix, duplicate_window_ms=window)
    for attempt in range(3):
        await record_submitted(redis_client, key_prefix, [(f"u{attempt}", [f"u{attempt}"], "", "")])
        before = (await redis_now_ms(redis_client) - window) // span
        for carrier in ("acme", "beta"):
            for n in range(before - 5, before + 1):
                await redis_client.sadd(keys.dup_span(carrier, n), f"x{n}")
                await redis_client.expire(keys.dup_span(carrier, n), 3600)
        assert (await store.apply("acme", [rec(f"u{attempt}")])).applied == 1
        if (await redis_now_ms(redis_client) - window) // span == before:
            break  # no span boundary crossed meanwhile: the figures below hold
    span_range = range(before - 5, before + 1)
    left = [n for n in span_range if await redis_client.exists(keys.dup_span("acme", n))]
    assert left == [before - 5, before - 1, before]  # -2, -3 and -4 unlinked; -5 is the TTL's
    assert [n for n in span_range if await redis_client.exists(keys.dup_span("beta", n))] == list(span_range)


async def test_duplicate_window_is_per_carrier(redis_client: Any, key_prefix: str) -> None:
    """The same message id from two carriers: one carrier's retired id is no duplicate of
    the other's receipt (layout 6's tokens held the carrier; layout 7's sets are the
    carrier's)."""
    store = ReceiptStore(redis_client, key_prefix)
    await record_submitted(redis_client, key_prefix, [("pc1", ["same1"], "", "")])
    assert (await store.apply("acme", [rec("same1")])).applied == 1
    other = await store.apply("beta", [rec("same1")])
    assert (other.duplicates, other.unmatched) == (0, [rec("same1")])
    again = await store.apply("acme", [rec("same1")])
    assert (again.duplicates, again.unmatched) == (1, [])
    # the span holds the plain id (no carrier, no separator), under the carrier's key
    spans = await dup_spans(redis_client, key_prefix, carrier="acme")
    assert list(spans.values()) == [{b"same1"}]
    assert await dup_spans(redis_client, key_prefix, carrier="beta") == {}


async def test_upgrade_from_layout_5_spans(redis_client: Any, key_prefix: str) -> None:
    """Spans a layout-6 engine wrote (``P:dlr:dup:<n>``, ``<carrier>US<id>``) are still
    read after the upgrade: a receipt resent across it is a duplicate, not unmatched (so
    not parked, and no second event); a token of another carrier is not this one's; the
    new retirements go to the carrier's own spans only."""
    window, span = 600_000, 60_000
    keys = Keys(key_prefix)
    store = ReceiptStore(redis_client, key_prefix, duplicate_window_ms=window)
    last = await redis_now_ms(redis_client) // span
    # as a layout-6 engine left them: the current span and one 8 spans back
    await redis_client.sadd(keys.dup_span_legacy(last), "acme\x1fold1", "beta\x1fold2")
    await redis_client.sadd(keys.dup_span_legacy(last - 8), "acme\x1fold3")
    for n in (last, last - 8):
        await redis_client.pexpireat(keys.dup_span_legacy(n), (n + 3) * span + window)
    await record_submitted(redis_client, key_prefix, [("up1", ["new1"], "", "")])
    got = await store.apply("acme", [rec("old1"), rec("old2"), rec("new1"), rec("old3"), rec("none")])
    assert (got.applied, got.duplicates, got.unmatched) == (1, 2, [rec("old2"), rec("none")])
    assert [{k: v for k, v in e.items() if k != "ts"} for e in await events(redis_client, key_prefix)] == [
        {"id": "up1", "ref": "", "event": "delivered", "carrier": "acme", "parts": "1", "message_ids": "new1",
         "error": ""}
    ]
    assert {m for ms in (await dup_spans(redis_client, key_prefix, carrier="acme")).values() for m in ms} == {b"new1"}
    # a layout-6 span is never written now
    assert await redis_client.smembers(keys.dup_span_legacy(last)) == {b"acme\x1fold1", b"beta\x1fold2"}
    # both layouts in one call, and the new one alone
    again = await store.apply("acme", [rec("new1"), rec("old3")])
    assert (again.duplicates, again.unmatched) == (2, [])
    beta = await store.apply("beta", [rec("old2"), rec("old1")])
    assert (beta.duplicates, beta.unmatched) == (1, [rec("old1")])


_WHERE = ("entry", "none", "span", "legacy", "other_span", "other_legacy")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hs.lists(hs.tuples(hs.sampled_from(_WHERE), hs.integers(0, 9)), min_size=1, max_size=40),
       hs.randoms(use_true_random=False))
def test_duplicate_spans_of_both_layouts_property(
    redis_url: str, key_prefix: str, placed: list[tuple[str, int]], rnd: Any
) -> None:
    """Receipts whose ids are anywhere in the window's spans (the carrier's, layout 6's,
    another carrier's of either layout) or in a correlation entry, in any order, in one
    call: duplicate exactly when the id is in a span of this carrier (either layout),
    applied when it has an entry, else unmatched; the statuses stay with their receipts
    whatever the lookups drop between spans."""
    import redis.asyncio as aioredis

    window, span = 600_000, 60_000
    keys = Keys(key_prefix)
    carrier, other = f"c{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    ids = [(f"m{i}", where, back) for i, (where, back) in enumerate(placed)]
    rnd.shuffle(ids)

    async def run() -> None:
        r = aioredis.Redis.from_url(redis_url)
        try:
            last = await redis_now_ms(r) // span
            for mid, where, back in ids:
                n = last - back
                if where == "entry":
                    await put_entry(r, key_prefix, carrier, mid, f"={SUBMITTED_MS}\x1f{mid}\x1fr\x1fjob-{mid}")
                elif where == "span":
                    await r.sadd(keys.dup_span(carrier, n), mid)
                elif where == "legacy":
                    await r.sadd(keys.dup_span_legacy(n), f"{carrier}\x1f{mid}")
                elif where == "other_span":
                    await r.sadd(keys.dup_span(other, n), mid)
                elif where == "other_legacy":
                    await r.sadd(keys.dup_span_legacy(n), f"{other}\x1f{mid}")
                await r.expire(keys.dup_span(carrier, n), 3600)
                await r.expire(keys.dup_span_legacy(n), 3600)
            store = ReceiptStore(r, key_prefix, duplicate_window_ms=window)
            result = await store.apply(carrier, [rec(mid) for mid, _w, _b in ids], compact=True)
            assert result.fast_job_ids == [f"job-{mid}" for mid, where, _b in ids if where == "entry"]
            assert result.duplicates == sum(where in ("span", "legacy") for _m, where, _b in ids)
            assert result.unmatched == [rec(mid) for mid, where, _b in ids if where in ("none", "other_span",
                                                                                       "other_legacy")]
        finally:
            await r.aclose()

    asyncio.run(run())


async def test_fast_path_with_unbounded_events_stream(redis_client: Any, key_prefix: str) -> None:
    store = ReceiptStore(redis_client, key_prefix, stream_maxlen=0, duplicate_window_ms=0)
    await record_submitted(redis_client, key_prefix, [("nolimit", ["n1"], "", "")])
    result = await store.apply("acme", [rec("n1", "rejected")])
    assert [e.event for e in result.finals] == ["rejected"]
    assert [e["event"] for e in await events(redis_client, key_prefix)] == ["rejected"]
    # no duplicate window: the entry is deleted, and a resent receipt is unmatched
    assert await get_entry(redis_client, key_prefix, "acme", "n1") is None
    assert (await store.apply("acme", [rec("n1")])).unmatched == [rec("n1")]


async def test_cancelled_apply_leaves_the_connection_usable(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """The apply call packs its own command: a cancellation at any point of the
    exchange must not leave a reply behind for the next caller of the connection."""
    import asyncio

    for k in range(6):
        await record_submitted(redis_client, key_prefix, [(f"c{k}", [f"cc{k}"], "", "")])
        task = asyncio.ensure_future(store.apply("acme", [rec(f"cc{k}")]))
        for _ in range(k):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        # whatever happened to that call, the next ones get their own replies
        assert await redis_client.ping()
        result = await store.apply("acme", [rec(f"cc{k}")])
        assert result.applied + result.duplicates == 1
        assert [e["event"] for e in await events(redis_client, key_prefix) if e["id"] == f"c{k}"] == ["delivered"]


def test_correlation_arg_takes_the_fast_form_only_when_it_can() -> None:
    assert correlation_arg(["ab"], 1, 1, "", "r", "AB") == "ab"
    assert correlation_arg(["ab"], 1, 1, "http://127.0.0.1/cb", "r", "AB") == [["ab", 1]]
    assert correlation_arg(["ab"], 1, 1, "", "r\x1f", "AB") == [["ab", 1]]
    assert correlation_arg(["ab"], 1, 1, "", "r", "A\x1fB") == [["ab", 1]]
    assert correlation_arg(["a", "b", "c"], 3, 3, "", "", "A,B,C") == [["a", 1], ["b", 2], ["c", 3]]
    assert correlation_arg(["a", "b", "c"], 3, 1, "", "", "A,B,C") == [["c", 3]]  # last part only


async def test_apply_through_a_client_without_connection_pool(redis_client: Any, key_prefix: str) -> None:
    """Any object with evalsha/script_load serves (the generic path): same results."""

    class Wrapped:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        async def evalsha(self, *args: Any) -> Any:
            return await self._inner.evalsha(*args)

        async def script_load(self, source: str) -> Any:
            return await self._inner.script_load(source)

    store = ReceiptStore(Wrapped(redis_client), key_prefix)
    await record_submitted(redis_client, key_prefix, [("w1", ["wa"], "r", ""), ("w2", ["wb", "wc"], "", "")])
    result = await store.apply("acme", [rec("wa"), rec("wb"), rec("wc", "expired")])
    assert result.applied == 3
    assert sorted((e.job_id, e.event) for e in result.finals) == [("w1", "delivered"), ("w2", "expired")]


async def test_apply_reconnects_once_after_a_killed_connection(redis_url: str, key_prefix: str) -> None:
    """As redis-py does for its own commands: a connection the server closed
    (CLIENT KILL) is replaced once, and the call goes through."""
    import redis.asyncio as aioredis

    name = f"victim-{key_prefix}"
    client = aioredis.Redis.from_url(redis_url, client_name=name)
    admin = aioredis.Redis.from_url(redis_url)
    try:
        store = ReceiptStore(client, key_prefix)
        await record_submitted(admin, key_prefix, [("k1", ["ka"], "", ""), ("k2", ["kb"], "", "")])
        assert (await store.apply("acme", [rec("ka")])).applied == 1
        killed = [c for c in await admin.client_list() if c.get("name") == name]
        assert killed
        for c in killed:
            await admin.execute_command("CLIENT", "KILL", "ID", c["id"])
        result = await store.apply("acme", [rec("kb")])
        assert [e.job_id for e in result.finals] == ["k2"]
    finally:
        await client.aclose()
        await admin.aclose()


class _ReplyCutter:
    """A TCP proxy to the real Redis that, once armed, forwards the next request
    holding ``marker`` and then closes the client's connection instead of passing
    on the reply: the server ran the command, the caller never hears of it.
    ``armed = n`` does that to the next ``n`` such requests (``True`` = 1)."""

    def __init__(self, redis_url: str, marker: bytes) -> None:
        from urllib.parse import urlparse

        parsed = urlparse(redis_url)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self.db = parsed.path or "/0"
        self.marker = marker
        self.armed: int = 0
        self.cuts = 0
        self.port = 0
        self._server: Any = None

    async def start(self) -> _ReplyCutter:
        import asyncio

        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio

        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        cutting = False

        async def to_server() -> None:
            nonlocal cutting
            while data := await reader.read(1 << 16):
                if self.armed and self.marker in data:
                    self.armed, cutting = self.armed - 1, True
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def to_client() -> None:
            while data := await up_reader.read(1 << 16):
                if cutting:  # the reply of the marked request: never passed on
                    self.cuts += 1
                    break
                writer.write(data)
                await writer.drain()
            writer.close()
            up_writer.close()

        await asyncio.gather(to_server(), to_client(), return_exceptions=True)

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()


async def test_a_lost_reply_is_given_again_so_callbacks_are_not_lost(redis_url: str, key_prefix: str) -> None:
    """The receipts call ran but its reply never came back; the store asks again on
    a new connection and gets the first reply (the memo), not 'duplicate': the
    event for the callback is still handed to the caller, and published once."""
    import redis.asyncio as aioredis

    cutter = await _ReplyCutter(redis_url, b"apply").start()
    client = aioredis.Redis.from_url(cutter.url)
    try:
        store = ReceiptStore(client, key_prefix)
        await submit_job(redis_client := aioredis.Redis.from_url(redis_url), key_prefix, "lost-1", "acme", ["lr1"])
        assert (await store.apply("acme", [rec("nothing")])).unmatched  # the script is loaded: a cut reply is a run one
        cutter.armed = True
        result = await store.apply("acme", [rec("lr1")])
        assert cutter.cuts == 1  # the first reply was really lost
        [final] = result.finals
        assert (final.job_id, final.event, final.callback) == ("lost-1", "delivered", "http://127.0.0.1/cb")
        assert result.applied == 1 and result.duplicates == 0
        assert [e["id"] for e in await events(redis_client, key_prefix)] == ["lost-1"]
        # a batch without callback events keeps no memo: asked again, it counts duplicates
        await record_submitted(redis_client, key_prefix, [("plain-1", ["lr2"], "", "")])
        cutter.armed = True
        again = await store.apply("acme", [rec("lr2")])
        assert cutter.cuts == 2 and again.duplicates == 1 and not again.finals
        # (record_submitted cleared the stream) its event was published once, by the first call
        assert [e["id"] for e in await events(redis_client, key_prefix)] == ["plain-1"]
        await redis_client.aclose()
    finally:
        await client.aclose()
        await cutter.close()


async def test_receipts_find_their_entries_in_any_bucket(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """Buckets are probed newest first: a batch whose entries sit in three buckets is
    applied in one call, each entry leaves its own bucket, and an id written again in a
    newer bucket (a carrier reusing message ids) matches the newer job."""
    ends = [STAGED_END_MS, STAGED_END_MS + 60_000, STAGED_END_MS + 120_000]
    for n, end in enumerate(ends):
        await submit_job(redis_client, key_prefix, f"jb{n}", "acme", [f"b{n}"], end_ms=end)
    await submit_job(redis_client, key_prefix, "reused-old", "acme", ["same"], end_ms=ends[0])
    await submit_job(redis_client, key_prefix, "reused-new", "acme", ["same"], end_ms=ends[2])
    result = await store.apply("acme", [rec("b0"), rec("same"), rec("b2"), rec("b1")])
    assert result.applied == 4 and not result.unmatched
    assert sorted(e.job_id for e in result.finals) == ["jb0", "jb1", "jb2", "reused-new"]
    assert not await redis_client.exists(*(bucket_key(key_prefix, "acme", e) for e in ends[1:]))
    # the older job's entry stays until the sweep gives it its unknown event
    assert await redis_client.hgetall(bucket_key(key_prefix, "acme", ends[0])) == {
        b"same": f"1:{SUBMITTED_MS}:reused-old".encode()
    }
    finals, more = await store.expire_overdue(ends[2])
    assert [(e.job_id, e.event) for e in finals] == [("reused-old", "unknown")] and not more
    assert await redis_client.zcard(f"{key_prefix}:dlr:idx:acme") == 0


async def test_sweep_works_through_more_than_a_call_of_buckets(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """One call takes at most 100 ended buckets and says more are left."""
    n = 130
    for i in range(n):
        await submit_job(redis_client, key_prefix, f"many{i}", "acme", [f"n{i}"], end_ms=STAGED_END_MS + i)
    first, more = await store.expire_overdue(STAGED_END_MS + n)
    assert len(first) == 100 and more
    rest, more = await store.expire_overdue(STAGED_END_MS + n)
    assert len(rest) == n - 100 and not more
    assert sorted(e.job_id for e in first + rest) == sorted(f"many{i}" for i in range(n))
    assert await redis_client.zcard(f"{key_prefix}:dlr:due") == 0


@pytest.mark.parametrize(
    ("now_ms", "wait_ms", "record_ttl_ms"),
    [
        (SUBMITTED_MS, DLR_WAIT_MS, 120 * 86_400_000),
        (SUBMITTED_MS + 1, DLR_WAIT_MS, 120 * 86_400_000),
        (SUBMITTED_MS + 4_049_999, DLR_WAIT_MS, 120 * 86_400_000),
        (1_764_307_812_345, 3_600_000, 86_400_000),
        (1_764_307_812_345, 50, 86_400_000),  # a wait shorter than 64 ms: spans of 1 ms
    ],
)
def test_correlation_bucket_rounds_the_deadline_up_to_its_span(now_ms: int, wait_ms: int, record_ttl_ms: int) -> None:
    end, expire_at = correlation_bucket(now_ms, wait_ms, record_ttl_ms)
    span = max(1, wait_ms // 64)
    assert end % span == 0
    assert now_ms + wait_ms <= end < now_ms + wait_ms + span  # never given up early, at most a span late
    assert expire_at == end + wait_ms  # the TTL, a wait after the sweep's time


def test_correlation_bucket_never_outlives_the_job_record() -> None:
    # a retention a little longer than the wait: the TTL is cut, the sweep's time is not
    end, expire_at = correlation_bucket(SUBMITTED_MS, DLR_WAIT_MS, DLR_WAIT_MS + 10_000_000)
    assert end < expire_at == SUBMITTED_MS + DLR_WAIT_MS + 10_000_000
    # a message retention shorter than the wait (the caller caps the wait by it): the
    # deadline is rounded down, so entries of one span share a bucket that ends with
    # (or before) each of their records
    wait = 3_600_000
    span = wait // 64
    ends = set()
    for now in range(SUBMITTED_MS, SUBMITTED_MS + 3 * span, 7_001):
        end, expire_at = correlation_bucket(now, wait, wait)
        assert end % span == 0 and now + wait - span < end <= now + wait
        assert expire_at == now + wait
        ends.add(end)
    assert len(ends) <= 4


async def test_a_bucket_ttl_only_comes_down(redis_client: Any, key_prefix: str) -> None:
    """record.lua never extends a bucket's TTL: the bucket ends with the earliest job
    record among its entries."""
    now = await redis_now_ms(redis_client)
    for job_id, expire_at in (("t1", now + 100_000), ("t2", now + 200_000), ("t3", now + 50_000)):
        await record_with_bucket(redis_client, key_prefix, job_id, 9, expire_at)
        assert await redis_client.hlen(bucket_key(key_prefix, "acme", 9)) == int(job_id[1])
        pttl = await redis_client.pttl(bucket_key(key_prefix, "acme", 9))
        assert pttl <= (100_000 if job_id != "t3" else 50_000)
    assert 40_000 < pttl <= 50_000


def test_reply_strings_decode_in_bulk_or_one_by_one() -> None:
    from dlr.store import _texts

    assert _texts([b"j-1", b"1764307800000"]) == ["j-1", "1764307800000"]
    assert _texts([b"a", b"b\x1fc", b"d"]) == ["a", "b\x1fc", "d"]  # a value holding the separator
    assert _texts([b"a", b"\xff"]) == ["a", "\ufffd"]
    assert _texts(["a", None]) == ["a", ""]  # a decode_responses client
    assert _texts([]) == []


@pytest.mark.parametrize("batch", ["all fast", "mixed"])
async def test_compact_fast_finals_are_the_same_events(redis_client: Any, key_prefix: str, batch: str) -> None:
    """apply(compact=True) (the engine's call) gives the fast-path finals as three lists,
    in bulk when every receipt took the fast path, else one by one; converted back they
    are the JobEvents of the default call, and both publish the same events."""
    jobs = [("f1", ["00AB21"], "r1", ""), ("f2", ["00AB22"], "r2", ""), ("f3", ["00AB23"], "r3", "")]
    receipts = [rec("ab21"), rec("ab22", "undeliverable", "err:034"), rec("ab23", "rejected")]
    if batch == "mixed":
        jobs.append(("cb", ["00AB24"], "r4", "http://127.0.0.1/cb"))  # general entry
        receipts += [rec("ab24", "expired"), rec("nosuch"), rec("ab21")]  # + unmatched, duplicate
    results, published = [], []
    for prefix, compact in ((key_prefix, False), (f"{key_prefix}:c", True)):  # both cleaned up
        await record_submitted(redis_client, prefix, jobs)
        result = await ReceiptStore(redis_client, prefix).apply("acme", receipts, compact=compact,
                                                                now_ms=SUBMITTED_MS + 5000)
        results.append(result)
        published.append(await events(redis_client, prefix))
    plain, compact_result = results
    assert plain.fast_events == [] and len(compact_result.fast_events) == 3
    assert compact_result.fast_events == ["delivered", "undeliverable", "rejected"]
    assert compact_result.fast_submitted_ms == [SUBMITTED_MS] * 3
    by_id = lambda events: sorted(events, key=lambda e: e.job_id)  # noqa: E731
    assert by_id(compact_result.fast_as_events("acme") + compact_result.finals) == by_id(plain.finals)
    for field in ("applied", "duplicates", "unmatched", "intermediates"):
        assert getattr(compact_result, field) == getattr(plain, field), field
    assert published[0] == published[1]


def test_compact_sorting_in_bulk_matches_the_loop() -> None:
    """`_sort_compact` (counts and one pass per list) gives what `_sort_statuses`'s loop
    gives with compact=True, for every status letter, in any mix."""
    import random

    from dlr.store import BatchResult, ReceiptRecord

    rng = random.Random(7)
    for _ in range(200):
        statuses = "".join(rng.choice("ffffauxdlo") for _ in range(rng.randrange(0, 30)))
        ordered = [ReceiptRecord(f"m{i}", rng.choice(["delivered", "undeliverable", "enroute"]), True, "", i)
                   for i in range(len(statuses))]
        job_ids = [f"job-{i}" for i, st in enumerate(statuses) if st == "f"]
        submitted = [rng.choice([1_790_000_000_000 + i, None]) for i in range(len(job_ids))]
        loop, bulk = BatchResult(), BatchResult()
        ReceiptStore._sort_statuses("acme", ordered, statuses, job_ids, submitted, loop, True)
        ReceiptStore._sort_compact(ordered, statuses, job_ids, submitted, bulk)
        assert bulk == loop, statuses
    with pytest.raises(ValueError):
        ReceiptStore._sort_compact([ReceiptRecord("m", "delivered", True)], "f", [], [], BatchResult())


def test_submitted_ms_parses_each_distinct_value_once_in_order() -> None:
    from dlr.store import _submitted_ms

    values = ["1795000000000", "", "1795000000000", "1795000000001", "x"]
    assert _submitted_ms(values) == [1795000000000, None, 1795000000000, 1795000000001, None]
    assert _submitted_ms([]) == []


def test_fast_finals_one_string_or_a_list() -> None:
    """correlate.lua answers the fast-path finals as one NUL-joined string (a job id
    may hold US or ',' but never NUL); a list (a reply kept by an earlier version's
    call) still reads."""
    from dlr.store import _fast_finals

    assert _fast_finals(b"job\x1f1\x001795000000000\x00j,2\x00") == (["job\x1f1", "j,2"], [1795000000000, None])
    assert _fast_finals(b"") == ([], [])
    assert _fast_finals([b"a", b"1", b"b", b"2"]) == (["a", "b"], [1, 2])


@pytest.mark.parametrize("callback", ["", "http://127.0.0.1/cb"], ids=["fast-form", "general-form"])
async def test_a_held_receipt_written_after_its_submit_gets_a_later_ts(
    redis_client: Any, key_prefix: str, store: ReceiptStore, callback: str
) -> None:
    """A receipt received before its submit was recorded is held, then written on a
    retry: its event's ``ts`` is when it was written (docs/contract.md §2.4), so never
    before the job's ``submitted`` event, not when the receipt was received."""
    import time

    received_ms = int(time.time() * 1000) - 1000  # received a second ago, held since
    held = UnmatchedBuffer(retry_ms=0, max_wait_ms=60_000)
    first = await store.apply("acme", [rec("ab40", ts=received_ms), rec("ab41", "enroute", ts=received_ms)])
    assert len(first.unmatched) == 2
    for r in first.unmatched:
        held.hold(r, received_ms)
    # the submits are recorded now, by the engine's record script
    recorded_ms = int(time.time() * 1000)
    await record_submitted(
        redis_client, key_prefix, [("j40", ["00AB40"], "r", callback), ("j41", ["00AB41"], "r", callback)],
        now_ms=recorded_ms, keep_events=True,
    )
    retry, expired = held.due(int(time.time() * 1000))
    assert len(retry) == 2 and not expired
    second = await store.apply("acme", retry)
    assert second.applied == 2 and not second.unmatched
    by_job: dict[str, list[dict[str, str]]] = {}
    for e in await events(redis_client, key_prefix):
        by_job.setdefault(e["id"], []).append(e)
    assert [e["event"] for e in by_job["j40"]] == ["submitted", "delivered"]
    assert [e["event"] for e in by_job["j41"]] == ["submitted", "enroute"]
    for job_events in by_job.values():
        submitted, receipt = (int(e["ts"]) for e in job_events)
        assert submitted == recorded_ms
        assert receipt >= submitted, f"receipt event {submitted - receipt} ms before its submitted event"
        assert receipt <= int(time.time() * 1000)  # and not a time to come


async def test_an_event_is_never_dated_before_its_submit_even_on_a_clock_behind(
    redis_client: Any, key_prefix: str, store: ReceiptStore
) -> None:
    """A call whose time is before the job's submit time (another engine's clock behind
    the one that recorded the submit, or its time taken before the record call's) dates
    its events at the submit time: fast form, intermediate, general form, multipart."""
    await record_submitted(
        redis_client, key_prefix,
        [("fast", ["00AB50"], "r", ""), ("mid", ["00AB51"], "r", ""), ("cb", ["00AB52"], "r", "http://127.0.0.1/cb"),
         ("two", ["00AB53", "00AB54"], "r", "")],
    )
    behind = SUBMITTED_MS - 3000
    result = await store.apply(
        "acme", [rec("ab50"), rec("ab51", "enroute"), rec("ab52"), rec("ab53"), rec("ab54", "enroute")], now_ms=behind
    )
    assert result.applied == 5
    stamped = {(e["id"], e["event"]): int(e["ts"]) for e in await events(redis_client, key_prefix)}
    assert stamped == {
        ("fast", "delivered"): SUBMITTED_MS, ("mid", "enroute"): SUBMITTED_MS, ("cb", "delivered"): SUBMITTED_MS,
        ("two", "enroute"): SUBMITTED_MS,
    }
    # a call on time dates them at its own time
    later = await store.apply("acme", [rec("ab51"), rec("ab54")], now_ms=SUBMITTED_MS + 7)
    assert later.applied == 2
    stamped = {(e["id"], e["event"]): int(e["ts"]) for e in await events(redis_client, key_prefix)}
    assert stamped[("mid", "delivered")] == stamped[("two", "delivered")] == SUBMITTED_MS + 7
