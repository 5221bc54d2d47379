"""Receipt parser: Appendix B bodies as carriers really send them, TLVs, and errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr.receipt_parse import Receipt, ReceiptParseError, is_receipt, parse_receipt

TYPICAL = (
    b"id:1234567890 sub:001 dlvrd:001 submit date:2311011200 done date:2311011201 "
    b"stat:DELIVRD err:000 text:Hello there"
)


def test_is_receipt_by_esm_class_type_bits() -> None:
    assert is_receipt(0x04)
    assert is_receipt(0x20)
    assert is_receipt(0x44)  # UDHI bit set as well
    assert is_receipt(0x04 | 0x80)
    assert not is_receipt(0x00)  # mobile originated
    assert not is_receipt(0x08)  # SME delivery acknowledgement
    assert not is_receipt(0x40)


def test_typical_body() -> None:
    r = parse_receipt(0x04, TYPICAL)
    assert r == Receipt(
        message_id="1234567890",
        stat="DELIVRD",
        event="delivered",
        is_final=True,
        error="",
        submit_date="2311011200",
        done_date="2311011201",
        sub="001",
        dlvrd="001",
        intermediate=False,
    )


@pytest.mark.parametrize(
    ("stat", "event", "final"),
    [
        ("DELIVRD", "delivered", True),
        ("EXPIRED", "expired", True),
        ("DELETED", "deleted", True),
        ("UNDELIV", "undeliverable", True),
        ("ACCEPTD", "accepted", False),
        ("UNKNOWN", "unknown", True),
        ("REJECTD", "rejected", True),
        ("ENROUTE", "enroute", False),
        ("delivrd", "delivered", True),
        ("WHATEVER", "unknown", True),
    ],
)
def test_stat_words(stat: str, event: str, final: bool) -> None:
    r = parse_receipt(0x04, f"id:7 stat:{stat} err:000".encode())
    assert (r.stat, r.event, r.is_final, r.intermediate) == (stat, event, final, not final)


def test_tolerant_body_variants() -> None:
    # other order, upper case keys, 12-digit dates, Text: with colons and spaces
    body = (
        b"ID:AbC123 Stat:UNDELIV err:034 dlvrd:000 sub:001 Submit Date:231101120000 "
        b"Done Date:231101120105 Text:id:999 stat:DELIVRD: not a field"
    )
    r = parse_receipt(0x04, body)
    assert r.message_id == "AbC123"
    assert r.event == "undeliverable" and r.error == "err:034"
    assert r.submit_date == "231101120000" and r.done_date == "231101120105"
    # missing fields, a space after a colon, trailing junk, no text at all
    r = parse_receipt(0x04, b"id: 42 stat:EXPIRED \x00\x00garbage")
    assert (r.message_id, r.event, r.sub, r.dlvrd, r.submit_date, r.error) == (
        "42",
        "expired",
        "",
        "",
        "",
        "",
    )
    # underscores in the date keys
    r = parse_receipt(0x04, b"id:5 submit_date:2311011200 done_date:2311011201 stat:DELIVRD")
    assert (r.submit_date, r.done_date) == ("2311011200", "2311011201")


def test_non_ascii_bytes_never_raise_unicode_errors() -> None:
    body = b"id:77 sub:001 dlvrd:001 stat:DELIVRD err:000 text:\xff\xfe\xc3\x28 caf\xc3\xa9"
    assert parse_receipt(0x04, body).message_id == "77"
    with pytest.raises(ReceiptParseError):
        parse_receipt(0x04, b"\xff\xfe\xfd")


def test_tlvs_win_over_body() -> None:
    r = parse_receipt(
        0x04,
        b"id:111 stat:ENROUTE err:000 text:x",
        receipted_message_id="ABC\x00",
        message_state=5,
        network_error_code=b"\x03\x00\x16",
    )
    assert r.message_id == "ABC"
    assert r.event == "undeliverable" and r.is_final
    assert r.stat == "ENROUTE"  # the body's word is kept as received
    assert r.error == "net:03:0022"


def test_tlvs_only_empty_body() -> None:
    r = parse_receipt(0x04, b"", receipted_message_id="9f", message_state=2)
    assert (r.message_id, r.stat, r.event, r.error) == ("9f", "DELIVERED", "delivered", "")
    # body error wins over the network error code; a zero network code is no error
    r = parse_receipt(0x04, b"id:1 stat:UNDELIV err:011", network_error_code=b"\x03\x00\x16")
    assert r.error == "err:011"
    r = parse_receipt(
        0x04, b"", receipted_message_id="1", message_state=8, network_error_code=b"\x03\x00\x00"
    )
    assert (r.event, r.error) == ("rejected", "")


def test_unknown_message_state_falls_back_to_body() -> None:
    r = parse_receipt(0x04, b"id:1 stat:DELIVRD", message_state=42)
    assert r.event == "delivered"


def test_intermediate_notification_is_never_final() -> None:
    r = parse_receipt(0x20, b"id:1 stat:DELIVRD")
    assert r.intermediate and not r.is_final


@pytest.mark.parametrize(
    ("body", "kwargs", "reason"),
    [
        (b"", {}, "no message id"),
        (b"sub:001 stat:DELIVRD text:+4500000000 secret", {}, "no message id"),
        (b"id:123 sub:001 text:stat:DELIVRD", {}, "no state"),
        (b"id:" + b"9" * 200 + b" stat:DELIVRD", {}, "message id too long"),
        (b"", {"receipted_message_id": "  \x00"}, "no message id"),
    ],
)
def test_parse_errors_have_a_reason_without_the_body(
    body: bytes, kwargs: dict[str, str], reason: str
) -> None:
    with pytest.raises(ReceiptParseError) as info:
        parse_receipt(0x04, body, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert "secret" not in str(info.value) and "+45" not in str(info.value)


@given(
    st.binary(max_size=300),
    st.one_of(st.none(), st.integers(-5, 300)),
    st.one_of(st.none(), st.binary(max_size=5)),
)
def test_fuzz_yields_receipt_or_parse_error(
    body: bytes, state: int | None, net: bytes | None
) -> None:
    try:
        r = parse_receipt(0x04, body, None, state, net)
    except ReceiptParseError:
        return
    assert r.message_id and r.event
    assert r.is_final != r.intermediate


_FIELDS = {
    "id": "Ab12cD",
    "sub": "001",
    "dlvrd": "001",
    "submit date": "2311011200",
    "done date": "231101120159",
    "stat": "UNDELIV",
    "err": "034",
}


@given(
    st.permutations(list(_FIELDS)),
    st.lists(st.booleans(), min_size=7, max_size=7),
    st.sampled_from([" ", "  ", "\t"]),
    st.text(max_size=40),
)
def test_any_field_order_and_key_case(
    order: list[str], upper: list[bool], gap: str, text: str
) -> None:
    body = gap.join(
        f"{key.upper() if up else key}:{_FIELDS[key]}" for key, up in zip(order, upper, strict=True)
    )
    body += f"{gap}Text:{text}"
    r = parse_receipt(0x04, body.encode("utf-8"))
    assert (r.message_id, r.event, r.error) == ("Ab12cD", "undeliverable", "err:034")
    assert (r.submit_date, r.done_date, r.sub, r.dlvrd) == (
        "2311011200",
        "231101120159",
        "001",
        "001",
    )
