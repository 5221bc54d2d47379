"""Log redaction: no phone number and no message text leaves the process in a log line.

Why a filter on the handlers: code all over the engine (and its libraries)
logs; reviewing every call site for numbers does not scale and a single
forgotten ``%s`` leaks. So the records are cleaned where they leave — a
``logging.Filter`` on every handler ``configure_logging`` installs (handler
filters see records propagated from every logger, logger filters do not).
Our formatters run the same cleaning again if a record reaches them
unfiltered, so a handler added without the filter still does not leak.

What happens to a record (``redact_record``, idempotent):

* The message is rendered once (``msg % args``), masked with
  ``redact_text`` and stored back with ``args`` cleared, so no later
  formatter renders the raw arguments again. Mapping args named like text
  fields (``text``, ``short_message``…) are replaced before rendering.
* An exception's traceback is rendered into ``exc_text`` and masked (the
  exception message and the source lines of the frames may both hold a
  number); ``stack_info`` likewise.
* ``extra`` fields: names in ``TEXT_FIELDS`` are replaced by ``[redacted]``
  whatever their value; names in ``NUMBER_FIELDS`` are masked as a number
  when they contain a digit; bytes are shown only as their length (a PDU body
  carries numbers and text); strings, numbers (6+ digits) and containers are
  masked like the message.
* Objects with named fields — msgspec Structs (a job, a PDU) and dataclasses —
  are rendered field by field with the same rules, wherever they appear (as
  the message, a ``%`` argument, or inside an extra), so ``log.info("%s", job)``
  never prints the job's text.

The cost is paid only by records that are actually emitted; the rendering is
the one the formatter would have done anyway. The usual record (a str
template with plain ``%`` arguments, string extras, no exception) is rendered
inline, and its message and string extras are checked for a digit run in one
scan (``masking.DIGIT_TABLE``: no regex for ASCII text); only what holds one is
masked. Anything else takes the general path above; the result is the same.
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Mapping
from typing import Any

from .masking import DIGIT_RUN, DIGIT_TABLE, mask_number, redact_text

__all__ = [
    "NUMBER_FIELDS",
    "REDACTED",
    "STANDARD_ATTRS",
    "TEXT_FIELDS",
    "RedactingFilter",
    "clean_record",
    "is_redacted",
    "record_extras",
    "redact_field",
    "redact_record",
]

#: Placeholder for a value that is never rendered.
REDACTED = "[redacted]"

#: Field names that carry message text (or a raw payload): never rendered.
TEXT_FIELDS = frozenset(
    {
        "text",
        "body",
        "content",
        "message_text",
        "message_payload",
        "payload",
        "short_message",
        "sms",
        "sms_text",
    }
)

#: Field names that carry a phone number: always masked as one.
NUMBER_FIELDS = frozenset(
    {
        "to",
        "from",
        "msisdn",
        "number",
        "phone",
        "recipient",
        "sender",
        "source_addr",
        "destination_addr",
        "dest_addr",
    }
)

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
STANDARD_ATTRS = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)

#: How many attributes ``LogRecord.__init__`` sets: a record's ``__dict__`` starts
#: with them (insertion order), so its extras are the keys after these.
_N_INIT = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_MARK = "_sendgate_redacted"
_LOG_RECORD = logging.LogRecord
_NAMED_FIELDS = TEXT_FIELDS | NUMBER_FIELDS
# Argument types that need no field-aware rendering (checked by exact type: fast).
_PLAIN_TYPES = frozenset({str, int, float, bool, bytes, type(None)})
_MAX_DEPTH = 4


def is_redacted(record: logging.LogRecord) -> bool:
    """True once ``redact_record`` has cleaned ``record``."""
    return bool(record.__dict__.get(_MARK))


def redact_field(name: str, value: Any, depth: int = 0) -> Any:
    """The value of a field named ``name`` as it may be logged."""
    if name in TEXT_FIELDS:
        return REDACTED
    if value is None or isinstance(value, bool):
        return value
    if name in NUMBER_FIELDS:
        text = value if isinstance(value, str) else str(value)
        return mask_number(text) if any(c.isdigit() for c in text) else text
    return _redact_value(value, depth)


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -100_000 < value < 100_000 else redact_text(str(value))
    if isinstance(value, float):
        return value if -100_000 < value < 100_000 else redact_text(repr(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if depth >= _MAX_DEPTH:
        return "<...>"
    if isinstance(value, Mapping):
        return {
            (redact_text(k) if isinstance(k, str) else k): redact_field(str(k), v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, depth + 1) for v in value]
    return _redact_object(value, depth)


def _fields_of(value: Any) -> dict[str, Any] | None:
    """The named fields of a msgspec Struct or dataclass instance (duck-typed), else None."""
    names = getattr(type(value), "__struct_fields__", None)
    if isinstance(names, tuple):
        return {name: getattr(value, name, None) for name in names}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    return None


def _redact_object(value: Any, depth: int = 0) -> str:
    """``str(value)`` masked; a Struct/dataclass is rendered field by field, text fields dropped."""
    fields = _fields_of(value)
    if fields is None:
        return redact_text(str(value))
    inner = ", ".join(f"{k}={redact_field(k, v, depth + 1)!r}" for k, v in fields.items())
    return f"{type(value).__name__}({inner})"


def _render(record: logging.LogRecord) -> str:
    msg = record.msg
    if not isinstance(msg, str):
        # log.info(job) or log.info({"to": ..., "text": ...}): render it field-aware.
        record.msg = str(_redact_value(msg, 0)) if isinstance(msg, Mapping) else _redact_object(msg)
    args = record.args
    if type(args) is tuple:  # the usual case first: an ABC isinstance check costs more than the rest
        plain = _PLAIN_TYPES
        for a in args:
            if type(a) not in plain:
                record.args = tuple(_redact_object(a) if _fields_of(a) is not None else a for a in args)
                break
    elif isinstance(args, Mapping) and not TEXT_FIELDS.isdisjoint(args):
        record.args = {k: (REDACTED if k in TEXT_FIELDS else v) for k, v in args.items()}
    elif isinstance(args, tuple):
        record.args = tuple(_redact_object(a) if _fields_of(a) is not None else a for a in args)
    try:
        return record.getMessage()
    except Exception:
        # Broken format/args: logging would print a traceback with the raw
        # args; keep the template only.
        return f"{record.msg!s} [unformattable log arguments dropped]"


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of ``record`` (not standard attributes, not private)."""
    return {k: v for k, v in record.__dict__.items() if k not in STANDARD_ATTRS and k[:1] != "_"}


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Clean ``record`` in place (see the module docstring); calling it again does nothing."""
    clean_record(record)
    return record


def clean_record(record: logging.LogRecord, /) -> bool:
    """``redact_record``'s work, returning True: ``RedactingFilter.filter`` itself
    (this runs for every record emitted: one call, the record's own dict, no
    set or list built per record)."""
    d = record.__dict__
    if _MARK in d:
        return True
    msg = d["msg"]
    args = d["args"]
    text = None
    if type(msg) is str and type(record) is _LOG_RECORD:
        # The usual record: a str template and no or plain arguments, rendered as
        # LogRecord.getMessage does (``msg % args`` when there are args). Anything
        # else -- a Struct or a mapping as message or argument, a subclass that
        # renders its own way, a template that does not format -- takes _render.
        if not args:
            text = msg
        elif type(args) is tuple:
            plain = _PLAIN_TYPES
            for a in args:
                t = type(a)  # (identity tests first: cheaper than a set lookup)
                if t is not str and t is not int and t is not float and t not in plain:
                    break
            else:
                try:
                    text = msg % args
                except Exception:
                    pass  # _render renders it again and keeps the template only
    if text is None:
        text = _render(record)
    d["args"] = None
    try:
        traced = d["exc_info"] or d["exc_text"] or d["stack_info"]
    except KeyError:  # not a record LogRecord.__init__ made: look at what it has
        traced = True
    if traced:
        _redact_traceback(d)
    # The message and the extras that are strings under plain names are checked
    # for a digit run in one scan (NUL-separated: no run spans two of them;
    # strings shorter than 6 characters hold none); only then are they masked.
    scan = text
    n = len(d) - _N_INIT
    if n > 0:
        # the extras: the keys after LogRecord.__init__'s own, i.e. the last n, read
        # from the end (checked against the standard names all the same: a record
        # factory may set more of them; private names are left alone)
        standard, named = STANDARD_ATTRS, _NAMED_FIELDS
        for key in d.__reversed__():  # (reversed(d) costs ~1,000 instructions more)
            if key not in standard:
                value = d[key]
                if type(value) is str and key not in named:
                    if len(value) > 5 and key[:1] != "_":
                        scan = f"{scan}\0{value}"
                elif key[:1] != "_" and (type(value) is not int or not -100_000 < value < 100_000 or key in named):
                    d[key] = redact_field(key, value)  # (an existing key: the iteration goes on)
            n -= 1
            if not n:
                break
    if len(scan) > 5 and (
        "000000" in scan.encode().translate(DIGIT_TABLE).decode()
        if scan.isascii()
        else DIGIT_RUN.search(scan) is not None
    ):  # (masking.has_run, inline)
        if scan is not text:
            for key in list(d)[_N_INIT:]:
                value = d[key]
                if type(value) is str and key not in named and key not in standard and key[:1] != "_":
                    d[key] = redact_text(value)
        text = redact_text(text)
    d["msg"] = text
    d[_MARK] = True
    return True


def _redact_traceback(d: dict[str, Any]) -> None:
    """The exception's traceback rendered into ``exc_text`` and masked; ``stack_info`` masked."""
    exc_info = d.get("exc_info")
    if exc_info and not d.get("exc_text"):
        d["exc_text"] = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    exc_text = d.get("exc_text")
    if exc_text:
        d["exc_text"] = redact_text(exc_text)
    stack_info = d.get("stack_info")
    if stack_info:
        d["stack_info"] = redact_text(stack_info)


class RedactingFilter(logging.Filter):
    """``logging.Filter`` that redacts every record passing through (never drops one)."""

    # ``filter(record)`` is ``clean_record`` itself: no call of a method that calls it
    # (~300 instructions of the ~15,000 a record costs)
    filter = staticmethod(clean_record)  # type: ignore[assignment]
