"""The PostgreSQL history store (production): asyncpg, one row per job, partitioned by day.

A batch is one COPY text row per job: `fold` builds them from the raw
XREADGROUP reply's bytes (engine/history/rows.py; the deltas of
engine/history/record.py, given to `write` directly, are escaped field by field
into the same rows). It is written in one transaction, placing each job's row
first:

1. a job this process wrote lately is in the day cache (job id -> day, the
   last ``day_cache_size`` jobs): a receipt seconds after its submit needs no
   lookup. Other jobs are looked up by primary key in a few partitions: with
   the job's first event in the batch (``has_first``) only in the days after
   its own (its later events archived first, by another archiver), else up to
   ``lookback_days`` back (a receipt comes up to ``dlr_wait`` after the submit);
2. new rows: ``COPY`` (text) straight into their day's partition (no staging,
   no speculative insertion);
3. existing rows: ``COPY`` into ``history_stage`` (a temporary table of the
   connection, ``ON COMMIT DELETE ROWS``), then one ``UPDATE`` per day
   partition joined on the job id alone (a receipt stamped after midnight
   updates the row of the day before), with the merge rules. Partitions have
   ``fillfactor = 45``, so nearly all of these updates stay on their page (HOT:
   no index entry).

When a placement proves wrong (a row that was cached is gone: erased, dropped;
or a row the lookup could not see: a replay after a restart, whose cache is
empty), the transaction rolls back and the batch takes the general path: stage
everything, move each delta onto the day of an existing row, one ``INSERT …
ON CONFLICT DO UPDATE`` with the same rules. Either way, applying a batch
again changes nothing. ``general_batches`` counts the batches it wrote, by why
(a warning at most once a minute). One limit: a job's first event is taken to be
stamped no later than its other events' UTC day (the engine dates a receipt's
event no earlier than its job's ``submitted``, dlr/correlate.lua ``event_ts``).
When the server refuses a row built from the raw bytes (a value that is no
number, a tab inside a value: a data error), the transaction rolls back and the
batch is written again, in the same call, from the careful fold, which skips a
malformed entry and escapes every field.

One round trip begins the transaction, sets its planner options, takes a
transaction-level advisory lock and asks whether the erasure ledger holds
anything. The lock serialises batches of several archivers:
two events of one job archived at once by two processes could otherwise both
miss the other's uncommitted row and insert two. ``erase`` takes the same lock
to delete a subject's rows and ledger their job ids, and each batch deletes
its rows of ledgered jobs before it commits (``_drop_erased``, only when the
ledger is not empty): a batch read before an erasure cannot bring its rows
back. ``synchronous_commit`` stays on: the archiver acks the events once the
commit returns.

Partitions are ``messages_pYYYYMMDD`` (a range of one UTC day), created a few
days ahead and on demand for a day that has none (an old event replayed), and
dropped whole once every row in them is past retention: no DELETE, no vacuum.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import asyncpg
import orjson

from engine.history.migrations import SCHEMA_VERSION_DDL, migrations
from engine.history.record import HistoryRow, JobDelta, deltas_from_entries
from engine.history.rows import COPY_COLUMNS, NULL, CopyBatch, CopyJob, copy_rows, rows_from_deltas
from engine.history.store import LEDGER_KEEP_MS, HistoryError, HistoryUnavailable

__all__ = ["PostgresHistory"]

log = logging.getLogger("sendgate.history")

_EPOCH = dt.date(1970, 1, 1)
_LOCK_WRITE = 0x53474857  # "SGHW": serialises batch writes
_DAY_MS = 86_400_000
_LOCK_MIGRATE = 0x5347484D  # "SGHM": one migrator at a time
_DAYS_AHEAD = 2
# Room on each page for a row's receipt update to stay on the page (a HOT update:
# no new entry in any index). At 80 only ~20 % of the steady state's updates were
# HOT, at 50 80-87 %, at 45 all of a batch's delivered receipts (a row grows by its
# receipt, and every row of a page may be updated in one batch): less WAL, smaller
# indexes, and no larger a heap (updates that leave their page bloat it as much);
# migrations 0003 and 0008 have the figures.
_FILLFACTOR = 45

_STAGE_COLUMNS = COPY_COLUMNS[:-1]
_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS history_stage (
    job_id text NOT NULL, day date NOT NULL, ref text, client text, kind text, carrier text,
    parts integer, encoding text, message_ids text, to_hash text, to_mask text,
    first_ms bigint, submitted_ms bigint, final_state text, final_ms bigint, error text,
    events jsonb, errors jsonb, retention_until bigint, text_enc bytea, updated_ms bigint
) ON COMMIT DELETE ROWS
"""
# Each staged row probes each recent partition's primary key with its own job id
# (a nested loop over the stage: the write transaction's plan settings rule out a
# hash or merge join of a whole day's partition). Not `m.job_id = ANY(<the batch's
# ids>)` as well: the planner made that array the index condition of the inner
# scan, so every staged row probed every id of the batch — 5,000 x 5,000 probes, 30 s
# on a 3.5 M-row day and over asyncpg's 60 s timeout on a 35 M-row one, retried for
# ever (the archive stopped 76 s after midnight in session 21's soak, when the
# day's first batches took this general path; bench/RESULTS.md).
_MOVE_TO_EXISTING_DAY = """
UPDATE history_stage s SET day = m.day
FROM messages m
WHERE m.day >= $1 AND m.day <= $2
  AND m.job_id = s.job_id AND m.day <> s.day
"""
_cols = ", ".join(_STAGE_COLUMNS)
# The merge rules (engine/history/record.py), {n} being the new values: EXCLUDED
# in the generic upsert, the staged batch in the UPDATE of known rows.
_MERGE_SET = """
    ref = CASE WHEN {n}.ref <> '' AND m.erased_ms = 0 THEN {n}.ref ELSE m.ref END,
    client = CASE WHEN {n}.client <> '' THEN {n}.client ELSE m.client END,
    kind = CASE WHEN {n}.kind <> '' THEN {n}.kind ELSE m.kind END,
    carrier = CASE WHEN {n}.carrier <> '' THEN {n}.carrier ELSE m.carrier END,
    parts = CASE WHEN {n}.parts > 0 THEN {n}.parts ELSE m.parts END,
    encoding = CASE WHEN {n}.encoding <> '' THEN {n}.encoding ELSE m.encoding END,
    message_ids = CASE WHEN {n}.message_ids <> '' THEN {n}.message_ids ELSE m.message_ids END,
    to_hash = CASE WHEN {n}.to_hash <> '' THEN {n}.to_hash ELSE m.to_hash END,
    to_mask = CASE WHEN {n}.to_mask <> '' AND m.erased_ms = 0 THEN {n}.to_mask ELSE m.to_mask END,
    first_ms = LEAST(m.first_ms, {n}.first_ms),
    submitted_ms = LEAST(m.submitted_ms, {n}.submitted_ms),
    final_state = CASE WHEN {n}.final_ms IS NOT NULL AND (m.final_ms IS NULL OR {n}.final_ms >= m.final_ms)
        THEN {n}.final_state ELSE m.final_state END,
    final_ms = GREATEST(m.final_ms, {n}.final_ms),
    error = CASE WHEN {n}.error <> '' THEN {n}.error ELSE m.error END,
    events = m.events || {n}.events,
    errors = m.errors || {n}.errors,
    retention_until = GREATEST(m.retention_until, {n}.retention_until),
    text_enc = CASE WHEN m.erased_ms = 0 THEN COALESCE(m.text_enc, {n}.text_enc) END"""
_MERGE = f"""
INSERT INTO messages AS m ({_cols}, updated_ms)
SELECT {_cols}, $1::bigint FROM history_stage
ON CONFLICT (job_id, day) DO UPDATE SET {_MERGE_SET.format(n="EXCLUDED")},
    updated_ms = EXCLUDED.updated_ms
"""
# Rows whose day is known: staged, then one UPDATE per day partition, each row
# found through the partition's primary key (the partition is one day: its key
# is the job id). The batch goes through the stage (COPY) rather than as arrays, whose
# encoding in asyncpg checks every element against collections.abc (~1 µs each).
# Joined on the job id alone, not on the staged row's day too: that is the day of the
# job's earliest event in the batch, and the row may be on another (a receipt stamped
# after midnight of a job whose row is on the day before). Joined on it too, such rows
# were missed, the UPDATE counted fewer rows than placed, and every batch with one took
# the general path (`_NotAllPlaced`): after each UTC day change, and for any receipt a
# day or more after its submit (session 21's soak stalled there at midnight, #16). A
# batch whose updates are on one day (nearly all) stages that day's rows only; on
# several days each partition's UPDATE probes its key with every staged row.
_UPDATE = (
    "UPDATE {table} AS m SET" + _MERGE_SET.format(n="s") + ",\n    updated_ms = $1\n"
    "FROM history_stage s WHERE m.job_id = s.job_id"
)
# Where the rows of jobs not in the day cache are, within a range of days.
# The ids go in as one string split on a separator that no id holds (checked;
# an array parameter otherwise): asyncpg's array encoding costs ~1 µs per id.
_LOOKUP = "SELECT job_id, day FROM messages WHERE job_id = ANY($1::text[]) AND day >= $2 AND day <= $3"
_LOOKUP_JOINED = (
    "SELECT job_id, day FROM messages WHERE job_id = ANY(string_to_array($1::text, E'\\x1f')) AND day >= $2 AND day <= $3"
)
# The lookup of jobs whose first event the batch holds searches the days after theirs:
# partitions made ahead, nearly always empty — yet each would sort the batch's ids and
# probe its key once per id (~2 µs of the backend's CPU per job on a slow VM, bench/RESULTS.md
# "pgcost"). The guard, a one-time filter the server evaluates first, skips them all
# when no row is there: the first key of each partition in the range (a merge of
# index scans, a row each at most), never a bitmap of a whole day's index (which is
# what an EXISTS over the day range was planned as, enable_seqscan being off).
_ANY_ROW_IN_DAYS = "(SELECT 1 FROM messages WHERE day >= $2 AND day <= $3 ORDER BY job_id LIMIT 1) IS NOT NULL"
_LOOKUP_LATER = f"{_LOOKUP} AND {_ANY_ROW_IN_DAYS}"
_LOOKUP_LATER_JOINED = f"{_LOOKUP_JOINED} AND {_ANY_ROW_IN_DAYS}"
_SEP = b"\x1f"
# Every write transaction, in one round trip: BEGIN; its plans probe primary keys
# (the planner, blind to the batch, would otherwise hash or scan a whole day's
# partition), no JIT (compiling costs more than these statements); the archivers'
# lock; then, under it, whether the erasure ledger holds anything (the status of
# the last statement, "SELECT 0" or "SELECT 1": erase() takes the same lock, so
# the answer holds until the commit).
_PLAN_SETTINGS = (
    "SET LOCAL jit = off; SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; "
    "SET LOCAL enable_mergejoin = off; SET LOCAL enable_material = off"
)
_BEGIN_WRITE = f"BEGIN; {_PLAN_SETTINGS}; SELECT pg_advisory_xact_lock({_LOCK_WRITE}); SELECT 1 FROM erasure_ledger LIMIT 1"
# The erasure ledger (migration 0006; store.py, ``erase``): the batch's rows of
# ledgered jobs, deleted in the batch's own transaction.
_DROP_ERASED_JOINED = (
    "DELETE FROM messages WHERE job_id IN (SELECT job_id FROM erasure_ledger "
    "WHERE job_id = ANY(string_to_array($1::text, E'\\x1f')))"
)
_DROP_ERASED = "DELETE FROM messages WHERE job_id IN (SELECT job_id FROM erasure_ledger WHERE job_id = ANY($1::text[]))"
_SELECT = (
    "SELECT job_id, day, ref, client, kind, carrier, parts, encoding, message_ids, to_hash, to_mask, "
    "first_ms, submitted_ms, final_state, final_ms, error, events, errors, retention_until, updated_ms "
    "FROM messages"
)
_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'messages'::regclass
"""

# A row the server refused (a value that is no number, bad UTF-8, JSON, an empty
# NOT NULL field): the batch is written again from the careful fold.
_DATA_ERRORS = (asyncpg.DataError, asyncpg.NotNullViolationError)

# Errors that mean "the database is not there right now", not "the statement is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


# A CopyJob's parts, in C (map over a batch's jobs).
_ID, _DAY, _HAS_FIRST, _ROW = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(3)


class _NotAllPlaced(Exception):
    """A cached day was wrong (the row is gone): merge the batch the general way."""


@contextlib.asynccontextmanager
async def _write_transaction(conn: asyncpg.Connection) -> AsyncIterator[bool]:
    """A batch's transaction under the archivers' lock (`_BEGIN_WRITE`): yields whether
    the erasure ledger holds anything; commits, or rolls back on any exception."""
    try:
        yield await conn.execute(_BEGIN_WRITE) != "SELECT 0"
    except BaseException:
        if not conn.is_closed():
            with contextlib.suppress(Exception):  # a lost connection rolls back by itself
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


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

    def __init__(
        self, dsn: str, *, lookback_days: int = 4, max_connections: int = 4, day_cache_size: int = 100_000
    ) -> None:
        self.dsn = dsn
        self.lookback_days = lookback_days
        self.day_cache_size = day_cache_size
        # job id -> day of its row, for the jobs this process wrote lately: a receipt
        # seconds after its submit updates the row without looking for it first.
        self._job_days: dict[bytes, int] = {}  # (ids as UTF-8: the fold's rows carry them so)
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._partitions: set[int] = set()
        self._dates: dict[int, dt.date] = {}
        #: batches the server refused as built from the raw bytes, written from the careful fold
        self.careful_batches = 0
        self._careful_logged = 0.0
        #: batches written the general way (stage, move, upsert) because the fast path's
        #: placement proved wrong, by why: ``unique_violation`` (a row the lookup could not
        #: see: a replay after a restart, whose day cache is empty) and ``not_all_placed``
        #: (an UPDATE of a placed row found fewer rows: a row gone, erased or dropped)
        self.general_batches: dict[str, int] = {"unique_violation": 0, "not_all_placed": 0}
        self._general_logged = 0.0

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

    def fold(self, entries: Sequence[tuple[Any, Any]]) -> CopyBatch:
        """A batch read from the events stream → its COPY rows (engine/history/rows.py):
        what the archiver hands to `write`, the CPU it spends per event apart from the read."""
        return copy_rows(entries)

    def _remember(self, placed: list[tuple[list[bytes], int]]) -> None:
        days = self._job_days
        for ids, day in placed:
            days.update(zip(ids, repeat(day)))
        excess = len(days) - self.day_cache_size
        if excess > 0:  # drop the oldest (insertion order), a tenth more to do it seldom
            for k in list(itertools.islice(days, excess + self.day_cache_size // 10)):
                del days[k]

    async def write(self, deltas: Sequence[JobDelta] | CopyBatch, now_ms: int) -> int:
        """Merge a batch: deltas, or the rows `fold` made of stream entries."""
        if not deltas:
            return 0
        if isinstance(deltas, CopyBatch):
            jobs, entries = deltas.jobs, deltas.entries
        else:
            jobs, entries = rows_from_deltas(deltas), None
        pool = await self._get_pool()
        try:
            async with pool.acquire() as conn:
                try:
                    await self._write_jobs(conn, jobs, now_ms)
                except _DATA_ERRORS as err:
                    if entries is None:
                        raise
                    self._note_careful(err)
                    # A value the server refused in a row built from the raw bytes (a ts
                    # that is no number, say): the careful fold skips such an entry and
                    # escapes every field. Nothing of the first try was committed.
                    jobs = rows_from_deltas(deltas_from_entries(entries))
                    await self._write_jobs(conn, jobs, now_ms)
        except _UNAVAILABLE as err:
            raise HistoryUnavailable(f"postgres: {type(err).__name__}: {err}") from err
        except asyncpg.PostgresError as err:
            # e.g. "no partition of relation found": another process dropped a
            # partition this one still had in its cache; look again on the retry.
            self._partitions.clear()
            self._job_days.clear()
            raise HistoryError(f"postgres: {type(err).__name__}: {err}") from err
        return len(jobs)

    def _note_careful(self, err: Exception) -> None:
        """Count it, and say so at most once a minute (the SQLSTATE only: the server's
        message may quote a value)."""
        self.careful_batches += 1
        now = time.monotonic()
        if now - self._careful_logged >= 60:
            self._careful_logged = now
            log.info("history: PostgreSQL refused a batch's COPY rows (SQLSTATE %s); written from the careful "
                     "fold (%d batch(es) so far)", getattr(err, "sqlstate", "?"), self.careful_batches)

    def _note_general(self, why: str) -> None:
        """Count a batch the general path wrote, and warn at most once a minute: it is
        correct but dearer, and steady traffic (the UTC day change included) takes none;
        a replay of batches committed and not acked (killed in between) does. A warning,
        not info: `sendgate bench` runs its engines at ``warning`` (the soak's logs)."""
        self.general_batches[why] += 1
        now = time.monotonic()
        if now - self._general_logged >= 60:
            self._general_logged = now
            g = self.general_batches
            log.warning("history: a batch took the general path (%s); so far %d by a unique violation (a row the "
                        "lookup could not see: a replay), %d by a placement that proved wrong (a row gone)",
                        why, g["unique_violation"], g["not_all_placed"])

    async def _write_jobs(self, conn: asyncpg.Connection, jobs: list[CopyJob], now_ms: int) -> None:
        try:
            placed = await self._write_placed(conn, jobs, now_ms)
        except _NotAllPlaced:
            placed = None
            self._note_general("not_all_placed")
        except asyncpg.UniqueViolationError:  # a row the lookup could not see (a replay): merge
            placed = None
            self._note_general("unique_violation")
        if placed is None:
            await self._write_merged(conn, jobs, now_ms)
            self._job_days.clear()  # some day may have been wrong: learn again
        else:
            self._remember(placed)

    @staticmethod
    async def _copy(conn: asyncpg.Connection, table: str, jobs: list[CopyJob], now_ms: int) -> None:
        """COPY rows into ``table``, each completed with ``updated_ms`` and its newline."""
        end = b"%d\n" % now_ms
        rows = list(map(_ROW, jobs))
        rows.append(b"")  # the last row's end too, without a copy of the whole buffer
        data = end.join(rows)
        await conn.copy_to_table(table, source=memoryview(data), columns=COPY_COLUMNS, format="text", null=NULL)

    async def _write_placed(
        self, conn: asyncpg.Connection, jobs: list[CopyJob], now_ms: int
    ) -> list[tuple[list[bytes], int]]:
        """The fast path: each job's row day known (cache or lookup), new rows COPYed
        straight into their day's partition, the others UPDATEd in theirs. Raises
        `_NotAllPlaced` (or UniqueViolationError) when the batch must be merged instead;
        the transaction is then rolled back. Returns (job ids, day) of the rows written."""
        updates: dict[int, list[CopyJob]] = {}
        inserts: dict[int, list[CopyJob]] = {}
        first_new: list[CopyJob] = []  # (job id, day, has_first, row)
        other_new: list[CopyJob] = []
        if not self._job_days.keys().isdisjoint(map(_ID, jobs)):
            get_day = self._job_days.get
            for j in jobs:
                day = get_day(j[0])
                if day is not None:
                    updates.setdefault(day, []).append(j)
                elif j[2]:  # has_first
                    first_new.append(j)
                else:
                    other_new.append(j)
        elif all(map(_HAS_FIRST, jobs)):  # the usual batch of new jobs: none cached, each first event here
            first_new = jobs
        else:
            for j in jobs:
                (first_new if j[2] else other_new).append(j)
        await self._ensure_partitions(conn, set(map(_DAY, first_new)).union(map(_DAY, other_new)))
        placed: list[tuple[list[bytes], int]] = []
        known_ids: dict[int, list[bytes]] = {}  # a day's inserts' ids, when they are one group's
        async with _write_transaction(conn) as ledgered:
            # A job's row is on the day of its first archived event: with the first
            # event in hand, only a later day can hold it (its later events archived
            # first, by another archiver); without, it may be a few days back (a receipt).
            for group, back, ahead, by_joined, by_array in (
                (first_new, -1, self.lookback_days, _LOOKUP_LATER_JOINED, _LOOKUP_LATER),
                (other_new, self.lookback_days, 1, _LOOKUP_JOINED, _LOOKUP),
            ):
                if not group:
                    continue
                days = set(map(_DAY, group))
                lo, hi = min(days) - back, max(days) + ahead
                ids = list(map(_ID, group))
                joined = _SEP.join(ids)
                if joined.count(_SEP) == len(ids) - 1:
                    rows = await conn.fetch(by_joined, joined.decode(), self._date(lo), self._date(hi))
                else:
                    rows = await conn.fetch(by_array, [i.decode() for i in ids], self._date(lo), self._date(hi))
                found = {job_id.encode(): (day - _EPOCH).days for job_id, day in rows}
                if not found and len(days) == 1:  # the usual batch: all new, one day
                    day = days.pop()
                    if day in inserts:  # (a new list: a group may be the batch's own list)
                        inserts[day] = inserts[day] + group
                    else:
                        inserts[day] = group
                        known_ids[day] = ids
                    continue
                new: dict[int, list[CopyJob]] = {}
                for j in group:
                    day = found.get(j[0])
                    if day is None:
                        new.setdefault(j[1], []).append(j)
                    else:
                        updates.setdefault(day, []).append(j)
                for day, more in new.items():
                    inserts[day] = inserts[day] + more if day in inserts else more
            for day, group in inserts.items():
                await self._copy(conn, _partition_name(day), group, now_ms)
                known = known_ids.get(day)
                placed.append((known if known is not None and len(known) == len(group) else list(map(_ID, group)), day))
            if updates:
                staged = next(iter(updates.values())) if len(updates) == 1 else [j for g in updates.values() for j in g]
                await self._copy(conn, "history_stage", staged, now_ms)
            for day, group in updates.items():
                status = await conn.execute(_UPDATE.format(table=_partition_name(day)), now_ms)
                if int(status.rsplit(" ", 1)[-1]) != len(group):
                    raise _NotAllPlaced  # a row gone (erased, dropped) since it was cached
                placed.append((list(map(_ID, group)), day))
            if ledgered:
                await self._drop_erased(conn, list(map(_ID, jobs)))
        return placed

    async def _write_merged(self, conn: asyncpg.Connection, jobs: list[CopyJob], now_ms: int) -> None:
        """The general path: stage, move onto existing days, one upsert with the merge rules."""
        days = {j[1] for j in jobs}
        await self._ensure_partitions(conn, days)
        lo = self._date(min(days) - self.lookback_days)
        hi = self._date(max(days) + 1)
        ids = [j[0] for j in jobs]
        async with _write_transaction(conn) as ledgered:
            await self._copy(conn, "history_stage", jobs, now_ms)
            await conn.execute(_MOVE_TO_EXISTING_DAY, lo, hi)
            await conn.execute(_MERGE, now_ms)
            if ledgered:
                await self._drop_erased(conn, ids)

    @staticmethod
    async def _drop_erased(conn: asyncpg.Connection, ids: list[bytes]) -> None:
        """Inside a batch's transaction (under the write lock), when the erasure ledger
        holds anything: delete the rows it wrote of jobs an immediate erasure ledgered."""
        if not ids:
            return
        joined = _SEP.join(ids)
        if joined.count(_SEP) == len(ids) - 1:
            await conn.execute(_DROP_ERASED_JOINED, joined.decode())
        else:
            await conn.execute(_DROP_ERASED, [i.decode() for i in ids])

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
                    self._job_days.clear()
                    self._partitions.discard(day)
                    dropped.append(self._date(day).isoformat())
            await self._ensure_partitions(conn, set(range(today - 1, today + _DAYS_AHEAD + 1)))
            await conn.execute("DELETE FROM erasure_ledger WHERE erased_ms < $1", int(now_s * 1000) - LEDGER_KEEP_MS)
        return sorted(dropped)

    async def erase(
        self, *, to_hash: str | None = None, client: str | None = None, job_ids: Iterable[str] = (),
        now_ms: int | None = None,
    ) -> int:
        given = [(k, v) for k, v in (("to_hash", to_hash), ("client", client)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of to_hash, client")
        column, value = given[0]
        now = int(time.time() * 1000) if now_ms is None else now_ms
        pool = await self._get_pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"SELECT pg_advisory_xact_lock({_LOCK_WRITE})")
            deleted = [r[0] for r in await conn.fetch(f"DELETE FROM messages WHERE {column} = $1 RETURNING job_id", value)]
            ids = sorted({*deleted, *job_ids})
            if ids:
                await conn.execute(
                    "INSERT INTO erasure_ledger (job_id, erased_ms) SELECT unnest($1::text[]), $2 "
                    "ON CONFLICT (job_id) DO UPDATE SET erased_ms = EXCLUDED.erased_ms",
                    ids, now,
                )
            await conn.execute("DELETE FROM erasure_ledger WHERE erased_ms < $1", now - LEDGER_KEEP_MS)
        self._job_days.clear()
        return len(deleted)

    async def hide(
        self, *, to_hash: str | None = None, client: str | None = None, now_ms: int, retention_until: int
    ) -> int:
        given = [(k, v) for k, v in (("to_hash", to_hash), ("client", client)) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of to_hash, client")
        column, value = given[0]
        pool = await self._get_pool()
        status = await pool.execute(
            f"UPDATE messages SET erased_ms = $2, ref = '', to_mask = '', text_enc = NULL, retention_until = $3 "
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
