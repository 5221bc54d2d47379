"""The soak producer's XADDs, cheap: RESP packed by hiredis, one connection of its own.

At a steady rate the bench produces while the engines run, on the same two cores, so
what it spends per job is taken from the system it measures. redis-py's pipeline
(``pipe.xadd`` per job, ``execute``) cost the bench ~12.7 µs of CPU per job on
2026-12-06; packing the same commands with ``hiredis.pack_command`` and reading the
replies with ``hiredis.Reader`` cost ~1.4 µs. At 23,000 jobs/s that is the difference
between ~0.3 and ~0.03 of a core (bench/RESULTS.md, "Session 21: the soak's producer").

One ``RawPusher`` per producer: ``xadd_many`` sends a batch in one write and returns
the entry ids in order; an error reply raises (its text is Redis', never a field).
Plain Redis only (a TCP host and port or a unix socket, with AUTH and SELECT from
the client's URL): a Redis Cluster would need routing per key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import hiredis

# hiredis' stub types the command as a 1-tuple; any tuple of str/bytes/int is packed.
_pack: Any = hiredis.pack_command


class RawPushError(RuntimeError):
    """Redis answered a pushed command with an error."""


class RawPusher:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def connect(cls, redis: Any) -> RawPusher:
        """A connection of its own to the server of ``redis`` (a redis-py asyncio client):
        its host and port (or unix socket), user, password and database."""
        kw: Mapping[str, Any] = redis.connection_pool.connection_kwargs
        if kw.get("path"):
            reader, writer = await asyncio.open_unix_connection(kw["path"])
        else:
            reader, writer = await asyncio.open_connection(kw.get("host", "127.0.0.1"), int(kw.get("port", 6379)))
        pusher = cls(reader, writer)
        hello: list[tuple[str, ...]] = []
        if kw.get("password"):
            user = kw.get("username")
            hello.append(("AUTH", user, kw["password"]) if user else ("AUTH", kw["password"]))
        if int(kw.get("db") or 0):
            hello.append(("SELECT", str(int(kw["db"]))))
        if hello:
            try:
                await pusher._send(hello)
            except BaseException:
                await pusher.close()
                raise
        return pusher

    async def xadd_many(self, entries: Sequence[tuple[str, Mapping[str, str]]]) -> list[bytes]:
        """``XADD stream * field value …`` for each (stream, fields), in one write;
        the new entries' ids, in order."""
        pack = _pack
        commands = [pack(("XADD", stream, "*", *[x for kv in fields.items() for x in kv])) for stream, fields in entries]
        return await self._exchange(b"".join(commands), len(commands))

    async def _send(self, commands: Sequence[tuple[str, ...]]) -> list[Any]:
        return await self._exchange(b"".join(_pack(c) for c in commands), len(commands))

    async def _exchange(self, payload: bytes, count: int) -> list[Any]:
        self._writer.write(payload)
        await self._writer.drain()
        replies: list[Any] = []
        parser = self._parser
        while True:
            reply = parser.gets()
            while reply is not False:
                replies.append(reply)
                if len(replies) == count:
                    break
                reply = parser.gets()
            if len(replies) == count:
                break
            data = await self._reader.read(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the producer's connection")
            parser.feed(data)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise RawPushError(f"Redis refused a pushed command: {reply}")
        return replies

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
