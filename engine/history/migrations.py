"""Versioned schema migrations, kept as SQL files in the package.

``migrations/<dialect>/NNNN_name.sql`` are applied in order; each applied
version is a row of ``schema_version``, so running ``migrate()`` again applies
only what is new (and nothing when up to date). A file is one transaction.
"""

from __future__ import annotations

import re
from importlib import resources

__all__ = ["Migration", "migrations"]

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

#: Created before any migration, in both dialects.
SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
)


class Migration:
    """One SQL file: its version, name and text."""

    __slots__ = ("name", "sql", "version")

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version, self.name, self.sql = version, name, sql


def migrations(dialect: str) -> list[Migration]:
    """The migrations of ``dialect`` ("postgres" or "sqlite"), oldest first."""
    folder = resources.files("engine.history").joinpath("migrations", dialect)
    out = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort(key=lambda mig: mig.version)
    return out
