"""The history store interface: what the archiver, the CLI and erasure need.

Two implementations: `engine.history.postgres.PostgresHistory` (production,
asyncpg, partitioned by day) and `engine.history.sqlite.SqliteHistory` (the
embedded default, stdlib sqlite3 on a thread of its own). Both are async, both
merge a job's events into one row idempotently (engine/history/record.py
states the rules), and both answer the same queries, newest first.
A store may also have ``fold(entries)``: the archiver then hands `write`
what it returns instead of the deltas (PostgreSQL: COPY rows built from the
raw reply's bytes, engine/history/rows.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from engine.history.record import HistoryRow, JobDelta

__all__ = ["LEDGER_KEEP_MS", "HistoryError", "HistoryStore", "HistoryUnavailable"]

#: How long the erasure ledger keeps a job id (an archiver batch is in hand for
#: seconds, a minute or so while the store is retried after an outage).
LEDGER_KEEP_MS = 86_400_000


class HistoryError(Exception):
    """Root of the history store's errors."""


class HistoryUnavailable(HistoryError):
    """The database cannot be reached or refused the write; retry later (nothing was written)."""


class HistoryStore(Protocol):
    """One row per job; see the module docstring."""

    dialect: str

    async def migrate(self) -> int:
        """Bring the schema up to date; returns the schema version. Idempotent."""

    async def write(self, deltas: Sequence[JobDelta], now_ms: int) -> int:
        """Merge a batch of deltas in one transaction; returns the rows touched.

        All or nothing: when it raises, nothing of the batch was committed.
        Applying the same deltas again changes nothing but ``updated_ms``. Rows
        of jobs in the erasure ledger (see ``erase``) are deleted in the same
        transaction: one indexed check per batch while the ledger is empty.
        """

    async def get(self, job_id: str) -> HistoryRow | None:
        """The row of one job, or None."""

    async def find(
        self, *, ref: str | None = None, to_hash: str | None = None, client: str | None = None, limit: int = 100,
        since_ms: int | None = None, hidden: bool = False,
    ) -> list[HistoryRow]:
        """Rows matching exactly one key, newest (first event) first; ``since_ms``: only
        rows whose first event is that recent; ``hidden``: rows hidden by an erasure
        too (erasure itself; every other reader leaves them out)."""

    async def drop_expired(self, now_s: float, retention_days: int) -> list[str]:
        """Remove every day whose rows are past retention at ``now_s``; returns the days removed (ISO)."""

    async def erase(
        self, *, to_hash: str | None = None, client: str | None = None, job_ids: Iterable[str] = (),
        now_ms: int | None = None,
    ) -> int:
        """Delete every row of a number (by hash) or a client at once; returns the rows deleted.

        In the same transaction, under the archivers' write lock, the ids of the rows
        deleted and ``job_ids`` (the subject's jobs found elsewhere, e.g. in the events
        stream) go into the erasure ledger: ``write`` deletes the rows of ledgered jobs
        it wrote, inside its own transaction, so an archiver batch read before the
        erasure and committed after it brings nothing back. Ledger rows older than
        ``LEDGER_KEEP_MS`` go at the same time."""

    async def hide(
        self, *, to_hash: str | None = None, client: str | None = None, now_ms: int, retention_until: int
    ) -> int:
        """Erasure by policy: hide every row of a number (by hash) or a client at once
        (``ref`` and ``to_mask`` blanked, left out of ``get``/``find``, never filled
        in again by a later event) and re-stamp it ``retention_until``; returns the
        rows hidden. ``to_hash`` and ``client`` stay for a later ``erase``."""

    async def restamp_client(self, client: str, *, retention_until: int | None, message_ttl_s: int) -> int:
        """Account closure: every visible row of ``client`` gets ``retention_until`` (unix s);
        ``None`` (reopening) puts each back to its normal deadline, first event +
        ``message_ttl_s``. Rows hidden by an erasure keep theirs. Returns the rows changed."""

    async def close(self) -> None:
        """Release connections / the worker thread."""
