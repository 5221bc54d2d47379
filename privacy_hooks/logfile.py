"""The log file: rotated daily, rotated files deleted after the activity-log retention.

Why our own handler and not ``TimedRotatingFileHandler``: the retention is a
rule about *age* (docs/contract.md §4: activity logs 1 month, ``[privacy.retention_days]
activity_log``), not about how many files exist — after a week with the engine
stopped, a count-based cleanup keeps files older than the retention. So a
rotated file is named by the UTC day it holds (``engine.log.2026-01-31``) and
deleted once that day is more than ``retention_days`` days before today, at
every rotation and when the handler starts. The clock is passed in, so tests
rotate and expire without waiting for midnight.

Rotation happens at the first record after midnight UTC, and
:func:`rotate_due_files` (called by the engine's maintenance loop) rotates and
expires even when nothing is logged. What reaches the file has been through
the same redaction as stderr (``configure_logging`` puts the filter on it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["DailyFileHandler", "rotate_due_files"]

_DAY_S = 86_400
_SUFFIX_RE = re.compile(r"^\.(\d{4}-\d{2}-\d{2})(?:\.\d+)?$")


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def _next_midnight(t: float) -> float:
    return (int(t) // _DAY_S + 1) * _DAY_S


class DailyFileHandler(logging.FileHandler):
    """Appends to ``path``; each UTC day's lines end up in ``path.YYYY-MM-DD``.

    ``retention_days``: rotated files of days older than this are deleted.
    ``clock``: unix seconds (tests pass a fake one).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        retention_days: int = 30,
        *,
        clock: Callable[[], float] = time.time,
        encoding: str = "utf-8",
    ) -> None:
        if retention_days < 1:
            raise ValueError(f"privacy.retention_days.activity_log: expected >= 1, got {retention_days!r}")
        super().__init__(path, encoding=encoding)
        self.retention_days = retention_days
        self._clock = clock
        now = clock()
        try:  # a file left by an earlier run holds the day it was last written
            st = os.stat(self.baseFilename)
            started = st.st_mtime if st.st_size else now
        except OSError:
            started = now
        self._day = _day(min(started, now))
        self._rollover_at = _next_midnight(min(started, now))
        self.delete_expired(now)

    def emit(self, record: logging.LogRecord) -> None:
        if self._clock() >= self._rollover_at:
            self.rollover()
        super().emit(record)

    def rollover_if_due(self) -> None:
        """Rotate (and expire old files) if midnight has passed since the last rotation."""
        if self._clock() >= self._rollover_at:
            self.acquire()
            try:
                if self._clock() >= self._rollover_at:
                    self.rollover()
            finally:
                self.release()

    def rollover(self) -> None:
        """Close the file, rename it after the day it holds, open a new one, delete expired files."""
        now = self._clock()
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        base = Path(self.baseFilename)
        if base.exists() and base.stat().st_size:
            target = base.with_name(f"{base.name}.{self._day}")
            n = 1
            while target.exists():  # rotated twice on one day (a clock set back): keep both
                target = base.with_name(f"{base.name}.{self._day}.{n}")
                n += 1
            os.replace(base, target)
        self._day = _day(now)
        self._rollover_at = _next_midnight(now)
        self.stream = self._open()
        self.delete_expired(now)

    def rotated_files(self) -> list[Path]:
        """The rotated files of this log, oldest first."""
        base = Path(self.baseFilename)
        found = [p for p in base.parent.glob(f"{base.name}.*") if _SUFFIX_RE.match(p.name[len(base.name):])]
        return sorted(found)

    def delete_expired(self, now: float) -> int:
        """Delete rotated files of days more than ``retention_days`` before ``now``; returns how many."""
        cutoff = _day(now - self.retention_days * _DAY_S)
        base_len = len(Path(self.baseFilename).name)
        deleted = 0
        for path in self.rotated_files():
            m = _SUFFIX_RE.match(path.name[base_len:])
            if m and m.group(1) < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    deleted += 1
        return deleted


def rotate_due_files(logger: logging.Logger | None = None) -> None:
    """Rotate every :class:`DailyFileHandler` on ``logger`` (default: root) that is due."""
    for handler in (logger or logging.getLogger()).handlers:
        if isinstance(handler, DailyFileHandler):
            handler.rollover_if_due()
