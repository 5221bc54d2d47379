"""Property tests: round trips for generated PDUs, and the fuzz invariant.

- ``decode(encode(pdu)) == pdu`` for every PDU type with generated field
  values (strings up to their spec size, every TLV of the type, unknown TLVs).
- The hot-path encoders/decoders agree with the generic reference code.
- Fed arbitrary bytes, whole or through the Framer byte by byte, the decoder
  yields PDUs or raises RemoteProtocolError, nothing else (model: h11's
  fuzz/afl-server.py). Whatever it yields can be encoded again or is
  refused with LocalProtocolError.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from connectors import (
    PDU_CLASSES,
    DeliverSm,
    DistributionList,
    Framer,
    LocalProtocolError,
    Pdu,
    RemoteProtocolError,
    SmeAddress,
    SubmitSm,
    SubmitSmResp,
    UnsuccessSme,
    decode,
    decode_body,
    decode_frame,
    encode,
)
from connectors.codec import _LAYOUTS, _SPECS, _decode_generic, _encode_generic

_CSTR, _INT8, _TIME, _SM, _CSTR_LAST, _DESTS, _UNSUCCESS = 0, 1, 2, 3, 4, 5, 6
_TLV_INT, _TLV_CSTR = 0, 1

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cstring(max_chars: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=max_chars)


def _field(kind: int, arg: int) -> st.SearchStrategy[Any]:
    if kind == _DESTS:
        dest = st.one_of(
            st.builds(SmeAddress, st.integers(0, 255), st.integers(0, 255), _cstring(20)),
            st.builds(DistributionList, _cstring(20)),
        )
        return st.lists(dest, max_size=5).map(tuple)
    if kind == _UNSUCCESS:
        sme = st.builds(
            UnsuccessSme,
            st.integers(0, 255),
            st.integers(0, 255),
            _cstring(20),
            st.integers(0, 0xFFFFFFFF),
        )
        return st.lists(sme, max_size=5).map(tuple)
    if kind == _INT8:
        return st.integers(0, 255)
    if kind == _SM:
        return st.binary(max_size=arg)
    if kind == _TIME:
        return st.one_of(st.just(""), _cstring(16).filter(lambda s: len(s) == 16))
    return _cstring(arg - 1)


def _tlv(kind: int, size: int) -> st.SearchStrategy[Any]:
    if kind == _TLV_INT:
        return st.integers(0, (1 << (8 * size)) - 1)
    if kind == _TLV_CSTR:
        return _cstring(size - 1)
    return st.binary(max_size=min(size, 300))


@st.composite
def pdus(draw: st.DrawFn, cls: type[Pdu] | None = None) -> Pdu:
    if cls is None:
        cls = draw(st.sampled_from(sorted(_SPECS, key=lambda c: c.__name__)))
    spec = _SPECS[cls]
    values: dict[str, Any] = {
        "sequence_number": draw(st.integers(0, 0xFFFFFFFF)),
        "command_status": draw(st.one_of(st.just(0), st.integers(0, 0xFFFFFFFF))),
    }
    for name, kind, arg in _LAYOUTS[cls]:
        values[name] = draw(_field(kind, arg))
    for tlv in spec.tlvs:
        if draw(st.booleans()):
            values[tlv.name] = draw(_tlv(tlv.kind, tlv.size))
    known = set(spec.tlv_by_tag)
    extra_tag = st.integers(0, 0xFFFF).filter(lambda t: t not in known)
    values["extra_tlvs"] = tuple(
        draw(st.lists(st.tuples(extra_tag, st.binary(max_size=40)), max_size=3))
    )
    if values.get("message_payload") is not None and values.get("short_message"):
        values["short_message"] = b""
    return cls(**values)


@SETTINGS
@given(pdus())
def test_decode_encode_round_trip_any_pdu(pdu: Pdu) -> None:
    wire = encode(pdu)
    assert decode(wire) == pdu
    assert wire == _encode_generic(pdu)


@SETTINGS
@given(pdus(SubmitSm))
def test_submit_sm_round_trip(pdu: Pdu) -> None:
    assert decode(encode(pdu)) == pdu


@SETTINGS
@given(pdus(DeliverSm))
def test_deliver_sm_fast_decoder_matches_generic(pdu: Pdu) -> None:
    wire = encode(pdu)
    fast = decode(wire)
    assert fast == _decode_generic(
        _SPECS[DeliverSm], pdu.command_status, pdu.sequence_number, wire[16:]
    )
    assert fast == pdu


@SETTINGS
@given(pdus(SubmitSmResp))
def test_submit_sm_resp_round_trip(pdu: Pdu) -> None:
    assert decode(encode(pdu)) == pdu


def _decode_body_or_error(command_id: int, body: bytes) -> Pdu | RemoteProtocolError:
    try:
        return decode_body(command_id, 0, 1, body)
    except RemoteProtocolError as exc:
        return exc


def _reencode_or_refuse(pdu: Pdu) -> None:
    try:
        wire = encode(pdu)
    except LocalProtocolError:
        return
    assert decode(wire) == pdu


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(PDU_CLASSES)), st.binary(max_size=200))
def test_random_bodies_decode_or_raise_remote_error(command_id: int, body: bytes) -> None:
    result = _decode_body_or_error(command_id, body)
    if isinstance(result, RemoteProtocolError):
        assert result.command_id == command_id
        return
    assert type(result) is PDU_CLASSES[command_id]
    _reencode_or_refuse(result)
    # The fast paths and the reference agree on arbitrary input too.
    cls = PDU_CLASSES[command_id]
    try:
        reference: Pdu | None = _decode_generic(_SPECS[cls], 0, 1, body)
    except RemoteProtocolError:
        reference = None
    assert result == reference


@settings(max_examples=300, deadline=None)
@given(pdus(), st.data())
def test_mutated_pdus_decode_or_raise_remote_error(pdu: Pdu, data: st.DataObject) -> None:
    wire = bytearray(encode(pdu))
    body_start = 16
    if len(wire) > body_start:
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(body_start, len(wire) - 1))
            wire[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(body_start, len(wire)))
    body = bytes(wire[body_start:cut])
    result = _decode_body_or_error(pdu.command_id, body)
    if isinstance(result, Pdu):
        _reencode_or_refuse(result)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_whole_decode_or_raise_remote_error(data: bytes) -> None:
    try:
        decode(data)
    except RemoteProtocolError:
        pass


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Valid PDUs, each possibly with a header or body corrupted."""
    parts = []
    for pdu in draw(st.lists(pdus(), max_size=4)):
        wire = bytearray(encode(pdu))
        if draw(st.integers(0, 3)) == 0:
            at = draw(st.integers(0, len(wire) - 1))
            wire[at] = draw(st.integers(0, 255))
        parts.append(bytes(wire))
    parts.append(draw(st.binary(max_size=40)))
    return b"".join(parts)


def _run_framer(stream: bytes, chunk: int) -> tuple[list[Pdu | RemoteProtocolError], bool]:
    framer = Framer(max_command_length=4096)
    out: list[Pdu | RemoteProtocolError] = []
    try:
        for i in range(0, len(stream), chunk):
            for frame in framer.feed(stream[i : i + chunk]):
                try:
                    out.append(decode_frame(frame))
                except RemoteProtocolError as exc:
                    out.append(exc)
        framer.feed(b"")
    except RemoteProtocolError:
        return out, True
    return out, False


def _same(a: list[Pdu | RemoteProtocolError], b: list[Pdu | RemoteProtocolError]) -> bool:
    return [x if isinstance(x, Pdu) else ("err", x.reason, x.offset) for x in a] == [
        x if isinstance(x, Pdu) else ("err", x.reason, x.offset) for x in b
    ]


@settings(max_examples=200, deadline=None)
@given(streams())
def test_framer_byte_by_byte_equals_whole(stream: bytes) -> None:
    whole, whole_failed = _run_framer(stream, len(stream) or 1)
    single, single_failed = _run_framer(stream, 1)
    assert whole_failed == single_failed
    assert _same(whole, single)


@settings(max_examples=200, deadline=None)
@given(st.lists(pdus(), min_size=1, max_size=5), st.integers(1, 50))
def test_framer_returns_every_valid_pdu(items: list[Pdu], chunk: int) -> None:
    stream = b"".join(encode(p) for p in items)
    assume(all(len(encode(p)) <= 65536 for p in items))
    got, failed = _run_framer_default(stream, chunk)
    assert not failed
    assert got == items


def _run_framer_default(stream: bytes, chunk: int) -> tuple[list[Pdu | RemoteProtocolError], bool]:
    framer = Framer()
    out: list[Pdu | RemoteProtocolError] = []
    for i in range(0, len(stream), chunk):
        out += [decode_frame(f) for f in framer.feed(stream[i : i + chunk])]
    return out, framer.failed


def test_header_struct_is_big_endian() -> None:
    assert encode(SubmitSmResp(sequence_number=1, message_id="a"))[:16] == struct.pack(
        ">IIII", 18, 0x80000004, 0, 1
    )
