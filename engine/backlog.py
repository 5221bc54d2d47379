"""Lane backlogs: how many jobs wait in each lane, for the gauge, /readyz and producers.

Why sampled: a backlog is XINFO GROUPS on three streams (plus the park
streams, which the pipeline reads in `Pipeline.check_parked`); the engine
samples it every few seconds, never per job, and writes the figures to
``P:backlog`` so a producer reads one small hash instead of asking the
streams itself (docs/contract.md §2.5, "Backpressure").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from engine.keys import Keys

__all__ = ["BACKLOG_FRESH_S", "LANE_NAMES", "lane_backlog", "read_backlog", "write_backlog"]

LANE_NAMES = ("high", "normal", "bulk")

BACKLOG_FRESH_S = 30.0
"""A sample older than this is not trusted by `read_backlog` (no engine running)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def lane_backlog(redis: Redis, keys: Keys, group: str) -> dict[str, int]:
    """Each lane's entries not yet read by ``group`` plus read and not acked."""
    pipe = redis.pipeline(transaction=False)
    for stream in keys.lanes():
        pipe.xinfo_groups(stream)
    replies = await pipe.execute(raise_on_error=False)
    out: dict[str, int] = {}
    for lane, groups in zip(LANE_NAMES, replies, strict=True):
        n = 0
        if not isinstance(groups, Exception):
            for g in groups:
                if _text(g.get("name")) == group:
                    lag = g.get("lag")
                    n = int(g.get("pending") or 0) + (int(lag) if lag is not None else 0)
        out[lane] = n
    return out


async def write_backlog(redis: Redis, keys: Keys, backlog: Mapping[str, int], high_water: int) -> None:
    """Publish a sample for producers (``P:backlog``, 60 s TTL)."""
    pipe = redis.pipeline(transaction=True)
    mapping: dict[str | bytes, int] = dict(backlog.items())
    mapping.update(high_water=high_water, ts=int(time.time() * 1000))
    pipe.hset(keys.backlog, mapping=mapping)  # type: ignore[arg-type]
    pipe.expire(keys.backlog, 60)
    await pipe.execute()


async def read_backlog(redis: Redis, keys: Keys) -> tuple[dict[str, int], int] | None:
    """The engines' last sample and their ``lane_high_water``, or None when stale or absent."""
    raw = await redis.hgetall(keys.backlog)
    data = {_text(k): int(v) for k, v in raw.items()}
    if not data or time.time() * 1000 - data.get("ts", 0) > BACKLOG_FRESH_S * 1000:
        return None
    return {lane: data.get(lane, 0) for lane in LANE_NAMES}, data.get("high_water", 0)
