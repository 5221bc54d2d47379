"""The archiver's own XREADGROUP (engine/history/raw_reader.py) against real Redis servers.

A reply comes in chunks split anywhere: the replies are hiredis' own, whole
only at their end. A connection cut mid-reply (a real TCP relay between the
archiver and Redis), a Redis restarted (a private redis-server on a free port
of 127.0.0.1, append-only, that dies with the test), a BLOCK that times out, an
error reply, the URL's user, password, database and unix socket: the archive
still holds every event once. Where the raw path does not go (TLS, a
credential provider) the archiver reads through redis-py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis as redis_sync
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.embedded_redis import EmbeddedRedis
from engine.history import HistoryStore
from engine.history.archiver import Archiver
from engine.history.raw_reader import RawReader, _Protocol, pack, xreadgroup_command
from tests.history.events import event_fields
from tests.history.test_archiver import (
    check_exactly_once,
    expected_events,
    push_jobs,
    run_until_archived,
    stop,
    until,
)

pytestmark = pytest.mark.slow

# ------------------------------------------------------------------ helpers
def _sync(url: str) -> redis_sync.Redis:
    return redis_sync.Redis.from_url(url)


_WHERE: dict[str, dict[str, Any]] = {}


def raw_read(url: str, stream: str, *, start: str = ">", count: int = 10_000, group: str = "g") -> bytes:
    """XREADGROUP's reply bytes, then a NOGROUP error reply's, read from Redis on a plain socket."""
    kw = _WHERE.get(url)
    if kw is None:
        client = _sync(url)
        kw = _WHERE[url] = dict(client.connection_pool.connection_kwargs)
        client.close()
    with socket.create_connection((kw["host"], int(kw["port"])), timeout=10) as sock:
        hello = pack(b"SELECT", b"%d" % int(kw.get("db") or 0))
        cmd = xreadgroup_command(group.encode(), b"c", stream.encode(), start.encode(), count, None)
        nogroup = xreadgroup_command(b"no-such-group", b"c", stream.encode(), b">", 1, None)
        sock.sendall(hello + cmd + nogroup)
        buf = b""
        while not buf.endswith(b"\r\n") or b"-NOGROUP" not in buf[-300:]:
            chunk = sock.recv(1 << 16)
            assert chunk, "Redis closed the connection"
            buf += chunk
    assert buf.startswith(b"+OK\r\n")
    return buf[len(b"+OK\r\n"):]


@pytest.fixture
def stream(key_prefix: str) -> str:
    return f"{key_prefix}:events"


@pytest.fixture
def sync_redis(redis_url: str, stream: str) -> Iterator[redis_sync.Redis]:
    client = _sync(redis_url)
    yield client
    client.delete(stream)
    client.close()


def _feed(proto: _Protocol, chunks: list[bytes]) -> list[int]:
    """Feed the chunks; the indexes of those after which the reply was whole."""
    done = []
    for i, c in enumerate(chunks):
        view = proto.get_buffer(len(c))  # as the loop reads: into the protocol's buffer
        view[: len(c)] = c
        proto.buffer_updated(len(c))
        if proto.waiter is None:
            done.append(i)
    return done


async def test_a_reply_split_at_every_byte_is_whole_only_at_its_end(
    redis_url: str, stream: str, sync_redis: redis_sync.Redis
) -> None:
    """Two replies (an XREADGROUP of both layouts, then an error reply) fed in chunks cut
    at every byte boundary, one byte at a time, and at random cuts: hiredis' own replies,
    and only once the last byte came."""
    sync_redis.xgroup_create(stream, "g", id="0", mkstream=True)
    for i in range(6):
        sync_redis.xadd(stream, event_fields(f"job-{i}", "submitted", 1_700_000_000_000 + i, first=i % 2 == 0))  # type: ignore[arg-type]
    raw = raw_read(redis_url, stream)  # (the reply, then an error reply: NOGROUP)
    whole = hiredis.Reader()
    whole.feed(raw)
    expected = [whole.gets(), whole.gets()]
    assert len(expected[0][0][1]) == 6 and isinstance(expected[1], hiredis.ReplyError)
    loop = asyncio.get_running_loop()

    def check_chunks(chunks: list[bytes]) -> None:
        proto = _Protocol()
        waiter = proto.waiter = loop.create_future()
        proto.reader, proto.expect = hiredis.Reader(), 2
        assert _feed(proto, chunks) == [len(chunks) - 1]
        got = waiter.result()
        assert got[0] == expected[0]
        assert isinstance(got[1], hiredis.ReplyError) and str(got[1]) == str(expected[1])

    for cut in range(1, len(raw)):  # every byte boundary
        check_chunks([raw[:cut], raw[cut:]])
    check_chunks([raw[i:i + 1] for i in range(len(raw))])  # one byte at a time

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.integers(1, len(raw) - 1), max_size=12, unique=True))
    def check(cuts: list[int]) -> None:
        edges = [0, *sorted(cuts), len(raw)]
        check_chunks([raw[a:b] for a, b in itertools.pairwise(edges)])

    check()


# ------------------------------------------------------------- the connection
async def test_a_block_that_times_out_and_an_error_reply(redis_client: Any, stream: str) -> None:
    reader = RawReader.for_client(redis_client)
    assert reader is not None
    try:
        with pytest.raises(ResponseError, match="NOGROUP"):
            await reader.xreadgroup("g", "c", [stream], ">", 10, 10)
        await redis_client.xgroup_create(stream, "g", id="0", mkstream=True)
        t0 = time.monotonic()
        assert await reader.xreadgroup("g", "c", [stream], ">", 10, 30) == []  # nil: BLOCK timed out
        assert time.monotonic() - t0 >= 0.02
        assert reader.connects == 1  # an error reply and a nil keep the connection
        await redis_client.xadd(stream, event_fields("job-1", "submitted", 1_700_000_000_000, first=True))
        got = await reader.xreadgroup("g", "c", [stream], ">", 10, 30)
        assert [(s, len(es)) for s, es in got] == [(stream, 1)]
        assert got[0][1][0][1][:6] == [b"id", b"job-1", b"ref", b"", b"event", b"submitted"]
    finally:
        await reader.aclose()


class _Relay:
    """A TCP relay on 127.0.0.1 to Redis that cuts the first connection whose replies pass
    ``cut_after`` bytes, mid-reply."""

    def __init__(self, port: int, cut_after: int) -> None:
        self.port, self.cut_after = port, cut_after
        self.cut = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            passed = 0
            try:
                while data := await src.read(1 << 14):
                    if down and not self.cut and passed + len(data) > self.cut_after:
                        self.cut += 1
                        dst.write(data[: self.cut_after - passed])
                        await dst.drain()
                        break
                    passed += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                for w in (writer, up_w):
                    w.close()

        await asyncio.gather(pipe(reader, up_w, False), pipe(up_r, writer, True))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_connection_cut_mid_reply_loses_and_duplicates_nothing(
    redis_url: str, redis_client: Any, stream: str, store: HistoryStore
) -> None:
    kw = redis_client.connection_pool.connection_kwargs
    relay = _Relay(int(kw["port"]), cut_after=200_000)
    port = await relay.start()
    via = Redis(host="127.0.0.1", port=port, db=int(kw.get("db") or 0))
    try:
        await push_jobs(redis_client, stream, 0, 2000)
        archiver = Archiver(via, store, [stream], consumer="a1", batch_size=5000, block_ms=50)
        assert archiver._raw is not None
        task = await run_until_archived(archiver)
        assert relay.cut == 1  # the first big reply was cut mid-way
        assert archiver._raw.connects >= 2
        await stop(archiver, task)
        assert archiver.archived == expected_events(0, 2000)
        await check_exactly_once(store, 2000)
        assert (await redis_client.xpending(stream, "archiver"))["pending"] == 0
    finally:
        await via.aclose()
        await relay.close()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of this test only (it dies with the test process), append-only
    (fsync always: a restart finds the streams, the group and its pending entries),
    with an ACL user ``arch`` (password ``s3cret``) besides the default user."""
    directory = tmp_path / "redis"
    directory.mkdir()
    args = ("--appendonly", "yes", "--appendfsync", "always", "--user", "arch", "on", ">s3cret", "~*", "&*", "+@all",
            "--unixsocket", str(directory / "redis.sock"), "--unixsocketperm", "700")
    server = EmbeddedRedis(args=args, directory=str(directory)).start()
    server.args = args  # type: ignore[attr-defined]
    server.directory = str(directory)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


async def test_redis_restarted_loses_and_duplicates_nothing(private_redis: EmbeddedRedis, store: HistoryStore) -> None:
    url = f"redis://arch:s3cret@127.0.0.1:{private_redis.port}/2"  # ACL user and database, as the URL says
    redis = Redis.from_url(url)
    stream = "sgtest-restart:events"
    server = private_redis
    try:
        await push_jobs(redis, stream, 0, 1000)
        archiver = Archiver(redis, store, [stream], consumer="a1", batch_size=700, block_ms=50,
                            backoff_min_s=0.05, backoff_max_s=0.2)
        task = await run_until_archived(archiver)
        server.stop()  # (SIGTERM: the append-only file is whole)
        await until(lambda: _truthy(archiver._raw is not None and archiver._raw._proto is None), what="the drop seen")
        server = EmbeddedRedis(private_redis.port, args=private_redis.args,  # type: ignore[attr-defined]
                               directory=private_redis.directory).start()  # type: ignore[attr-defined]
        await until(lambda: _pings(redis), what="Redis back")
        await push_jobs(redis, stream, 1000, 1000)
        await until(lambda: _lag_zero(archiver), what="caught up after the restart")
        await stop(archiver, task)
        assert archiver.archived == expected_events(0, 2000)
        await check_exactly_once(store, 2000)
        assert archiver._raw is not None and archiver._raw.connects >= 2
    finally:
        await redis.aclose()
        server.stop()


async def test_auth_database_and_unix_socket_as_the_url_says(private_redis: EmbeddedRedis) -> None:
    sock = os.path.join(private_redis.directory, "redis.sock")  # type: ignore[attr-defined]
    for url in (f"redis://arch:s3cret@127.0.0.1:{private_redis.port}/3", f"unix://arch:s3cret@{sock}?db=3"):
        redis = Redis.from_url(url)
        reader = RawReader.for_client(redis)
        assert reader is not None
        try:
            await redis.xgroup_create("s", "g", id="0", mkstream=True)
            await redis.xadd("s", event_fields("job-1", "delivered", 1_700_000_000_000))
            got = await reader.xreadgroup("g", "c", ["s"], ">", 10, None)
            assert [len(es) for _s, es in got] == [1]  # database 3: where the entry is
        finally:
            await redis.delete("s")
            await redis.aclose()
            await reader.aclose()
    wrong = RawReader.for_client(Redis.from_url(f"redis://arch:nope@127.0.0.1:{private_redis.port}/0"))
    assert wrong is not None
    with pytest.raises(AuthenticationError):
        await wrong.xreadgroup("g", "c", ["s"], ">", 10, None)


async def test_a_deleted_stream_makes_the_group_again(redis: Any, stream: str, store: HistoryStore) -> None:
    """NOGROUP (the stream deleted under the archiver): the group is created again, and
    what is written after is archived."""
    await push_jobs(redis, stream, 0, 300)
    archiver = Archiver(redis, store, [stream], consumer="a1", batch_size=1000, block_ms=20)
    task = await run_until_archived(archiver)
    await redis.delete(stream)
    await until(lambda: _group_exists(redis, stream), what="the group made again")
    await push_jobs(redis, stream, 300, 300)
    await until(lambda: _lag_zero(archiver), what="caught up")
    await stop(archiver, task)
    assert archiver.archived == expected_events(0, 600)
    await check_exactly_once(store, 600)


async def test_tls_or_cluster_read_through_redis_py(redis: Any, stream: str, store: HistoryStore) -> None:
    """Where the raw path does not go, the archiver keeps redis-py: a TLS client, a client
    with a credential provider; and the redis-py path still archives every event once."""
    assert RawReader.for_client(Redis.from_url("rediss://127.0.0.1:1/0")) is None
    from redis.credentials import UsernamePasswordCredentialProvider

    assert RawReader.for_client(Redis(credential_provider=UsernamePasswordCredentialProvider("u", "p"))) is None
    await push_jobs(redis, stream, 0, 1500)
    archiver = Archiver(redis, store, [stream], consumer="a1", batch_size=700, block_ms=50)
    archiver._raw = None  # as for a TLS URL
    task = await run_until_archived(archiver)
    await push_jobs(redis, stream, 1500, 500)
    await until(lambda: _lag_zero(archiver), what="second lag 0")
    await stop(archiver, task)
    assert archiver.archived == expected_events(0, 2000)
    await check_exactly_once(store, 2000)


@pytest.fixture
async def redis(redis_client: Any) -> AsyncIterator[Any]:
    yield redis_client


async def _lag_zero(archiver: Archiver) -> bool:
    try:
        return (await archiver.lag()).entries == 0
    except (RedisConnectionError, OSError):
        return False


async def _pings(redis: Any) -> bool:
    try:
        return bool(await redis.ping())
    except (RedisConnectionError, OSError):
        return False


async def _truthy(value: bool) -> bool:
    return value


async def _group_exists(redis: Any, stream: str) -> bool:
    try:
        return any(g["name"] == b"archiver" for g in await redis.xinfo_groups(stream))
    except ResponseError:
        return False
