"""A new SQLite history file opened beside another connection that holds it.

Switching a file to WAL takes a lock the busy timeout does not wait for: a store
opened while another connection holds the file failed at once with "database is
locked" (seen in CI: the test's store and the engine's archiver opening the same
new file). The store now waits and looks again until the other is done.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from engine.history.sqlite import SqliteHistory


async def test_a_store_opened_while_another_connection_holds_the_new_file_waits(tmp_path: Path) -> None:
    path = str(tmp_path / "history.sqlite3")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # a writer mid-transaction, as the engine's archiver
    holder.execute("INSERT INTO t VALUES (1)")
    assert holder.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    released = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    released.start()
    store = SqliteHistory(path)
    try:
        await store.migrate()  # the old code raised "database is locked" here at once
        mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        released.join()
        holder.close()
        await store.close()
