"""bench/raw_push.py, the soak producer's XADDs on a connection of its own, against a
real Redis: the entries are what redis-py's pipeline would have written, in order;
an error reply raises and leaves the connection in step; the URL's user, password
and database are used."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from bench.raw_push import RawPusher, RawPushError


async def test_pushed_entries_equal_their_fields_in_order(redis_url: str, key_prefix: str) -> None:
    client = Redis.from_url(redis_url)
    pusher = await RawPusher.connect(client)
    try:
        streams = [f"{key_prefix}:a", f"{key_prefix}:b"]
        batch = [
            (streams[i % 2], {"id": f"r-{i}", "to": f"+45{i:08d}", "text": "Grüße ☃ " * (i % 3) + str(i), "dlr": "1"})
            for i in range(300)
        ]
        ids = await pusher.xadd_many(batch)
        assert len(ids) == 300
        for name in streams:
            entries = await client.xrange(name)
            mine = [(eid, fields) for eid, (stream, fields) in zip(ids, batch, strict=True) if stream == name]
            assert [e[0] for e in entries] == [eid for eid, _ in mine]
            assert [e[1] for e in entries] == [
                {k.encode(): v.encode() for k, v in fields.items()} for _, fields in mine
            ]
        # a second batch on the same connection: ids keep increasing
        more = await pusher.xadd_many([(streams[0], {"id": "r-300"})])
        def key(eid: bytes) -> tuple[int, int]:
            ms, seq = eid.split(b"-")
            return int(ms), int(seq)

        assert key(more[0]) > key(ids[-1])
    finally:
        await pusher.close()
        await client.aclose()


async def test_an_error_reply_raises_and_the_connection_stays_in_step(redis_url: str, key_prefix: str) -> None:
    client = Redis.from_url(redis_url)
    await client.set(f"{key_prefix}:not-a-stream", "x")
    pusher = await RawPusher.connect(client)
    try:
        with pytest.raises(RawPushError, match="WRONGTYPE"):
            await pusher.xadd_many([(f"{key_prefix}:s", {"id": "1"}), (f"{key_prefix}:not-a-stream", {"id": "2"}),
                                    (f"{key_prefix}:s", {"id": "3"})])
        # the replies of the failed batch were all read: the next one gets its own
        ids = await pusher.xadd_many([(f"{key_prefix}:s", {"id": "4"})])
        entries = await client.xrange(f"{key_prefix}:s")
        assert [e[1][b"id"] for e in entries] == [b"1", b"3", b"4"]
        assert entries[-1][0] == ids[0]
    finally:
        await pusher.close()
        await client.aclose()


async def test_the_urls_user_password_and_database_are_used(redis_url: str, key_prefix: str) -> None:
    parts = urlsplit(redis_url)
    if parts.scheme != "redis":
        pytest.skip("a TCP redis:// URL is needed to add a user to it")
    admin = Redis.from_url(redis_url)
    user, password = f"sgtest-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", f"~{key_prefix}:*", "+xadd", "+select")
    db = 1 if (parts.path.strip("/") or "0") != "1" else 2
    url = urlunsplit((parts.scheme, f"{user}:{password}@{parts.hostname}:{parts.port}", f"/{db}", "", ""))
    client = Redis.from_url(url)
    pusher = await RawPusher.connect(client)
    try:
        await pusher.xadd_many([(f"{key_prefix}:s", {"id": "1"})])
        other = Redis.from_url(urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}", f"/{db}", "", "")))
        try:
            assert await other.xlen(f"{key_prefix}:s") == 1  # in the URL's database
            await other.delete(f"{key_prefix}:s")
        finally:
            await other.aclose()
        # a wrong password is refused
        bad = Redis.from_url(urlunsplit((parts.scheme, f"{user}:wrong@{parts.hostname}:{parts.port}", "/0", "", "")))
        with pytest.raises(RawPushError, match=r"WRONGPASS|invalid"):
            await RawPusher.connect(bad)
        await bad.aclose()
    finally:
        await pusher.close()
        await client.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()
