"""The SQLite history store: the embedded default (stdlib sqlite3, nothing to install).

sqlite3 blocks, so every call runs on one worker thread of its own that owns
the connection (a single-thread executor): the event loop never waits on the
disk, and calls are serialised in order, which is what SQLite wants for its
one writer. WAL mode lets ``sendgate history`` read while the engine writes;
``synchronous=NORMAL`` in WAL still never corrupts the file, and a crash may
lose only the last transactions, whose events are still unacknowledged in the
stream and are archived again.

One table, ``job_id`` its primary key: a job has one row whatever the day of
its events. Retention deletes by ``day`` (indexed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from engine.history.migrations import SCHEMA_VERSION_DDL, migrations
from engine.history.record import HistoryRow, JobDelta
from engine.history.store import LEDGER_KEEP_MS, HistoryUnavailable

__all__ = ["SqliteHistory"]

T = TypeVar("T")

_EPOCH = dt.date(1970, 1, 1)

# Merge rules of engine/history/record.py. SQLite's min()/max() with several
# arguments return NULL when one is NULL, hence the coalesce around them.
# A batch's row of a job in the erasure ledger (migration 0006): deleted in the batch's transaction.
_DROP_ERASED = "DELETE FROM messages WHERE job_id = ? AND EXISTS (SELECT 1 FROM erasure_ledger WHERE job_id = ?)"
_UPSERT = """
INSERT INTO messages (job_id, day, ref, client, kind, carrier, parts, encoding, message_ids,
    to_hash, to_mask, first_ms, submitted_ms, final_state, final_ms, error, events, errors,
    retention_until, updated_ms, text_enc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (job_id) DO UPDATE SET
    ref = CASE WHEN excluded.ref <> '' AND erased_ms = 0 THEN excluded.ref ELSE ref END,
    client = CASE WHEN excluded.client <> '' THEN excluded.client ELSE client END,
    kind = CASE WHEN excluded.kind <> '' THEN excluded.kind ELSE kind END,
    carrier = CASE WHEN excluded.carrier <> '' THEN excluded.carrier ELSE carrier END,
    parts = CASE WHEN excluded.parts > 0 THEN excluded.parts ELSE parts END,
    encoding = CASE WHEN excluded.encoding <> '' THEN excluded.encoding ELSE encoding END,
    message_ids = CASE WHEN excluded.message_ids <> '' THEN excluded.message_ids ELSE message_ids END,
    to_hash = CASE WHEN excluded.to_hash <> '' THEN excluded.to_hash ELSE to_hash END,
    to_mask = CASE WHEN excluded.to_mask <> '' AND erased_ms = 0 THEN excluded.to_mask ELSE to_mask END,
    first_ms = min(first_ms, excluded.first_ms),
    submitted_ms = coalesce(min(submitted_ms, excluded.submitted_ms), submitted_ms, excluded.submitted_ms),
    final_state = CASE WHEN excluded.final_ms IS NOT NULL AND (final_ms IS NULL OR excluded.final_ms >= final_ms)
        THEN excluded.final_state ELSE final_state END,
    final_ms = coalesce(max(final_ms, excluded.final_ms), final_ms, excluded.final_ms),
    error = CASE WHEN excluded.error <> '' THEN excluded.error ELSE error END,
    events = json_patch(events, excluded.events),
    errors = json_patch(errors, excluded.errors),
    retention_until = max(retention_until, excluded.retention_until),
    text_enc = CASE WHEN erased_ms = 0 THEN coalesce(text_enc, excluded.text_enc) ELSE NULL END,
    updated_ms = excluded.updated_ms
"""

_COLUMNS = (
    "job_id, day, ref, client, kind, carrier, parts, encoding, message_ids, to_hash, to_mask, "
    "first_ms, submitted_ms, final_state, final_ms, error, events, errors, retention_until, updated_ms"
)


def _day_iso(day: int) -> str:
    return (_EPOCH + dt.timedelta(days=day)).isoformat()


def _params(d: JobDelta, now_ms: int) -> tuple[Any, ...]:
    return (
        d.job_id, _day_iso(d.first_ms // 86_400_000), d.ref, d.client, d.kind, d.carrier, d.parts,
        d.encoding, d.message_ids, d.to_hash, d.to_mask, d.first_ms, d.submitted_ms, d.final_state,
        d.final_ms, d.error, orjson.dumps(d.events).decode(), orjson.dumps(d.errors).decode(),
        d.retention_until, now_ms, d.text_enc,
    )


def _row(r: sqlite3.Row) -> HistoryRow:
    return HistoryRow(
        job_id=r[0], day=r[1], ref=r[2], client=r[3], kind=r[4], carrier=r[5], parts=r[6],
        encoding=r[7], message_ids=r[8], to_hash=r[9], to_mask=r[10], first_ms=r[11],
        submitted_ms=r[12], final_state=r[13], final_ms=r[14], error=r[15],
        events=orjson.loads(r[16]), errors=orjson.loads(r[17]), retention_until=r[18], updated_ms=r[19],
    )


def _ensure_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Put the file in WAL mode (kept in the file: set once). Setting it takes a lock
    the busy timeout does not wait for, so beside another connection in a write
    transaction (the archiver's, or one switching the new file to WAL itself) it fails
    at once with "database is locked": wait and look again until ``deadline``."""
    delay = 0.005
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)  # the store's own thread, not the event loop
            delay = min(2 * delay, 0.2)


class SqliteHistory:
    """`HistoryStore` on one SQLite file."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendgate-history")
        self._conn: sqlite3.Connection | None = None

    # ------------------------------------------------------------ thread side
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            try:
                _ensure_wal(conn, time.monotonic() + 30.0)
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._connect()
            try:
                return fn(conn)
            except sqlite3.OperationalError as err:  # locked, disk full, read-only: retry later
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise HistoryUnavailable(f"sqlite: {err}") from err

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    # ------------------------------------------------------------- interface
    async def migrate(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            conn.execute(SCHEMA_VERSION_DDL)
            conn.execute("BEGIN IMMEDIATE")
            try:
                done = {v for (v,) in conn.execute("SELECT version FROM schema_version")}
                for mig in migrations("sqlite"):
                    if mig.version in done:
                        continue
                    for statement in _statements(mig.sql):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
                        (mig.version, mig.name, int(time.time() * 1000)),
                    )
                    done.add(mig.version)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return max(done, default=0)

        return await self._call(run)

    async def write(self, deltas: Sequence[JobDelta], now_ms: int) -> int:
        if not deltas:
            return 0
        params = [_params(d, now_ms) for d in deltas]

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, params)
                # rows of jobs an immediate erasure ledgered (store.py, ``erase``): gone
                # before this batch commits, so a batch read before the erasure brings none back
                if conn.execute("SELECT 1 FROM erasure_ledger LIMIT 1").fetchone():
                    conn.executemany(_DROP_ERASED, [(p[0], p[0]) for p in params])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return len(params)

        return await self._call(run)

    async def get(self, job_id: str) -> HistoryRow | None:
        def run(conn: sqlite3.Connection) -> HistoryRow | None:
            r = conn.execute(f"SELECT {_COLUMNS} FROM messages WHERE job_id = ? AND erased_ms = 0", (job_id,)).fetchone()
            return _row(r) if r else None

        return await self._call(run)

    async def find(
        self, *, ref: str | None = None, to_hash: str | None = None, client: str | None = None, limit: int = 100,
        since_ms: int | None = None, hidden: bool = False,
    ) -> list[HistoryRow]:
        column, value = _one_key(ref=ref, to_hash=to_hash, client=client)
        where = f"{column} = ? AND first_ms >= ?" + ("" if hidden else " AND erased_ms = 0")

        def run(conn: sqlite3.Connection) -> list[HistoryRow]:
            cur = conn.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE {where} ORDER BY first_ms DESC LIMIT ?",
                (value, since_ms or 0, limit),
            )
            return [_row(r) for r in cur]

        return await self._call(run)

    async def drop_expired(self, now_s: float, retention_days: int) -> list[str]:
        # A day's rows are all past retention once the day has ended retention_days ago.
        cutoff = _day_iso(int(now_s // 86_400) - retention_days)  # days < cutoff go

        def run(conn: sqlite3.Connection) -> list[str]:
            days = [d for (d,) in conn.execute("SELECT DISTINCT day FROM messages WHERE day < ?", (cutoff,))]
            if days:
                conn.execute("DELETE FROM messages WHERE day < ?", (cutoff,))
            conn.execute("DELETE FROM erasure_ledger WHERE erased_ms < ?", (int(now_s * 1000) - LEDGER_KEEP_MS,))
            return sorted(days)

        return await self._call(run)

    async def erase(
        self, *, to_hash: str | None = None, client: str | None = None, job_ids: Iterable[str] = (),
        now_ms: int | None = None,
    ) -> int:
        column, value = _one_key(to_hash=to_hash, client=client)
        now = int(time.time() * 1000) if now_ms is None else now_ms
        extra = list(job_ids)

        def run(conn: sqlite3.Connection) -> int:
            # one write transaction (SQLite has one writer): the rows and the ledger together
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = {r[0] for r in conn.execute(f"SELECT job_id FROM messages WHERE {column} = ?", (value,))}
                n = conn.execute(f"DELETE FROM messages WHERE {column} = ?", (value,)).rowcount
                conn.executemany(
                    "INSERT INTO erasure_ledger (job_id, erased_ms) VALUES (?, ?) "
                    "ON CONFLICT (job_id) DO UPDATE SET erased_ms = excluded.erased_ms",
                    [(i, now) for i in sorted(ids.union(extra))],
                )
                conn.execute("DELETE FROM erasure_ledger WHERE erased_ms < ?", (now - LEDGER_KEEP_MS,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return n

        return await self._call(run)

    async def hide(
        self, *, to_hash: str | None = None, client: str | None = None, now_ms: int, retention_until: int
    ) -> int:
        column, value = _one_key(to_hash=to_hash, client=client)

        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                f"UPDATE messages SET erased_ms = ?, ref = '', to_mask = '', text_enc = NULL, retention_until = ? "
                f"WHERE {column} = ? AND erased_ms = 0",
                (now_ms, retention_until, value),
            ).rowcount

        return await self._call(run)

    async def restamp_client(self, client: str, *, retention_until: int | None, message_ttl_s: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if retention_until is None:
                return conn.execute(
                    "UPDATE messages SET retention_until = first_ms / 1000 + ? WHERE client = ? AND erased_ms = 0",
                    (message_ttl_s, client),
                ).rowcount
            return conn.execute(
                "UPDATE messages SET retention_until = ? WHERE client = ? AND erased_ms = 0", (retention_until, client)
            ).rowcount

        return await self._call(run)

    async def close(self) -> None:
        def run() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, run)
        self._executor.shutdown(wait=True)


def _statements(script: str) -> list[str]:
    """Split a SQL script into statements (sqlite3.complete_statement knows comments and quotes)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending)
            pending = ""
    if pending.strip() and not all(ln.strip().startswith("--") or not ln.strip() for ln in pending.splitlines()):
        out.append(pending)
    return out


def _one_key(**keys: str | None) -> tuple[str, str]:
    """The one column given (its name is from our own keyword list, never user input)."""
    given = [(k, v) for k, v in keys.items() if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(keys)}")
    return given[0]
