"""normalize_id: both sides of a carrier's ids meet on one key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr.ids import ID_FORMATS, normalize_id, normalize_receipt_id, submit_normalizer


@pytest.mark.parametrize(
    ("fmt", "submit_id", "receipt_id"),
    [
        ("as-is", "ABCDEF0123", "abcdef0123"),
        ("as-is", "000123", "123"),
        ("as-is", " 42\x00", "42"),
        ("as-is", "0", "000"),
        ("hex-to-dec", "1A2B", "6699"),
        ("hex-to-dec", "00001a2b", "0006699"),
        ("hex-to-dec", "0", "0"),
        ("dec-to-hex", "6699", "1A2B"),
        ("dec-to-hex", "0006699", "00001a2b"),
    ],
)
def test_submit_and_receipt_ids_meet(fmt: str, submit_id: str, receipt_id: str) -> None:
    assert normalize_id(submit_id, fmt, side="submit") == normalize_id(
        receipt_id, fmt, side="receipt"
    )


def test_as_is_keeps_non_hex_ids_exactly() -> None:
    assert normalize_id("AbX-0012", "as-is", side="receipt") == "AbX-0012"
    assert normalize_id("550e8400-E29B", "as-is", side="submit") == "550e8400-E29B"
    assert normalize_id("AbX-0012", "as-is", side="receipt") != normalize_id(
        "abx-0012", "as-is", side="receipt"
    )


def test_invalid_input_for_a_conversion_falls_back_to_as_is() -> None:
    assert normalize_id("XYZ-1", "hex-to-dec", side="submit") == "XYZ-1"
    assert normalize_id("12ab", "dec-to-hex", side="submit") == "12ab"
    assert normalize_id("", "hex-to-dec", side="submit") == ""
    assert normalize_id("١٢٣", "dec-to-hex", side="submit") == "١٢٣"  # non-ASCII digits
    assert normalize_id("F" * 100, "hex-to-dec", side="submit") == "f" * 100
    assert normalize_id("0012", "no-such-format", side="submit") == "12"


@given(st.integers(min_value=0, max_value=2**64), st.booleans(), st.integers(0, 4))
def test_round_trip_property(value: int, upper: bool, zeros: int) -> None:
    hex_id = "0" * zeros + (format(value, "X") if upper else format(value, "x"))
    dec_id = "0" * zeros + str(value)
    assert normalize_id(hex_id, "hex-to-dec", side="submit") == normalize_id(
        dec_id, "hex-to-dec", side="receipt"
    )
    assert normalize_id(dec_id, "dec-to-hex", side="submit") == normalize_id(
        hex_id, "dec-to-hex", side="receipt"
    )


@given(
    st.text(max_size=50),
    st.sampled_from((*ID_FORMATS, "bogus")),
    st.sampled_from(("submit", "receipt")),
)
def test_never_raises(raw: str, fmt: str, side: str) -> None:
    assert isinstance(normalize_id(raw, fmt, side=side), str)  # type: ignore[arg-type]


@given(st.text(max_size=50), st.sampled_from([*ID_FORMATS, "unknown-format"]))
def test_the_receipt_side_shortcut_is_normalize_id(raw: str, fmt: str) -> None:
    assert normalize_receipt_id(raw) == normalize_id(raw, fmt, side="receipt")


@given(raw=st.text(max_size=50), fmt=st.sampled_from([*ID_FORMATS, "unknown"]))
def test_submit_normalizer_is_normalize_id_of_the_submit_side(raw: str, fmt: str) -> None:
    assert submit_normalizer(fmt)(raw) == normalize_id(raw, fmt, side="submit")
    assert submit_normalizer(fmt)(raw.upper()) == normalize_id(raw.upper(), fmt, side="submit")
