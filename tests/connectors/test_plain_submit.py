"""submit_sm sent as a body from `PlainSubmitTemplate`: the same octets on the wire.

The template encodes a carrier's fixed fields once and packs the few that
change per message; the session numbers the body with a header. Its bytes
must be exactly what ``encode`` (the fast path and the generic encoder) and
aiosmpplib (an independent implementation) write for the same ``SubmitSm``,
and where the template declines (``None``), ``encode`` of that PDU must
refuse it too: the caller's fallback (the ``SubmitSm``) then words the error
as before. The session treats a body as the submit_sm it encodes.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.codec import PlainSubmitTemplate, _encode_generic, decode, encode
from connectors.constants import CommandId
from connectors.errors import LocalProtocolError
from connectors.pdu import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    SubmitSm,
)
from connectors.session import Session
from tests.connectors.helpers import FAKE_DESTINATION, SessionPair

C = CommandId
HEADER = struct.Struct(">IIII")

latin1 = st.characters(min_codepoint=0, max_codepoint=0xFF)
octet = st.integers(0, 255)
fixed_fields = st.fixed_dictionaries(
    {
        "service_type": st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=5),
        "source_addr_ton": octet,
        "source_addr_npi": octet,
        "source_addr": st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=20),
        "dest_addr_ton": octet,
        "dest_addr_npi": octet,
    }
)
# The per-message fields, odd values included: what the template must decline
# (an address over 20 octets, a NUL, a character outside latin-1, an integer
# out of range, a short_message too long or not bytes) is what encode refuses.
destinations = st.text(latin1, max_size=22) | st.text(max_size=4) | st.sampled_from(["4500000001", "€12"])
integers = st.integers(0, 255) | st.integers(-3, 300)
messages = st.binary(max_size=256) | st.sampled_from([bytearray(b"ab"), "text"])


def with_header(body: bytes, seq: int) -> bytes:
    return HEADER.pack(16 + len(body), C.SUBMIT_SM, 0, seq) + body


@settings(max_examples=400, deadline=None)
@given(fixed_fields, destinations, integers, integers, integers, messages, st.integers(1, 0x7FFFFFFF))
def test_body_is_what_encode_writes_or_both_refuse(
    fixed: dict[str, Any], destination: Any, esm_class: int, registered_delivery: int, data_coding: int,
    short_message: Any, seq: int,
) -> None:
    template = PlainSubmitTemplate(**fixed)
    body = template.body(destination, esm_class, registered_delivery, data_coding, short_message)
    pdu = SubmitSm(
        sequence_number=seq, destination_addr=destination, esm_class=esm_class,
        registered_delivery=registered_delivery, data_coding=data_coding, short_message=short_message, **fixed,
    )
    if body is None:
        with pytest.raises(LocalProtocolError):
            encode(pdu)
        with pytest.raises(LocalProtocolError):
            _encode_generic(pdu)
        return
    wire = with_header(body, seq)
    assert wire == encode(pdu)
    assert wire == _encode_generic(pdu)
    assert decode(wire) == pdu


@pytest.mark.parametrize(
    "fixed",
    [
        {"service_type": "TOOLONG"},
        {"source_addr": "1" * 21},
        {"source_addr": "a\0b"},
        {"source_addr": "€"},
        {"source_addr_ton": 256},
        {"dest_addr_npi": -1},
    ],
)
def test_a_template_refuses_fixed_fields_encode_refuses(fixed: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        encode(SubmitSm(destination_addr=FAKE_DESTINATION, **fixed))
    with pytest.raises(LocalProtocolError):
        PlainSubmitTemplate(**fixed)


aiosmpplib = pytest.importorskip("aiosmpplib")
from aiosmpplib import NPI, TON, PhoneNumber  # noqa: E402

addresses = st.text("0123456789", min_size=1, max_size=20)
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=160)
LATIN_1 = 3  # data_coding: aiosmpplib's text maps 1:1 to our octets


@settings(max_examples=150, deadline=None)
@given(
    seq=st.integers(1, 0x7FFFFFFF),
    service_type=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=5),
    source=addresses | st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=11),
    source_ton=st.sampled_from(list(TON)),
    source_npi=st.sampled_from(list(NPI)),
    destination=addresses,
    dest_ton=st.sampled_from(list(TON)),
    dest_npi=st.sampled_from(list(NPI)),
    esm_class=st.sampled_from([0x00, 0x03, 0x40, 0x80]),
    registered_delivery=st.integers(0, 0x1F),
    text=ascii_text,
)
def test_body_is_what_aiosmpplib_writes(
    seq: int, service_type: str, source: str, source_ton: TON, source_npi: NPI, destination: str, dest_ton: TON,
    dest_npi: NPI, esm_class: int, registered_delivery: int, text: str,
) -> None:
    theirs = aiosmpplib.SubmitSm(
        sequence_num=seq,
        short_message=text,
        source=PhoneNumber(source, source_ton, source_npi),
        destination=PhoneNumber(destination, dest_ton, dest_npi),
        service_type=service_type,
        esm_class=esm_class,
        registered_delivery=registered_delivery,
        encoding="latin_1",
    )
    template = PlainSubmitTemplate(service_type, int(source_ton), int(source_npi), source, int(dest_ton), int(dest_npi))
    body = template.body(destination, esm_class, registered_delivery, LATIN_1, text.encode("latin-1"))
    assert body is not None
    assert with_header(body, seq) == theirs.pdu()


# --- the session: a body is the submit_sm it encodes -------------------------------------


def bound(window: int = 10) -> SessionPair:
    pair = SessionPair(window)
    pair.bind(BindTransceiver(system_id="esme", password="pw"), BindTransceiverResp)
    return pair


TEMPLATE = PlainSubmitTemplate("", 5, 0, "SENDER", 1, 1)


def plain(i: int) -> SubmitSm:
    return SubmitSm(
        source_addr_ton=5, source_addr="SENDER", dest_addr_ton=1, dest_addr_npi=1, destination_addr=FAKE_DESTINATION,
        registered_delivery=1, short_message=b"m%d" % i,
    )


def body(i: int) -> bytes:
    out = TEMPLATE.body(FAKE_DESTINATION, 0, 1, 0, b"m%d" % i)
    assert out is not None
    return out


def test_send_submits_of_bodies_is_of_their_pdus() -> None:
    pdus, bodies = bound(), bound()
    expected = pdus.esme.send_submits(deque((plain(i), ("t", i)) for i in range(6)), 6, 2.0)
    queue: deque[Any] = deque((body(i) if i % 2 else plain(i), ("t", i)) for i in range(6))  # mixed
    got = bodies.esme.send_submits(queue, 6, 2.0)
    assert got == expected
    assert {s: (e[0], e[1], e[2][1]) for s, e in bodies.esme.in_flight.items()} == {
        s: (e[0], e[1], e[2][1]) for s, e in pdus.esme.in_flight.items()
    }
    assert bodies.esme.windowed == 6
    seen = bodies.smsc.receive_data(b"".join(got))
    expected_pdus = [plain(i) for i in range(6)]
    for seq, pdu in enumerate(expected_pdus, 2):  # 1 was the bind's
        pdu.sequence_number = seq
    assert seen == expected_pdus
    # send() of a body: the same bytes and entry as send() of its PDU
    one = pdus.esme.send(plain(9), 3.0, "ctx")
    assert bodies.esme.send(body(9), 3.0, "ctx") == one
    assert bodies.esme.in_flight[8] == pdus.esme.in_flight[8] == (C.SUBMIT_SM, 3.0, "ctx")


def test_a_body_is_refused_where_its_pdu_is() -> None:
    pair = bound(window=2)
    queue: deque[Any] = deque((body(i), i) for i in range(3))
    with pytest.raises(LocalProtocolError, match="window of 2 is full"):
        pair.esme.send_submits(queue, 3, 0.0)
    assert pair.esme.windowed == 2
    with pytest.raises(LocalProtocolError, match="window of 2 is full"):
        pair.esme.send(body(3), 0.0)

    rx = SessionPair()
    rx.bind(BindReceiver(), BindReceiverResp)
    with pytest.raises(LocalProtocolError, match="may not send command_id 0x4"):
        rx.esme.send_submits(deque([(body(0), 0)]), 1, 0.0)
    with pytest.raises(LocalProtocolError, match="may not send command_id 0x4"):
        rx.esme.send(body(0), 0.0)
    assert rx.esme.in_flight == {}
    with pytest.raises(LocalProtocolError, match="may not send"):
        Session().send(body(0), 0.0)  # not bound
