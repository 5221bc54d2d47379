"""Lane backlogs: how many jobs wait in each lane, for the gauge, /readyz and producers.

Why sampled: a backlog is XINFO GROUPS on three streams (plus the park
streams, which the pipeline reads in `Pipeline.check_parked`); the engine
samples it every few seconds, never per job, and writes the figures to
``P:backlog`` so a producer reads one small hash instead of asking the
streams itself (docs/contract.md §2.5, "Backpressure").
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from engine.keys import Keys

__all__ = [
    "BACKLOG_FRESH_S", "LANE_NAMES", "group_backlog", "lane_backlog", "oldest_unread_ms", "read_backlog",
    "unread_estimate", "write_backlog",
]

LANE_NAMES = ("high", "normal", "bulk")

BACKLOG_FRESH_S = 30.0
"""A sample older than this is not trusted by `read_backlog` (no engine running)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_ms(entry_id: Any) -> int:
    return int(_text(entry_id).partition("-")[0] or 0)


def unread_estimate(counted: int, length: int, first_id: Any, last_id: Any, position: Any) -> int:
    """Entries of a stream after ``position`` when only ``counted`` of them were read
    (a bounded count that reached its bound): the stream's ``length`` shared out by
    the entry ids' times (``first_id``, ``last_id``: its first and last entries),
    as if entries came at an even rate; never less than ``counted`` nor more than
    ``length``. All of it when the ids show no spread in time or ``position`` is
    before the first entry. (Redis < 7 has no ``lag``: the ops sampler's lane lag.)"""
    if first_id is None or last_id is None:
        return counted
    t_first, t_last, t_pos = _id_ms(first_id), _id_ms(last_id), _id_ms(position)
    if t_last <= t_first or t_pos < t_first:
        return max(counted, length)
    return max(counted, min(length, round(length * (t_last - t_pos) / (t_last - t_first))))


async def group_backlog(redis: Redis, streams: list[str], group: str) -> list[tuple[dict[str, Any], int] | None]:
    """Per stream: ``group``'s XINFO GROUPS entry and its unread entries (None: no such group).

    Redis 7 says how many are unread (``lag``). Redis 6.2 does not: then 0 when
    the group read up to the stream's last id, the stream's length when it
    never read, else 1 ("some": enough to look, never a false alarm of size).
    """
    pipe = redis.pipeline(transaction=False)
    for stream in streams:
        pipe.xinfo_groups(stream)
    replies = await pipe.execute(raise_on_error=False)
    found: list[dict[str, Any] | None] = []
    for groups in replies:
        g = None
        if not isinstance(groups, Exception):
            g = next((x for x in groups if _text(x.get("name")) == group), None)
        found.append(g)
    unknown = [i for i, g in enumerate(found) if g is not None and g.get("lag") is None]
    infos: dict[int, Any] = {}
    if unknown:  # Redis < 7
        pipe = redis.pipeline(transaction=False)
        for i in unknown:
            pipe.xinfo_stream(streams[i])
        infos = dict(zip(unknown, await pipe.execute(raise_on_error=False), strict=True))
    out: list[tuple[dict[str, Any], int] | None] = []
    for i, g in enumerate(found):
        if g is None:
            out.append(None)
            continue
        lag = g.get("lag")
        if lag is None:
            info = infos.get(i)
            last = _text(g.get("last-delivered-id"))
            if isinstance(info, Exception) or info is None:
                lag = 1
            elif _text(info.get("last-generated-id")) == last:
                lag = 0
            elif last in ("0-0", "0"):
                lag = int(info.get("length") or 0)
            else:
                lag = 1
        out.append((g, int(lag)))
    return out


async def lane_backlog(redis: Redis, keys: Keys | Sequence[Keys], group: str) -> dict[str, int]:
    """Each lane's entries not yet read by ``group`` plus read and not acked; ``keys``:
    one shard's, or several shards' (their lanes added up, all read in one pipeline:
    two round trips for every shard, not two per shard)."""
    shards = (keys,) if isinstance(keys, Keys) else tuple(keys)
    streams = [stream for k in shards for stream in k.lanes()]
    out: dict[str, int] = dict.fromkeys(LANE_NAMES, 0)
    for i, found in enumerate(await group_backlog(redis, streams, group)):
        if found is not None:
            out[LANE_NAMES[i % 3]] += int(found[0].get("pending") or 0) + found[1]
    return out


async def oldest_unread_ms(redis: Redis, streams: list[str], group: str) -> int:
    """How long (ms) the oldest entry of ``streams`` that ``group`` has not read yet has
    waited: now (Redis' ``TIME``) minus the time in its id (``*`` ids: when it was
    added); 0 when the group has read every entry (entries read and not acked do not
    count) or has no group there. Two round trips: XINFO GROUPS of every stream, then
    TIME and one XRANGE (COUNT 1) per stream with unread entries."""
    found = await group_backlog(redis, streams, group)
    waiting = [(stream, f[0]) for stream, f in zip(streams, found, strict=True) if f is not None and f[1] > 0]
    if not waiting:
        return 0
    pipe = redis.pipeline(transaction=False)
    pipe.time()
    for stream, g in waiting:
        pipe.xrange(stream, "(" + _text(g.get("last-delivered-id") or "0-0"), "+", count=1)
    now, *firsts = await pipe.execute()
    oldest = min((_id_ms(first[0][0]) for first in firsts if first), default=None)
    if oldest is None:
        return 0
    return max(0, int(now[0]) * 1000 + int(now[1]) // 1000 - oldest)


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
