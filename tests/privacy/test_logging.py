"""Log redaction end to end: configure_logging, both formats, every way a number can get in."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy_hooks import (
    BaseHook,
    HookChain,
    JsonFormatter,
    RedactingFilter,
    RedactionHook,
    TextFormatter,
    configure_logging,
    keyed_hash,
    parse_level,
)

NUMBER = "+4512345678"  # fake sample number
DIGITS = "4512345678"
OTHER = "4587654321"


@pytest.fixture
def clean_root() -> Iterator[None]:
    """Restore the root logger, including the filters configure_logging adds to
    handlers it did not install (pytest's own): later tests must see raw records."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    saved_filters = {handler: list(handler.filters) for handler in root.handlers}
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in saved[0]:
                root.removeHandler(handler)
                handler.close()
        for handler, filters in saved_filters.items():
            handler.filters[:] = filters
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def _emit_everything(log: logging.Logger) -> None:
    log.info("sending to %s", NUMBER)
    log.info("sending to " + OTHER)
    log.info("job %(id)s to %(to)s: %(text)s", {"id": "j1", "to": NUMBER, "text": "Hello Bob"})
    log.warning("extras", extra={"to": NUMBER, "text": "Hello Bob", "note": f"msisdn={OTHER}"})
    log.info(
        "nested", extra={"ctx": {"numbers": [NUMBER, int(OTHER)], "raw": b"\x00" + DIGITS.encode()}}
    )
    try:
        number = NUMBER  # the traceback shows this source line
        raise ValueError(f"cannot route {number}")
    except ValueError:
        log.exception("failed for %s", OTHER)
    log.info("stack", stack_info=True)


def _assert_clean(output: str) -> None:
    assert DIGITS not in output
    assert OTHER not in output
    assert "Hello Bob" not in output


def test_json_output_has_no_numbers_and_one_object_per_line(clean_root: None) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    _emit_everything(logging.getLogger("sendgate.test"))
    output = stream.getvalue()
    _assert_clean(output)
    lines = output.splitlines()
    assert len(lines) == 7
    records = [json.loads(line) for line in lines]
    assert {"ts", "level", "logger", "msg"} <= records[0].keys()
    assert records[0]["msg"] == "sending to +45******78"
    assert records[0]["level"] == "info"
    assert records[0]["logger"] == "sendgate.test"
    assert records[0]["ts"].endswith("Z")
    assert records[2]["msg"] == "job j1 to +45******78: [redacted]"
    assert records[3]["to"] == "+45******78"
    assert records[3]["text"] == "[redacted]"
    assert records[3]["note"] == "msisdn=45******21"
    assert records[4]["ctx"]["raw"] == "<11 bytes>"
    assert "ValueError: cannot route +45******78" in records[5]["exc"]
    assert "Traceback" in records[5]["exc"]
    assert "stack" in records[6]


def test_text_output_has_no_numbers(clean_root: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "text", stream=stream)
    _emit_everything(logging.getLogger("sendgate.test"))
    output = stream.getvalue()
    _assert_clean(output)
    assert " INFO sendgate.test: sending to +45******78" in output
    assert "to=+45******78" in output
    assert "ValueError: cannot route +45******78" in output


def test_file_gets_the_same_redacted_lines(clean_root: None, tmp_path: Path) -> None:
    path = tmp_path / "sendgate.log"
    stream = io.StringIO()
    handlers = configure_logging("info", "json", file=str(path), stream=stream)
    assert len(handlers) == 2
    logging.getLogger("x").info("to %s", NUMBER)
    for handler in handlers:
        handler.flush()
    text = path.read_text()
    assert text == stream.getvalue()
    assert "+45******78" in text and DIGITS not in text


def test_reconfiguring_replaces_our_handlers(clean_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("warning", "text", stream=second)
    log = logging.getLogger("x")
    log.info("dropped by level")
    log.warning("kept")
    assert first.getvalue() == ""
    assert "kept" in second.getvalue() and "dropped" not in second.getvalue()


def test_warnings_are_captured_and_redacted(clean_root: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"odd number {NUMBER}", UserWarning, stacklevel=1)
    assert "odd number +45******78" in stream.getvalue()
    assert DIGITS not in stream.getvalue()


def test_formatters_redact_without_the_filter() -> None:
    for formatter in (JsonFormatter(), TextFormatter()):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", (NUMBER,), None)
        record.__dict__["text"] = "Hello Bob"
        out = formatter.format(record)
        assert DIGITS not in out and "Hello Bob" not in out


def test_filter_is_idempotent_across_handlers() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", (NUMBER,), None)
    flt = RedactingFilter()
    assert flt.filter(record)
    assert flt.filter(record)
    assert record.getMessage() == "to +45******78"


def test_keyed_hashes_stay_readable_for_correlation(clean_root: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    h = keyed_hash(b"k", NUMBER)
    logging.getLogger("x").info("subject %s", h, extra={"to_hash": h})
    record = json.loads(stream.getvalue())
    assert record["msg"] == f"subject {h}"
    assert record["to_hash"] == h


def test_broken_format_arguments_do_not_leak_or_raise(clean_root: None) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    logging.getLogger("x").info("two %s %s", NUMBER)
    output = stream.getvalue()
    assert DIGITS not in output
    assert "unformattable" in output


def test_foreign_root_handlers_get_the_filter(clean_root: None) -> None:
    foreign = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        configure_logging("info", "json", stream=io.StringIO())
        assert any(isinstance(f, RedactingFilter) for f in foreign.filters)
        logging.getLogger("x").info("to %s", NUMBER)
        stream = foreign.stream
        assert isinstance(stream, io.StringIO)
        assert "+45******78" in stream.getvalue()
    finally:
        root.removeHandler(foreign)


def test_clean_root_restores_pytest_handlers(clean_root: None) -> None:
    # Guard for the fixture above: after configure_logging, the next test's
    # caplog must still see raw records (checked by the next test).
    configure_logging("info", "json", stream=io.StringIO())


def test_later_tests_see_raw_records(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("x").info("id %s", "1234567890")
    assert "1234567890" in caplog.text


def test_hook_chain_filter_can_drop_records(clean_root: None) -> None:
    class DropDebugOfX(BaseHook):
        def on_log(self, record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith("drop")

    stream = io.StringIO()
    chain = HookChain([RedactionHook(), DropDebugOfX()])
    configure_logging("info", "json", stream=stream, log_filter=chain.log_filter())
    log = logging.getLogger("x")
    log.info("drop me %s", NUMBER)
    log.info("keep me %s", NUMBER)
    output = stream.getvalue()
    assert "drop me" not in output
    assert "keep me +45******78" in output


def test_parse_level_and_bad_config() -> None:
    assert parse_level("info") == logging.INFO
    assert parse_level("DEBUG") == logging.DEBUG
    assert parse_level("warn") == logging.WARNING
    assert parse_level(15) == 15
    with pytest.raises(ValueError, match=r"logging\.level"):
        parse_level("verbose")
    with pytest.raises(ValueError, match=r"logging\.format"):
        configure_logging("info", "xml")  # type: ignore[arg-type]


_numbers = st.from_regex(r"\A[1-9][0-9]{7,14}\Z", fullmatch=True)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=_numbers, plus=st.booleans(), where=st.sampled_from(["msg", "arg", "extra", "exc"]))
def test_no_number_survives_any_path(clean_root: None, number: str, plus: bool, where: str) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    log = logging.getLogger("sendgate.prop")
    value = ("+" if plus else "") + number
    if where == "msg":
        log.info("value " + value)
    elif where == "arg":
        log.info("value %s", value)
    elif where == "extra":
        log.info("value", extra={"detail": f"x {value} y"})
    else:
        try:
            raise RuntimeError(value)
        except RuntimeError:
            log.exception("boom")
    assert number not in stream.getvalue()


def test_structs_and_dataclasses_are_rendered_without_text(clean_root: None) -> None:
    import dataclasses

    import msgspec

    class Job(msgspec.Struct):
        id: str
        to: str
        text: str

    @dataclasses.dataclass
    class Part:
        seq: int
        short_message: bytes
        destination_addr: str

    job = Job("j1", NUMBER, "Hello Bob")
    part = Part(1, b"Hello Bob", NUMBER)
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    log = logging.getLogger("x")
    log.info("job %s part %r", job, part)
    log.info(job)
    log.info({"to": NUMBER, "text": "Hello Bob"})
    log.info("ctx", extra={"job": job, "parts": [part]})
    output = stream.getvalue()
    _assert_clean(output)
    first = json.loads(output.splitlines()[0])["msg"]
    assert "Job(id='j1', to='+45******78', text='[redacted]')" in first
    assert "destination_addr='+45******78'" in first
