"""The log file: daily rotation at midnight UTC and deletion after the retention, on a fake clock."""

from __future__ import annotations

import calendar
import io
import logging
import logging.handlers
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from privacy_hooks import configure_logging
from privacy_hooks.logfile import DailyFileHandler, rotate_due_files
from tests.privacy.test_logging import clean_root as clean_root  # the fixture

DAY = 86_400
JAN_31_NOON = calendar.timegm((2026, 1, 31, 12, 0, 0))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("sendgate.test.logfile")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def _handler(path: Path, clock: Clock, logger: logging.Logger, days: int = 30) -> DailyFileHandler:
    handler = DailyFileHandler(path, days, clock=clock)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    return handler


def test_the_first_record_after_midnight_rotates_the_file(tmp_path: Path, logger: logging.Logger) -> None:
    clock = Clock(JAN_31_NOON)
    path = tmp_path / "engine.log"
    _handler(path, clock, logger)
    logger.info("on the 31st")
    clock.now += 11 * 3600 + 59 * 60  # 23:59 UTC: same day
    logger.info("still the 31st")
    clock.now += 120  # 00:01 UTC on February 1st
    logger.info("on the 1st")
    assert (tmp_path / "engine.log.2026-01-31").read_text() == "on the 31st\nstill the 31st\n"
    assert path.read_text() == "on the 1st\n"


def test_rotated_files_older_than_the_retention_are_deleted(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "engine.log"
    for day in ("2025-12-01", "2025-12-31", "2026-01-01", "2026-01-30"):
        (tmp_path / f"engine.log.{day}").write_text("old\n")
    (tmp_path / "engine.log.notes").write_text("not ours\n")
    clock = Clock(JAN_31_NOON)
    handler = _handler(path, clock, logger, days=30)
    # at start-up: days before 2026-01-01 (31 Jan - 30 days) are gone
    assert [p.name for p in handler.rotated_files()] == ["engine.log.2026-01-01", "engine.log.2026-01-30"]
    logger.info("x")
    clock.now += 2 * DAY  # February 2nd: rotation deletes January 1st too
    logger.info("y")
    assert [p.name for p in handler.rotated_files()] == ["engine.log.2026-01-30", "engine.log.2026-01-31"]
    assert (tmp_path / "engine.log.notes").exists()


def test_maintenance_rotates_and_expires_when_nothing_is_logged(tmp_path: Path, logger: logging.Logger) -> None:
    clock = Clock(JAN_31_NOON)
    handler = _handler(tmp_path / "engine.log", clock, logger, days=1)
    logger.info("last line")
    clock.now += DAY
    rotate_due_files(logger)
    assert [p.name for p in handler.rotated_files()] == ["engine.log.2026-01-31"]
    clock.now += 3 * DAY
    rotate_due_files(logger)
    assert handler.rotated_files() == []  # only empty days since: nothing new, the old one expired


def test_a_file_left_by_an_earlier_run_is_rotated_as_its_own_day(tmp_path: Path, logger: logging.Logger) -> None:
    path = tmp_path / "engine.log"
    path.write_text("from the last run\n")
    os.utime(path, (JAN_31_NOON - 5 * DAY, JAN_31_NOON - 5 * DAY))
    _handler(path, Clock(JAN_31_NOON), logger)
    logger.info("today")
    assert (tmp_path / "engine.log.2026-01-26").read_text() == "from the last run\n"
    assert path.read_text() == "today\n"


@pytest.mark.usefixtures("clean_root")
def test_configure_logging_rotates_daily_with_the_retention(tmp_path: Path) -> None:
    handlers = configure_logging("info", "json", str(tmp_path / "e.log"), stream=io.StringIO(), retention_days=7)
    [daily] = [h for h in handlers if isinstance(h, DailyFileHandler)]
    assert daily.retention_days == 7 and daily.filters  # redacted like stderr
    handlers = configure_logging("info", "json", str(tmp_path / "e.log"), stream=io.StringIO(), rotate="external")
    assert isinstance(handlers[1], logging.handlers.WatchedFileHandler)


def test_retention_alias_logs(tmp_path: Path) -> None:
    from engine.config import ConfigError, settings_from_mapping

    s = settings_from_mapping({"privacy": {"retention_days": {"logs": 14}}}, env={})
    assert s.privacy.retention_days.activity_log == 14
    with pytest.raises(ConfigError, match=r"privacy\.retention_days\.logs"):
        settings_from_mapping({"privacy": {"retention_days": {"logs": 14, "activity_log": 30}}}, env={})
