"""``erase --now`` racing an archiver batch in flight (docs/contract.md, Known gaps 10: closed).

The archiver reads a batch holding the subject's events; the erasure runs while
the batch is in the archiver's hands (its events deleted from Redis, its rows
deleted from the store); then the archiver commits. The erasure ledger must make
that commit bring nothing of the subject back — PostgreSQL and SQLite, real Redis.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from engine.config import settings_from_mapping
from engine.erase import erase_subject_everywhere
from engine.history import HistoryStore
from engine.history.archiver import Archiver
from privacy_hooks.masking import keyed_hash
from tests.history.events import SECRET, event_fields

SUBJECT, OTHER = "+4503111222", "+4503333444"


async def _seed(redis: Redis, events: str, t: int) -> None:
    pipe = redis.pipeline(transaction=False)
    for i in range(50):
        number = SUBJECT if i % 5 == 0 else OTHER
        pipe.xadd(events, event_fields(f"race-{i}", "submitted", t + i, to=number, first=True, client="c1"))  # type: ignore[arg-type]
        pipe.xadd(events, event_fields(f"race-{i}", "delivered", t + 100 + i))  # type: ignore[arg-type]
    await pipe.execute()


async def test_a_batch_read_before_erase_now_brings_nothing_back(
    redis_client: Any, key_prefix: str, store: HistoryStore, history_url: str
) -> None:
    redis: Redis = redis_client
    settings = settings_from_mapping(
        {"redis": {"prefix": key_prefix}, "privacy": {"hash_secret": SECRET}, "history": {"url": history_url},
         "carriers": [{"name": "acme", "port": 1, "system_id": "t", "password": "p", "routes": [""]}]},
        env={},
    )
    events = f"{key_prefix}:events"
    t = int(time.time() * 1000)
    # an earlier job of the subject, archived before: its row is in the store already
    await redis.xadd(events, event_fields("race-old", "submitted", t - 5000, to=SUBJECT, first=True))  # type: ignore[arg-type]
    archiver = Archiver(redis, store, [events], consumer="racer", batch_size=10_000, block_ms=50, read_ahead=False)
    await archiver.ensure_groups()
    assert await archiver.archive_once() + await archiver.archive_once() == 1  # (its own pending first: none)
    await _seed(redis, events, t)
    got = await archiver._read(None)  # the batch is in the archiver's hands ...
    assert got is not None
    batch, deltas, taken = got
    assert taken == 100
    subject_hash = keyed_hash(SECRET, SUBJECT)
    result = await erase_subject_everywhere(redis, settings, subject_hash, immediate=True, store=store)
    assert result.history_rows == 1 and result.jobs == 11
    # ... and is committed after the erasure
    assert await archiver._commit(batch, deltas) == 100
    assert await store.find(to_hash=subject_hash, hidden=True, limit=1000) == []
    for i in range(0, 50, 5):  # not even a row without its first event (a receipt's)
        assert await store.get(f"race-{i}") is None
    assert await store.get("race-old") is None
    others = await store.find(to_hash=keyed_hash(SECRET, OTHER), limit=1000)
    assert len(others) == 40 and all(r.final_state == "delivered" for r in others)
    # a job of the same subject sent after the erasure is archived as usual
    await redis.xadd(events, event_fields("race-new", "submitted", t + 1000, to=SUBJECT, first=True))  # type: ignore[arg-type]
    assert await archiver.archive_once() == 1
    assert [r.job_id for r in await store.find(to_hash=subject_hash, limit=10)] == ["race-new"]


async def test_an_inbound_batch_read_before_erase_now_brings_nothing_back(
    redis_client: Any, key_prefix: str, store: HistoryStore, history_url: str
) -> None:
    """The same race for inbound messages: the inbound archiver holds a batch with the
    subject's messages while the erasure runs; its commit afterwards writes none of them
    (the inbound erasure ledger, migration 0007)."""
    from engine.history.inbound import inbound_table
    from engine.history.inbound_archiver import InboundArchiver
    from privacy_hooks import KeyedHasher

    redis: Redis = redis_client
    settings = settings_from_mapping(
        {"redis": {"prefix": key_prefix}, "privacy": {"hash_secret": SECRET}, "history": {"url": history_url},
         "carriers": [{"name": "acme", "port": 1, "system_id": "t", "password": "p", "routes": [""]}]},
        env={},
    )
    stream = f"{key_prefix}:inbound"
    hasher = KeyedHasher(SECRET)
    now = int(time.time() * 1000)

    async def push(count: int, tag: str) -> None:
        pipe = redis.pipeline(transaction=False)
        for i in range(count):
            number = SUBJECT if i % 5 == 0 else OTHER
            pipe.xadd(stream, {  # type: ignore[arg-type]
                "from": number, "to": "1234", "text": f"{tag} {i}", "carrier": "acme", "client": "c1",
                "parts": "1", "partial": "0", "ts": str(now + i), "from_hash": hasher(number),
                "retention_until": str(now // 1000 + 86400),
            })
        await pipe.execute()

    archiver = InboundArchiver(redis, store, [stream], group="archiver-inbound", hash_number=hasher,
                               retention_s=86400, batch_size=10_000, block_ms=50, read_ahead=False)
    await archiver.ensure_groups()
    await push(5, "before")  # archived before the erasure: one of the subject's
    assert await archiver.archive_once() + await archiver.archive_once() == 5  # (its own pending first: none)
    await push(50, "race")
    got = await archiver._read(None)  # the batch is in the archiver's hands ...
    assert got is not None
    batch, folded, taken = got
    assert taken == 50
    subject_hash = hasher(SUBJECT)
    result = await erase_subject_everywhere(redis, settings, subject_hash, immediate=True, store=store)
    assert result.inbound_rows == 1
    # ... and is committed after the erasure
    assert await archiver._commit(batch, folded) == 50
    table = inbound_table(store)
    assert await table.find(from_hash=subject_hash, hidden=True, limit=1000) == []
    assert len(await table.find(from_hash=hasher(OTHER), limit=1000)) == 4 + 40
    # a message from the subject after the erasure is archived as usual
    await push(1, "after")
    assert await archiver.archive_once() == 1
    assert len(await table.find(from_hash=subject_hash, limit=10)) == 1
