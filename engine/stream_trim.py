"""Stream trimming: streams keep what someone still needs, not the retention period.

Records with a TTL expire by themselves; streams do not, so they are trimmed
(XTRIM MINID: entry ids start with unix ms). Redis keeps only hot state
(docs/INTERNALS.md, "Redis keeps hot state"), so the rule is *position*, not
age, wherever a consumer group says what is still needed:

* **lanes** (the raw payloads: number and text in clear) keep what the engine's
  group has not acknowledged: trimmed up to the group's oldest pending or
  undelivered entry, never past it. The payload retention stays an upper
  bound (older entries go whatever their state, as before).
* **events** keep what the history archiver (``[history] group``) has not
  acknowledged, but never longer than ``[engine] events_keep_hours`` (older
  events go anyway, counted in ``sendgate_events_trimmed_unarchived``) and at
  least ``[engine] events_min_keep_s`` (upstream apps that read the stream
  without a group). With ``[history] enabled = false``: ``events_keep_hours``
  and ``streams_maxlen`` only.
* **inbound messages** keep the message retention; with a history store, the
  scripts do not cap the stream's length (no MAXLEN), and over
  ``streams_maxlen`` only what the inbound archiver's group has acknowledged
  goes: an entry leaves Redis unarchived only past the retention.
* **dead letters** keep the payload retention (they hold the job's fields);
  parked receipts and failed callbacks the message retention;
  the audit log its own.

The engine trims once a minute (approximate: whole nodes only, so never past a
bound); ``sendgate purge`` at once (exact). One plan serves both. An approximate
XTRIM evicts at most its LIMIT entries per call, by default 100 stream nodes
(10,000 entries): less than a busy minute's events, so a stream trimmed once a
minute with the default kept growing. The trimmer passes its own LIMIT
(``TRIM_LIMIT`` entries per call: whole nodes freed, a bounded pause for Redis)
and calls again while a call took its full LIMIT.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine.config import Settings
from engine.keys import Keys, shard_keys

__all__ = ["TrimResult", "group_low_id", "stream_retention_days", "trim_streams"]

_DAY_MS = 86_400_000

#: Entries one approximate XTRIM may evict (its LIMIT); calls repeat while one
#: reaches it, at most ``_TRIM_ROUNDS`` times a pass (10 million entries a minute).
TRIM_LIMIT = 100_000
_TRIM_ROUNDS = 100


async def _trim_approximately(redis: Redis, stream: str, **bound: Any) -> int:
    """XTRIM ``~`` with ``bound`` (minid= or maxlen=), ``TRIM_LIMIT`` entries a call,
    again while a call took its full LIMIT; returns the entries removed."""
    removed = 0
    for _ in range(_TRIM_ROUNDS):
        got = int(await redis.xtrim(stream, approximate=True, limit=TRIM_LIMIT, **bound))
        removed += got
        if got < TRIM_LIMIT // 2:  # whole nodes only: a full call ends within a node of LIMIT
            break
    return removed


class TrimResult(NamedTuple):
    """One stream's trim: what it removed and by which rule."""

    stream: str
    rule: str
    """For people: "past 60 days", "acknowledged by group sendgate", ..."""
    removed: int


def stream_retention_days(settings: Settings) -> list[tuple[str, int]]:
    """(stream, days): the age past which every stream's entries go, whatever else holds
    them (docs/contract.md §4, "Privacy"); lanes and events go sooner (see the module doc)."""
    d = settings.privacy.retention_days
    plan: list[tuple[str, int]] = []
    for keys in shard_keys(settings.redis.prefix, settings.redis.shards):  # every shard's streams
        plan += [(lane, d.payload) for lane in keys.lanes()]  # raw job payloads
        plan += [  # parked job payloads (engine/pipeline.py; also trimmed as they are sent)
            (keys.park(c.name, lane, client), d.payload)
            for c in settings.carriers for lane in ("high", "normal", "bulk")
            for client in ("", *(cl.id for cl in settings.clients))
        ]
        plan += [
            (keys.events, d.message),
            (keys.dead, d.payload),
            (keys.inbound, d.message),
            (keys.dlr_unmatched, d.message),
            (keys.dlr_invalid, d.message),
        ]
    keys = Keys(settings.redis.prefix)
    plan += [
        (keys.callbacks_failed, d.message),
        (keys.audit, d.audit),
    ]
    return plan


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next_id(entry_id: str) -> str:
    ms, seq = _id_key(entry_id)
    return f"{ms}-{seq + 1}"


async def group_low_id(redis: Redis, stream: str, group: str | None = None) -> str | None:
    """The smallest entry id of ``stream`` that ``group`` (every group, when None) has
    not acknowledged: its oldest pending entry, else the one after the last delivered.
    ``XTRIM MINID <it>`` removes only acknowledged entries. None: no such group (or stream).
    """
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return None
    low: str | None = None
    for g in groups:
        name = _text(g.get("name", ""))
        if group is not None and name != group:
            continue
        candidate = _next_id(_text(g.get("last-delivered-id") or "0-0"))
        if int(g.get("pending") or 0):
            summary: Any = await redis.xpending(stream, name)
            first = summary.get("min") if isinstance(summary, dict) else None
            if first:
                candidate = min(candidate, _text(first), key=_id_key)
        low = candidate if low is None else min(low, candidate, key=_id_key)
    return low


async def trim_streams(
    redis: Redis, settings: Settings, *, approximate: bool, metrics: Any = None
) -> list[TrimResult]:
    """Trim every stream by its rule (see the module docstring); returns what each removed.

    ``metrics``: the engine's `Metrics`, whose ``events_trimmed_unarchived`` counts
    events that went before the archiver had them (older than events_keep_hours).
    """
    now_ms = int(time.time() * 1000)
    shards = shard_keys(settings.redis.prefix, settings.redis.shards)
    lanes = {lane for keys in shards for lane in keys.lanes()}
    events = {keys.events for keys in shards}
    inbound = {keys.inbound for keys in shards}
    e = settings.engine
    out: list[TrimResult] = []

    async def minid(stream: str, bound_ms_or_id: int | str, rule: str) -> int:
        bound = bound_ms_or_id if isinstance(bound_ms_or_id, str) else f"{max(0, bound_ms_or_id)}-0"
        if approximate:
            removed = await _trim_approximately(redis, stream, minid=bound)
        else:
            removed = int(await redis.xtrim(stream, minid=bound, approximate=False))
        out.append(TrimResult(stream, rule, removed))
        return removed

    for stream, days in stream_retention_days(settings):
        age_bound = now_ms - days * _DAY_MS
        if stream in lanes or any(stream.startswith(k.park_prefix) for k in shards):  # park streams: lanes per carrier
            low = await group_low_id(redis, stream, e.group)
            if low is not None and _id_key(low) > (age_bound, 0):
                await minid(stream, low, f"acknowledged by group {e.group}")
            else:
                await minid(stream, age_bound, f"past {days} days")
        elif stream in events:
            await _trim_events(redis, settings, stream, now_ms, minid, metrics)
        elif stream in inbound and settings.history.enabled:
            await _trim_inbound(redis, settings, stream, age_bound, days, minid)
        else:
            await minid(stream, age_bound, f"past {days} days")
    return out


async def _trim_inbound(redis: Redis, settings: Settings, stream: str, age_bound: int, days: int, minid: Any) -> None:
    """Past the message retention, entries go (the store drops those days too); over
    ``streams_maxlen``, the entries the inbound archiver has (never one it has not)."""
    from engine.history.inbound import inbound_group

    await minid(stream, age_bound, f"past {days} days")
    if int(await redis.xlen(stream)) > settings.engine.streams_maxlen:
        group = inbound_group(settings.history.group)
        low = await group_low_id(redis, stream, group)
        if low is not None:
            await minid(stream, low, f"over streams_maxlen, archived by group {group}")


async def _trim_events(redis: Redis, settings: Settings, events: str, now_ms: int, minid: Any, metrics: Any) -> None:
    e = settings.engine
    keep_ms = int(e.events_keep_hours * 3_600_000)
    hours = f"{e.events_keep_hours:g} h"
    oldest_allowed = now_ms - keep_ms
    if not settings.history.enabled:
        await minid(events, oldest_allowed, f"older than {hours}")
        await _trim_approximately(redis, events, maxlen=e.streams_maxlen)
        return
    low = await group_low_id(redis, events, settings.history.group)
    recent = now_ms - int(e.events_min_keep_s * 1000)
    if low is not None:
        # archived, and past the few minutes kept for readers without a group
        bound = min(low, f"{max(0, recent)}-0", key=_id_key)
        await minid(events, bound, f"archived by group {settings.history.group}")
    removed = await minid(events, oldest_allowed, f"older than {hours}, archived or not")
    if removed and low is not None and _id_key(low) > (oldest_allowed, 0):
        removed = 0  # the archiver had them all: the first trim would have, had it run exact
    if removed and metrics is not None:
        metrics.events_trimmed_unarchived.inc(removed)
