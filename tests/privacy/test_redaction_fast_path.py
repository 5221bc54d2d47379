"""The redaction filter's fast path (issue #21): the usual record -- a str template,
plain arguments, a few string extras -- is rendered and checked for a digit run in
one scan; a record that holds a number anywhere is still masked, through every
entry point (``RedactingFilter``, the default chain's log filter, ``redact_record``,
a configured logger)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privacy_hooks import (
    RedactingFilter,
    configure_logging,
    default_chain,
    redact_record,
    redact_text,
)
from privacy_hooks.masking import DIGIT_RUN, has_run
from privacy_hooks.redaction import is_redacted

NUMBER = "+4512345678"  # fake sample number
DIGITS = "4512345678"
MASKED = "+45******78"


def _record(msg: str = "submitted %s via %s in %.1f ms", args: tuple[Any, ...] = ("job-1234", "acme-1", 3.2),
            extra: dict[str, Any] | None = None, exc_info: Any = None) -> logging.LogRecord:
    """The benchmark's record shape (bench/micro/test_privacy.py ``_plain_record``)."""
    record = logging.LogRecord("sendgate.engine", logging.INFO, __file__, 1, msg, args, exc_info)
    record.__dict__.update({"carrier": "acme", "job_id": "job-1234", **(extra or {})})
    return record


def _via_redact_record(record: logging.LogRecord) -> bool:
    return redact_record(record) is record


ENTRY_POINTS: dict[str, Callable[[logging.LogRecord], bool]] = {
    "RedactingFilter": RedactingFilter().filter,
    "chain filter": default_chain().log_filter().filter,
    "redact_record": _via_redact_record,
}


@pytest.fixture(params=list(ENTRY_POINTS))
def clean(request: pytest.FixtureRequest) -> Callable[[logging.LogRecord], bool]:
    return ENTRY_POINTS[request.param]


def _exc_info() -> Any:
    try:
        raise ValueError(f"cannot route {NUMBER}")
    except ValueError:
        return sys.exc_info()


def test_the_record_without_a_number_is_unchanged(clean: Callable[[logging.LogRecord], bool]) -> None:
    record = _record()
    assert clean(record)
    assert record.getMessage() == "submitted job-1234 via acme-1 in 3.2 ms"
    assert record.args is None
    assert (record.carrier, record.job_id) == ("acme", "job-1234")
    assert record.exc_text is None and record.stack_info is None
    assert is_redacted(record)


@pytest.mark.parametrize(
    ("record", "where"),
    [
        (lambda: _record(f"submitted %s to {NUMBER} via %s in %.1f ms"), "msg"),
        (lambda: _record(args=("job-1234", NUMBER, 3.2)), "msg"),
        (lambda: _record(args=("job-1234", int(DIGITS), 3.2)), "msg"),
        (lambda: _record("to %s", (NUMBER,)), "msg"),
        (lambda: _record(f"to {NUMBER}", ()), "msg"),
        (lambda: _record(extra={"note": f"retry for {NUMBER}"}), "note"),
        (lambda: _record(extra={"job_id": f"job-{DIGITS}"}), "job_id"),
        (lambda: _record(extra={"to": NUMBER}), "to"),
        (lambda: _record(extra={"count": int(DIGITS)}), "count"),
        (lambda: _record(extra={"ctx": {"numbers": [NUMBER]}}), "ctx"),
        (lambda: _record(exc_info=_exc_info()), "exc_text"),
    ],
    ids=["template", "str arg", "int arg", "only arg", "no args", "extra", "extra id", "number field",
         "int extra", "nested extra", "exception"],
)
def test_a_number_anywhere_is_still_masked(
    clean: Callable[[logging.LogRecord], bool], record: Callable[[], logging.LogRecord], where: str
) -> None:
    r = record()
    assert clean(r)
    value = r.getMessage() if where == "msg" else r.__dict__[where]
    assert DIGITS not in str(value)
    assert "******" in str(value)
    # everything else on the record is clean too, and a second pass changes nothing
    assert DIGITS not in r.getMessage() and DIGITS not in json.dumps(
        {k: str(v) for k, v in r.__dict__.items() if k not in ("exc_info", "args")}
    )
    before = dict(r.__dict__)
    assert clean(r)
    assert r.__dict__ == before


def test_the_exception_source_line_and_message_are_masked(clean: Callable[[logging.LogRecord], bool]) -> None:
    record = _record(exc_info=_exc_info())
    assert clean(record)
    assert record.exc_text is not None
    assert f"ValueError: cannot route {MASKED}" in record.exc_text
    assert DIGITS not in record.exc_text


def test_stack_info_is_masked(clean: Callable[[logging.LogRecord], bool]) -> None:
    record = _record()
    record.stack_info = f'  File "x.py", line 1, in f\n    send("{NUMBER}")'
    assert clean(record)
    assert DIGITS not in record.stack_info and MASKED in record.stack_info


def test_non_ascii_text_takes_the_regex(clean: Callable[[logging.LogRecord], bool]) -> None:
    """``\\d`` matches other scripts' digits: non-ASCII text is checked by the regex."""
    arabic = "٤٥١٢٣٤٥٦٧٨"  # Arabic-Indic digits
    record = _record("Ziel → %s", (arabic,), extra={"city": f"Zürich {DIGITS}"})
    assert clean(record)
    assert record.getMessage() == redact_text(f"Ziel → {arabic}") != f"Ziel → {arabic}"
    assert record.city == f"Zürich {redact_text(DIGITS)}"
    assert DIGITS not in record.city


def test_runs_do_not_span_the_message_and_an_extra(clean: Callable[[logging.LogRecord], bool]) -> None:
    record = _record("code %s", ("123",), extra={"next": "456 ok", "more": "789012 and 34"})
    assert clean(record)
    assert record.getMessage() == "code 123"
    assert record.next == "456 ok"
    assert record.more == redact_text("789012 and 34") == "****** and 34"


def test_small_numbers_flags_and_private_extras_are_kept(clean: Callable[[logging.LogRecord], bool]) -> None:
    record = _record(extra={"parts": 2, "retry": True, "latency": 3.5, "_private": DIGITS, "text": "Hello Bob"})
    assert clean(record)
    assert (record.parts, record.retry, record.latency) == (2, True, 3.5)
    assert record._private == DIGITS  # private names are not extras (never written out)
    assert record.text == "[redacted]"


def test_a_record_subclass_renders_its_own_way(clean: Callable[[logging.LogRecord], bool]) -> None:
    class Upper(logging.LogRecord):
        def getMessage(self) -> str:
            return super().getMessage().upper()

    record = Upper("x", logging.INFO, __file__, 1, "to %s now", (NUMBER,), None)
    assert clean(record)
    assert record.getMessage() == f"TO {MASKED} NOW"


def test_a_template_that_does_not_format_keeps_the_template_only(
    clean: Callable[[logging.LogRecord], bool],
) -> None:
    record = _record("to %s and %s", (NUMBER,))
    assert clean(record)
    assert record.getMessage() == "to %s and %s [unformattable log arguments dropped]"


@pytest.fixture
def json_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, {h: list(h.filters) for h in root.handlers})
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream, log_filter=default_chain().log_filter())
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
                handler.close()
        for handler, filters in saved[2].items():
            handler.filters[:] = filters
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def test_through_a_configured_logger(json_stream: io.StringIO) -> None:
    log = logging.getLogger("sendgate.fast")
    log.info("submitted %s via %s in %.1f ms", "job-1234", "acme-1", 3.2, extra={"carrier": "acme"})
    log.info("submitted %s to %s", "job-1234", NUMBER, extra={"job_id": f"job-{DIGITS}"})
    try:
        raise ValueError(f"cannot route {NUMBER}")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in json_stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "submitted job-1234 via acme-1 in 3.2 ms" and lines[0]["carrier"] == "acme"
    assert lines[1]["msg"] == f"submitted job-1234 to {MASKED}"
    assert lines[1]["job_id"] == "job-45******78"
    assert f"cannot route {MASKED}" in lines[2]["exc"]
    assert DIGITS not in json_stream.getvalue()


_TEXT = st.text(alphabet=st.sampled_from("0123456789ab -+x\0é٣"), max_size=40)


@given(_TEXT)
def test_has_run_is_the_regex(text: str) -> None:
    assert has_run(text) == (DIGIT_RUN.search(text) is not None)


@given(_TEXT, st.lists(_TEXT, max_size=3), st.lists(_TEXT, max_size=3))
def test_fast_path_is_redact_text_of_each_part(template: str, args: list[str], extras: list[str]) -> None:
    msg = template.replace("%", "") + " %s" * len(args)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, msg, tuple(args), None)
    for i, value in enumerate(extras):
        record.__dict__[f"e{i}"] = value
    assert RedactingFilter().filter(record)
    assert record.getMessage() == redact_text(msg % tuple(args))
    for i, value in enumerate(extras):
        assert record.__dict__[f"e{i}"] == redact_text(value)
