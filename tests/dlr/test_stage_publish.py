"""Stage-then-publish (privacy hooks, dlr/store.py "Stage, then publish"), against a real Redis:
a stage call does one apply's work but keeps its events in ``P:dlr:staged``; the
publish call writes them, with edits, exactly once; erasure drops a staged subject."""

from __future__ import annotations

from typing import Any

import pytest

from dlr.store import ReceiptStore, StagedBatch, pack_staged, parse_staged
from engine.keys import Keys
from tests.correlation import STAGED_END_MS, SUBMITTED_MS, put_entry
from tests.dlr.test_store import events, rec, submit_job


async def snapshot(r: Any, prefix: str) -> dict[bytes, Any]:
    """Every key under the prefix with its type and value (a stream: its entries' fields)."""
    out: dict[bytes, Any] = {}
    async for key in r.scan_iter(match=f"{prefix}:*", count=1000):
        kind = (await r.type(key)).decode()
        name = key.replace(prefix.encode(), b"P", 1)
        if kind == "hash":
            out[name] = await r.hgetall(key)
        elif kind == "stream":
            out[name] = [fields for _, fields in await r.xrange(key)]
        elif kind == "zset":
            out[name] = await r.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[name] = await r.smembers(key)
        else:
            out[name] = await r.get(key)
    return out


async def stage(r: Any, prefix: str) -> None:
    """General-form jobs (one with two parts, with callbacks), fast-form entries."""
    await submit_job(r, prefix, "multi", "acme", ["m1", "m2"])
    await submit_job(r, prefix, "single", "acme", ["s1"], callback="")
    await put_entry(r, prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
    await put_entry(r, prefix, "acme", "f2", f"={SUBMITTED_MS}\x1fF2\x1fr-2\x1ff2")


BATCH = [
    rec("m1", "enroute"), rec("m1", "delivered"), rec("m2", "undeliverable", "011"),
    rec("s1"), rec("f1"), rec("f2", "enroute"), rec("nothing"),
]


def _without(snap: dict[bytes, Any], *names: bytes) -> dict[bytes, Any]:
    return {k: v for k, v in snap.items() if k not in names and not k.startswith(b"P:dlr:call:")}


async def test_a_stage_writes_what_apply_writes_but_the_events_and_publish_writes_them_once(
    redis_client: Any, key_prefix: str
) -> None:
    r = redis_client
    a, b = f"{key_prefix}:a", f"{key_prefix}:b"
    await stage(r, a)
    await stage(r, b)
    applied = await ReceiptStore(r, a).apply("acme", BATCH, now_ms=SUBMITTED_MS + 5000)

    store = ReceiptStore(r, b)
    counts, batch = await store.stage("acme", BATCH, now_ms=SUBMITTED_MS + 5000)
    assert batch is not None and await r.hlen(Keys(b).dlr_staged) == 1
    assert await events(r, b) == []  # nothing published yet
    # everything else is what one apply call wrote
    after_a = {k.replace(b"P:a", b"P", 1): v for k, v in (await snapshot(r, a)).items()}
    after_b = {k.replace(b"P:b", b"P", 1): v for k, v in (await snapshot(r, b)).items()}
    assert _without(after_a, b"P:events") == _without(after_b, b"P:dlr:staged")
    assert counts.applied == applied.applied and counts.unmatched == applied.unmatched
    assert counts.finals == [] and counts.fast_job_ids == []  # no event before the publish
    # multi enroute, f2 enroute (fast form), single delivered, f1 (a fast-path final), multi undeliverable
    assert batch.kinds == "iifFf"
    # the staged events, in order, are the ones apply wrote
    staged = [dict(zip(f[0::2], f[1::2], strict=True)) for f in batch.events]
    assert staged == await events(r, a)
    # the hooks' dicts, made straight from the staged columns: the same fields, in the same order
    made = batch.event_dicts(dict)
    assert [list(d.items()) for d in made] == [list(zip(f[0::2], f[1::2], strict=True)) for f in batch.events]
    assert batch.callbacks[3] == "" and batch.submitted[3] == ""  # the fast-path final has neither

    assert await store.publish_staged(batch, [(2, [("ref", "R-EDIT")])], [("retention_until", "1900000000")]) == 5
    written = await events(r, b)
    assert [e["retention_until"] for e in written] == ["1900000000"] * 5
    assert written[1]["ref"] == "R-EDIT"
    assert [{k: v for k, v in e.items() if k != "retention_until"} for e in written] == [
        {**e, "ref": "R-EDIT"} if i == 1 else e for i, e in enumerate(await events(r, a))
    ]
    assert await r.exists(Keys(b).dlr_staged) == 0
    # published once: a second publish (another engine recovering it) finds nothing
    assert await store.publish_staged(batch) == 0
    assert len(await events(r, b)) == 5
    result = store.staged_result(batch, [(2, [("ref", "R-EDIT")])], [("retention_until", "1900000000")])
    assert sorted(e.job_id for e in result.finals) == sorted(e.job_id for e in applied.finals)
    assert [e.job_id for e in result.intermediates] == [e.job_id for e in applied.intermediates]
    # a job with a callback gets its event as written (the deadline included)
    by_id = {e["id"]: e for e in written if e["event"] != "enroute"}
    for ev in result.finals:
        if ev.callback:
            assert ev.fields == by_id[ev.job_id]


async def test_a_stage_sent_again_after_a_lost_reply_gets_its_batch(redis_client: Any, key_prefix: str) -> None:
    r = redis_client
    await submit_job(r, key_prefix, "j", "acme", ["x1"])
    store = ReceiptStore(r, key_prefix)
    _counts, first = await store.stage("acme", [rec("x1")])
    assert first is not None
    again_counts, again = await store.stage("acme", [rec("x1")])  # the same call: the same token
    assert again is not None and again.field == first.field and again.events == first.events
    assert again_counts.duplicates == 1
    assert await store.publish_staged(again) == 1
    assert await store.publish_staged(first) == 0
    assert [e["id"] for e in await events(r, key_prefix)] == ["j"]


async def test_the_sweep_stages_its_unknown_events(redis_client: Any, key_prefix: str) -> None:
    r = redis_client
    await put_entry(r, key_prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
    await submit_job(r, key_prefix, "multi", "acme", ["m1", "m2"])
    store = ReceiptStore(r, key_prefix)
    batch, more = await store.stage_expire(STAGED_END_MS)
    assert batch is not None and not more
    assert await events(r, key_prefix) == [] and await r.zcard(Keys(key_prefix).dlr_due) == 0
    assert sorted(dict(zip(f[0::2], f[1::2], strict=True))["id"] for f in batch.events) == ["f1", "multi"]
    assert await store.publish_staged(batch) == 2
    assert sorted((e["id"], e["event"], e["error"]) for e in await events(r, key_prefix)) == [
        ("f1", "unknown", "dlr_timeout"), ("multi", "unknown", "dlr_timeout"),
    ]


async def test_erasure_drops_a_staged_subject_and_a_publish_of_the_old_value_is_refused(
    redis_client: Any, key_prefix: str
) -> None:
    r = redis_client
    await put_entry(r, key_prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
    await put_entry(r, key_prefix, "acme", "f2", f"={SUBMITTED_MS}\x1fF2\x1fsecret-ref\x1ff2")
    store = ReceiptStore(r, key_prefix)
    _c, batch = await store.stage("acme", [rec("f1"), rec("f2")])
    assert batch is not None
    assert await store.erase_staged(["f2"]) == 1
    assert await store.publish_staged(batch) == -1  # changed since read: read again
    [again] = await store.staged_batches()
    assert [dict(zip(f[0::2], f[1::2], strict=True))["id"] for f in again.events] == ["f1"]
    assert b"secret-ref" not in (await r.hget(Keys(key_prefix).dlr_staged, again.field) or b"")
    assert await store.publish_staged(again) == 1
    assert [e["id"] for e in await events(r, key_prefix)] == ["f1"]
    # a batch whose every event is erased is gone
    await put_entry(r, key_prefix, "acme", "f3", f"={SUBMITTED_MS}\x1fF3\x1fr-3\x1ff3")
    _c, third = await store.stage("acme", [rec("f3")])
    assert third is not None and await store.erase_staged(["f3"]) == 1
    assert await r.exists(Keys(key_prefix).dlr_staged) == 0
    assert await store.publish_staged(third) == 0


async def test_a_job_id_that_is_not_utf8_is_staged_and_published_as_is(redis_client: Any, key_prefix: str) -> None:
    r = redis_client
    bucket = Keys(key_prefix).correlation_bucket("acme", STAGED_END_MS)
    await put_entry(r, key_prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
    await r.hset(bucket, "f9", f"={SUBMITTED_MS}\x1fF9\x1fr-9\x1f".encode() + b"job-\xff\x1f")
    store = ReceiptStore(r, key_prefix)
    _c, batch = await store.stage("acme", [rec("f1"), rec("f9")])
    assert batch is not None
    assert [f[1] for f in batch.events] == ["f1", "job-\ufffd\x1f"]  # shown to the hooks decoded leniently
    assert await store.publish_staged(batch, (), [("retention_until", "1")]) == 2
    assert [fields[b"id"] for _id, fields in await r.xrange(Keys(key_prefix).events)] == [b"f1", b"job-\xff\x1f"]


def _fast(i: int, event: str = "delivered", ts: str = "1") -> list[str]:
    return ["id", f"f{i}", "ref", f"r{i}", "event", event, "carrier", "acme", "parts", "1",
            "message_ids", f"m{i}", "error", "", "ts", ts]


def test_staged_columns_make_the_same_events_as_field_lists() -> None:
    """A staged value as columns (StagedBatch): its dicts, field lists, callbacks and
    submit times are those of the events it was made of, in order, whatever the mix of
    kinds and runs; packed and parsed again it is the same batch."""
    other = ["id", "g", "ref", "", "event", "enroute", "carrier", "acme", "parts", "2", "message_ids", "a,b",
             "error", "", "ts", "1"]
    events = [_fast(0), _fast(1), other, _fast(2, "undeliverable"), _fast(3, "undeliverable", "2"), _fast(4)]
    kinds = "FFiFFF"
    callbacks = ["", "", "https://cb.example/x", "", "", ""]
    submitted = ["", "", "1000", "", "", ""]
    batch = StagedBatch.of_events("t", 0, 5, kinds, callbacks, submitted, events)
    assert [r[4] for r in batch.runs] == [2, 1, 1, 1]  # runs split by event, ts and the other event
    assert batch.events == events and batch.callbacks == callbacks and batch.submitted == submitted
    expected = [list(zip(f[0::2], f[1::2], strict=True)) for f in events]
    assert [list(d.items()) for d in batch.event_dicts(dict)] == expected
    again = parse_staged("t", pack_staged(batch))
    assert again.events == events and again.kinds == kinds and again.callbacks == callbacks
    assert [list(d.items()) for d in again.event_dicts(dict)] == expected
    only_fast = StagedBatch.of_events("t", 0, 5, "FFF", [""] * 3, [""] * 3, [_fast(0), _fast(1, ts="9"), _fast(2)])
    assert [list(d.items()) for d in only_fast.event_dicts(dict)] == [
        list(zip(f[0::2], f[1::2], strict=True)) for f in (_fast(0), _fast(1, ts="9"), _fast(2))
    ]


def test_staged_columns_that_do_not_match_their_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="columns"):
        StagedBatch("t", 0, 5, "FF", [], [], [], ["a"], ["r"], ["m"], [("delivered", "", "1", "acme", 1)])
    with pytest.raises(ValueError, match="columns"):  # a run longer than the fast-path finals
        StagedBatch("t", 0, 5, "F", [], [], [], ["a"], ["r"], ["m"], [("delivered", "", "1", "acme", 2)])
    with pytest.raises(ValueError, match="columns"):  # an event not F without its field list
        StagedBatch("t", 0, 5, "i", [""], [""], [], [], [], [], [])
