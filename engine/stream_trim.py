"""Stream retention: which stream keeps its entries how long, and trimming by it.

Records with a TTL expire by themselves; streams do not, so they are trimmed
by entry age (XTRIM MINID, entry ids start with unix ms). The engine does it
periodically (approximate trim, cheap); ``sendgate purge`` does it at once
(exact). One plan serves both.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from engine.config import Settings
from engine.keys import Keys

__all__ = ["stream_retention_days", "trim_streams"]


def stream_retention_days(settings: Settings) -> list[tuple[str, int]]:
    """(stream, days) for every stream sendgate writes (docs/contract.md §4, "Privacy")."""
    keys = Keys(settings.redis.prefix)
    d = settings.privacy.retention_days
    plan = [(lane, d.payload) for lane in keys.lanes()]  # raw job payloads
    plan += [  # parked job payloads (engine/pipeline.py; also trimmed as they are sent)
        (keys.park(c.name, lane, client), d.payload)
        for c in settings.carriers for lane in ("high", "normal", "bulk") for client in ("", *(cl.id for cl in settings.clients))
    ]
    plan += [
        (keys.events, d.message),
        (keys.dead, d.message),
        (keys.inbound, d.message),
        (keys.dlr_unmatched, d.message),
        (keys.dlr_invalid, d.message),
        (keys.callbacks_failed, d.message),
        (keys.audit, d.audit),
    ]
    return plan


async def trim_streams(redis: Redis, settings: Settings, *, approximate: bool) -> list[tuple[str, int, int]]:
    """Trim every stream to its retention; returns (stream, days, entries removed)."""
    now_ms = int(time.time() * 1000)
    out: list[tuple[str, int, int]] = []
    for stream, days in stream_retention_days(settings):
        removed = await redis.xtrim(stream, minid=f"{now_ms - days * 86_400_000}-0", approximate=approximate)
        out.append((stream, days, int(removed)))
    return out
