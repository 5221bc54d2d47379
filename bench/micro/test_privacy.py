"""Privacy micro benchmarks: masking, hashing, and what redaction adds to a log line.

Targets: ``mask_number`` ≤ 1 µs; ``redact_text`` on a typical line ≤ 2 µs;
the redaction filter on a typical record ≤ 10 µs, on a record without a
number ≤ 3 µs (also through the default hook chain's log filter); a whole JSON log line
(logger call → filter → orjson → stream) ≤ 30 µs. A log call below the
level costs what logging's own level check costs: redaction never runs.
Run: ``pytest bench/micro/test_privacy.py --benchmark-only``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from privacy_hooks import (
    JsonFormatter,
    KeyedHasher,
    RedactingFilter,
    configure_logging,
    default_chain,
    keyed_hash,
    mask_number,
    redact_text,
)

NUMBER = "+4512345678"  # fake sample number
LINE = "submit_sm_resp job=j-77 bind=acme-1 seq=4711 status=0x00000058 in 3.2 ms"
LINE_IDS = "receipt job=7f3c2a10-0000-4000-8000-00000000abcd message_id=1A2B3C4D5E6F7081 to="


def _record(extra: dict[str, Any] | None = None) -> logging.LogRecord:
    record = logging.LogRecord(
        "sendgate.engine",
        logging.INFO,
        __file__,
        1,
        "submitted %s to %s via %s in %.1f ms",
        ("job-1234", NUMBER, "acme-1", 3.2),
        None,
    )
    for key, value in (extra or {}).items():
        record.__dict__[key] = value
    return record


def test_mask_number(benchmark: Any) -> None:
    assert benchmark(mask_number, NUMBER) == "+45******78"


def test_keyed_hash(benchmark: Any) -> None:
    assert len(benchmark(keyed_hash, b"secret", NUMBER)) == 32


def test_keyed_hasher_prepared(benchmark: Any) -> None:
    hasher = KeyedHasher(b"secret")
    assert len(benchmark(hasher, NUMBER)) == 32


def test_redact_text_clean_line(benchmark: Any) -> None:
    assert benchmark(redact_text, LINE) == LINE


def test_redact_text_line_with_ids_and_number(benchmark: Any) -> None:
    assert "+45******78" in benchmark(redact_text, LINE_IDS + NUMBER)


def test_filter_typical_record(benchmark: Any) -> None:
    flt = RedactingFilter()
    extra = {"carrier": "acme", "job_id": "job-1234", "to": NUMBER}

    def setup() -> tuple[tuple[logging.LogRecord], dict[str, Any]]:
        return (_record(extra),), {}

    benchmark.pedantic(flt.filter, setup=setup, rounds=20_000)
    record = _record(extra)
    flt.filter(record)
    assert "4512345678" not in record.getMessage()


def _plain_record() -> logging.LogRecord:
    """A typical engine record without a number (most of them)."""
    record = logging.LogRecord(
        "sendgate.engine", logging.INFO, __file__, 1, "submitted %s via %s in %.1f ms", ("job-1234", "acme-1", 3.2), None
    )
    record.__dict__.update({"carrier": "acme", "job_id": "job-1234"})
    return record


def test_filter_record_without_number(benchmark: Any) -> None:
    """Target ≤ 3 µs: the redaction filter on a record without a number."""
    flt = RedactingFilter()
    benchmark.pedantic(flt.filter, setup=lambda: ((_plain_record(),), {}), rounds=20_000)
    record = _plain_record()
    flt.filter(record)
    assert record.getMessage() == "submitted job-1234 via acme-1 in 3.2 ms"


def test_chain_filter_record_without_number(benchmark: Any) -> None:
    """Target ≤ 3 µs: the log filter of the default hook chain (what `sendgate run`
    installs) on a record without a number: the redaction alone."""
    flt = default_chain().log_filter()
    benchmark.pedantic(flt.filter, setup=lambda: ((_plain_record(),), {}), rounds=20_000)
    record = _plain_record()
    assert flt.filter(record) and record.getMessage() == "submitted job-1234 via acme-1 in 3.2 ms"


def test_chain_filter_with_a_custom_hook(benchmark: Any) -> None:
    """The same with one trivial custom hook after the defaults (its on_log per record)."""
    from bench.trivial_hook import Trivial

    flt = default_chain(custom=[Trivial()]).log_filter()
    benchmark.pedantic(flt.filter, setup=lambda: ((_plain_record(),), {}), rounds=20_000)
    record = _plain_record()
    assert flt.filter(record) and record.getMessage() == "submitted job-1234 via acme-1 in 3.2 ms"


def test_json_formatter_redacted_record(benchmark: Any) -> None:
    formatter = JsonFormatter()
    record = _record({"carrier": "acme"})
    RedactingFilter().filter(record)
    assert '"carrier":"acme"' in benchmark(formatter.format, record)


@pytest.fixture
def json_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    # Only our handler: pytest's capture handlers would dominate the figure.
    for handler in saved[0]:
        root.removeHandler(handler)
    configure_logging("info", "json", stream=io.StringIO())
    try:
        yield logging.getLogger("sendgate.bench")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.captureWarnings(False)


def test_log_line_end_to_end(benchmark: Any, json_logging: logging.Logger) -> None:
    log = json_logging

    def emit() -> None:
        log.info("submitted %s to %s via %s", "job-1234", NUMBER, "acme-1", extra={"parts": 2})

    benchmark(emit)


def test_log_call_below_level(benchmark: Any, json_logging: logging.Logger) -> None:
    log = json_logging
    benchmark(log.debug, "submitted %s to %s", "job-1234", NUMBER)


def test_hook_chain_stamp(benchmark: Any) -> None:
    chain = default_chain()
    assert benchmark(chain.stamp, "message", 1_900_000_000.0)[0] == 120 * 86_400
