"""The per-batch scripts are safe to repeat: a lost reply never duplicates an event or a dead letter."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

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
    claim_statuses,
    payload_json,
    record_call,
)
from tests.engine.harness import delete_prefix, get_mark, mark_bucket, set_mark


async def _setup(redis: Any, prefix: str, n: int) -> list[str]:
    await redis.xgroup_create(f"{prefix}:jobs", "g", id="0", mkstream=True)
    ids = [(await redis.xadd(f"{prefix}:jobs", {"id": f"j{i}", "to": "4501", "text": "x"})).decode() for i in range(n)]
    await redis.xreadgroup("g", "c", {f"{prefix}:jobs": ">"}, count=n)
    return ids


async def test_claim_answers_one_string_of_status_digits(redis_client: Any, key_prefix: str) -> None:
    """claim.lua's reply is one bulk string, a digit per candidate in order (no RESP
    integer per job); claim_statuses reads it back as the statuses Script gives."""
    claim = Script("claim")
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 3)
        payload = payload_json(ClaimBatch(claims=[ClaimJob("a", e[0]), ClaimJob("a", e[1]), ClaimJob("b", e[2])],
                                          dead=[]))
        keys, args = claim_call(k, k.jobs, "g", payload, 1, 60, 1000, False, [])
        await redis_client.script_load(claim.source)
        raw = await redis_client.evalsha(claim.sha, len(keys), *keys, *args)
        assert raw == b"010"
        assert claim_statuses(raw) == [0, 1, 0]
        # the same call as our own retry: both of ours new, the copy a duplicate again
        retry = claim_call(k, k.jobs, "g", payload, 1, 60, 1000, True, [])
        assert await claim(redis_client, *retry) == [0, 1, 0]
        # nothing to claim (dead letters only): an empty string, no statuses
        empty = claim_call(k, k.jobs, "g", payload_json(ClaimBatch(claims=[], dead=[])), 1, 60, 1000, False, [])
        assert await redis_client.evalsha(claim.sha, len(empty[0]), *empty[0], *empty[1]) == b""
        assert await claim(redis_client, *empty) == []
    finally:
        await delete_prefix(redis_client, key_prefix)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=3000))
def test_claim_statuses_reads_every_reply_form(statuses: list[int]) -> None:
    """The digit string (bytes as the engine's client reads it, str with decode_responses)
    and a list of integers (a script of an earlier version) read the same."""
    digits = "".join(map(str, statuses))
    assert claim_statuses(digits.encode()) == statuses
    assert claim_statuses(digits) == statuses
    assert claim_statuses(statuses) == statuses
    assert claim_statuses([str(x).encode() for x in statuses]) == statuses


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=50).filter(lambda b: b.translate(None, b"01234") != b""),
       st.binary(max_size=20))
def test_claim_statuses_refuses_anything_but_the_five_digits(bad: bytes, before: bytes) -> None:
    """A byte that is no status (an error text, a status this engine does not know) is
    refused, never read as 0 (new: sent)."""
    import pytest

    with pytest.raises(ValueError):
        claim_statuses(before + bad)
    with pytest.raises(ValueError):
        claim_statuses([0, 5])


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


async def test_the_mark_names_its_entry_as_one_integer_and_old_marks_still_count(
    redis_client: Any, key_prefix: str
) -> None:
    claim = Script("claim")
    k = Keys(key_prefix)

    def call(claims: list[ClaimJob]) -> tuple[list[str], list[Any]]:
        return claim_call(k, k.jobs, "g", payload_json(ClaimBatch(claims=claims, dead=[])), 1, 60, 1000, False, [])

    try:
        await redis_client.xgroup_create(k.jobs, "g", id="0", mkstream=True)
        ids = [(await redis_client.xadd(k.jobs, {"id": "x"}, id=i)).decode()
               for i in ("99-1", "1733456789012-7", "1733456789012-1234567", "1733456789013-0")]
        ids = ids[1:] + ids[:1]  # m0 ..012-7, m1 ..012-1234567, m2 ..013-0, m3 99-1
        await redis_client.xreadgroup("g", "c", {k.jobs: ">"})
        assert await claim(redis_client, *call([ClaimJob(f"m{i}", e) for i, e in enumerate(ids)])) == [0, 0, 0, 0]
        # <13-digit ms><seq in 6 digits>: an integer a listpack keeps in 9 bytes
        assert await get_mark(redis_client, k, "m0", 60, 1) == b"1733456789012000007"
        assert await redis_client.object("encoding", await mark_bucket(redis_client, k, "m0", 60, 1)) in (b"listpack", b"ziplist")
        # a seq of 7 digits or an ms of another length keep the string form
        assert await get_mark(redis_client, k, "m1", 60, 1) == b"s|1733456789012-1234567"
        assert await get_mark(redis_client, k, "m3", 60, 1) == b"s|99-1"
        # the same entry again is a reclaim (2), another entry of the job a duplicate (1),
        # whichever form the mark has; a mark in the form `s|<entry id>` (before layout 7) too
        await redis_client.hset(await mark_bucket(redis_client, k, "m2", 60, 1), "m2", f"s|{ids[2]}")
        again = [ClaimJob("m0", ids[0]), ClaimJob("m1", ids[1]), ClaimJob("m2", ids[2]), ClaimJob("m3", ids[3])]
        assert await claim(redis_client, *call(again)) == [2, 2, 2, 2]
        # entry ..013-0 must not pass for ..012-7 and so on: every other pairing is a duplicate
        swapped = [ClaimJob("m0", ids[2]), ClaimJob("m2", ids[0]), ClaimJob("m1", ids[0]), ClaimJob("m3", ids[1])]
        assert await claim(redis_client, *call(swapped)) == [1, 1, 1, 1]
        # the bucket lives to the end of the next generation (+ margin 15 s), by the caller's clock
        assert 60 < await redis_client.ttl(await mark_bucket(redis_client, k, "m0", 60, 1)) <= 135
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_record_twice_writes_one_event_and_acks(redis_client: Any, key_prefix: str) -> None:
    """The same call again (its token taken) writes nothing: one event, one ack. A
    single-part job without callback leaves no job record and no index: its
    correlation entry and its first event, which describes it for the archiver."""
    record = Script("record")
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 1)
        job = RecordJob(
            job_id="j0", event="submitted", carrier="sim", parts=1, message_ids="ab", error="", ref="r", client="",
            kind="transactional", callback="", to_hash="h" * 32, to_mask="+45******01", encoding="gsm7", corr="ab",
            expect=1, dlr_ids="",
        )
        expire_at = str(int(time.time() * 1000) + 60_000)
        payload = payload_json(RecordBatch(
            retention_until=1, waits={"sim": RecordWait(end_ms="9", expire_at_ms=expire_at, record_ttl="600")},
            jobs=[job], acks=[e[0]],
        ))
        for _ in range(2):
            assert await record(redis_client, *record_call(k, k.jobs, "g", payload, 1000, "t1")) in (1, -1)
        events = await redis_client.xrange(f"{key_prefix}:events")
        assert [f[b"event"] for _i, f in events] == [b"submitted"]
        first = events[0][1]
        assert (first[b"to_hash"], first[b"to_mask"], first[b"encoding"], first[b"kind"]) == (
            b"h" * 32, b"+45******01", b"gsm7", b"transactional")
        # single part without callback: the receipt's fast-path entry (dlr/correlate.lua)
        # in the bucket the payload named (its end 9), with the expiry given, listed twice
        assert await redis_client.hgetall(f"{key_prefix}:dlr:c:sim:9") == {b"ab": b"=1000\x1fab\x1fr\x1fj0"}
        assert 50_000 < await redis_client.pttl(f"{key_prefix}:dlr:c:sim:9") <= 60_000
        assert await redis_client.zrange(f"{key_prefix}:dlr:due", 0, -1, withscores=True) == [(b"9:sim", 9.0)]
        assert await redis_client.zrange(f"{key_prefix}:dlr:idx:sim", 0, -1, withscores=True) == [(b"9", 9.0)]
        assert (await redis_client.xpending(f"{key_prefix}:jobs", "g"))["pending"] == 0
        # no job record, no subject index, the idempotency mark left to claim.lua
        assert not await redis_client.exists(k.job("j0")) and await get_mark(redis_client, k, "j0", 60, 1000) is None
        assert [key async for key in redis_client.scan_iter(match=f"{key_prefix}:subject:*")] == []
        assert 0 < await redis_client.pttl(k.record_memo("t1")) <= 120_000
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_record_writes_a_job_record_only_for_receipts_that_read_it(redis_client: Any, key_prefix: str) -> None:
    """Several parts or a callback: a job record with what the receipts read, living the
    record TTL of its carrier's wait; a job that awaits no receipt: none. The events
    stream is not trimmed by the call (the trimmer does it, behind the archiver)."""
    record = Script("record")
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 600)

        def job(i: int, **kw: Any) -> RecordJob:
            base: dict[str, Any] = dict(
                job_id=f"j{i}", event="submitted", carrier="sim", parts=1, message_ids=f"m{i}", error="", ref="",
                client="", kind="transactional", callback="", to_hash="", to_mask="", encoding="gsm7", corr="",
                expect=1, dlr_ids="",
            )
            base.update(kw)
            return RecordJob(**base)

        jobs = [job(i) for i in range(598)]
        jobs.append(job(598, parts=2, message_ids="a,b", corr=[["a", 1], ["b", 2]], expect=2, ref="r2",
                        client="shop"))
        jobs.append(job(599, message_ids="c", corr=[["c", 1]], callback="http://127.0.0.1/cb"))
        expire_at = str(int(time.time() * 1000) + 60_000)
        payload = payload_json(RecordBatch(
            retention_until=1, waits={"sim": RecordWait(end_ms="9", expire_at_ms=expire_at, record_ttl="600")},
            jobs=jobs, acks=e,
        ))
        assert await record(redis_client, *record_call(k, k.jobs, "g", payload, 1000, "t2")) == 600
        assert await redis_client.xlen(k.events) == 600
        assert await redis_client.exists(k.job("j0")) == 0
        multi = {a.decode(): b.decode() for a, b in (await redis_client.hgetall(k.job("j598"))).items()}
        assert multi == {"parts": "2", "state": "submitted", "carrier": "sim", "message_ids": "a,b",
                         "submitted_ms": "1000", "ref": "r2"}
        assert (await redis_client.hgetall(k.job("j599")))[b"callback"] == b"http://127.0.0.1/cb"
        for j in ("j598", "j599"):
            assert 590 < await redis_client.ttl(k.job(j)) <= 600
        assert (await redis_client.xpending(f"{key_prefix}:jobs", "g"))["pending"] == 0
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_a_script_refuses_another_argument_layout(redis_client: Any, key_prefix: str) -> None:
    """The header's LAYOUT_VERSION against the caller's: a mismatch is an error, not a misread."""
    import pytest
    from redis.exceptions import ResponseError

    from engine.scripts import LAYOUT_VERSION, RECORD_ARGS

    k = Keys(key_prefix)
    keys, args = record_call(k, k.jobs, "g", payload_json(RecordBatch(1, {}, [], [])), 1000, "t")
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


def test_record_and_claim_jobs_keep_the_order_the_pipeline_builds_them_in() -> None:
    """engine/pipeline.py builds RecordJob and ClaimJob positionally (keywords cost
    ~5x as much per job): a field added or moved here must be placed there too."""
    assert RecordJob.__struct_fields__ == (
        "job_id", "event", "carrier", "parts", "message_ids", "error", "ref", "client", "kind", "callback",
        "to_hash", "to_mask", "encoding", "corr", "expect", "dlr_ids",
    )
    assert ClaimJob.__struct_fields__ == ("job_id", "entry_id", "suppression", "to_hash", "ref", "marks_hash")


def _job_fields(job: RecordJob) -> tuple[str, ...]:
    """A RecordJob's fields in RECORD_PACKED's order (what the pipeline packs)."""
    from engine.scripts import RECORD_PACKED

    return tuple(str(getattr(job, name)) for name in RECORD_PACKED)


def test_packed_refuses_what_its_lengths_cannot_say() -> None:
    """A field of 256 bytes or more, or a non-ASCII field (lengths count bytes): refused,
    and nothing of the refused entry stays behind."""
    from engine.scripts import Packed

    p = Packed(3)
    assert p.add(("a", "bb", ""))
    assert not p.add(("x", "y" * 256, "z"))
    assert not p.add(("x", "é", "z"))
    assert p.add(("ccc", "", "d"))
    assert (p.count, p.data, bytes(p.lens)) == (2, "abbcccd", bytes([1, 2, 0, 3, 0, 1]))


_FIELD = st.one_of(
    st.sampled_from(["", "submitted", "failed", "c1", "1", "transactional", "gsm7", "é", "x" * 255, "y" * 256]),
    st.text(max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.tuples(*[_FIELD] * 3), st.tuples(*[_FIELD] * 2), st.booleans()), max_size=12))
def test_packed_add_split_packs_what_add_packs(entries: list[tuple[tuple[str, ...], tuple[str, ...], bool]]) -> None:
    """Packed.add_split(head, same) (the record path's, with its run of equal fields
    kept between calls) gives the same answers and the very bytes Packed.add gives for
    head + same: refusals (non-ASCII, 256 bytes or more, in either part) included."""
    from engine.scripts import Packed

    plain, split = Packed(5), Packed(5)
    last: tuple[str, ...] = ("submitted", "c1")
    for head, same, repeat in entries:
        if repeat:  # the common case: the run equal to the entry before's (a new tuple)
            same = tuple(last)
        last = same
        assert split.add_split(head, same) is plain.add(head + same)
    assert (split.count, split.data, bytes(split.lens)) == (plain.count, plain.data, bytes(plain.lens))
    both = Packed(5)
    both.extend(split)
    assert (both.data, bytes(both.lens)) == (plain.data, bytes(plain.lens))


async def test_record_packed_jobs_write_what_the_json_form_writes(redis_client: Any, key_prefix: str) -> None:
    """The common job packed (engine/scripts.py Packed) gives the same event, correlation
    entry and ack as the same job in the JSON payload; a batch may mix both forms."""
    from engine.scripts import RECORD_PACKED, Packed

    record = Script("record")
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 4)

        def job(i: int, **kw: Any) -> RecordJob:
            base: dict[str, Any] = dict(
                job_id=f"j{i}", event="submitted", carrier="sim", parts=1, message_ids=f"m{i}", error="",
                ref=f"r{i}", client="shop", kind="transactional", callback="", to_hash="h" * 64,
                to_mask="+45******01", encoding="gsm7", corr=f"n{i}", expect=1, dlr_ids="",
            )
            base.update(kw)
            return RecordJob(**base)

        as_json = [job(0), job(1, event="failed", error="0x00000045", corr="")]
        as_packed = [job(2), job(3, event="failed", error="0x00000045", corr="")]
        packed = Packed(len(RECORD_PACKED))
        for j in as_packed:
            assert packed.add(_job_fields(j))
        expire_at = str(int(time.time() * 1000) + 60_000)
        payload = payload_json(RecordBatch(
            retention_until=1, waits={"sim": RecordWait(end_ms="9", expire_at_ms=expire_at, record_ttl="600")},
            jobs=as_json, acks=e,
        ))
        assert await record(redis_client, *record_call(k, k.jobs, "g", payload, 1000, "t3", packed)) == 4
        events = {f[b"id"]: f for _i, f in await redis_client.xrange(k.events)}
        assert len(events) == 4
        for a, b in ((b"j0", b"j2"), (b"j1", b"j3")):  # the same fields, in the same order
            fa, fb = events[a], events[b]
            assert list(fa) == list(fb)
            differ = {name for name in fa if fa[name] != fb[name]}
            assert differ <= {b"id", b"ref", b"message_ids"}, differ
        bucket = await redis_client.hgetall(f"{key_prefix}:dlr:c:sim:9")
        assert bucket == {b"n0": b"=1000\x1fm0\x1fr0\x1fj0", b"n2": b"=1000\x1fm2\x1fr2\x1fj2"}
        assert (await redis_client.xpending(k.jobs, "g"))["pending"] == 0
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_record_packed_run_of_repeated_fields_follows_every_change(redis_client: Any, key_prefix: str) -> None:
    """record.lua reads a packed job's fields from ``event`` to ``encoding`` as one run and
    splits it only when it differs from the job before's: every change is written, also
    a run of the same characters split differently (client "ab" + kind "c" against "a" +
    "bc") and a run that comes back after another."""
    from engine.scripts import RECORD_PACKED, RECORD_PACKED_SAME, Packed

    assert RECORD_PACKED[RECORD_PACKED_SAME:] == ("event", "carrier", "parts", "error", "client", "kind", "encoding")
    record = Script("record")
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 6)
        runs = [
            dict(client="ab", kind="c"),
            dict(client="ab", kind="c"),  # the same run: not split again
            dict(client="a", kind="bc"),  # the same characters, other lengths
            dict(client="ab", kind="c", event="failed", error="0x00000045"),
            dict(client="ab", kind="c", carrier="sim", encoding="ucs2"),
            dict(client="ab", kind="c"),  # back to the first
        ]
        jobs = [
            RecordJob(
                job_id=f"j{i}", event=str(r.get("event", "submitted")), carrier=str(r.get("carrier", "sim")), parts=1,
                message_ids=f"m{i}", error=str(r.get("error", "")), ref="", client=r["client"], kind=r["kind"],
                callback="", to_hash="h" * 64, to_mask="+45******01", encoding=str(r.get("encoding", "gsm7")),
                corr="", expect=1, dlr_ids="",
            )
            for i, r in enumerate(runs)
        ]
        packed = Packed(len(RECORD_PACKED))
        for j in jobs:
            assert packed.add(_job_fields(j))
        payload = payload_json(RecordBatch(retention_until=1, waits={}, jobs=[], acks=e))
        assert await record(redis_client, *record_call(k, k.jobs, "g", payload, 1000, "t4", packed)) == 6
        events = [f for _i, f in await redis_client.xrange(k.events)]
        assert [f[b"id"].decode() for f in events] == [j.job_id for j in jobs]
        for j, f in zip(jobs, events, strict=True):
            got = {name: f[name.encode()].decode() for name in ("event", "carrier", "parts", "error", "client", "kind",
                                                                 "encoding", "message_ids", "to_hash")}
            assert got == {"event": j.event, "carrier": j.carrier, "parts": "1", "error": j.error, "client": j.client,
                           "kind": j.kind, "encoding": j.encoding, "message_ids": j.message_ids, "to_hash": j.to_hash}
    finally:
        await delete_prefix(redis_client, key_prefix)


async def test_claim_answers_packed_claims_after_the_payloads(redis_client: Any, key_prefix: str) -> None:
    """Transactional claims packed, a marketing one in the payload: one answer per claim,
    the payload's first; a taken mark is reported for a packed claim as for any."""
    from engine.scripts import ClaimPacked

    claim = Script("claim")
    k = Keys(key_prefix)
    try:
        e = await _setup(redis_client, key_prefix, 3)
        await set_mark(redis_client, k, "dup", "s|0-1", 60, 1)  # sent under another entry
        packed = ClaimPacked()
        assert packed.add(("a", e[0], "ra")) and packed.add(("dup", e[1], ""))
        payload = payload_json(ClaimBatch(claims=[ClaimJob("m", e[2], k.suppression("shop"), "h" * 64, "")], dead=[]))
        answers = await claim(redis_client, *claim_call(k, k.jobs, "g", payload, 1, 60, 1000, False, [], packed))
        assert answers == [0, 0, 1]  # m, then a, then dup (acked)
        ms, seq = e[0].split("-")  # the packed claim's mark takes the integer form too (layout 7)
        assert await get_mark(redis_client, k, "a", 60, 1) == f"{ms}{int(seq):06d}".encode()
        assert 60 < await redis_client.ttl(await mark_bucket(redis_client, k, "a", 60, 1)) <= 135
        assert (await redis_client.xpending(k.jobs, "g"))["pending"] == 2  # dup's entry acked
        again = ClaimPacked()
        assert again.add(("a", e[0], "ra"))
        empty = payload_json(ClaimBatch(claims=[], dead=[]))
        assert await claim(redis_client, *claim_call(k, k.jobs, "g", empty, 1, 60, 1000, False, [], again)) == [2]
    finally:
        await delete_prefix(redis_client, key_prefix)
