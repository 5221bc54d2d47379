"""Inbound messages through the whole engine into the history store, and the data
subject's rights over them: the simulator sends mobile-originated messages over TCP,
the engine reassembles and publishes them, its inbound archiver writes each once
(SQLite and a private PostgreSQL); export lists the rows and the parts still waiting
for reassembly; erasure removes both, and a part that arrives after it is never
published."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig
from engine.erase import erase_main
from engine.history import open_store
from engine.history.inbound import inbound_table
from engine.keys import Keys
from engine.subject_access import export_main
from privacy_hooks import KeyedHasher
from tests.engine.harness import running
from tests.history.test_archiver import until

pytestmark = pytest.mark.slow

SHOP_CODE = "1234"
CLIENTS = [{"id": "shop", "numbers": [SHOP_CODE, "+4570000000"]}]
LONG_GSM = "Hello from a phone, this message is long enough to need three parts [with escapes] {and more}. " * 4
LONG_UCS2 = "Привет! Это длинное сообщение из телефона, которое не помещается в одну часть. " * 2


def _phone() -> str:
    return f"4506{uuid.uuid4().int % 1_000_000:06d}"


async def _stream(redis: Redis, prefix: str) -> dict[str, dict[str, str]]:
    return {eid.decode(): {k.decode(): v.decode() for k, v in f.items()}
            for eid, f in await redis.xrange(Keys(prefix).inbound)}


async def _rows(history_url: str, **by: str) -> list[Any]:
    store = open_store(history_url)
    try:
        await store.migrate()
        return await inbound_table(store).find(**by, limit=10_000, hidden=True)
    finally:
        await store.close()


async def test_every_inbound_message_of_a_run_reaches_the_store_once(
    redis_url: str, key_prefix: str, history_url: str
) -> None:
    phones = [_phone() for _ in range(3)]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=CLIENTS,
                       # inline: the engine's own counters are checked below (an archiver
                       # child process, PostgreSQL's default, keeps its counters to itself)
                       history={"url": history_url, "batch_size": 7, "block_ms": 20, "archiver": "inline"},
                       inbound={"reassembly_wait_s": 0.5}) as (eng, sim, _rec, redis):
        await sim.wait_for(lambda: len(sim.receivers()) >= 2)
        for i in range(30):
            sim.send_inbound(phones[i % 3], SHOP_CODE, f"message {i}")
        sim.send_inbound(phones[0], SHOP_CODE, LONG_GSM, concat="udh8", ref=7, order=[2, 0, 1], spread=True)
        sim.send_inbound(phones[1], "+4570000000", LONG_UCS2, encoding="ucs2", concat="sar", ref=0x0203, spread=True)
        sim.send_inbound(phones[2], "4588", LONG_GSM, concat="udh16", ref=0x1234, skip=[1])  # published partial
        await until(lambda: _count(redis, key_prefix, 33), what="33 inbound messages published")
        published = await _stream(redis, key_prefix)
        await until(lambda: _archived(history_url, len(published)), what="every message archived")
        assert eng.inbound_archiver is not None
        await until(lambda: _lag_zero(eng.inbound_archiver), what="inbound archive lag 0")
        _ok, details = await eng._ready()
        assert details["inbound_archive"] == {"lag": 0, "behind_s": 0.0}
        from prometheus_client import generate_latest

        exposition = generate_latest(eng.metrics.registry).decode()
        archived = [line for line in exposition.splitlines() if line.startswith("sendgate_archived_inbound_total ")]
        assert archived and float(archived[0].split()[1]) == len(published)
        assert "sendgate_inbound_archive_lag 0.0" in exposition
    rows = [r for c in ("shop", "") for r in await _rows(history_url, client=c)]
    assert sorted(r.entry_id for r in rows) == sorted(published)  # every one, once
    secret = eng.settings.privacy.hash_secret
    by_id = {r.entry_id: r for r in rows}
    for eid, f in published.items():
        r = by_id[eid]
        assert (r.from_hash, r.client, int(r.parts), r.partial) == (
            KeyedHasher(secret)(f["from"]), f["client"], int(f["parts"]), f["partial"] == "1")
        assert r.from_mask == "+45******" + f["from"][-2:] and f["from"] not in repr(r)
    partial = [r for r in rows if r.partial]
    assert [(r.parts, r.total, r.to, r.client) for r in partial] == [(2, 3, "4588", "")]
    assert {r.to for r in rows if r.client == "shop"} == {SHOP_CODE, "4570000000"}


async def _count(redis: Redis, prefix: str, n: int) -> bool:
    return int(await redis.xlen(Keys(prefix).inbound)) >= n


async def _archived(history_url: str, n: int) -> bool:
    return len(await _rows(history_url, client="shop")) + len(await _rows(history_url, client="")) >= n


async def _lag_zero(archiver: Any) -> bool:
    return (await archiver.lag()).entries == 0


async def test_erasure_and_export_cover_inbound_rows_and_parts_waiting(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    subject, other = _phone(), _phone()
    history_url = f"sqlite:///{tmp_path / 'h.db'}"
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=CLIENTS,
                       history={"url": history_url, "block_ms": 20},
                       inbound={"reassembly_wait_s": 1.0}) as (eng, sim, _rec, redis):
        k = Keys(key_prefix)
        settings = eng.settings
        h = KeyedHasher(settings.privacy.hash_secret)(subject)
        await sim.wait_for(lambda: len(sim.receivers()) >= 2)
        sim.send_inbound(subject, SHOP_CODE, "an archived message")
        sim.send_inbound(other, SHOP_CODE, "another sender's")
        await until(lambda: _has_rows(history_url, 2), what="two rows archived")
        # then the first of three parts: stored (answered), waiting for the others
        assert sim.send_inbound(subject, SHOP_CODE, LONG_GSM, concat="udh8", ref=42, skip=[1, 2]) == 1
        sim.send_inbound(other, SHOP_CODE, LONG_GSM, concat="udh8", ref=42, skip=[1, 2])
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 4)
        lines: list[bytes] = []
        assert await export_main(settings, to="+" + subject, client=None, write=lines.append) == 0
        records = [orjson.loads(line) for line in lines]
        kinds = sorted(r["kind"] for r in records)
        assert kinds.count("inbound_history_row") == 1 and kinds.count("inbound_part") == 1
        (part,) = [r for r in records if r["kind"] == "inbound_part"]
        p1 = part["fields"]["p1"]
        assert len(p1) > 140 and LONG_GSM.startswith(p1) and part["fields"]["from"] == subject
        assert h in part["key"] and subject not in part["key"]
        (row,) = [r["row"] for r in records if r["kind"] == "inbound_history_row"]
        assert row["from_hash"] == h and subject not in orjson.dumps(row).decode()
        assert other.encode() not in b"".join(lines)
        # erasure at once: the row, the stream entry and the waiting part go
        assert await erase_main(settings, to="+" + subject, client=None, now=True) == 0
        assert await _rows(history_url, from_hash=h) == []
        assert all(f["from"] != subject for f in (await _stream(redis, key_prefix)).values())
        assert await redis.exists(k.inbound_waiting(h)) == 0
        assert [m.decode() for m in await redis.zrange(k.inbound_due, 0, -1)] == [
            k.inbound_parts("sim", KeyedHasher(settings.privacy.hash_secret)(other), "8.42.3")]
        assert await redis.hgetall(k.inbound_parts("sim", h, "8.42.3")) == {b"done": b"erased"}
        (_eid, audit), = [e for e in await redis.xrange(k.audit) if e[1][b"action"] == b"erase"]
        assert audit[b"inbound_history_rows"] == b"1" and audit[b"inbound_parts_waiting"] == b"1"
        # the other parts arrive after the erasure: answered, never published
        assert sim.send_inbound(subject, SHOP_CODE, LONG_GSM, concat="udh8", ref=42, skip=[0]) == 2
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 6)
        published = await eng.receipts.inbound.sweep(int(time.time() * 1000) + 3_600_000)
        assert published == 1  # the other sender's set, partial
        await asyncio.sleep(0)
        senders = [f["from"] for f in (await _stream(redis, key_prefix)).values()]
        assert subject not in senders and senders.count(other) == 2


async def _has_rows(history_url: str, n: int) -> bool:
    return len(await _rows(history_url, client="shop")) >= n


async def test_erasure_by_policy_hides_inbound_rows(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    subject = _phone()
    history_url = f"sqlite:///{tmp_path / 'h.db'}"
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=CLIENTS,
                       history={"url": history_url, "block_ms": 20}) as (eng, sim, _rec, redis):
        h = KeyedHasher(eng.settings.privacy.hash_secret)(subject)
        await sim.wait_for(lambda: len(sim.receivers()) >= 2)
        sim.send_inbound(subject, SHOP_CODE, "first")
        await until(lambda: _has_rows(history_url, 1), what="a row archived")
        assert eng.inbound_archiver is not None
        eng.inbound_archiver.stop()  # the next message stays in the stream, not archived
        await until(lambda: _stopped(eng), what="the inbound archiver stopped")
        sim.send_inbound(subject, SHOP_CODE, "second")
        await until(lambda: _count(redis, key_prefix, 2), what="the second published")
        t0 = time.time()
        assert await erase_main(eng.settings, to="+" + subject, client=None, now=False) == 0
        rows = await _rows(history_url, from_hash=h)
        # both held, hidden, to disappear one message retention from now; none left in Redis
        assert len(rows) == 2 and all(r.erased_ms and r.from_mask == "" for r in rows)
        assert all(r.retention_until >= t0 + 120 * 86400 - 5 for r in rows)
        assert await redis.xlen(Keys(key_prefix).inbound) == 0
        store = open_store(history_url)
        try:
            assert await inbound_table(store).find(from_hash=h) == []
        finally:
            await store.close()


async def _stopped(eng: Any) -> bool:
    task = next(t for t in eng._tasks if t.get_name() == "inbound-archiver")
    return task.done()


async def test_export_and_erasure_by_client_cover_its_parts_waiting(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    phone, other = _phone(), _phone()
    history_url = f"sqlite:///{tmp_path / 'h.db'}"
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=CLIENTS,
                       history={"url": history_url, "block_ms": 20},
                       inbound={"reassembly_wait_s": 1.0}) as (eng, sim, _rec, redis):
        k = Keys(key_prefix)
        await sim.wait_for(lambda: len(sim.receivers()) >= 1)
        sim.send_inbound(phone, SHOP_CODE, LONG_GSM, concat="udh8", ref=3, skip=[1, 2])  # the shop's
        sim.send_inbound(other, "4588", LONG_GSM, concat="udh8", ref=3, skip=[1, 2])  # no client's
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 2)
        lines: list[bytes] = []
        assert await export_main(eng.settings, to=None, client="shop", write=lines.append) == 0
        parts = [orjson.loads(line) for line in lines if orjson.loads(line)["kind"] == "inbound_part"]
        assert [p["fields"]["client"] for p in parts] == ["shop"] and other.encode() not in b"".join(lines)
        assert await erase_main(eng.settings, to=None, client="shop", now=True) == 0
        hasher = KeyedHasher(eng.settings.privacy.hash_secret)
        assert [m.decode() for m in await redis.zrange(k.inbound_due, 0, -1)] == [
            k.inbound_parts("sim", hasher(other), "8.3.3")]
        assert await redis.hgetall(k.inbound_parts("sim", hasher(phone), "8.3.3")) == {b"done": b"erased"}
        assert sim.send_inbound(phone, SHOP_CODE, LONG_GSM, concat="udh8", ref=3, skip=[0]) == 2
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 4)
        assert await eng.receipts.inbound.sweep(int(time.time() * 1000) + 3_600_000) == 1  # the other's, partial
        senders = [f["from"] for f in (await _stream(redis, key_prefix)).values()]
        assert senders == [other]
