"""The archiver's XREADGROUP on a connection of its own, past redis-py.

redis-py reads a reply through asyncio's ``StreamReader`` into hiredis: the
reply's bytes (~350 an event) are copied about five times on the way in. Here
the loop reads into a buffer of the connection's own (`asyncio.BufferedProtocol`)
and each chunk goes from there straight into a `hiredis.Reader` (one copy:
hiredis' own buffer), which parses the reply while it comes; the command is
packed once per batch. The reply is the structure
redis-py's raw reply had (``[[stream, [[entry id, [name, value, …]], …]], …]``),
so the archiver's folds take it unchanged.

What the URL says is honoured where this path supports it: host and port, or a
unix socket path; database (``SELECT``); ACL user and password (``AUTH``);
client name. TLS, a credential provider and Redis Cluster are not done here:
`RawReader.for_client` returns None for those, and the archiver reads through
redis-py (tests/history/test_raw_reader.py and tests/engine/test_redis_tls.py
hold both).

A connection lost, refused or timing out raises redis-py's ``ConnectionError``
/ ``TimeoutError`` (the archiver's loop retries, and re-reads its pending
entries: what a lost reply had delivered); an error reply raises
``ResponseError`` (``NOGROUP``: the archiver creates its group again). The next
call connects again. A call cancelled while its reply is due closes the
connection (the reply would belong to no one).

Measured and not kept: scanning the joined reply's bytes with one regular
expression for the entry ids and values (no object per field name; the
framing checked by counting the reply's CRLFs): 15,800 instructions an event
for the scan against hiredis' 9,800 to build and free the reply, 27,300 for the
whole archiver against 25,100 with hiredis fed here (bench/RESULTS.md,
"archreader").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.redis_client import is_cluster

__all__ = ["RawReader", "pack", "xreadgroup_command"]

#: The loop's reads into a connection's buffer (uvloop's own read size).
_READ_SIZE = 256 * 1024
#: redis-py's connection timeouts where the URL says nothing (seconds).
_DEFAULT_TIMEOUT_S = 5.0


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def pack(*args: bytes) -> bytes:
    """One command in RESP (bytes arguments)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(out)


def xreadgroup_command(group: bytes, consumer: bytes, stream: bytes, start: bytes, count: int,
                       block_ms: int | None) -> bytes:
    """``XREADGROUP GROUP g c COUNT n [BLOCK ms] STREAMS s id``, packed."""
    args = [b"XREADGROUP", b"GROUP", group, consumer, b"COUNT", b"%d" % count]
    if block_ms is not None:
        args += [b"BLOCK", b"%d" % block_ms]
    return pack(*args, b"STREAMS", stream, start)


class _Protocol(asyncio.BufferedProtocol):
    """One connection: the replies due, parsed by hiredis as their bytes come. The loop
    reads into this protocol's own buffer (a buffered protocol: no ``bytes`` per chunk),
    and hiredis copies each chunk from there into its own."""

    def __init__(self) -> None:
        self.buffer = bytearray(_READ_SIZE)
        self.view = memoryview(self.buffer)
        self.transport: asyncio.Transport | None = None
        self.reader: Any = None  # the hiredis.Reader of the call in flight
        self.expect = 0
        self.replies: list[Any] = []
        self.waiter: asyncio.Future[list[Any]] | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def buffer_updated(self, nbytes: int) -> None:
        reader = self.reader
        if reader is None:  # bytes nobody asked for: this connection is out of step
            self.close()
            return
        try:
            reader.feed(self.buffer, 0, nbytes)
            replies = self.replies
            while len(replies) < self.expect:
                reply = reader.gets()
                if reply is False:
                    return
                replies.append(reply)
        except hiredis.ProtocolError as err:
            self._fail(RedisConnectionError(f"Redis reply not understood: {err}"))
            self.close()
            return
        waiter, self.waiter, self.reader, self.replies = self.waiter, None, None, []
        if waiter is not None and not waiter.done():
            waiter.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = RedisConnectionError(
            f"connection to Redis lost ({type(exc).__name__ if exc else 'closed by the server'})")
        self._fail(self.lost)

    def _fail(self, err: Exception) -> None:
        waiter, self.waiter, self.reader = self.waiter, None, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.lost = self.lost or RedisConnectionError("connection closed")


def _entries(replies: list[Any]) -> list[tuple[str, Any]]:
    """XREADGROUP replies → ``[(stream, entries), …]`` (an error reply raised)."""
    out: list[tuple[str, Any]] = []
    for reply in replies:
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        for stream, entries in reply or ():
            out.append((stream.decode() if isinstance(stream, bytes) else str(stream), entries or []))
    return out


class RawReader:
    """XREADGROUP for the archiver on its own connection (see the module docstring)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 6379, path: str = "", db: int = 0,
                 username: str | None = None, password: str | None = None, client_name: str | None = None,
                 connect_timeout: float | None = _DEFAULT_TIMEOUT_S,
                 timeout: float | None = _DEFAULT_TIMEOUT_S) -> None:
        self.host, self.port, self.path, self.db = host, port, path, int(db)
        self.username, self.password, self.client_name = username, password, client_name
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._proto: _Protocol | None = None
        self._lock = asyncio.Lock()
        self.connects = 0  # connections made (tests: a reconnect after a drop)

    @classmethod
    def for_client(cls, redis: Any) -> RawReader | None:
        """A reader of the Redis that ``redis`` talks to, or None where this path does not
        go (TLS, a credential provider, Redis Cluster, another connection class)."""
        if is_cluster(redis) or not isinstance(redis, Redis):
            return None
        pool = redis.connection_pool
        kw = pool.connection_kwargs
        if kw.get("credential_provider") is not None:
            return None
        if pool.connection_class is Connection:
            host, port, path = str(kw.get("host") or "localhost"), int(kw.get("port") or 6379), ""
        elif pool.connection_class is UnixDomainSocketConnection and kw.get("path"):
            host, port, path = "", 0, str(kw["path"])
        else:
            return None
        return cls(host=host, port=port, path=path, db=int(kw.get("db") or 0), username=kw.get("username"),
                   password=kw.get("password"), client_name=kw.get("client_name"),
                   connect_timeout=kw.get("socket_connect_timeout", _DEFAULT_TIMEOUT_S),
                   timeout=kw.get("socket_timeout", _DEFAULT_TIMEOUT_S))

    # ------------------------------------------------------------ connection
    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            if self.path:
                opening = loop.create_unix_connection(_Protocol, self.path)
            else:
                opening = loop.create_connection(_Protocol, self.host, self.port)
            async with asyncio.timeout(self.connect_timeout):
                _, proto = await opening
        except (TimeoutError, OSError) as err:
            raise RedisConnectionError(f"cannot connect to Redis ({type(err).__name__}: {err})") from err
        self.connects += 1
        hello: list[bytes] = []
        if self.password:
            hello.append(pack(b"AUTH", *((_b(self.username),) if self.username else ()), _b(self.password)))
        if self.db:
            hello.append(pack(b"SELECT", b"%d" % self.db))
        if self.client_name:
            hello.append(pack(b"CLIENT", b"SETNAME", _b(self.client_name)))
        if hello:
            try:
                replies = await self._send(proto, hello, self.connect_timeout)
            except BaseException:
                proto.close()
                raise
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    proto.close()
                    text = str(reply)
                    if text.startswith(("WRONGPASS", "NOAUTH", "ERR invalid password", "ERR AUTH")):
                        raise AuthenticationError(text)
                    raise ResponseError(text)
        return proto

    @staticmethod
    async def _send(proto: _Protocol, commands: Sequence[bytes], timeout: float | None) -> list[Any]:
        """Send the commands; their replies, as hiredis parses them."""
        if proto.lost is not None or proto.transport is None or proto.transport.is_closing():
            raise proto.lost or RedisConnectionError("connection closed")
        waiter: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        proto.waiter, proto.reader, proto.expect, proto.replies = waiter, hiredis.Reader(), len(commands), []
        proto.transport.writelines(commands)
        try:
            async with asyncio.timeout(timeout):  # None: no limit
                return await waiter
        except TimeoutError as err:
            proto.close()
            raise RedisTimeoutError("Redis did not answer in time") from err
        except asyncio.CancelledError:
            proto.close()  # the reply would come to no one: this connection is out of step
            raise

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is None or proto.lost is not None or proto.transport is None or proto.transport.is_closing():
            self._proto = None
            proto = self._proto = await self._connect()
        return proto

    # ---------------------------------------------------------------- reads
    async def xreadgroup(self, group: str, consumer: str, streams: Sequence[str], start: str, count: int,
                         block_ms: int | None) -> list[tuple[str, Any]]:
        """One XREADGROUP per stream (BLOCK only with one stream), sent together:
        ``[(stream, entries), …]`` for the streams that had any, entries as hiredis
        gives them (``[entry id, [name, value, …] | None]``)."""
        g, c, s0 = _b(group), _b(consumer), _b(start)
        block = block_ms if len(streams) == 1 else None
        commands = [xreadgroup_command(g, c, _b(s), s0, count, block) for s in streams]
        # The whole reply's time (redis-py's socket_timeout is per socket read): its
        # timeout, the BLOCK, and a margin for a large reply on a busy machine.
        timeout = None if self.timeout is None else self.timeout + (block or 0) / 1000 + 10
        async with self._lock:
            proto = await self._connection()
            try:
                replies = await self._send(proto, commands, timeout)
            except (RedisConnectionError, RedisTimeoutError):
                self._proto = None
                raise
        return _entries(replies)

    async def aclose(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.close()
