"""Idempotency marks in bucketed hashes per generation (engine/marks_lib.lua): a job id
stays refused for at least the window across a generation's roll-over, and no longer
than two windows and the margin; cancel and erasure marks are read by the claims.
The generations are driven by the clock argument every script takes (no sleeping)."""

from __future__ import annotations

from typing import Any

from engine.keys import Keys
from engine.marks import read_marks, take_marks
from engine.scripts import (
    ClaimBatch,
    ClaimPacked,
    Script,
    cancel_call,
    claim_call,
    payload_json,
)
from tests.engine.harness import delete_prefix, mark_bucket

W = 3600  # the window in these tests (s)
T0 = 1_764_806_400 * 1000 + 1_000_000  # ms: 1000 s into a generation (1764806400 is a multiple of 3600)


async def _claim(redis: Any, k: Keys, job_id: str, entry_id: str, now_ms: int) -> int:
    packed = ClaimPacked()
    assert packed.add((job_id, entry_id, ""))
    payload = payload_json(ClaimBatch(claims=[], dead=[]))
    (status,) = await Script("claim")(redis, *claim_call(k, k.jobs, "g", payload, now_ms, W, 1000, False, (), packed))
    return int(status)


async def test_a_duplicate_is_refused_for_the_window_across_a_roll_over(redis_client: Any, key_prefix: str) -> None:
    k = Keys(key_prefix)
    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        late = T0 + (W - 1000 - 400) * 1000  # 400 s before the generation ends (outside the margin)
        assert await _claim(redis_client, k, "job-a", "1-1", late) == 0
        # a minute later, in the next generation: the previous one is read, the copy refused
        assert await _claim(redis_client, k, "job-a", "2-1", late + 60_000) == 1
        # still refused a whole window after it was taken (the mark is in the previous generation)
        assert await _claim(redis_client, k, "job-a", "3-1", late + (W - 1) * 1000) == 1
        # and the entry that took it is told from a copy: a reclaim, across the roll-over too
        assert await _claim(redis_client, k, "job-a", "1-1", late + (W - 1) * 1000) == 2
        # two generations on (past the margin) it is forgotten: sent again, as documented
        assert await _claim(redis_client, k, "job-a", "4-1", late + (W + 400 + 300) * 1000) == 0
        # the copy taken then is refused in its turn
        assert await _claim(redis_client, k, "job-a", "5-1", late + (W + 400 + 301) * 1000) == 1
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_a_writer_whose_clock_is_ahead_is_seen_near_the_boundary(redis_client: Any, key_prefix: str) -> None:
    """Within the margin (300 s) of a boundary a claim also reads the generation across it."""
    k = Keys(key_prefix)
    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        end = T0 + (W - 1000) * 1000  # the next generation's start
        assert await _claim(redis_client, k, "job-b", "1-1", end + 5_000) == 0  # an engine 10 s ahead
        assert await _claim(redis_client, k, "job-b", "2-1", end - 5_000) == 1  # one on time: refused
        # and one 10 s behind, at the start of the generation after: the mark is 2 back, still read
        assert await _claim(redis_client, k, "job-b", "3-1", end + W * 1000 + 5_000) == 1
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_buckets_expire_after_the_next_generation_and_size_from_the_last(
    redis_client: Any, key_prefix: str
) -> None:
    k = Keys(key_prefix)
    try:
        ids = [f"j{i}" for i in range(300)]
        assert all(await take_marks(redis_client, k, ids, "done", W, T0))
        start = T0 // 1000 // W * W
        assert await redis_client.hget(k.marks_generation(start), "k") == b"2048"  # no predecessor
        assert await redis_client.hget(k.marks_generation(start), "n") == b"300"
        bucket = await mark_bucket(redis_client, k, "j0", W, T0)
        # TTL: to the end of the next generation plus the margin, from the caller's clock
        assert await redis_client.ttl(bucket) == start + 2 * W + 300 - T0 // 1000
        assert await redis_client.ttl(k.marks_generation(start)) == start + 2 * W + 300 - T0 // 1000
        # the next generation sizes its buckets from this one's count: 300 marks -> the minimum, 64
        assert await take_marks(redis_client, k, ["next"], "done", W, T0 + W * 1000) == [True]
        assert await redis_client.hget(k.marks_generation(start + W), "k") == b"64"
        assert await read_marks(redis_client, k, ["j0", "next", "none"], W, T0 + W * 1000) == ["done", "done", ""]
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_cancel_across_a_roll_over_and_the_claim_that_meets_it(redis_client: Any, key_prefix: str) -> None:
    k = Keys(key_prefix)
    cancel = Script("cancel")
    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        late = T0 + (W - 1000 - 400) * 1000
        code, mark = await cancel(redis_client, *cancel_call(k, "job-c", W, late, 1000))
        assert (int(code), mark) == (1, b"")
        # next generation: the claim meets `c`, acks it, publishes `cancelled` and leaves `done`
        assert await _claim(redis_client, k, "job-c", "1-1", late + 60_000) == 4
        assert await read_marks(redis_client, k, ["job-c"], W, late + 60_000) == ["done"]
        code, mark = await cancel(redis_client, *cancel_call(k, "job-c", W, late + 120_000, 1000))
        assert (int(code), mark) == (0, b"done")
        events = await redis_client.xrange(k.events)
        assert [f[b"event"] for _i, f in events] == [b"cancelled"]
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_an_erased_job_is_refused_as_a_duplicate(redis_client: Any, key_prefix: str) -> None:
    """Erasure takes `e` (engine/subject_records.py, through marks.lua): a copy read before
    the XDEL is acked unsent; a mark already there is left."""
    k = Keys(key_prefix)
    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        assert await _claim(redis_client, k, "sent", "1-1", T0) == 0
        assert await take_marks(redis_client, k, ["erased", "sent"], "e", W, T0) == [True, False]
        assert await _claim(redis_client, k, "erased", "2-1", T0 + 1000) == 1
        assert (await read_marks(redis_client, k, ["erased", "sent"], W, T0))[0] == "e"
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_marks_of_the_older_layout_are_read_for_a_window_after_the_upgrade(
    redis_client: Any, key_prefix: str
) -> None:
    """String marks `P:idem:<job id>` (layout 10) still refuse their copies: the first generation
    made without a predecessor sets `P:marks:legacy` for a window, and claims then read them."""
    k = Keys(key_prefix)
    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        await redis_client.set(k.idem("old-sent"), "1700000000000000001", ex=W)  # entry 1700000000000-1
        await redis_client.set(k.idem("old-cancelled"), "c", ex=W)
        assert await _claim(redis_client, k, "old-sent", "9-1", T0) == 1  # a copy: refused
        assert await _claim(redis_client, k, "old-sent", "1700000000000-1", T0) == 2  # its own entry: reclaim
        assert 0 < await redis_client.ttl(k.marks_legacy()) <= W + 300
        # cancelled under the old layout: acked, `cancelled`, the old key turned `done` with its TTL
        assert await _claim(redis_client, k, "old-cancelled", "9-2", T0) == 4
        assert await redis_client.get(k.idem("old-cancelled")) == b"done"
        assert 0 < await redis_client.ttl(k.idem("old-cancelled")) <= W
        assert await read_marks(redis_client, k, ["old-sent", "new"], W, T0) == ["1700000000000000001", ""]
        # once the flag is gone (a window after), old keys are not read: no call per claim for them
        await redis_client.delete(k.marks_legacy())
        assert await _claim(redis_client, k, "old-sent", "9-3", T0) == 0
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_a_fresh_start_without_older_marks_sets_no_flag_and_reads_none(
    redis_client: Any, key_prefix: str
) -> None:
    """A generation made without a predecessor on a keyspace holding no mark of layout 10
    (a fresh start) sets no `P:marks:legacy`: the window's claims read no string mark. One
    string mark of any job id under the prefix is enough for the flag (the upgrade)."""
    k = Keys(key_prefix)
    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        small = await redis_client.dbsize() < 4000  # MARKS_LEGACY_SCAN (5,000): above it the flag is set unasked
        assert await _claim(redis_client, k, "new-1", "9-1", T0) == 0
        assert await redis_client.exists(k.marks_legacy()) == (0 if small else 1)
        # an older mark that appears afterwards (an engine of layout 10 left running, which the
        # upgrade notes rule out) is not read while the generation lives: no flag, no GET
        await redis_client.set(k.idem("late-old"), "1700000000000000001", ex=W)
        if small:
            assert await _claim(redis_client, k, "late-old", "9-2", T0) == 0
        # the next generation without predecessor (two windows on) finds it: flag, and it is read
        later = T0 + 3 * W * 1000
        await redis_client.set(k.idem("old-sent"), "1700000000000000001", ex=4 * W)
        assert await _claim(redis_client, k, "old-sent", "9-3", later) == 1
        assert await redis_client.exists(k.marks_legacy()) == 1
        # a prefix whose glob characters are escaped: another prefix's marks do not count
        other = Keys(key_prefix + "[x]*")
        await redis_client.xgroup_create(other.jobs, "g", id="0", mkstream=True)
        await redis_client.set(Keys(key_prefix + "[x]-").idem("o"), "1", ex=W)
        assert await _claim(redis_client, other, "o", "9-4", T0) == 0
        assert await redis_client.exists(other.marks_legacy()) == (0 if small else 1)
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_every_bucket_gets_its_expiry_without_a_per_mark_hlen(redis_client: Any, key_prefix: str) -> None:
    """Buckets made in one call, in later calls, and after the bitmap of made buckets is lost
    (a flush of that key) all carry the generation's expiry; each mark sits in the bucket the
    Python formula names (engine.keys.marks_hash, its top bits)."""
    from engine.keys import marks_bucket_of, marks_hash

    k = Keys(key_prefix)
    start = T0 // 1000 // W * W
    ttl = start + 2 * W + 300 - T0 // 1000
    try:
        first = [f"a{i}" for i in range(500)]
        assert all(await take_marks(redis_client, k, first, "done", W, T0))
        assert await redis_client.ttl(k.marks_made(start)) == ttl
        assert all(await take_marks(redis_client, k, [f"b{i}" for i in range(3000)], "done", W, T0))
        await redis_client.delete(k.marks_made(start))
        assert all(await take_marks(redis_client, k, [f"c{i}" for i in range(3000)], "done", W, T0))
        made = int(await redis_client.hget(k.marks_generation(start), "b"))
        keys = [key async for key in redis_client.scan_iter(match=f"{k.marks_prefix}{start}:*", count=1000)]
        buckets = [key for key in keys if not key.endswith(b":made")]
        # recounted from the bitmap made again (never more than exist: "every bucket made" is never
        # claimed while one is not)
        assert 1000 < made <= len(buckets) < 2048
        for key in keys:
            assert 0 < await redis_client.ttl(key) <= ttl, key
        for job_id in ("a0", "b7", "c2999"):
            bucket = k.marks_bucket(start, marks_bucket_of(marks_hash(job_id), 2048), 2048)
            assert await redis_client.hget(bucket, job_id) == b"done"
        assert await read_marks(redis_client, k, ["a0", "b7", "c2999", "d0"], W, T0) == ["done"] * 3 + [""]
    finally:
        await delete_prefix(redis_client, key_prefix)


def test_the_bucket_uses_bits_the_shard_does_not() -> None:
    """A shard's jobs (crc32 mod 4) spread over every bucket of a generation (its top bits)."""
    from engine.keys import marks_bucket_of, marks_hash, shard_of

    ids = [f"order-{i}" for i in range(80_000)]
    mine = [i for i in ids if shard_of(i, 4) == 1]
    for buckets in (64, 2048):
        used = {marks_bucket_of(marks_hash(i), buckets) for i in mine}
        assert len(used) == buckets


async def test_a_packed_claim_carries_the_mark_the_script_would_make(redis_client: Any, key_prefix: str) -> None:
    """Packed claims carry claim_mark(entry id), JSON claims their entry id (claim.lua's mark_of):
    the same entry is told from a copy either way, and a copy's entry is acked by its id."""
    from engine.scripts import ClaimJob, claim_mark

    k = Keys(key_prefix)
    claim = Script("claim")
    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        for entry in ("1700000000000-5", "1700000000000-123456", "1-1", "1700000000000-1234567"):
            assert claim_mark(entry) == (entry.replace("-", "0" * (20 - len(entry)), 1)
                                         if len(entry) in range(15, 21) else "s|" + entry)
            job = f"job-{entry}"
            assert await _claim(redis_client, k, job, entry, T0) == 0
            as_json = payload_json(ClaimBatch(claims=[ClaimJob(job, entry)], dead=[]))
            assert await claim(redis_client, *claim_call(k, k.jobs, "g", as_json, T0, W, 1000, False)) == [2]
            assert await read_marks(redis_client, k, [job], W, T0) == [claim_mark(entry)]
        # a copy under another entry, packed: refused, and its own entry acked (entry_of)
        copy = (await redis_client.xadd(k.jobs, {"id": "job-1-1"})).decode()
        await redis_client.xreadgroup("g", "c", {k.jobs: ">"})
        assert (await redis_client.xpending(k.jobs, "g"))["pending"] == 1
        assert await _claim(redis_client, k, "job-1-1", copy, T0) == 1
        assert (await redis_client.xpending(k.jobs, "g"))["pending"] == 0
    finally:
        await delete_prefix(redis_client, key_prefix)
