"""Log output: one JSON object per line (default) or human text, on stderr.

Why JSON lines: logs go to a collector (journald, Loki, CloudWatch) that
indexes fields; one object per line with stable keys — ``ts`` (UTC ISO 8601,
milliseconds), ``level``, ``logger``, ``msg``, the record's ``extra`` fields,
``exc`` / ``stack`` when present — needs no parsing rules. orjson renders it
in a couple of microseconds. The text format is for people at a terminal.

Both formatters redact a record that reached them unfiltered
(``redact_record`` is idempotent), so they are safe on any handler; the
``RedactingFilter`` that ``configure_logging`` puts on each handler does the
work once per record before any formatter runs.

``configure_logging`` owns the root logger's handlers that it installed
(calling it again replaces them — config reload), writes to stderr and, when
``file`` is set, also to that file: rotated at midnight UTC and deleted after
``retention_days`` (privacy_hooks/logfile.py; the activity-log retention of
docs/contract.md §4), or, with ``rotate="external"``, a ``WatchedFileHandler``
that logrotate may move. Python warnings are routed into logging so they are
redacted too.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from typing import Any, Literal

import orjson

from .logfile import DailyFileHandler
from .redaction import RedactingFilter, is_redacted, record_extras, redact_record

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "parse_level"]

_CORE_KEYS = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})
_OWNED = "_sendgate_handler"


def _default(value: Any) -> str:
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts, level, logger, msg, extras, exc, stack."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        if not is_redacted(record):
            redact_record(record)
        out: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record_extras(record).items():
            out[key if key not in _CORE_KEYS else f"extra_{key}"] = value
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return orjson.dumps(out, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO engine.pool: msg key=value …`` (UTC)."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not is_redacted(record):
            redact_record(record)
        text = super().format(record)
        extras = record_extras(record)
        if not extras:
            return text
        pairs = " ".join(f"{k}={v}" for k, v in extras.items())
        head, sep, tail = text.partition("\n")
        return f"{head} {pairs}{sep}{tail}"


def parse_level(level: str | int) -> int:
    """``"info"`` / ``"DEBUG"`` / ``20`` → a logging level; ValueError names ``logging.level``."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        name = level.strip().upper()
        if name == "WARN":
            name = "WARNING"
        value = logging.getLevelNamesMapping().get(name)
        if value is not None:
            return value
    raise ValueError(
        f"logging.level: expected one of debug, info, warning, error, critical; got {level!r}"
    )


def configure_logging(
    level: str | int = "info",
    fmt: Literal["json", "text"] = "json",
    file: str | None = None,
    *,
    log_filter: logging.Filter | None = None,
    stream: Any = None,
    retention_days: int = 30,
    rotate: Literal["daily", "external"] = "daily",
) -> list[logging.Handler]:
    """Install redacting handlers on the root logger: stderr, plus ``file`` if given.

    Handlers already on the root logger that were not installed here get a
    ``RedactingFilter`` as well.

    ``log_filter`` replaces the default ``RedactingFilter`` (e.g. a
    ``HookChain.log_filter()`` that runs custom privacy hooks too);
    ``stream`` replaces stderr (tests). ``retention_days``: how long rotated
    files are kept (``rotate="daily"``). Returns the handlers installed.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"logging.format: expected 'json' or 'text', got {fmt!r}")
    numeric = parse_level(level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OWNED, False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if file:
        if rotate == "external":
            handlers.append(logging.handlers.WatchedFileHandler(file, encoding="utf-8"))
        elif rotate == "daily":
            handlers.append(DailyFileHandler(file, retention_days))
        else:
            raise ValueError(f"logging.rotate: expected 'daily' or 'external', got {rotate!r}")
    flt = log_filter if log_filter is not None else RedactingFilter()
    # Handlers someone else put on the root logger see the same records: they
    # get the filter too, so nothing leaks through them.
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for handler in handlers:
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        handler.addFilter(flt)
        setattr(handler, _OWNED, True)
        root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    return handlers
