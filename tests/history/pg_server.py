"""The tests' private PostgreSQL: bench/pg_server.py (shared with the benches that start one)."""

from __future__ import annotations

from bench.pg_server import PgServer, find_pg_bin, start_private_server, unique_database

__all__ = ["PgServer", "find_pg_bin", "start_private_server", "unique_database"]
