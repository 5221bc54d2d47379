"""Idempotency marks read or taken from Python (erasure, tools, tests): one
marks.lua call per shard, the same Lua as the claims' (engine/marks_lib.lua).

A mark is a field of a small hash: ``P:marks:<s>:<b>`` holds job id -> mark for the
generation starting at unix second ``s`` (a multiple of the window W,
``[engine] idempotency_hours``) and bucket ``b`` = the top log2(k) bits of
:func:`engine.keys.marks_hash` (the CRC-32 of the id; ``k`` of ``P:marks:<s>``,
the generation's bucket count; :func:`engine.keys.marks_bucket_of`). A lookup reads the current
and the previous generation, so a mark is seen for at least W and at most 2W
(plus a margin for engine clocks that disagree): docs/INTERNALS.md, "Idempotency
marks".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

from engine.keys import Keys
from engine.scripts import Script, marks_call

__all__ = ["read_marks", "take_marks"]

_SCRIPT = Script("marks")


def _now_ms(now_ms: int | None) -> int:
    return int(time.time() * 1000) if now_ms is None else now_ms


async def read_marks(
    redis: Redis, keys: Keys, job_ids: Sequence[str], window_s: int, now_ms: int | None = None
) -> list[str]:
    """Each id's mark as the claims would see it at ``now_ms`` ("" for none); all ids of one shard."""
    if not job_ids:
        return []
    reply = await _SCRIPT(redis, *marks_call(keys, "get", job_ids, window_s, _now_ms(now_ms)))
    return [v.decode() if isinstance(v, bytes) else str(v) for v in reply]


async def take_marks(
    redis: Redis, keys: Keys, job_ids: Sequence[str], value: str, window_s: int, now_ms: int | None = None
) -> list[bool]:
    """``value`` as the mark of each id that has none (NX, as a claim takes it); True where taken."""
    if not job_ids:
        return []
    reply = await _SCRIPT(redis, *marks_call(keys, "take", job_ids, window_s, _now_ms(now_ms), value))
    return [bool(v) for v in reply]


def take_marks_source() -> str:
    """marks.lua's text, for a call inside a transaction (``pipeline.eval``: no NOSCRIPT retry there)."""
    return _SCRIPT.source


__all__ += ["take_marks_source"]
