"""`sendgate erase` end to end: records of one number hidden or deleted, audited without the number."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from connectors.simulator import SimulatorConfig
from engine.erase import erase_main, purge_main
from privacy_hooks import keyed_hash
from tests.engine.harness import delete_prefix, push, running, wait_events


@pytest.mark.parametrize("immediate", [False, True])
async def test_erase_by_number(redis_url: str, key_prefix: str, immediate: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """The subject's jobs are found in the history store (no index in Redis): their rows
    hidden and re-stamped (policy) or deleted (--now, with their events in Redis); raw
    payloads still in the lane go in both modes; the other subject is untouched."""
    from engine.history.cli import store_for

    run = uuid.uuid4().hex[:6]
    # numbers of this run only: the tests' history store is shared
    middle = f"{uuid.uuid4().int % 100_000:05d}"
    subject, other = f"+4504{middle}01", f"+4504{middle}02"
    jobs = [
        {"id": f"{run}-a", "to": subject, "text": "one", "client": "shop", "ref": f"{run}-ref"},
        {"id": f"{run}-b", "to": subject, "text": "two"},
        {"id": f"{run}-c", "to": other, "text": "three"},
    ]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=True)) as (engine, _s, _p, redis):
        secret = engine.settings.privacy.hash_secret.encode()
        subject_hash, other_hash = keyed_hash(secret, subject), keyed_hash(secret, other)
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        # the first event describes the job (the history row's number hash and mask)
        first = events[f"{run}-a"][0]
        assert (first["to_hash"], first["to_mask"], first["client"]) == (subject_hash, "+45*******01", "shop")
        assert not await redis.exists(f"{key_prefix}:job:{run}-a")  # single part: no job record
        assert engine.archiver is not None and await engine.archiver.wait_caught_up(10.0)
        rc = await erase_main(engine.settings, to=subject, client=None, now=immediate)
        assert rc == 0
        out = capsys.readouterr().out
        assert subject[1:] not in out and "2 record(s)" in out
        store = store_for(engine.settings)
        try:
            await store.migrate()
            assert await store.find(to_hash=subject_hash) == []  # gone from every reader at once
            rows = await store.find(to_hash=subject_hash, hidden=True)
            # in both modes the subject's events are gone from Redis (they hold its ref and mask)
            left = {f[b"id"] for _i, f in await redis.xrange(f"{key_prefix}:events")}
            assert left == {f"{run}-c".encode()}
            if immediate:
                assert rows == []
            else:
                assert {r.job_id for r in rows} == {f"{run}-a", f"{run}-b"}
                now = time.time()
                for r in rows:
                    assert r.ref == "" and r.to_mask == "" and r.state == "delivered"
                    assert now + 120 * 86400 - 60 <= r.retention_until <= now + 120 * 86400 + 1
            [kept] = await store.find(to_hash=other_hash)
            assert kept.job_id == f"{run}-c" and kept.to_mask == "+45*******02"
        finally:
            await store.close()
        # Raw payloads of the subject are gone from the lane; the other one stays.
        remaining = [f[b"to"] for _id, f in await redis.xrange(f"{key_prefix}:jobs")]
        assert remaining == [other.encode()]
        audit = await redis.xrange(f"{key_prefix}:audit")
        assert len(audit) == 1 and subject[1:].encode() not in b"".join(b"".join(kv) for kv in audit[0][1].items())


async def test_events_not_archived_yet_are_erased_too(redis_url: str, key_prefix: str, tmp_path: Any) -> None:
    """A subject whose events the archiver has not read yet: by policy their rows are
    written hidden before the events leave Redis (an archiver reading them later changes
    nothing visible); a later --now finds the hidden rows and deletes them."""
    from redis.asyncio import Redis

    from engine.config import settings_from_mapping
    from engine.erase import erase_subject_everywhere
    from engine.history import open_store
    from privacy_hooks.erasure import client_subject
    from tests.history.events import event_fields

    settings = settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": key_prefix}, "privacy": {"hash_secret": "s"},
         "history": {"url": f"sqlite:///{tmp_path / 'h.db'}"}}, env={})
    redis = Redis.from_url(redis_url)
    store = open_store(settings.history.url)
    events = f"{key_prefix}:events"
    t = int(time.time() * 1000)
    try:
        await redis.xadd(events, event_fields("u1", "submitted", t - 10, first=True, ref="R1", client="shop"))
        await redis.xadd(events, event_fields("u2", "submitted", t - 5, first=True, ref="R2", client="else"))
        await redis.xadd(events, event_fields("u1", "delivered", t, ref="R1"))
        result = await erase_subject_everywhere(redis, settings, client_subject("shop"), immediate=False, store=store)
        assert (result.jobs, result.events, result.history_rows) == (1, 2, 1)
        assert [f[b"id"] for _i, f in await redis.xrange(events)] == [b"u2"]
        assert await store.get("u1") is None  # hidden from readers at once
        [row] = await store.find(client="shop", hidden=True)
        assert (row.job_id, row.ref, row.to_mask, row.final_state) == ("u1", "", "", "delivered")
        # the archiver reading the same events later fills nothing back in
        from engine.history import deltas_from_entries
        await store.write(deltas_from_entries([(b"1-0", event_fields("u1", "submitted", t - 10, first=True,
                                                                      ref="R1", client="shop"))]), t)
        [row] = await store.find(client="shop", hidden=True)
        assert (row.ref, row.to_mask) == ("", "")
        now = await erase_subject_everywhere(redis, settings, client_subject("shop"), immediate=True, store=store)
        assert now.history_rows == 1 and await store.find(client="shop", hidden=True) == []
        assert [r.job_id for r in await store.find(client="else", hidden=True)] == []  # never archived: not ours
    finally:
        await store.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_purge_trims_old_entries(redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    from redis.asyncio import Redis

    from engine.config import settings_from_mapping

    settings = settings_from_mapping({"redis": {"url": redis_url, "prefix": key_prefix}}, env={})
    redis = Redis.from_url(redis_url)
    try:
        await redis.xadd(f"{key_prefix}:events", {"id": "old"}, id="1000-0")
        await redis.xadd(f"{key_prefix}:events", {"id": "new"})
        assert await purge_main(settings) == 0
        ids = [f[b"id"] for _i, f in await redis.xrange(f"{key_prefix}:events")]
        assert ids == [b"new"]
        assert "1 entry removed (older than 72 h" in capsys.readouterr().out
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_receipt_events_staged_for_the_privacy_hooks_are_erased(
    redis_url: str, key_prefix: str, tmp_path: Any
) -> None:
    """A subject's receipt event staged between the two steps (custom privacy hooks, not
    published yet) is dropped by the erasure, in both modes: it is never published."""
    from redis.asyncio import Redis

    from dlr.store import ReceiptStore
    from engine.config import settings_from_mapping
    from engine.erase import erase_subject_everywhere
    from engine.history import open_store
    from engine.keys import Keys
    from privacy_hooks.erasure import client_subject
    from tests.correlation import SUBMITTED_MS, put_entry
    from tests.dlr.test_store import rec
    from tests.history.events import event_fields

    settings = settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": key_prefix}, "privacy": {"hash_secret": "s"},
         "history": {"url": f"sqlite:///{tmp_path / 'h.db'}"}}, env={})
    redis = Redis.from_url(redis_url)
    store = open_store(settings.history.url)
    events = f"{key_prefix}:events"
    t = int(time.time() * 1000)
    try:
        await redis.xadd(events, event_fields("u1", "submitted", t - 10, first=True, ref="R1", client="shop"))
        await redis.xadd(events, event_fields("u2", "submitted", t - 5, first=True, ref="R2", client="else"))
        await put_entry(redis, key_prefix, "acme", "m1", f"={SUBMITTED_MS}\x1fM1\x1fR1\x1fu1")
        await put_entry(redis, key_prefix, "acme", "m2", f"={SUBMITTED_MS}\x1fM2\x1fR2\x1fu2")
        receipts = ReceiptStore(redis, key_prefix)
        _counts, batch = await receipts.stage("acme", [rec("m1"), rec("m2")])  # the engine stops here
        assert batch is not None
        await erase_subject_everywhere(redis, settings, client_subject("shop"), immediate=False, store=store)
        [left] = await receipts.staged_batches()
        assert [f[1] for f in left.events] == ["u2"]  # the subject's staged event is gone, the other kept
        assert b"R1" not in (await redis.hget(Keys(key_prefix).dlr_staged, left.field) or b"")
        audit = await redis.xrange(f"{key_prefix}:audit")
        assert audit[-1][1][b"staged_receipt_events"] == b"1"
        assert await receipts.publish_staged(left) == 1
        assert [f[b"id"] for _i, f in await redis.xrange(events)] == [b"u2", b"u2"]
    finally:
        await delete_prefix(redis, key_prefix)
        await store.close()
        await redis.aclose()
