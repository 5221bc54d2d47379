"""What the archive costs at a steady load, per archived event (``sendgate bench --duration``
with ``--history postgresql://…``): one sample per soak interval.

* ``archived``: events the archiver's group acknowledged in the interval (the group's
  ``entries-read`` minus its ``pending``, XINFO GROUPS, Redis 7.0 on);
* ``lag``: unread + pending events of the group at the sample (``sendgate_archive_lag``);
* ``child_us``: the archiver child's CPU (/proc) ÷ ``archived``;
* ``pg_us``: the CPU of every PostgreSQL backend connected to the history database
  (``pg_stat_activity``, each pid's /proc CPU; the probe's own connection left out) ÷
  ``archived``;
* ``redis_us``: Redis' ``INFO commandstats`` usec of XREADGROUP and XACK ÷ ``archived``
  (every client's: the engines read their lanes with XREADGROUP too, so this is an
  upper bound; ``xack_us`` alone is the archiver's and the engines' acks);
* ``pg_rows``: rows inserted / updated (HOT) in the messages partitions (pg_stat_user_tables);
* ``pg_cpu_s``: the backends' CPU itself, which bench/soak.py divides by the jobs done
  (``archive_pg_us_per_msg``, as ``archive_child_us_per_msg``): per job, and right on
  Redis 6.2, whose XINFO GROUPS has no ``entries-read`` (``archived`` reads 0 there and the
  ``*_us`` figures are the interval's totals).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.e2e import proc_cpu_s

__all__ = ["ArchiveProbe"]


class ArchiveProbe:
    def __init__(self, redis: Any, dsn: str, events: list[str], group: str, child_pid: int | None) -> None:
        self.redis = redis
        self.dsn = dsn
        self.events = events
        self.group = group
        self.child_pid = child_pid
        self._conn: Any = None
        self._pg_cpu: dict[int, float] = {}  # backend pid -> CPU at the last sample
        self._mark: dict[str, float] = {}
        self._first: dict[str, float] = {}

    async def start(self) -> None:
        import asyncpg

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

    async def _read(self) -> dict[str, float]:
        archived = lag = added = 0.0
        for stream in self.events:
            try:
                groups: Any = await self.redis.xinfo_groups(stream)
                info: Any = await self.redis.xinfo_stream(stream)
            except Exception:
                continue
            added += int(info.get("entries-added") or 0)
            for g in groups:
                name = g.get("name")
                if (name.decode() if isinstance(name, bytes) else name) == self.group:
                    pending = int(g.get("pending") or 0)
                    read, unread = g.get("entries-read"), g.get("lag")
                    if read is None and not int(info.get("entries-added") or 0):
                        continue  # nothing added yet: nothing archived, no lag
                    if read is None or unread is None:  # Redis does not know right now: no sample
                        archived = lag = float("nan")
                    else:
                        archived += int(read) - pending
                        lag += int(unread) + pending
        cmd = await self.redis.info("commandstats")
        rows = await self._conn.fetchrow(
            "SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_hot_upd), 0) "
            "FROM pg_stat_user_tables WHERE relname LIKE 'messages_p%'")
        return {
            "archived": archived, "lag": lag, "added": added,
            "child": proc_cpu_s(self.child_pid) if self.child_pid else 0.0,
            "pg": await self._pg_backend_cpu(),
            "xreadgroup": float(cmd.get("cmdstat_xreadgroup", {}).get("usec", 0)),
            "xack": float(cmd.get("cmdstat_xack", {}).get("usec", 0)),
            "ins": float(rows[0]), "upd": float(rows[1]), "hot": float(rows[2]),
        }

    async def sample(self) -> dict[str, Any]:
        """Since the last sample (or, when Redis did not know the group's position then,
        the one before: ``null`` figures now)."""
        now = await self._read()
        if now["archived"] != now["archived"]:  # NaN
            return {"archived": None, "lag": None}
        return self._since(now, self._mark, advance=True)

    async def total(self, catch_up_s: float) -> dict[str, Any]:
        """Wait (up to ``catch_up_s``) for the archive to catch up, then the figures of the
        whole run: every event the engine added, archived."""
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
        d = {k: now[k] - (mark.get(k, 0.0) if mark.get(k, 0.0) == mark.get(k, 0.0) else 0.0) for k in now}
        if d["archived"] != d["archived"]:
            return {"archived": None, "lag": None}
        if advance:
            self._mark = now
        n = max(1.0, d["archived"])
        return {
            "archived": int(d["archived"]), "lag": int(now["lag"]), "added": int(d["added"]),
            "child_us": round(1e6 * d["child"] / n, 2), "pg_us": round(1e6 * d["pg"] / n, 2),
            "redis_xreadgroup_us": round(d["xreadgroup"] / n, 2), "redis_xack_us": round(d["xack"] / n, 2),
            "pg_rows": {"ins": int(d["ins"]), "upd": int(d["upd"]), "hot": int(d["hot"])},
            "pg_cpu_s": round(d["pg"], 4),  # the backends' CPU itself (per job: bench/soak.py; Redis 6.2 too)
        }
