"""Server-side scripts: loaded once, called by SHA, reloaded after a flush.

A batch's Redis work is one or two script calls (DESIGN.md, "Where the time
goes"): a command per message through redis-py costs ~12 µs of Python CPU;
one EVALSHA per batch with a JSON payload costs a few µs per message.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

__all__ = ["Script"]


class Script:
    """One Lua script from the engine package, run with EVALSHA (EVAL on NOSCRIPT)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files("engine").joinpath(f"{name}.lua").read_text(encoding="utf-8")
        import hashlib

        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await redis.eval(self.source, len(keys), *keys, *args)
