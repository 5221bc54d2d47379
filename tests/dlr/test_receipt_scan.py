"""`scan_receipt` gives the general path's answer, or no answer.

The general path is what the engine does with a deliver_sm the session did
not claim: ``decode_body`` into a ``DeliverSm``, `receipt_outcome` on it
(when `is_receipt`), `normalize_receipt_id` on the id. Wherever
`scan_receipt` returns a value it must be that path's value; where the
general path would refuse the PDU or the receipt, `scan_receipt` must
return ``None``.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from connectors.codec import decode_body, encode
from connectors.constants import CommandId
from connectors.errors import LocalProtocolError, RemoteProtocolError
from connectors.pdu import DeliverSm
from connectors.simulator import RECEIPT_STATES
from dlr.ids import normalize_receipt_id
from dlr.receipt_parse import ReceiptParseError, is_receipt, receipt_outcome
from dlr.receipt_scan import scan_receipt

_TEXT = (
    b"id:{id} sub:001 dlvrd:001 submit date:2611281200 done date:2611281201 stat:DELIVRD err:000 text:Hello"
)


def general_path(body: bytes) -> object:
    """What the engine makes of a deliver_sm body without the scanner."""
    try:
        pdu = decode_body(CommandId.DELIVER_SM, 0, 1, body)
    except RemoteProtocolError:
        return "refused"
    if not is_receipt(pdu.esm_class):
        return "not a receipt"
    sm = pdu.short_message or pdu.message_payload or b""
    try:
        mid, event, final, error = receipt_outcome(
            pdu.esm_class, sm, pdu.receipted_message_id, pdu.message_state, pdu.network_error_code
        )
    except ReceiptParseError:
        return "invalid"
    return (normalize_receipt_id(mid), event, final, error)


def body_of(pdu: DeliverSm) -> bytes:
    return encode(pdu)[16:]


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def with_tlvs(pdu: DeliverSm, rid: bytes | None, state: int | None, swap: bool = False) -> bytes:
    """``pdu``'s body with receipted_message_id and message_state added by hand
    (the encoder refuses ids over 64 octets, carriers do not all)."""
    tlvs = [
        *([tlv(0x001E, rid + b"\0")] if rid is not None else []),
        *([tlv(0x0427, bytes((state,)))] if state is not None else []),
    ]
    if swap:
        tlvs.reverse()
    return body_of(pdu) + b"".join(tlvs)


def receipt_pdu(**kwargs: object) -> DeliverSm:
    values: dict[str, object] = {
        "source_addr": "447700900123",
        "destination_addr": "SENDGATE",
        "esm_class": 0x04,
        "short_message": _TEXT.replace(b"{id}", b"00AB12"),
        "receipted_message_id": "00AB12",
        "message_state": 2,
    }
    values.update(kwargs)
    return DeliverSm(**values)  # type: ignore[arg-type]


def test_the_common_layout_is_read() -> None:
    body = body_of(receipt_pdu())
    assert scan_receipt(body) == ("ab12", "delivered", True, "")
    assert scan_receipt(body) == general_path(body)


def test_error_intermediate_and_the_simulators_receipts() -> None:
    failed = body_of(receipt_pdu(short_message=_TEXT.replace(b"err:000", b"err:034"), message_state=5))
    assert scan_receipt(failed) == ("ab12", "undeliverable", True, "err:034")
    enroute = body_of(receipt_pdu(esm_class=0x20, message_state=1))
    assert scan_receipt(enroute) == ("ab12", "enroute", False, "")
    accepted = body_of(receipt_pdu(message_state=6))  # ACCEPTD is intermediate in the contract
    assert scan_receipt(accepted) == ("ab12", "accepted", False, "")
    for body in (failed, enroute, accepted):
        assert scan_receipt(body) == general_path(body)


@pytest.mark.parametrize(
    ("why", "pdu"),
    [
        ("mobile-originated", receipt_pdu(esm_class=0x00)),
        ("message_state without an event", receipt_pdu(message_state=0)),
        ("message_state beyond the table", receipt_pdu(message_state=9)),
        ("no TLVs", receipt_pdu(receipted_message_id=None, message_state=None)),
        ("a third TLV", receipt_pdu(network_error_code=b"\x03\x00\x22")),
        ("TLVs only in message_payload", receipt_pdu(short_message=b"", message_payload=_TEXT)),
        ("a service_type", receipt_pdu(service_type="CMT")),
        ("a schedule", receipt_pdu(schedule_delivery_time="261128120000000+")),
        ("an empty id", receipt_pdu(receipted_message_id="")),
        ("a blank id", receipt_pdu(receipted_message_id="   ")),
    ],
)
def test_other_layouts_are_left_to_the_general_path(why: str, pdu: DeliverSm) -> None:
    assert scan_receipt(body_of(pdu)) is None, why


def test_long_ids_and_swapped_tlvs() -> None:
    bare = receipt_pdu(receipted_message_id=None, message_state=None)
    for rid, claimed in ((b"7" * 100, True), (b"7" * 101, False), (b" 7" * 60, False)):
        body = with_tlvs(bare, rid, 2)
        assert (scan_receipt(body) is not None) is claimed, len(rid)
        if claimed:
            assert scan_receipt(body) == general_path(body)
    assert scan_receipt(with_tlvs(bare, b"1a2b", 2, swap=True)) is None  # the other order: general path


def test_a_wrong_sm_length_or_id_length_is_not_claimed() -> None:
    body = bytearray(body_of(receipt_pdu()))
    sm_length_at = body.index(b"id:") - 1
    short = bytes(body[:sm_length_at]) + bytes((body[sm_length_at] - 1,)) + bytes(body[sm_length_at + 1 :])
    assert scan_receipt(short) is None
    tlv = body.index(b"\x00\x1e\x00")
    bad_id = bytes(body[: tlv + 3]) + bytes((body[tlv + 3] + 1,)) + bytes(body[tlv + 4 :])
    assert scan_receipt(bad_id) is None


# -- generated bodies ----------------------------------------------------------

_SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\t", "\r\n", "\x0b"])
_WORDS = st.sampled_from(
    [
        "id:1a2b", "ID:0077", "sub:001", "dlvrd:001", "submit", "date:2611281200", "done",
        "stat:DELIVRD", "stat:UNDELIV", "err:000", "err:034", "Err:012", "ERR:7", "err:", "err: 045",
        "xerr:9", "err:0:1", "text:hello", "Text:err:999", "TEXT:", "subtext:5", "x", ":", "é", "\x00",
    ]
)
_STATES = st.one_of(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8), st.none(), st.integers(0, 9))
_IDS = st.one_of(
    st.sampled_from(["1a2b", "00AB12", "0000", " 77 ", "\t9\r\n", "abc-XYZ", "é1", "1" * 100, "1" * 101, "", "  "]),
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=64),
    st.text(alphabet="0123456789abcdefABCDEF \t", max_size=64),
)


@st.composite
def receipt_bodies(draw: st.DrawFn) -> bytes:
    words = draw(st.lists(_WORDS, max_size=12))
    text = ""
    for word in words:
        text += word + draw(_SEPARATORS)
    short_message = text.encode("latin-1")[:254]
    rid = draw(st.one_of(_IDS, _IDS, _IDS, st.none()))
    by_hand = rid is not None and draw(st.booleans())
    pdu = DeliverSm(
        source_addr=draw(st.sampled_from(["447700900123", "", "1" * 20])),
        destination_addr=draw(st.sampled_from(["SENDGATE", "12345"])),
        esm_class=draw(st.sampled_from([0x04, 0x04, 0x04, 0x20, 0x24, 0x00, 0x08, 0x44, 0x60, 0x3C])),
        data_coding=draw(st.sampled_from([0, 8])),
        short_message=short_message,
        receipted_message_id=None if by_hand else rid,
        message_state=None if by_hand else draw(_STATES),
        network_error_code=draw(st.sampled_from([None, None, None, None, b"\x03\x00\x22"])),
    )
    if by_hand:  # any id length, either order
        raw = rid.encode("latin-1").replace(b"\0", b"") if rid is not None else b""
        state = draw(_STATES)
        return with_tlvs(pdu, raw, state, swap=draw(st.sampled_from([False, False, False, True])))
    try:
        return encode(pdu)[16:]
    except LocalProtocolError:  # an id the encoder refuses (over 64 octets)
        assume(False)
        raise


@settings(max_examples=800, deadline=None)
@given(body=receipt_bodies())
def test_same_answer_or_no_answer(body: bytes) -> None:
    value = scan_receipt(body)
    if value is not None:
        assert value == general_path(body)


@settings(max_examples=800, deadline=None)
@given(
    at=st.integers(0, 400),
    octet=st.integers(0, 255),
    cut=st.integers(0, 400),
    state=st.sampled_from(list(RECEIPT_STATES)),
)
def test_damaged_bodies_are_refused_or_read_alike(at: int, octet: int, cut: int, state: str) -> None:
    """One octet changed, or the body cut short: never an exception, never another answer."""
    body = bytearray(body_of(receipt_pdu(message_state=RECEIPT_STATES[state][0])))
    if at < len(body):
        body[at] = octet
    damaged = bytes(body[: max(cut, 0)]) if cut < len(body) else bytes(body)
    value = scan_receipt(damaged)
    if value is not None:
        assert value == general_path(damaged)


def test_generated_bodies_do_get_claimed() -> None:
    """The property above is not vacuous: most well-formed receipts are claimed."""
    claimed = 0
    for state in (1, 2, 3, 5, 6, 8):
        for rid in ("1a2b", "00AB12", "x-1"):
            body = body_of(receipt_pdu(receipted_message_id=rid, message_state=state))
            value = scan_receipt(body)
            claimed += value is not None
            assert value == general_path(body)
    assert claimed == 18


# -- the Appendix B line read by the expression's err: group --------------------
# Each part of the line either canonical or a near miss that must not change the
# answer: ids with colons or "text:"/"err:" in them, odd counts and dates, other
# cases and separators, err: values of every shape, text that repeats the keys.
def _mostly(canonical: str, *near_misses: str) -> st.SearchStrategy[str]:
    """The canonical form about 3 times in 4, so that most lines deviate in one part."""
    k = max(1, 3 * len(near_misses))
    return st.sampled_from([canonical] * k + list(near_misses))


_LINE_PARTS: dict[str, st.SearchStrategy[str]] = {
    "head": _mostly("id:", "ID:", "Id:", " id:", "xid:"),
    "id": st.one_of(
        _mostly("00AB12", "1a2b", "", "x" * 65, "x" * 66, "a:b", "text:1", "err:5", "Text:2", "é", "A-1", "a b"),
        st.text(alphabet="0123456789abTEXTerr: ", max_size=8),
    ),
    "count": _mostly("001", "000", "1", "0001", "abc"),
    "date": _mostly("2611281200", "261128120059", "26112812005", "2611281200x"),
    "stat": _mostly("DELIVRD", "UNDELIV", "delivrd", "ENROUTE1", "ENRT"),
    "err": st.one_of(
        _mostly("034", "000", "0", "00000", "", " 034", "0:1", "abc", "9" * 32, "9" * 33, "é", "1text:"),
        st.text(alphabet="0123456789abcXYZ:", min_size=1, max_size=34),
    ),
    "sep": _mostly(" ", "  ", "\t", ""),
    "text_key": _mostly("text:", "Text:", "TEXT:", "tExt:", "text", "txt:", ""),
    "rest": st.sampled_from(["Hello", "", "err:999 text:x", "Err:1", " a:b:c ", "é\x00"]),
}


@st.composite
def appendix_b_lines(draw: st.DrawFn) -> bytes:
    p = {name: draw(strategy) for name, strategy in _LINE_PARTS.items()}
    line = (
        f"{p['head']}{p['id']} sub:{draw(_LINE_PARTS['count'])} dlvrd:{p['count']} submit date:{p['date']}"
        f" done date:{draw(_LINE_PARTS['date'])} stat:{p['stat']} err:{p['err']}{p['sep']}{p['text_key']}{p['rest']}"
    )
    return line.encode("latin-1")[:254]


@settings(max_examples=1500, deadline=None)
@given(line=appendix_b_lines(), state=st.sampled_from([1, 2, 5, 8]))
def test_appendix_b_lines_read_alike(line: bytes, state: int) -> None:
    body = body_of(receipt_pdu(short_message=line, message_state=state))
    value = scan_receipt(body)
    assert value is not None  # the layout is the common one: claimed, whatever the text
    assert value == general_path(body)


def test_the_canonical_line_takes_the_expression() -> None:
    """Not vacuous: the lines above do reach the expression's err: group, with their values."""
    from dlr.receipt_scan import _RECEIPT

    for err, expected in (("000", ""), ("034", "err:034"), ("0", ""), ("A1", "err:A1"), ("9" * 32, "err:" + "9" * 32)):
        line = _TEXT.replace(b"err:000", f"err:{err}".encode()).replace(b"{id}", b"00AB12")
        body = body_of(receipt_pdu(short_message=line, message_state=5))
        m = _RECEIPT.match(body)
        assert m is not None and m.group(3) == err.encode()
        assert scan_receipt(body) == ("ab12", "undeliverable", True, expected) == general_path(body)
    for near_miss in (b"err:0:1", b"err:" + b"9" * 33, b"err: 034"):
        body = body_of(receipt_pdu(short_message=_TEXT.replace(b"err:000", near_miss).replace(b"{id}", b"00AB12"),
                                   message_state=5))
        m = _RECEIPT.match(body)
        assert m is not None and m.group(3) is None  # the layout, but searched by find_err
        assert scan_receipt(body) == general_path(body)


@pytest.mark.parametrize("rid", ["a:b", "text:1", "err:5", "Text:2", "x:err:7", "x" * 66, "a b", "é", ""])
@pytest.mark.parametrize("err", ["034", "000", "1text:", "0:1"])
def test_near_canonical_ids_and_errors_read_alike(rid: str, err: str) -> None:
    """One part off the Appendix B line, the rest canonical: an id holding "text:" or
    "err:" moves where the general rule looks, so the expression must not match."""
    line = _TEXT.replace(b"{id}", rid.encode("latin-1")).replace(b"err:000", f"err:{err}".encode())
    body = body_of(receipt_pdu(short_message=line, message_state=5))
    assert scan_receipt(body) == general_path(body)


@pytest.mark.parametrize(
    ("rid", "plain"),
    [("1a2b", True), ("9", True), ("f" * 100, True), ("f" * 101, False), ("0a", False), ("1A", False),
     ("0", False), ("000", False), (" 1a", False), ("1a ", False), ("1g", False), ("x-1", False)],
)
def test_normalised_ids_take_the_plain_group(rid: str, plain: bool) -> None:
    """An id that is already normalised (lower-case hex, no leading zero, at most
    MAX_ID_LEN) is read by the plain group without normalising; any other id by the
    general group and normalised: both give the general path's answer."""
    from dlr.receipt_scan import _RECEIPT

    body = with_tlvs(receipt_pdu(receipted_message_id=None, message_state=None), rid.encode(), 2)
    m = _RECEIPT.match(body)
    assert m is not None
    assert (m.group(5) is not None) is plain and (m.group(6) is None) is plain
    if len(rid) > 100:  # over MAX_ID_LEN: left to the general path
        assert scan_receipt(body) is None
    else:
        assert scan_receipt(body) == general_path(body) != "invalid"
