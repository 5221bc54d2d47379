"""correlate.lua in two steps (privacy hooks, dlr/store.py "Two steps"), against a real Redis:
a plan writes nothing, a commit without edits writes exactly what one apply call writes,
edits land in the events, and a plan whose entries changed meanwhile is refused."""

from __future__ import annotations

from typing import Any

from dlr.store import ReceiptRecord, ReceiptStore
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


async def test_a_plan_writes_nothing_and_its_commit_writes_what_apply_writes(
    redis_client: Any, key_prefix: str
) -> None:
    r = redis_client
    a, b = f"{key_prefix}:a", f"{key_prefix}:b"
    await stage(r, a)
    await stage(r, b)
    applied = await ReceiptStore(r, a).apply("acme", BATCH)

    store = ReceiptStore(r, b)
    before = await snapshot(r, b)
    plan = await store.plan("acme", BATCH)
    assert await snapshot(r, b) == before  # nothing written
    # receipts in argument order (grouped): m1 enroute, f2 enroute, m1, s1, f1, nothing, m2
    assert plan.statuses == "aaaafua"
    # the events it would write, in order
    assert [(e["id"], e["event"]) for e in plan.events] == [
        ("multi", "enroute"), ("f2", "enroute"), ("single", "delivered"), ("f1", "delivered"),
        ("multi", "undeliverable"),
    ]
    committed = await store.commit("acme", plan, [])
    assert committed is not None
    assert await events(r, b) == await events(r, a)
    assert [e.fields for e in committed.finals] == [e.fields for e in applied.finals]
    assert [e.fields for e in committed.intermediates] == [e.fields for e in applied.intermediates]
    assert committed.fast_job_ids == applied.fast_job_ids and committed.unmatched == applied.unmatched
    planned = [{k: v for k, v in e.items()} for e in plan.events]
    assert planned == await events(r, b)  # the plan showed exactly what was written
    # the same keys and values, but the kept reply (under each call's own token)
    after_a = {k.replace(b"P:a", b"P", 1): v for k, v in (await snapshot(r, a)).items()}
    after_b = {k.replace(b"P:b", b"P", 1): v for k, v in (await snapshot(r, b)).items()}
    memo_a = [v for k, v in after_a.items() if k.startswith(b"P:dlr:call:")]
    memo_b = [v for k, v in after_b.items() if k.startswith(b"P:dlr:call:")]
    assert len(memo_a) == 1 and memo_a == memo_b
    assert {k: v for k, v in after_a.items() if not k.startswith(b"P:dlr:call:")} == {
        k: v for k, v in after_b.items() if not k.startswith(b"P:dlr:call:")
    }


async def test_edits_and_the_deadline_are_written_and_forwarded(redis_client: Any, key_prefix: str) -> None:
    r = redis_client
    await submit_job(r, key_prefix, "j", "acme", ["x1"])
    store = ReceiptStore(r, key_prefix)
    plan = await store.plan("acme", [rec("x1")])
    assert [e["ref"] for e in plan.events] == ["ref-1"]
    result = await store.commit("acme", plan, [(1, [("retention_until", "1900000000"), ("ref", "R-EDIT"),
                                                     ("client", "c9")])])
    assert result is not None
    written = await events(r, key_prefix)
    assert written == [{
        "id": "j", "ref": "R-EDIT", "event": "delivered", "carrier": "acme", "parts": "1", "message_ids": "x1",
        "error": "", "ts": str(SUBMITTED_MS + 5000), "retention_until": "1900000000", "client": "c9",
    }]
    assert result.finals[0].fields == written[0]  # the webhook gets the edited event


async def test_a_plan_whose_entries_changed_is_refused(redis_client: Any, key_prefix: str) -> None:
    r = redis_client
    await submit_job(r, key_prefix, "j", "acme", ["p1", "p2"])
    store = ReceiptStore(r, key_prefix)
    plan = await store.plan("acme", [rec("p2")])
    assert plan.events == []  # the first of two parts: no event yet, but writes
    assert plan.writes > 0
    # another engine applies the other part meanwhile
    await ReceiptStore(r, key_prefix).apply("acme", [rec("p1", "undeliverable")])
    before = await snapshot(r, key_prefix)
    assert await store.commit("acme", plan, []) is None
    assert await snapshot(r, key_prefix) == before  # refused: nothing written
    again = await store.plan("acme", [rec("p2")])
    assert [e["event"] for e in again.events] == ["undeliverable"]
    assert await store.commit("acme", again, []) is not None
    assert [e["event"] for e in await events(r, key_prefix)] == ["undeliverable"]


async def test_a_repeated_plan_after_a_commit_gets_its_reply(redis_client: Any, key_prefix: str) -> None:
    """A commit whose reply was lost: planning the same receipts again gives the
    committed reply (kept under the plan's token), so the callbacks still go out."""
    r = redis_client
    await submit_job(r, key_prefix, "j", "acme", ["x1"])
    store = ReceiptStore(r, key_prefix)
    batch: list[ReceiptRecord] = [rec("x1")]
    first = await store.commit("acme", await store.plan("acme", batch), [(1, [("ref", "E")])])
    assert first is not None
    again = await store.plan("acme", batch)
    assert again.done and again.result is not None
    assert [e.fields for e in again.result.finals] == [e.fields for e in first.finals]
    assert len(await events(r, key_prefix)) == 1


async def test_the_sweep_in_two_steps(redis_client: Any, key_prefix: str) -> None:
    r = redis_client
    a, b = f"{key_prefix}:a", f"{key_prefix}:b"
    for p in (a, b):
        await stage(r, p)
        await ReceiptStore(r, p).apply("acme", [rec("m1"), rec("f2", "enroute")])
    expected = await ReceiptStore(r, a).expire_overdue(STAGED_END_MS)
    store = ReceiptStore(r, b)
    before = await snapshot(r, b)
    plan = await store.plan_expire(STAGED_END_MS)
    assert await snapshot(r, b) == before
    assert sorted(e["id"] for e in plan.events) == ["f1", "f2", "multi", "single"]
    assert all(e["event"] == "unknown" for e in plan.events)
    done = await store.commit_expire(plan, [])
    assert done is not None
    assert [e.fields for e in done[0]] == [e.fields for e in expected[0]] and done[1] == expected[1]
    assert await events(r, b) == await events(r, a)
    assert not await r.zcard(Keys(b).dlr_due)


async def test_an_entry_recorded_after_the_plan_is_left_for_a_retry(redis_client: Any, key_prefix: str) -> None:
    """A receipt that beat its submit's record: unmatched in the plan; its entry recorded
    before the commit is not written unseen by the hooks, nor does it make the commit
    refused: it comes back unmatched, and its retry applies it."""
    r = redis_client
    await put_entry(r, key_prefix, "acme", "f1", f"={SUBMITTED_MS}\x1fF1\x1fr-1\x1ff1")
    store = ReceiptStore(r, key_prefix)
    plan = await store.plan("acme", [rec("f1"), rec("late")])
    assert plan.statuses == "fu" and [e["id"] for e in plan.events] == ["f1"]
    await put_entry(r, key_prefix, "acme", "late", f"={SUBMITTED_MS}\x1fL\x1fr-2\x1flate-job")
    result = await store.commit("acme", plan, [])
    assert result is not None and result.unmatched == [rec("late")]
    assert [e["id"] for e in await events(r, key_prefix)] == ["f1"]
    again = await store.plan("acme", result.unmatched)
    assert [e["id"] for e in again.events] == ["late-job"]
    assert await store.commit("acme", again, []) is not None
    assert [e["id"] for e in await events(r, key_prefix)] == ["f1", "late-job"]


async def test_a_value_holding_us_is_shown_whole(redis_client: Any, key_prefix: str) -> None:
    """Planned events travel as one US-joined string each; a value holding US (a ref of
    a job with a callback may) makes the plan ask for them as lists instead."""
    r = redis_client
    await submit_job(r, key_prefix, "j", "acme", ["x1"], ref="a\x1fb")
    store = ReceiptStore(r, key_prefix)
    plan = await store.plan("acme", [rec("x1")])
    assert [e["ref"] for e in plan.events] == ["a\x1fb"]
    result = await store.commit("acme", plan, [], common=[("retention_until", "1900000000")])
    assert result is not None
    assert [(e["ref"], e["retention_until"]) for e in await events(r, key_prefix)] == [("a\x1fb", "1900000000")]
