"""What the archive costs at a steady load, per archived event (``sendgate bench --duration``
with ``--history postgresql://…``): one sample per soak interval.

* ``archived``: events the archiver's group acknowledged in the interval: the events
  added to the stream so far minus the group's unread and pending ones, each sample;
* ``lag``: unread + pending events of the group at the sample (``sendgate_archive_lag``);
  ``behind_s``: the age of the oldest of them (``sendgate_archive_behind_seconds``);
* ``child_us``: the archiver child's CPU (/proc) ÷ ``archived``; ``child_cpu_s`` the
  interval's total;
* ``pg_us``: the CPU of every PostgreSQL backend connected to the history database
  (``pg_stat_activity``, each pid's /proc CPU; the probe's own connection left out) ÷
  ``archived``; ``pg_cpu_s`` the interval's total;
* ``redis_us``: Redis' ``INFO commandstats`` usec of XREADGROUP and XACK ÷ ``archived``
  (every client's: the engines read their lanes with XREADGROUP too, so this is an
  upper bound; ``xack_us`` alone is the archiver's and the engines' acks);
* ``pg_rows``: rows inserted / updated (HOT) in the messages partitions (pg_stat_user_tables);
* ``pg_cpu_s`` / ``child_cpu_s``: the backends' and the archiver child's CPU itself, which
  bench/soak.py divides by the jobs done (``archive_pg_us_per_msg``,
  ``archive_child_us_per_msg``): per job, whatever the Redis version.

The per-event figures are ``None`` in an interval that archived nothing (the CPU spent
then is in the totals: a stalled archive is not an archive that costs 30 s per event).

Redis 6.2 (the embedded default of ``sendgate bench``) has neither the group's
``entries-read`` and ``lag`` (XINFO GROUPS) nor the stream's ``entries-added``
(XINFO STREAM); Redis 7 lacks ``lag`` past a deleted entry. The probe then counts:
the unread entries after the group's ``last-delivered-id`` (XRANGE, up to
`COUNT_CAP`, beyond that estimated from the entry ids' times as the archiver's
``lag()`` does, engine.backlog.unread_estimate), and the events added from what the
caller's own reader has read of each stream from its start (``seen``: the soak reads
every event) plus the entries after the last of them (the same count). Without
``seen``, the stream's length (exact while nothing was trimmed). Until session 22 the
probe read ``entries-read`` alone: on 6.2 every interval's ``archived`` and ``lag``
were 0, the per-event figures the totals, and ``caught_up`` true however far behind.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.e2e import proc_cpu_s
from engine.backlog import unread_estimate

__all__ = ["COUNT_CAP", "ArchiveProbe"]

#: Entries the probe counts after a position (XRANGE) before it estimates the rest.
COUNT_CAP = 20_000

# per stream: (events the caller's reader has read from the stream's start, the id of the last)
Seen = Callable[[], dict[str, tuple[int, Any]]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(entry_id: Any) -> int:
    return int(_text(entry_id).partition("-")[0] or 0)


class ArchiveProbe:
    def __init__(
        self, redis: Any, dsn: str, events: list[str], group: str, child_pid: int | None, seen: Seen | None = None
    ) -> None:
        self.redis = redis
        self.dsn = dsn
        self.events = events
        self.group = group
        self.child_pid = child_pid
        self.seen = seen
        self._conn: Any = None
        self._raw: Any = None  # XRANGE replies unparsed: counted, never read
        self._pg_cpu: dict[int, float] = {}  # backend pid -> CPU at the last sample
        self._mark: dict[str, float] = {}
        self._first: dict[str, float] = {}

    async def start(self) -> None:
        import asyncpg
        from redis.asyncio import Redis

        self._raw = Redis(connection_pool=self.redis.connection_pool)
        self._raw.response_callbacks["XRANGE"] = lambda response, **options: response
        self._conn = await asyncpg.connect(self.dsn)
        self._mark = self._first = await self._read()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def _pg_backend_cpu(self) -> float:
        rows = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        for r in rows:
            cpu = proc_cpu_s(r[0])
            if cpu:
                self._pg_cpu[r[0]] = cpu
        return sum(self._pg_cpu.values())  # a backend gone keeps its last figure

    async def _after(self, stream: str, position: Any, info: dict[str, Any]) -> tuple[int, Any]:
        """Entries after ``position`` (counted up to `COUNT_CAP`, estimated beyond) and
        the id of the first of them (None: none)."""
        after: Any = await self._raw.xrange(stream, "(" + _text(position), "+", count=COUNT_CAP)
        n = len(after or ())
        first_after = after[0][0] if n else None
        if n < COUNT_CAP:
            return n, first_after
        first, last = info.get("first-entry"), info.get("last-entry")
        return unread_estimate(n, int(info.get("length") or 0), first[0] if first else None,
                               last[0] if last else None, position), first_after

    async def _stream(self, stream: str) -> tuple[float, float, float, int | None] | None:
        """(events added so far, acknowledged by the group so far, unread + pending, ms of
        the oldest of those); None when the stream or the group is not there yet."""
        try:
            groups: Any = await self.redis.xinfo_groups(stream)
            info: Any = await self.redis.xinfo_stream(stream)
        except Exception:
            return None
        g = next((x for x in groups if _text(x.get("name")) == self.group), None)
        if g is None:
            return None
        pending = int(g.get("pending") or 0)
        position = g.get("last-delivered-id") or "0-0"
        first_unread: Any = None
        if g.get("lag") is not None:  # Redis 7, no deleted entry after the position
            unread = int(g["lag"])
            if unread:
                after: Any = await self._raw.xrange(stream, "(" + _text(position), "+", count=1)
                first_unread = after[0][0] if after else None
        else:
            unread, first_unread = await self._after(stream, position, info)
        read, added_7 = g.get("entries-read"), info.get("entries-added")
        if read is not None and g.get("lag") is not None and added_7 is not None:
            added, acked = int(added_7), int(read) - pending  # Redis 7's own counts
        else:
            seen = self.seen() if self.seen is not None else {}
            if added_7 is not None:
                added = int(added_7)
            elif stream in seen:
                count, last_id = seen[stream]
                added = count if last_id is None else count + (await self._after(stream, last_id, info))[0]
            else:
                added = int(info.get("length") or 0)  # exact while nothing was trimmed
            acked = added - unread - pending
        oldest: int | None = None
        if pending:
            summary: Any = await self.redis.xpending(stream, self.group)
            low = summary.get("min") if isinstance(summary, dict) else None
            if low:
                oldest = _ms(low)
        if oldest is None and first_unread is not None:
            oldest = _ms(first_unread)
        return float(added), float(acked), float(unread + pending), oldest

    async def _read(self) -> dict[str, float]:
        archived = lag = added = 0.0
        oldest: int | None = None
        for stream in self.events:
            got = await self._stream(stream)
            if got is None:
                continue
            n_added, acked, behind, low = got
            added += n_added
            archived += acked
            lag += behind
            if low is not None:
                oldest = low if oldest is None else min(oldest, low)
        cmd = await self.redis.info("commandstats")
        rows = await self._conn.fetchrow(
            "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_hot_upd), 0) "
            "FROM pg_stat_user_tables WHERE relname LIKE 'messages_p%'")
        return {
            "archived": archived, "lag": lag, "added": added,
            "behind_s": max(0.0, time.time() - oldest / 1000) if oldest is not None else 0.0,
            "child": proc_cpu_s(self.child_pid) if self.child_pid else 0.0,
            "pg": await self._pg_backend_cpu(),
            "xreadgroup": float(cmd.get("cmdstat_xreadgroup", {}).get("usec", 0)),
            "xack": float(cmd.get("cmdstat_xack", {}).get("usec", 0)),
            "ins": float(rows[0]), "upd": float(rows[1]), "hot": float(rows[2]),
        }

    async def sample(self) -> dict[str, Any]:
        """Since the last sample."""
        return self._since(await self._read(), self._mark, advance=True)

    async def total(self, catch_up_s: float) -> dict[str, Any]:
        """Wait (up to ``catch_up_s``) for the archive to catch up, then the figures of the
        whole run: every event the engine added, archived (``caught_up``: nothing unread or
        pending at the end)."""
        deadline = time.monotonic() + catch_up_s
        while True:
            now = await self._read()
            if now["lag"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        out = self._since(now, self._first, advance=False)
        out["caught_up"] = now["lag"] == 0
        return out

    def _since(self, now: dict[str, float], mark: dict[str, float], *, advance: bool) -> dict[str, Any]:
        d = {k: now[k] - mark.get(k, 0.0) for k in now}
        if advance:
            self._mark = now
        n = d["archived"]

        def per_event(x: float, scale: float) -> float | None:
            return round(scale * x / n, 2) if n > 0 else None

        return {
            "archived": int(n), "lag": int(now["lag"]), "behind_s": round(now["behind_s"], 1), "added": int(d["added"]),
            "child_us": per_event(d["child"], 1e6), "pg_us": per_event(d["pg"], 1e6),
            "redis_xreadgroup_us": per_event(d["xreadgroup"], 1.0), "redis_xack_us": per_event(d["xack"], 1.0),
            "child_cpu_s": round(d["child"], 3),
            "pg_rows": {"ins": int(d["ins"]), "upd": int(d["upd"]), "hot": int(d["hot"])},
            "pg_cpu_s": round(d["pg"], 4),  # the backends' CPU itself (per job: bench/soak.py; Redis 6.2 too)
        }
