"""Where the history lives: ``[history] url`` parsed once into a typed target.

``postgresql://…`` / ``postgres://…`` go to asyncpg unchanged; ``sqlite:///abs/path``
is an absolute file, ``sqlite://relative/path`` one relative to the working
directory, and an empty url means the embedded default: a SQLite file in the
engine's data directory, so ``sendgate demo`` and a bare ``sendgate run`` need
nothing installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["HistoryTarget", "default_data_dir", "parse_history_url"]


class HistoryTarget(msgspec.Struct, frozen=True):
    """``kind`` postgres: ``dsn`` for asyncpg; kind sqlite: ``path`` of the file."""

    kind: Literal["postgres", "sqlite"]
    dsn: str = ""
    path: str = ""


def default_data_dir() -> Path:
    """``$SENDGATE_DATA_DIR``, else ``$XDG_STATE_HOME/sendgate``, else ``~/.local/state/sendgate``."""
    explicit = os.environ.get("SENDGATE_DATA_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "sendgate"


def parse_history_url(url: str) -> HistoryTarget:
    """Parse ``[history] url``; raises ``ValueError`` naming what is wrong (never echoing a password)."""
    url = url.strip()
    if not url:
        return HistoryTarget("sqlite", path=str(default_data_dir() / "history.sqlite3"))
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("expected postgresql://…, postgres://… or sqlite:///path")
    if scheme in ("postgresql", "postgres"):
        return HistoryTarget("postgres", dsn=url)
    if scheme == "sqlite":
        if not rest or rest == "/":
            raise ValueError("sqlite url without a path (sqlite:///abs/path or sqlite://relative)")
        # sqlite:///abs → rest "/abs"; sqlite://rel → rest "rel"
        return HistoryTarget("sqlite", path=rest)
    raise ValueError(f"unsupported scheme {scheme!r}: expected postgresql, postgres or sqlite")
