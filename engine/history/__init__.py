"""The history store: months of message records out of Redis (docs/INTERNALS.md, "History").

Redis holds what the engine needs to operate; the events it publishes are
archived here by `engine.history.archiver.Archiver` into PostgreSQL
(production) or SQLite (the embedded default). `open_store` picks the
implementation from ``[history] url``; only the one in use is imported, so
SQLite users need no asyncpg.
"""

from __future__ import annotations

from engine.history.record import FINAL_EVENTS, HistoryRow, JobDelta, deltas_from_entries
from engine.history.store import HistoryError, HistoryStore, HistoryUnavailable
from engine.history.url import HistoryTarget, default_data_dir, parse_history_url

__all__ = [
    "FINAL_EVENTS",
    "HistoryError",
    "HistoryRow",
    "HistoryStore",
    "HistoryTarget",
    "HistoryUnavailable",
    "JobDelta",
    "default_data_dir",
    "deltas_from_entries",
    "open_store",
    "parse_history_url",
]


def open_store(url: str, *, lookback_days: int = 4) -> HistoryStore:
    """The store for ``[history] url`` (not connected yet: call ``migrate()`` first).

    ``lookback_days``: how far back a later event (a receipt) looks for its job's
    row in PostgreSQL; at least the receipt wait (``privacy.dlr_wait_h``) plus one day.
    """
    target = parse_history_url(url)
    if target.kind == "postgres":
        from engine.history.postgres import PostgresHistory

        return PostgresHistory(target.dsn, lookback_days=lookback_days)
    from engine.history.sqlite import SqliteHistory

    return SqliteHistory(target.path)
