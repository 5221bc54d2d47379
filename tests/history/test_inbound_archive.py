"""Inbound messages in the history store: the inbound archiver against a real Redis and
real stores (SQLite and a private PostgreSQL): every entry once, whatever happens; the
rows hold no number in clear; erasure, closure and retention reach them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from engine.history import HistoryStore
from engine.history.inbound import (
    InboundRecord,
    inbound_table,
    records_from_entries,
    to_for_history,
)
from engine.history.inbound_archiver import InboundArchiver
from privacy_hooks import KeyedHasher
from tests.history.test_archiver import until

pytestmark = pytest.mark.slow

SECRET = b"test-secret"
HASH = KeyedHasher(SECRET)


def phone(i: int) -> str:
    return f"4520{i:06d}"


@pytest.fixture
async def redis(redis_client: Any) -> AsyncIterator[Redis]:
    yield redis_client


@pytest.fixture
def inbound_key(key_prefix: str) -> str:
    return f"{key_prefix}:inbound"


async def push_inbound(redis: Redis, stream: str, first: int, count: int) -> None:
    """``count`` inbound messages from ``phone(first)`` on, as inbound.lua writes them."""
    now = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    for i in range(first, first + count):
        p = phone(i % 50)  # 50 senders, several messages each
        partial = i % 7 == 0
        fields = {
            "from": p, "to": "1234" if i % 2 else "4570000000", "text": f"message {i} from a phone",
            "carrier": "sim", "client": f"c{i % 3}", "parts": "2" if partial else "1", "partial": "1" if partial else "0",
            "ts": str(now + i), "from_hash": HASH(p), "retention_until": str(now // 1000 + 86400),
        }
        if partial:
            fields["total"] = "3"
        pipe.xadd(stream, fields)  # type: ignore[arg-type]
    await pipe.execute()


async def all_rows(store: HistoryStore) -> list[Any]:
    table = inbound_table(store)
    rows = []
    for c in ("c0", "c1", "c2"):
        rows += await table.find(client=c, limit=1_000_000, hidden=True)
    return rows


async def check_exactly_once(redis: Redis, stream: str, store: HistoryStore) -> None:
    ids = sorted(eid.decode() for eid, _ in await redis.xrange(stream))
    rows = await all_rows(store)
    assert sorted(r.entry_id for r in rows) == ids  # every entry once, none twice
    assert all(r.stream == stream for r in rows)


def archiver_of(redis: Redis, store: HistoryStore, stream: str, **kw: Any) -> InboundArchiver:
    return InboundArchiver(redis, store, [stream], group="archiver-inbound", own_numbers=["4570000000"],
                           hash_number=HASH, retention_s=86400, block_ms=50, **kw)


async def run_until_archived(archiver: InboundArchiver) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(archiver.run())

    async def done() -> bool:
        if task.done():
            task.result()
        return (await archiver.lag()).entries == 0 and not archiver._read_pending

    await until(done, what="inbound archive lag 0")
    return task


async def stop(archiver: InboundArchiver, task: asyncio.Task[None]) -> None:
    archiver.stop()
    await asyncio.wait_for(task, 30)


async def test_every_inbound_message_reaches_the_store_once_without_numbers(
    redis: Redis, inbound_key: str, store: HistoryStore
) -> None:
    await push_inbound(redis, inbound_key, 0, 1200)  # before the archiver's first start
    archiver = archiver_of(redis, store, inbound_key, consumer="a1", batch_size=500)
    task = await run_until_archived(archiver)
    await push_inbound(redis, inbound_key, 1200, 300)  # and while it runs
    await until(lambda: _lag_zero(archiver), what="second lag 0")
    await stop(archiver, task)
    assert archiver.archived == 1500
    await check_exactly_once(redis, inbound_key, store)
    rows = await all_rows(store)
    by_id = {r.entry_id: r for r in rows}
    raw = {eid.decode(): {k.decode(): v.decode() for k, v in f.items()} for eid, f in await redis.xrange(inbound_key)}
    for eid, f in raw.items():
        r = by_id[eid]
        assert (r.from_hash, r.client, r.carrier, r.parts, r.partial) == (
            f["from_hash"], f["client"], "sim", int(f["parts"]), f["partial"] == "1")
        assert r.total == (3 if r.partial else 1)
        assert r.ts_ms == int(f["ts"]) and r.retention_until == int(f["retention_until"])
        assert r.from_mask == "+45******" + f["from"][-2:]
        # a short code and a configured client number in clear; no sender number anywhere
        assert r.to == f["to"]
        assert f["from"] not in repr(r) and "message" not in repr(r)
    # by sender: the 30 messages of one phone, newest first
    one = await inbound_table(store).find(from_hash=HASH(phone(7)), limit=1000)
    assert len(one) == 30 and [r.ts_ms for r in one] == sorted((r.ts_ms for r in one), reverse=True)
    pending: Any = await redis.xpending(inbound_key, "archiver-inbound")
    assert pending["pending"] == 0


async def _lag_zero(archiver: InboundArchiver) -> bool:
    return (await archiver.lag()).entries == 0


class _DiesInWrite(InboundArchiver):
    """Killed in the middle of a write, before or after its commit: never acks."""

    commit = False
    entered: asyncio.Event

    async def _write(self, items: list[InboundRecord], now_ms: int) -> None:
        if self.commit:
            await super()._write(items, now_ms)
        self.entered.set()
        await asyncio.Event().wait()  # cancelled here


@pytest.mark.parametrize("commit", [False, True], ids=["killed-before-commit", "killed-after-commit"])
async def test_inbound_archiver_restart_loses_and_duplicates_nothing(
    redis: Redis, inbound_key: str, store: HistoryStore, commit: bool
) -> None:
    await push_inbound(redis, inbound_key, 0, 900)
    first = _DiesInWrite(redis, store, [inbound_key], group="archiver-inbound", consumer="same-host", batch_size=600,
                         block_ms=50, read_ahead=False, hash_number=HASH)
    first.commit, first.entered = commit, asyncio.Event()
    task = asyncio.get_running_loop().create_task(first.run())
    await asyncio.wait_for(first.entered.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pending: Any = await redis.xpending(inbound_key, "archiver-inbound")
    assert pending["pending"] == 600  # read, never acked
    assert len(await all_rows(store)) == (600 if commit else 0)
    second = archiver_of(redis, store, inbound_key, consumer="same-host", batch_size=600)
    task = await run_until_archived(second)
    await stop(second, task)
    assert second.archived == 900
    await check_exactly_once(redis, inbound_key, store)


async def test_erase_hide_restamp_and_retention_of_inbound_rows(store: HistoryStore) -> None:
    table = inbound_table(store)
    now = int(time.time() * 1000)
    day_ms = 86_400_000
    entries = [(f"{now - 200 * day_ms + i}-0" if i < 2 else f"{now + i}-0",
                {"from": phone(i % 2), "to": "4599999999", "client": "shop" if i % 3 else "other",
                 "from_hash": HASH(phone(i % 2)), "ts": str(now + i), "parts": "1", "partial": "0"})
               for i in range(8)]
    records = records_from_entries([("s", entries)], now, retention_s=86400)
    assert await table.write(records) == 8
    assert await table.write(records) == 8  # again: inserts nothing
    assert len(await table.find(client="shop", limit=100)) + len(await table.find(client="other", limit=100)) == 8
    assert {r.to for r in await table.find(client="shop")} == {"+45******99"}  # a number not the client's: masked
    # policy erasure hides (mask blanked, left out of find) and re-stamps
    assert await table.hide(from_hash=HASH(phone(0)), now_ms=now, retention_until=now // 1000 + 99) == 4
    assert all(r.from_hash != HASH(phone(0)) for r in await table.find(client="shop"))
    hidden = await table.find(from_hash=HASH(phone(0)), hidden=True)
    assert len(hidden) == 4 and {(r.from_mask, r.retention_until) for r in hidden} == {("", now // 1000 + 99)}
    await table.write(records)  # a replay does not bring a hidden row back
    assert await table.find(from_hash=HASH(phone(0))) == []
    # closure re-stamps visible rows of the client; reopening puts them back
    assert await table.restamp_client("other", retention_until=123, message_ttl_s=10) == 1  # i=3 (i=0, 6 hidden)
    assert await table.restamp_client("other", retention_until=None, message_ttl_s=10) == 1
    (r3,) = await table.find(client="other")
    assert r3.retention_until == r3.ts_ms // 1000 + 10
    # retention drops whole days: the two entries 200 days old
    dropped = await table.drop_expired(time.time(), 120)
    assert len(dropped) == 1
    assert len(await table.find(from_hash=HASH(phone(1)), hidden=True)) == 3
    # erasure at once deletes, by sender and by client
    assert await table.erase(from_hash=HASH(phone(1))) == 3
    assert await table.erase(client="other") == 1  # i=6 (hidden); i=3 went with its sender, i=0 with its day
    assert await table.find(client="shop", hidden=True) != []


def test_to_is_masked_unless_a_short_code_or_the_clients_own() -> None:
    assert to_for_history("1234", ()) == "1234"
    assert to_for_history("+4570000000", {"4570000000"}) == "4570000000"
    assert to_for_history("4570000000", ()) == "+45******00"
    assert to_for_history("Shop", ()) == "***"


async def test_archive_once_and_history_show_inbound_marked_without_the_number(
    redis: Redis, redis_url: str, key_prefix: str, history_url: str, tmp_path: Any
) -> None:
    """As a user runs them (real processes): `sendgate archive --once` archives the inbound
    stream too; `sendgate history --to` / `--client` list the messages, marked inbound."""
    from tests.engine.harness import subprocess_env
    from tests.history.events import SECRET
    from tests.history.test_history_cli import sendgate

    cfg = tmp_path / "sendgate.toml"
    cfg.write_text(f'[privacy]\nhash_secret = "{SECRET}"\n[history]\nurl = "{history_url}"\n'
                   '[[clients]]\nid = "shop"\nnumbers = ["1234"]\n')
    env = subprocess_env(REDIS_URL=redis_url, SENDGATE_PREFIX=key_prefix)
    hasher = KeyedHasher(SECRET)
    now = int(time.time() * 1000)
    for sender, text in (("4512345678", "hello"), ("4512345678", "STOP"), ("4587654321", "other")):
        await redis.xadd(f"{key_prefix}:inbound", {  # type: ignore[arg-type]
            "from": sender, "to": "1234", "text": text, "carrier": "sim", "client": "shop", "parts": "1",
            "partial": "0", "ts": str(now), "from_hash": hasher(sender), "retention_until": str(now // 1000 + 9999)})
    code, out, err = await sendgate("archive", "-c", str(cfg), "--once", env=env)
    assert code == 0, err
    assert "3 inbound message(s)" in out
    for key, value, lines in (("--to", "+4512345678", 2), ("--client", "shop", 3)):
        code, out, err = await sendgate("history", "-c", str(cfg), key, value, env=env)
        assert code == 0, (key, err)
        inbound = [line for line in out.splitlines() if line.startswith("inbound ")]
        assert len(inbound) == lines, out
        assert all("to=1234" in line and "client=shop" in line and "carrier=sim" in line for line in inbound)
        assert all("from=+45******78" in line for line in inbound[:2] if key == "--to")
        assert all("from=+45******" in line for line in inbound)
        for text in (out, err):
            assert "12345678" not in text and "87654321" not in text and "hello" not in text, key


async def test_close_and_reopen_client_restamp_its_inbound_rows(
    redis: Redis, redis_url: str, key_prefix: str, store: HistoryStore
) -> None:
    from engine.closure import close_client, reopen_client
    from engine.config import settings_from_mapping

    settings = settings_from_mapping({"redis": {"url": redis_url, "prefix": key_prefix}, "clients": [{"id": "shop"}]},
                                     env={})
    now = int(time.time() * 1000)
    entries = [(f"{now + i}-0", {"from": phone(i), "to": "1234", "client": "shop" if i < 3 else "else",
                                 "from_hash": HASH(phone(i)), "ts": str(now + i)}) for i in range(4)]
    await inbound_table(store).write(records_from_entries([("s", entries)], now, retention_s=86400))
    done = await close_client(redis, settings, "shop", store=store, now_s=now / 1000)
    assert done["inbound_history_rows"] == 3
    ttl = settings.privacy.retention_days.message * 86400
    rows = await inbound_table(store).find(client="shop")
    assert {r.retention_until for r in rows} == {done["closed_at"] + ttl}
    assert (await reopen_client(redis, settings, "shop", store=store))["inbound_history_rows"] == 3
    assert {r.retention_until - r.ts_ms // 1000 for r in await inbound_table(store).find(client="shop")} == {ttl}
    (other,) = await inbound_table(store).find(client="else")
    assert other.retention_until == (now + 3) // 1000 + 86400  # another client's row: untouched
