"""command_status registry: complete, never raises, sensible flags."""

from __future__ import annotations

import pytest

from connectors import format_status, status_info, status_name
from connectors.status import STATUSES, StatusInfo, is_retriable, is_throttled

# SMPP 3.4 §5.1.3 Table 5-2, every defined code.
SPEC_CODES = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E,
    0x0F, 0x11, 0x13, 0x14, 0x15, 0x33, 0x34, 0x40, 0x42, 0x43, 0x44, 0x45, 0x48, 0x49,
    0x50, 0x51, 0x53, 0x54, 0x55, 0x58, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0xC0,
    0xC1, 0xC2, 0xC3, 0xC4, 0xFE, 0xFF,
]  # fmt: skip


def test_every_spec_code_is_registered() -> None:
    assert sorted(STATUSES) == SPEC_CODES
    for code in SPEC_CODES:
        info = status_info(code)
        assert info.code == code
        assert info.name.startswith("ESME_R")
        assert info.description


def test_throttling_codes() -> None:
    for code in (0x58, 0x14):
        info = status_info(code)
        assert info.throttled and info.retriable
        assert is_throttled(code)
    assert [c for c in SPEC_CODES if status_info(c).throttled] == [0x14, 0x58]


def test_system_error_is_retriable_and_permanent_errors_are_not() -> None:
    assert status_info(0x08).retriable
    assert is_retriable(0x08)
    for code in (0x0B, 0x0A, 0x43, 0x50, 0x51, 0x61, 0x62):
        assert not status_info(code).retriable, hex(code)


def test_bind_failures_are_auth_problems() -> None:
    for code in (0x0D, 0x0E, 0x0F):
        info = status_info(code)
        assert info.auth_failure and info.close_session and not info.retriable
    assert not status_info(0x08).auth_failure


@pytest.mark.parametrize("code", [0x09, 0x100, 0x3FF, 0x400, 0x401, 0x4FF, 0x500, 0xFFFFFFFF])
def test_unknown_and_vendor_codes_get_generic_entries(code: int) -> None:
    info = status_info(code)
    assert isinstance(info, StatusInfo)
    assert info.code == code
    assert info.name == f"0x{code:08X}"
    assert not info.retriable and not info.throttled
    assert status_name(code) == info.name
    if 0x400 <= code <= 0x4FF:
        assert "vendor" in info.description


def test_format_status() -> None:
    assert format_status(0x58) == "0x00000058"
    assert format_status(0xC0) == "0x000000C0"
    assert status_name(0x58) == "ESME_RTHROTTLED"
