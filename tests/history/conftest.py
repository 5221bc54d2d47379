"""Fixtures of the history tests: a real PostgreSQL (private if possible) and SQLite.

``pg_server`` (session): a private server started with initdb/pg_ctl on a
free loopback port, else the machine's server on 127.0.0.1:5432; the tests
skip, saying why, only when neither answers. ``pg_dsn``: a fresh database per
test, dropped after. ``store``: a migrated store, once per dialect.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from engine.history import HistoryStore, open_store
from tests.history.pg_server import PgServer, start_private_server, unique_database


async def _can_connect(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server, why = start_private_server()
    if server is not None:
        try:
            yield server
        finally:
            server.destroy()
        return
    external = PgServer("127.0.0.1", 5432)
    if not asyncio.run(_can_connect(external.dsn())):
        pytest.skip(f"no PostgreSQL: private server not possible ({why}) and none on 127.0.0.1:5432")
    yield external


@pytest.fixture
async def pg_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    name = unique_database()
    admin = await asyncpg.connect(pg_server.dsn(), timeout=10)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield pg_server.dsn(name)
    admin = await asyncpg.connect(pg_server.dsn(), timeout=30)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def history_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'history.sqlite3'}"
    return str(request.getfixturevalue("pg_dsn"))


@pytest.fixture
async def store(history_url: str) -> AsyncIterator[HistoryStore]:
    s = open_store(history_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()
