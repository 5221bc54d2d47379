"""Test helper: every script call (and every multi-stream read) stays on one Cluster slot.

`SlotWatch` follows the test Redis with MONITOR while an engine runs and keeps
the commands of the test's prefix: EVALSHA / EVAL (their KEYS) and XREADGROUP /
XREAD (their streams). `violations()` lists every call whose keys hash to more
than one slot (engine.keys.cluster_slot: CRC16 of the hash tag, mod 16384):
the calls a Redis Cluster would refuse with CROSSSLOT. A real server, real
commands: what the engine sent, whichever module sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis

from engine.keys import cluster_slot

__all__ = ["SlotWatch", "call_keys", "watch_slots"]


def call_keys(args: list[str]) -> tuple[str, list[str]] | None:
    """``(command, keys)`` of a script call or stream read given as its arguments; None for others."""
    if not args:
        return None
    name = args[0].upper()
    if name in ("EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL"):
        n = int(args[2])
        return name, args[3 : 3 + n]
    if name in ("XREADGROUP", "XREAD"):
        upper = [a.upper() for a in args]
        at = upper.index("STREAMS") + 1
        rest = args[at:]
        return name, rest[: len(rest) // 2]
    return None


class SlotWatch:
    """The script calls and stream reads of one prefix seen by MONITOR."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.calls: list[tuple[str, list[str]]] = []
        self.marker = f"{prefix}:monitor-end"
        self.ended = asyncio.Event()

    def take(self, command: str) -> None:
        if self.prefix not in command:
            return
        if self.marker in command:  # everything sent before it has been seen
            self.ended.set()
            return
        found = call_keys(command.split(" "))
        if found is not None and any(k.startswith(self.prefix) for k in found[1]):
            self.calls.append(found)

    def violations(self) -> list[tuple[str, list[str]]]:
        """Calls whose keys lie on more than one slot."""
        return [(name, keys) for name, keys in self.calls if len({cluster_slot(k) for k in keys}) > 1]

    def scripts(self) -> list[list[str]]:
        return [keys for name, keys in self.calls if name.startswith(("EVAL", "FCALL"))]


@contextlib.asynccontextmanager
async def watch_slots(redis_url: str, prefix: str) -> AsyncIterator[SlotWatch]:
    """Run MONITOR on its own connection for the body of the ``async with``."""
    watch = SlotWatch(prefix)
    client = Redis.from_url(redis_url)
    ready = asyncio.Event()

    async def follow() -> None:
        async with client.monitor() as m:
            ready.set()
            while True:
                info: Any = await m.next_command()
                watch.take(str(info.get("command", "")))

    task = asyncio.get_running_loop().create_task(follow())
    await asyncio.wait_for(ready.wait(), 5)
    await asyncio.sleep(0.05)  # MONITOR is on before the body starts
    try:
        yield watch
    finally:
        # MONITOR shows the whole server (other tests' databases too) and may lag:
        # a marker sent last tells when every command before it was seen.
        marker = Redis.from_url(redis_url)
        try:
            await marker.echo(watch.marker)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.ended.wait(), 60)
        finally:
            await marker.aclose()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        with contextlib.suppress(Exception):
            await client.aclose()
