"""The PostgreSQL history store (production): asyncpg, one row per job, partitioned by day.

Writing a batch is three statements in one transaction, whatever its size:

1. ``COPY`` the batch's deltas (one per job, engine/history/record.py) into
   ``history_stage``, a temporary table of the connection (``ON COMMIT DELETE
   ROWS``) — the binary COPY is the cheapest way into PostgreSQL from Python;
2. move each staged delta onto the day of the job's existing row, looking
   back ``lookback_days`` (a receipt comes up to ``dlr_wait`` after the submit,
   so its row is in one of the last few partitions): a job never gets a
   second row, whichever day its later events fall on;
3. ``INSERT … SELECT … ON CONFLICT (job_id, day) DO UPDATE`` with the merge
   rules, so applying the same batch again changes nothing.

A transaction-level advisory lock serialises batches of several archivers:
two events of one job archived at once by two processes could otherwise both
miss the other's uncommitted row and insert two.

Partitions are ``messages_pYYYYMMDD`` (a range of one UTC day), created a few
days ahead and on demand for a day that has none (an old event replayed), and
dropped whole once every row in them is past retention: no DELETE, no vacuum.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from engine.history.migrations import SCHEMA_VERSION_DDL, migrations
from engine.history.record import HistoryRow, JobDelta
from engine.history.store import HistoryError, HistoryUnavailable

__all__ = ["PostgresHistory"]

_EPOCH = dt.date(1970, 1, 1)
_LOCK_WRITE = 0x53474857  # "SGHW": serialises batch writes
_LOCK_MIGRATE = 0x5347484D  # "SGHM": one migrator at a time
_DAYS_AHEAD = 2
# Room on each page for a row's receipt update to stay on the page (a HOT update:
# no new entry in any of the four indexes); about halves the merge of a batch that
# is half receipts, for a table ~20 % larger.
_FILLFACTOR = 80

_STAGE_COLUMNS = (
    "job_id", "day", "ref", "client", "kind", "carrier", "parts", "encoding", "message_ids",
    "to_hash", "to_mask", "first_ms", "submitted_ms", "final_state", "final_ms", "error",
    "events", "errors", "retention_until",
)
_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS history_stage (
    job_id text NOT NULL, day date NOT NULL, ref text, client text, kind text, carrier text,
    parts integer, encoding text, message_ids text, to_hash text, to_mask text,
    first_ms bigint, submitted_ms bigint, final_state text, final_ms bigint, error text,
    events jsonb, errors jsonb, retention_until bigint
) ON COMMIT DELETE ROWS
"""
# The job ids go in as an array so that each recent partition is probed through
# its primary key (job_id = ANY …): joining the unanalysed temp table instead let
# the planner hash a whole day's partition per batch.
_MOVE_TO_EXISTING_DAY = """
UPDATE history_stage s SET day = m.day
FROM messages m
WHERE m.job_id = ANY($3::text[]) AND m.day >= $1 AND m.day <= $2
  AND m.job_id = s.job_id AND m.day <> s.day
"""
_cols = ", ".join(_STAGE_COLUMNS)
_MERGE = f"""
INSERT INTO messages AS m ({_cols}, updated_ms)
SELECT {_cols}, $1::bigint FROM history_stage
ON CONFLICT (job_id, day) DO UPDATE SET
    ref = CASE WHEN EXCLUDED.ref <> '' AND m.erased_ms = 0 THEN EXCLUDED.ref ELSE m.ref END,
    client = CASE WHEN EXCLUDED.client <> '' THEN EXCLUDED.client ELSE m.client END,
    kind = CASE WHEN EXCLUDED.kind <> '' THEN EXCLUDED.kind ELSE m.kind END,
    carrier = CASE WHEN EXCLUDED.carrier <> '' THEN EXCLUDED.carrier ELSE m.carrier END,
    parts = CASE WHEN EXCLUDED.parts > 0 THEN EXCLUDED.parts ELSE m.parts END,
    encoding = CASE WHEN EXCLUDED.encoding <> '' THEN EXCLUDED.encoding ELSE m.encoding END,
    message_ids = CASE WHEN EXCLUDED.message_ids <> '' THEN EXCLUDED.message_ids ELSE m.message_ids END,
    to_hash = CASE WHEN EXCLUDED.to_hash <> '' THEN EXCLUDED.to_hash ELSE m.to_hash END,
    to_mask = CASE WHEN EXCLUDED.to_mask <> '' AND m.erased_ms = 0 THEN EXCLUDED.to_mask ELSE m.to_mask END,
    first_ms = LEAST(m.first_ms, EXCLUDED.first_ms),
    submitted_ms = LEAST(m.submitted_ms, EXCLUDED.submitted_ms),
    final_state = CASE WHEN EXCLUDED.final_ms IS NOT NULL AND (m.final_ms IS NULL OR EXCLUDED.final_ms >= m.final_ms)
        THEN EXCLUDED.final_state ELSE m.final_state END,
    final_ms = GREATEST(m.final_ms, EXCLUDED.final_ms),
    error = CASE WHEN EXCLUDED.error <> '' THEN EXCLUDED.error ELSE m.error END,
    events = m.events || EXCLUDED.events,
    errors = m.errors || EXCLUDED.errors,
    retention_until = GREATEST(m.retention_until, EXCLUDED.retention_until),
    updated_ms = EXCLUDED.updated_ms
"""
_SELECT = (
    "SELECT job_id, day, ref, client, kind, carrier, parts, encoding, message_ids, to_hash, to_mask, "
    "first_ms, submitted_ms, final_state, final_ms, error, events, errors, retention_until, updated_ms "
    "FROM messages"
)
_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'messages'::regclass
"""

# Errors that mean "the database is not there right now", not "the statement is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def _partition_name(day: int) -> str:
    return "messages_p" + (_EPOCH + dt.timedelta(days=day)).strftime("%Y%m%d")


def _partition_day(name: str) -> int | None:
    try:
        return (dt.datetime.strptime(name[len("messages_p"):], "%Y%m%d").date() - _EPOCH).days
    except ValueError:
        return None


def _row(r: Any) -> HistoryRow:
    return HistoryRow(
        job_id=r[0], day=r[1].isoformat(), ref=r[2], client=r[3], kind=r[4], carrier=r[5], parts=r[6],
        encoding=r[7], message_ids=r[8], to_hash=r[9], to_mask=r[10], first_ms=r[11],
        submitted_ms=r[12], final_state=r[13], final_ms=r[14], error=r[15],
        events=orjson.loads(r[16]), errors=orjson.loads(r[17]), retention_until=r[18], updated_ms=r[19],
    )


class PostgresHistory:
    """`HistoryStore` on PostgreSQL (see the module docstring)."""

    dialect = "postgres"

    def __init__(self, dsn: str, *, lookback_days: int = 4, max_connections: int = 4) -> None:
        self.dsn = dsn
        self.lookback_days = lookback_days
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._partitions: set[int] = set()
        self._dates: dict[int, dt.date] = {}

    # ------------------------------------------------------------ plumbing
    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        await conn.execute(_STAGE_DDL)

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.max_connections, init=self._init_connection,
                    command_timeout=60, timeout=10,
                )
            except _UNAVAILABLE as err:
                raise HistoryUnavailable(f"postgres: cannot connect: {type(err).__name__}: {err}") from err
        return self._pool

    def _date(self, day: int) -> dt.date:
        d = self._dates.get(day)
        if d is None:
            d = self._dates[day] = _EPOCH + dt.timedelta(days=day)
        return d

    async def _ensure_partitions(self, conn: asyncpg.Connection, days: set[int]) -> None:
        missing = days - self._partitions
        if not missing:
            return
        existing = {_partition_day(r[0]) for r in await conn.fetch(_PARTITIONS)}
        self._partitions |= {d for d in existing if d is not None}
        for day in sorted(missing - self._partitions):
            lo, hi = self._date(day), self._date(day + 1)
            # IF NOT EXISTS: another archiver may have created it in between.
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_partition_name(day)} PARTITION OF messages "
                f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}') WITH (fillfactor = {_FILLFACTOR})"
            )
            self._partitions.add(day)

    # ------------------------------------------------------------- interface
    async def migrate(self) -> int:
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_MIGRATE)
                try:
                    await conn.execute(SCHEMA_VERSION_DDL)
                    done = {r[0] for r in await conn.fetch("SELECT version FROM schema_version")}
                    for mig in migrations("postgres"):
                        if mig.version in done:
                            continue
                        async with conn.transaction():
                            await conn.execute(mig.sql)
                            await conn.execute(
                                "INSERT INTO schema_version (version, name, applied_ms) VALUES ($1, $2, $3)",
                                mig.version, mig.name, int(time.time() * 1000),
                            )
                        done.add(mig.version)
                    today = int(time.time() // 86_400)
                    await self._ensure_partitions(conn, set(range(today - 1, today + _DAYS_AHEAD + 1)))
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_MIGRATE)
        except _UNAVAILABLE as err:
            raise HistoryUnavailable(f"postgres: {type(err).__name__}: {err}") from err
        return max(done, default=0)

    def records(self, deltas: Sequence[JobDelta]) -> list[tuple[Any, ...]]:
        """The staging rows of a batch (the CPU the engine spends per job, apart from COPY)."""
        dumps = orjson.dumps
        date = self._date
        return [
            (
                job_id, date(first_ms // 86_400_000), ref, client, kind, carrier, parts, encoding, message_ids,
                to_hash, to_mask, first_ms, submitted_ms, final_state, final_ms, error,
                dumps(events).decode(), dumps(errors).decode() if errors else "{}", retention_until,
            )
            for (
                job_id, first_ms, ref, client, kind, carrier, parts, encoding, message_ids, to_hash, to_mask,
                error, retention_until, submitted_ms, final_state, final_ms, events, errors,
            ) in deltas
        ]

    async def write(self, deltas: Sequence[JobDelta], now_ms: int) -> int:
        if not deltas:
            return 0
        records = self.records(deltas)
        days = {d.first_ms // 86_400_000 for d in deltas}
        lo, hi = min(days) - self.lookback_days, max(days) + 1
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn:
                await self._ensure_partitions(conn, days)
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_WRITE)
                    await conn.copy_records_to_table("history_stage", records=records, columns=_STAGE_COLUMNS)
                    await conn.execute(_MOVE_TO_EXISTING_DAY, self._date(lo), self._date(hi), [r[0] for r in records])
                    await conn.execute(_MERGE, now_ms)
        except _UNAVAILABLE as err:
            raise HistoryUnavailable(f"postgres: {type(err).__name__}: {err}") from err
        except asyncpg.PostgresError as err:
            # e.g. "no partition of relation found": another process dropped a
            # partition this one still had in its cache; look again on the retry.
            self._partitions.clear()
            raise HistoryError(f"postgres: {type(err).__name__}: {err}") from err
        return len(records)

    async def get(self, job_id: str) -> HistoryRow | None:
        pool = await self._get_pool()
        r = await pool.fetchrow(f"{_SELECT} WHERE job_id = $1 AND erased_ms = 0 ORDER BY day DESC LIMIT 1", job_id)
        return _row(r) if r else None

    async def find(
        self, *, ref: str | None = None, to_hash: str | None = None, client: str | None = None, limit: int = 100,
        since_ms: int | None = None, hidden: bool = False,
    ) -> list[HistoryRow]:
        given = [(k, v) for k, v in (("ref", ref), ("to_hash", to_hash), ("client", client)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of ref, to_hash, client")
        column, value = given[0]
        where = f"{column} = $1 AND first_ms >= $3" + ("" if hidden else " AND erased_ms = 0")
        pool = await self._get_pool()
        rows = await pool.fetch(
            f"{_SELECT} WHERE {where} ORDER BY first_ms DESC LIMIT $2", value, limit, since_ms or 0
        )
        return [_row(r) for r in rows]

    async def drop_expired(self, now_s: float, retention_days: int) -> list[str]:
        today = int(now_s // 86_400)
        cutoff = today - retention_days  # a day's rows all expire once the day ended `retention_days` ago
        pool = await self._get_pool()
        dropped: list[str] = []
        async with pool.acquire() as conn:
            for r in await conn.fetch(_PARTITIONS):
                day = _partition_day(r[0])
                if day is not None and day < cutoff:
                    await conn.execute(f"DROP TABLE IF EXISTS {r[0]}")
                    self._partitions.discard(day)
                    dropped.append(self._date(day).isoformat())
            await self._ensure_partitions(conn, set(range(today - 1, today + _DAYS_AHEAD + 1)))
        return sorted(dropped)

    async def erase(self, *, to_hash: str | None = None, client: str | None = None) -> int:
        given = [(k, v) for k, v in (("to_hash", to_hash), ("client", client)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of to_hash, client")
        column, value = given[0]
        pool = await self._get_pool()
        status = await pool.execute(f"DELETE FROM messages WHERE {column} = $1", value)
        return int(status.split()[-1])

    async def hide(
        self, *, to_hash: str | None = None, client: str | None = None, now_ms: int, retention_until: int
    ) -> int:
        given = [(k, v) for k, v in (("to_hash", to_hash), ("client", client)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of to_hash, client")
        column, value = given[0]
        pool = await self._get_pool()
        status = await pool.execute(
            f"UPDATE messages SET erased_ms = $2, ref = '', to_mask = '', retention_until = $3 "
            f"WHERE {column} = $1 AND erased_ms = 0",
            value, now_ms, retention_until,
        )
        return int(status.split()[-1])

    async def restamp_client(self, client: str, *, retention_until: int | None, message_ttl_s: int) -> int:
        pool = await self._get_pool()
        if retention_until is None:
            status = await pool.execute(
                "UPDATE messages SET retention_until = first_ms / 1000 + $2 WHERE client = $1 AND erased_ms = 0",
                client, message_ttl_s,
            )
        else:
            status = await pool.execute(
                "UPDATE messages SET retention_until = $2 WHERE client = $1 AND erased_ms = 0", client, retention_until
            )
        return int(status.split()[-1])

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
