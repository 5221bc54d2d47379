"""`receipt_outcome` (the engine's fast path) agrees with `parse_receipt` on every input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dlr.receipt_parse import ReceiptParseError, parse_receipt, receipt_outcome

_WORDS = st.sampled_from(
    ["id:1a2b", "sub:001", "dlvrd:001", "submit", "date:2611281200", "done", "stat:DELIVRD", "stat:UNDELIV",
     "err:000", "err:034", "Err:012", "err:", "text:hello", "Text:err:999", "err: 045", "x", "err:0", ":"]
)


def _both(esm: int, body: bytes, rid: str | None, state: int | None, net: bytes | None) -> tuple[object, object]:
    try:
        r = parse_receipt(esm, body, rid, state, net)
        slow: object = (r.message_id, r.event, r.is_final, r.error)
    except ReceiptParseError as err:
        slow = ("error", err.reason)
    try:
        fast: object = receipt_outcome(esm, body, rid, state, net)
    except ReceiptParseError as err:
        fast = ("error", err.reason)
    return slow, fast


@settings(max_examples=500, deadline=None)
@given(
    esm=st.sampled_from([0x04, 0x20, 0x24]),
    words=st.lists(_WORDS, max_size=10),
    rid=st.one_of(st.none(), st.sampled_from(["", "1a2b", " 77 ", "x" * 120])),
    state=st.one_of(st.none(), st.integers(0, 9)),
    net=st.one_of(st.none(), st.sampled_from([b"", b"\x03\x00\x22", b"\x03\x00\x00", b"\x01"])),
)
def test_fast_path_matches_the_full_parser(esm: int, words: list[str], rid: str | None, state: int | None, net: bytes | None) -> None:
    slow, fast = _both(esm, " ".join(words).encode(), rid, state, net)
    assert fast == slow


def test_typical_simulator_receipt() -> None:
    body = b"id:1a2b sub:001 dlvrd:001 submit date:2611281200 done date:2611281200 stat:UNDELIV err:034 text:Hello"
    assert receipt_outcome(0x04, body, "1a2b", 5) == ("1a2b", "undeliverable", True, "err:034")
