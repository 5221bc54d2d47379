"""Sans-IO SMPP 3.4 codec: PDU structs <-> bytes.

No I/O, no clock, no asyncio: ``encode(pdu) -> bytes`` and
``decode(data) -> Pdu`` / ``decode_body(...)``. The transport frames the
stream (:mod:`connectors.framer`), the session decides what to send.

Theory of operation
-------------------

Each PDU class has a *layout* (its mandatory fields in wire order, each a
C-octet string with a maximum size, a 1-octet integer, a time string, or the
``sm_length``/``short_message`` pair) and a set of optional parameters
(TLVs, SMPP 3.4 §5.3) which are the class's remaining fields. A generic
interpreter walks the layout for every PDU type; it is the reference
implementation and the one that words the errors.

The engine's hot path is narrower: encode ``submit_sm``, decode
``submit_sm_resp`` and ``deliver_sm``, thousands per second (and the
simulator does the mirror image). Those PDUs get specialised functions that
do the common case in as few Python operations as possible:

- submit_sm / deliver_sm encode: all fields in one ``msgspec.structs.astuple``
  call (the usual submit_sm without TLVs: attributes read directly, which is
  cheaper), one ``struct.Struct.pack`` for header and mandatory fields (the
  struct is chosen by the string lengths: a 21 x 21 table of precompiled
  structs for the usual empty service_type/schedule/validity, a small cache
  otherwise), precompiled structs per TLV.
- submit_sm / deliver_sm decode: one regular expression over the latin-1
  text of the body finds the C-strings (latin-1 maps octet i to character i,
  so text offsets are byte offsets), one ``unpack_from`` reads the integer
  fields, and for deliver_sm a second expression picks up the usual receipt
  TLVs (receipted_message_id + message_state) in one go. The usual
  deliver_sm (plain strings; the two receipt TLVs or none) is done by one
  expression that covers both.
- ``*_resp`` with a message_id, and header-only PDUs: one ``partition`` or
  one ``pack``.

Every fast path *falls back to the generic code* for anything unusual or
wrong. The fallback is also how errors are produced: a fast path never words
an error itself; if it trips (an ``IndexError``, a string too long, a
``struct.error``) the generic path runs and raises the precise
:class:`LocalProtocolError` / :class:`RemoteProtocolError`. Property tests
check that fast and generic paths give identical results on generated PDUs
and on random bytes.

Rules
-----

- Encode enforces the spec's maximum sizes of C-octet strings (§4), integer
  ranges, ``short_message`` ≤ 254 octets, no NUL inside a string, and that
  ``short_message`` is empty when ``message_payload`` is used (§5.3.2.32).
  Violations raise :class:`LocalProtocolError` naming the field, never its
  value.
- Decode is liberal where real SMSCs are sloppy and strict where framing is
  at stake: strings decode as latin-1 (never fails); max sizes are not
  enforced; a ``*_resp`` with an empty body decodes to its defaults (the
  spec omits the body on error; many SMSCs send an empty deliver_sm_resp);
  a response's trailing message_id without NUL is taken whole; an integer
  TLV of 1-4 octets is accepted whatever its spec width if the value fits; a
  TLV whose value does not fit its type, or that repeats, is kept raw in
  ``extra_tlvs``. A C-string TLV without its NUL is accepted. Anything that
  would desynchronise fields (a missing NUL in a mandatory string, an
  ``sm_length`` past the end, a truncated TLV) raises
  :class:`RemoteProtocolError` with the offset in the PDU (header included).
- A non-zero ``command_status`` is data: a ``SubmitSmResp`` with status
  0x58 decodes like any other. On encode, a ``*_resp`` with a non-zero status
  whose body fields are all defaults is written header-only (§4.1.2, §4.4.2).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from itertools import compress, repeat
from operator import is_not
from typing import Any, Final

import msgspec

from .constants import Tag
from .errors import LocalProtocolError, RemoteProtocolError
from .pdu import (
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    UnsuccessSme,
)
from .status import (
    ESME_RINVCMDID,
    ESME_RINVCMDLEN,
    ESME_RINVDESTFLAG,
    ESME_RINVMSGLEN,
    ESME_RINVOPTPARSTREAM,
)

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "PDU_CLASSES",
    "TLV_SPECS",
    "PlainSubmitTemplate",
    "TlvSpec",
    "decode",
    "decode_body",
    "encode",
    "encode_submit_sm",
    "pdu_class",
]

# SMPP 3.4 §3.2: command_length, command_id, command_status, sequence_number,
# four big-endian unsigned 32-bit integers.
HEADER: Final = struct.Struct(">IIII")
HEADER_SIZE: Final = 16
# TLV header, SMPP 3.4 §3.2.4.1: tag (16 bits), length (16 bits).
_TLV_HEAD: Final = struct.Struct(">HH")
# Runs of 1-octet integers preceded by a string's NUL terminator ("x" pads 0).
_NUL_B2: Final = struct.Struct(">xBB")  # NUL, *_ton, *_npi
_NUL_B3: Final = struct.Struct(">xBBB")  # NUL, esm_class, protocol_id, priority_flag
# NUL (validity_period), registered_delivery, replace_if_present_flag,
# data_coding, sm_default_msg_id, sm_length
_NUL_B5: Final = struct.Struct(">xBBBBB")
_B2: Final = struct.Struct(">BB")
_B3: Final = struct.Struct(">BBB")
_B5: Final = struct.Struct(">BBBBB")

_MAX_SHORT_MESSAGE: Final = 254  # SMPP 3.4 §4.4.1: sm_length 0..254
_MAX_TLV_VALUE: Final = 0xFFFF

# --- field kinds --------------------------------------------------------------

_CSTR: Final = 0  # C-octet string, arg = max octets including the NUL
_INT8: Final = 1  # 1-octet integer
_TIME: Final = 2  # C-octet string, empty or 16 chars + NUL (SMPP 3.4 §7.1)
_SM: Final = 3  # sm_length (1 octet) + short_message (arg = max octets)
_CSTR_LAST: Final = 4  # response's only C-string: a missing NUL takes the rest
_DESTS: Final = 5  # number_of_dests + dest_address list (submit_multi), arg = max count
_UNSUCCESS: Final = 6  # no_unsuccess + unsuccess_sme list (submit_multi_resp), arg = max

_TLV_INT: Final = 0  # big-endian unsigned, size = octets
_TLV_CSTR: Final = 1  # C-octet string, size = max octets including NUL
_TLV_OCTETS: Final = 2  # octet string, size = max octets

_KIND_NAMES: Final = {_TLV_INT: "int", _TLV_CSTR: "cstr", _TLV_OCTETS: "octets"}


class TlvSpec:
    """How one standard TLV is typed on the wire (SMPP 3.4 §5.3.2)."""

    __slots__ = ("kind", "name", "size", "tag")

    def __init__(self, name: str, tag: int, kind: int, size: int) -> None:
        self.name = name
        self.tag = tag
        self.kind = kind
        self.size = size

    def __repr__(self) -> str:
        return f"TlvSpec({self.name!r}, 0x{self.tag:04X}, {_KIND_NAMES[self.kind]}, {self.size})"


def _tlv(name: str, kind: int, size: int) -> TlvSpec:
    return TlvSpec(name, getattr(Tag, name.upper()), kind, size)


#: Every standard SMPP 3.4 TLV by field name (§5.3.2).
TLV_SPECS: Final[dict[str, TlvSpec]] = {
    spec.name: spec
    for spec in (
        _tlv("dest_addr_subunit", _TLV_INT, 1),  # §5.3.2.1
        _tlv("dest_network_type", _TLV_INT, 1),  # §5.3.2.3
        _tlv("dest_bearer_type", _TLV_INT, 1),  # §5.3.2.5
        _tlv("dest_telematics_id", _TLV_INT, 2),  # §5.3.2.7
        _tlv("source_addr_subunit", _TLV_INT, 1),  # §5.3.2.2
        _tlv("source_network_type", _TLV_INT, 1),  # §5.3.2.4
        _tlv("source_bearer_type", _TLV_INT, 1),  # §5.3.2.6
        _tlv("source_telematics_id", _TLV_INT, 2),  # §5.3.2.8 (2 octets as in 5.0)
        _tlv("qos_time_to_live", _TLV_INT, 4),  # §5.3.2.9
        _tlv("payload_type", _TLV_INT, 1),  # §5.3.2.10
        _tlv("additional_status_info_text", _TLV_CSTR, 256),  # §5.3.2.11
        _tlv("receipted_message_id", _TLV_CSTR, 65),  # §5.3.2.12
        _tlv("ms_msg_wait_facilities", _TLV_INT, 1),  # §5.3.2.13
        _tlv("privacy_indicator", _TLV_INT, 1),  # §5.3.2.14
        _tlv("source_subaddress", _TLV_OCTETS, 23),  # §5.3.2.15
        _tlv("dest_subaddress", _TLV_OCTETS, 23),  # §5.3.2.16
        _tlv("user_message_reference", _TLV_INT, 2),  # §5.3.2.17
        _tlv("user_response_code", _TLV_INT, 1),  # §5.3.2.18
        _tlv("source_port", _TLV_INT, 2),  # §5.3.2.20
        _tlv("destination_port", _TLV_INT, 2),  # §5.3.2.21
        _tlv("sar_msg_ref_num", _TLV_INT, 2),  # §5.3.2.22
        _tlv("language_indicator", _TLV_INT, 1),  # §5.3.2.19
        _tlv("sar_total_segments", _TLV_INT, 1),  # §5.3.2.23
        _tlv("sar_segment_seqnum", _TLV_INT, 1),  # §5.3.2.24
        _tlv("sc_interface_version", _TLV_INT, 1),  # §5.3.2.25
        _tlv("callback_num_pres_ind", _TLV_INT, 1),  # §5.3.2.37
        _tlv("callback_num_atag", _TLV_OCTETS, 65),  # §5.3.2.38
        _tlv("number_of_messages", _TLV_INT, 1),  # §5.3.2.39
        _tlv("callback_num", _TLV_OCTETS, 19),  # §5.3.2.36
        _tlv("dpf_result", _TLV_INT, 1),  # §5.3.2.28
        _tlv("set_dpf", _TLV_INT, 1),  # §5.3.2.29
        _tlv("ms_availability_status", _TLV_INT, 1),  # §5.3.2.30
        _tlv("network_error_code", _TLV_OCTETS, 3),  # §5.3.2.31
        _tlv("message_payload", _TLV_OCTETS, _MAX_TLV_VALUE),  # §5.3.2.32
        _tlv("delivery_failure_reason", _TLV_INT, 1),  # §5.3.2.33
        _tlv("more_messages_to_send", _TLV_INT, 1),  # §5.3.2.34
        _tlv("message_state", _TLV_INT, 1),  # §5.3.2.35
        _tlv("ussd_service_op", _TLV_INT, 1),  # §5.3.2.44
        _tlv("display_time", _TLV_INT, 1),  # §5.3.2.26
        _tlv("sms_signal", _TLV_INT, 2),  # §5.3.2.40
        _tlv("ms_validity", _TLV_INT, 1),  # §5.3.2.27
        # §5.3.2.41: length 0 in 3.4 (presence is the flag); 1 octet in 5.0.
        _tlv("alert_on_message_delivery", _TLV_OCTETS, 1),
        _tlv("its_reply_type", _TLV_INT, 1),  # §5.3.2.42
        _tlv("its_session_info", _TLV_OCTETS, 2),  # §5.3.2.43
    )
}

# --- layouts of mandatory fields, SMPP 3.4 §4 -----------------------------------

_Layout = tuple[tuple[str, int, int], ...]

_SUBMIT_LAYOUT: Final[_Layout] = (
    ("service_type", _CSTR, 6),
    ("source_addr_ton", _INT8, 0),
    ("source_addr_npi", _INT8, 0),
    ("source_addr", _CSTR, 21),
    ("dest_addr_ton", _INT8, 0),
    ("dest_addr_npi", _INT8, 0),
    ("destination_addr", _CSTR, 21),
    ("esm_class", _INT8, 0),
    ("protocol_id", _INT8, 0),
    ("priority_flag", _INT8, 0),
    ("schedule_delivery_time", _TIME, 17),
    ("validity_period", _TIME, 17),
    ("registered_delivery", _INT8, 0),
    ("replace_if_present_flag", _INT8, 0),
    ("data_coding", _INT8, 0),
    ("sm_default_msg_id", _INT8, 0),
    ("short_message", _SM, _MAX_SHORT_MESSAGE),
)
_BIND_LAYOUT: Final[_Layout] = (
    ("system_id", _CSTR, 16),
    ("password", _CSTR, 9),
    ("system_type", _CSTR, 13),
    ("interface_version", _INT8, 0),
    ("addr_ton", _INT8, 0),
    ("addr_npi", _INT8, 0),
    ("address_range", _CSTR, 41),
)
_BIND_RESP_LAYOUT: Final[_Layout] = (("system_id", _CSTR_LAST, 16),)
_MESSAGE_ID_RESP_LAYOUT: Final[_Layout] = (("message_id", _CSTR_LAST, 65),)

_LAYOUTS: Final[dict[type[Pdu], _Layout]] = {
    BindTransmitter: _BIND_LAYOUT,
    BindReceiver: _BIND_LAYOUT,
    BindTransceiver: _BIND_LAYOUT,
    BindTransmitterResp: _BIND_RESP_LAYOUT,
    BindReceiverResp: _BIND_RESP_LAYOUT,
    BindTransceiverResp: _BIND_RESP_LAYOUT,
    Outbind: (("system_id", _CSTR, 16), ("password", _CSTR, 9)),
    Unbind: (),
    UnbindResp: (),
    GenericNack: (),
    EnquireLink: (),
    EnquireLinkResp: (),
    SubmitSm: _SUBMIT_LAYOUT,
    SubmitSmResp: _MESSAGE_ID_RESP_LAYOUT,
    DeliverSm: _SUBMIT_LAYOUT,
    DeliverSmResp: _MESSAGE_ID_RESP_LAYOUT,
    DataSm: (
        ("service_type", _CSTR, 6),
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 65),
        ("dest_addr_ton", _INT8, 0),
        ("dest_addr_npi", _INT8, 0),
        ("destination_addr", _CSTR, 65),
        ("esm_class", _INT8, 0),
        ("registered_delivery", _INT8, 0),
        ("data_coding", _INT8, 0),
    ),
    DataSmResp: _MESSAGE_ID_RESP_LAYOUT,
    SubmitMulti: (
        ("service_type", _CSTR, 6),
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 21),
        ("dest_address", _DESTS, 254),  # SMPP 3.4 §4.5.1: number_of_dests ≤ 254
        ("esm_class", _INT8, 0),
        ("protocol_id", _INT8, 0),
        ("priority_flag", _INT8, 0),
        ("schedule_delivery_time", _TIME, 17),
        ("validity_period", _TIME, 17),
        ("registered_delivery", _INT8, 0),
        ("replace_if_present_flag", _INT8, 0),
        ("data_coding", _INT8, 0),
        ("sm_default_msg_id", _INT8, 0),
        ("short_message", _SM, _MAX_SHORT_MESSAGE),
    ),
    SubmitMultiResp: (("message_id", _CSTR, 65), ("unsuccess_sme", _UNSUCCESS, 254)),
    QuerySm: (
        ("message_id", _CSTR, 65),
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 21),
    ),
    QuerySmResp: (
        ("message_id", _CSTR, 65),
        ("final_date", _TIME, 17),
        ("message_state", _INT8, 0),
        ("error_code", _INT8, 0),
    ),
    CancelSm: (
        ("service_type", _CSTR, 6),
        ("message_id", _CSTR, 65),
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 21),
        ("dest_addr_ton", _INT8, 0),
        ("dest_addr_npi", _INT8, 0),
        ("destination_addr", _CSTR, 21),
    ),
    CancelSmResp: (),
    ReplaceSm: (
        ("message_id", _CSTR, 65),
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 21),
        ("schedule_delivery_time", _TIME, 17),
        ("validity_period", _TIME, 17),
        ("registered_delivery", _INT8, 0),
        ("sm_default_msg_id", _INT8, 0),
        ("short_message", _SM, _MAX_SHORT_MESSAGE),
    ),
    ReplaceSmResp: (),
    AlertNotification: (
        ("source_addr_ton", _INT8, 0),
        ("source_addr_npi", _INT8, 0),
        ("source_addr", _CSTR, 65),
        ("esme_addr_ton", _INT8, 0),
        ("esme_addr_npi", _INT8, 0),
        ("esme_addr", _CSTR, 65),
    ),
}

#: Every PDU class, by command_id.
PDU_CLASSES: Final[dict[int, type[Pdu]]] = {cls.command_id: cls for cls in _LAYOUTS}

_HEADER_FIELDS: Final = ("sequence_number", "command_status", "extra_tlvs")


class _Spec:
    """Everything the generic codec needs to know about one PDU class."""

    __slots__ = ("cls", "has_body", "is_resp", "layout", "tlv_by_tag", "tlvs")

    def __init__(self, cls: type[Pdu], layout: _Layout) -> None:
        fields = cls.__struct_fields__
        names = [name for name, _, _ in layout]
        body_fields = [f for f in fields if f not in _HEADER_FIELDS]
        if body_fields[: len(names)] != names:  # pragma: no cover - import-time check
            raise AssertionError(f"{cls.__name__}: layout out of step with fields")
        self.cls = cls
        self.layout = layout
        self.tlvs: tuple[TlvSpec, ...] = tuple(TLV_SPECS[f] for f in body_fields[len(names) :])
        self.tlv_by_tag: dict[int, TlvSpec] = {spec.tag: spec for spec in self.tlvs}
        self.is_resp = bool(cls.command_id & 0x80000000)
        self.has_body = bool(body_fields)


_SPECS: Final[dict[type[Pdu], _Spec]] = {cls: _Spec(cls, lay) for cls, lay in _LAYOUTS.items()}
_SPECS_BY_ID: Final[dict[int, _Spec]] = {cls.command_id: spec for cls, spec in _SPECS.items()}


def pdu_class(command_id: int) -> type[Pdu] | None:
    """The PDU class for ``command_id``, or None if the codec does not know it."""
    return PDU_CLASSES.get(command_id)


# --- encoding: generic ------------------------------------------------------------


def _encode_cstr(value: object, max_octets: int, name: str) -> bytes:
    if not isinstance(value, str):
        raise LocalProtocolError(f"expected str, got {type(value).__name__}", name)
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError("characters outside latin-1", name)
    if len(raw) >= max_octets:
        raise LocalProtocolError(f"{len(raw)} octets, max {max_octets - 1}", name)
    if 0 in raw:
        raise LocalProtocolError("contains a NUL character", name)
    return raw


def _check_int(value: object, bits: int, name: str) -> int:
    if not isinstance(value, int):
        raise LocalProtocolError(f"expected int, got {type(value).__name__}", name)
    if not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{value} out of range for {bits}-bit unsigned", name)
    return value


def _check_bytes(value: object, max_octets: int, name: str) -> bytes:
    if not isinstance(value, bytes):
        raise LocalProtocolError(f"expected bytes, got {type(value).__name__}", name)
    if len(value) > max_octets:
        raise LocalProtocolError(f"{len(value)} octets, max {max_octets}", name)
    return value


def _encode_mandatory(pdu: Pdu, layout: _Layout, out: list[bytes]) -> None:
    for name, kind, arg in layout:
        value = getattr(pdu, name)
        if kind == _INT8:
            out.append(bytes((_check_int(value, 8, name),)))
        elif kind == _SM:
            raw = _check_bytes(value, arg, name)
            out.append(bytes((len(raw),)))
            out.append(raw)
        elif kind == _DESTS:
            _encode_dest_address(value, arg, out)
        elif kind == _UNSUCCESS:
            _encode_unsuccess_sme(value, arg, out)
        else:
            raw = _encode_cstr(value, arg, name)
            if kind == _TIME and raw and len(raw) != 16:
                raise LocalProtocolError(
                    f"{len(raw)} characters; must be empty or 16 (YYMMDDhhmmsstnnp)", name
                )
            out.append(raw)
            out.append(b"\0")


def _encode_dest_address(value: object, max_count: int, out: list[bytes]) -> None:
    """number_of_dests + dest_address list, SMPP 3.4 §4.5.1.1."""
    name = "dest_address"
    if not isinstance(value, tuple) or len(value) > max_count:
        raise LocalProtocolError(f"expected a tuple of at most {max_count} destinations", name)
    out.append(bytes((len(value),)))
    for dest in value:
        if isinstance(dest, SmeAddress):
            out.append(b"\x01")  # dest_flag: SME address
            out.append(bytes((_check_int(dest.dest_addr_ton, 8, name),)))
            out.append(bytes((_check_int(dest.dest_addr_npi, 8, name),)))
            out.append(_encode_cstr(dest.destination_addr, 21, name))
        elif isinstance(dest, DistributionList):
            out.append(b"\x02")  # dest_flag: distribution list
            out.append(_encode_cstr(dest.dl_name, 21, name))
        else:
            raise LocalProtocolError("expected SmeAddress or DistributionList", name)
        out.append(b"\0")


def _encode_unsuccess_sme(value: object, max_count: int, out: list[bytes]) -> None:
    """no_unsuccess + unsuccess_sme list, SMPP 3.4 §4.5.2.1."""
    name = "unsuccess_sme"
    if not isinstance(value, tuple) or len(value) > max_count:
        raise LocalProtocolError(f"expected a tuple of at most {max_count} UnsuccessSme", name)
    out.append(bytes((len(value),)))
    for sme in value:
        if not isinstance(sme, UnsuccessSme):
            raise LocalProtocolError("expected UnsuccessSme", name)
        out.append(bytes((_check_int(sme.dest_addr_ton, 8, name),)))
        out.append(bytes((_check_int(sme.dest_addr_npi, 8, name),)))
        out.append(_encode_cstr(sme.destination_addr, 21, name))
        out.append(b"\0")
        out.append(_check_int(sme.error_status_code, 32, name).to_bytes(4, "big"))


def _encode_tlv(spec: TlvSpec, value: object) -> bytes:
    kind = spec.kind
    name = spec.name
    if kind == _TLV_INT:
        number = _check_int(value, 8 * spec.size, name)
        return _TLV_HEAD.pack(spec.tag, spec.size) + number.to_bytes(spec.size, "big")
    if kind == _TLV_CSTR:
        raw = _encode_cstr(value, spec.size, name)
        return _TLV_HEAD.pack(spec.tag, len(raw) + 1) + raw + b"\0"
    raw = _check_bytes(value, spec.size, name)
    return _TLV_HEAD.pack(spec.tag, len(raw)) + raw


def _encode_extra_tlvs(extra: object, out: list[bytes]) -> None:
    if not isinstance(extra, tuple):
        raise LocalProtocolError("expected a tuple of (tag, bytes)", "extra_tlvs")
    for item in extra:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise LocalProtocolError("expected a tuple of (tag, bytes)", "extra_tlvs")
        tag = _check_int(item[0], 16, "extra_tlvs")
        raw = _check_bytes(item[1], _MAX_TLV_VALUE, "extra_tlvs")
        out.append(_TLV_HEAD.pack(tag, len(raw)))
        out.append(raw)


def _encode_generic(pdu: Pdu) -> bytes:
    spec = _SPECS.get(type(pdu))
    if spec is None:
        raise LocalProtocolError(f"not an SMPP PDU: {type(pdu).__name__}", "pdu")
    sequence_number = _check_int(pdu.sequence_number, 32, "sequence_number")
    command_status = _check_int(pdu.command_status, 32, "command_status")
    cls = spec.cls
    if (
        spec.is_resp
        and command_status
        and spec.has_body
        and pdu == cls(sequence_number=sequence_number, command_status=command_status)
    ):
        # SMPP 3.4 §4.1.2, §4.4.2: the body is not returned on error.
        return HEADER.pack(HEADER_SIZE, cls.command_id, command_status, sequence_number)
    out: list[bytes] = [b""]
    _encode_mandatory(pdu, spec.layout, out)
    tlvs = spec.tlvs
    for tlv in tlvs:
        value = getattr(pdu, tlv.name)
        if value is not None:
            out.append(_encode_tlv(tlv, value))
    payload: object = getattr(pdu, "message_payload", None)
    short_message: object = getattr(pdu, "short_message", b"")
    if payload is not None and short_message:
        # SMPP 3.4 §5.3.2.32: message_payload and short_message are exclusive.
        raise LocalProtocolError(
            "short_message must be empty when message_payload is set", "message_payload"
        )
    _encode_extra_tlvs(pdu.extra_tlvs, out)
    body_length = sum(map(len, out))
    out[0] = HEADER.pack(HEADER_SIZE + body_length, cls.command_id, command_status, sequence_number)
    return b"".join(out)


# --- encoding: hot path ------------------------------------------------------------

_astuple: Final = msgspec.structs.astuple
_SUBMIT_SM_ID: Final = SubmitSm.command_id
_SUBMIT_MANDATORY: Final = 3 + len(_SUBMIT_LAYOUT)  # header fields + mandatory fields
_STRUCT_CACHE_MAX: Final = 4096


def _plain_submit_packer(source_length: int, destination_length: int) -> struct.Struct:
    """Header + body up to sm_length for the usual submit_sm: empty
    service_type, schedule_delivery_time and validity_period."""
    return struct.Struct(
        ">IIII"  # header
        "xBB"  # service_type NUL, source_addr_ton, source_addr_npi
        f"{source_length}sxBB"  # source_addr NUL, dest_addr_ton, dest_addr_npi
        f"{destination_length}sxBBB"  # destination_addr NUL, esm_class, protocol_id, priority_flag
        # schedule_delivery_time NUL, validity_period NUL, registered_delivery,
        # replace_if_present_flag, data_coding, sm_default_msg_id, sm_length
        "xxBBBBB"
    )


# [len(source_addr)][len(destination_addr)] -> packer; 21 x 21, built at import.
# A longer address raises IndexError, which sends the PDU to the generic path.
_PLAIN_SUBMIT_PACKERS: Final = [
    [_plain_submit_packer(sa, da) for da in range(21)] for sa in range(21)
]

# (len(service_type), len(source_addr), len(destination_addr),
#  len(schedule_delivery_time), len(validity_period)) -> packer, built on first
# use. Lengths outside the spec get no packer (generic path words the error).
_submit_packers: dict[tuple[int, int, int, int, int], struct.Struct] = {}


def _submit_packer(key: tuple[int, int, int, int, int]) -> struct.Struct | None:
    st, sa, da, sdt, vp = key
    if st > 5 or sa > 20 or da > 20 or sdt not in (0, 16) or vp not in (0, 16):
        return None
    packer = struct.Struct(
        ">IIII"  # header
        f"{st}sxBB"  # service_type NUL, source_addr_ton, source_addr_npi
        f"{sa}sxBB"  # source_addr NUL, dest_addr_ton, dest_addr_npi
        f"{da}sxBBB"  # destination_addr NUL, esm_class, protocol_id, priority_flag
        f"{sdt}sx"  # schedule_delivery_time NUL
        # validity_period NUL, registered_delivery, replace_if_present_flag,
        # data_coding, sm_default_msg_id, sm_length
        f"{vp}sxBBBBB"
    )
    if len(_submit_packers) >= _STRUCT_CACHE_MAX:
        _submit_packers.clear()
    _submit_packers[key] = packer
    return packer


class _Decline(Exception):
    """Internal: a fast path declines; the generic path decides (and words errors)."""


_INT_TLV_PACKERS: Final = {
    1: struct.Struct(">HHB"),  # tag, length 1, value
    2: struct.Struct(">HHH"),  # tag, length 2, value
    4: struct.Struct(">HHI"),  # tag, length 4, value
}


def _encode_tlvs_fast(tlvs: tuple[TlvSpec, ...], values: tuple[Any, ...], out: list[bytes]) -> None:
    """Append the TLVs whose value is not None; raise on anything unusual."""
    present = map(is_not, values, repeat(None))
    for tlv, value in compress(zip(tlvs, values, strict=True), present):
        kind = tlv.kind
        if kind == _TLV_INT:
            out.append(_INT_TLV_PACKERS[tlv.size].pack(tlv.tag, tlv.size, value))
        elif kind == _TLV_CSTR:
            raw = value.encode("latin-1")
            if len(raw) >= tlv.size or 0 in raw:
                raise _Decline
            out.append(_TLV_HEAD.pack(tlv.tag, len(raw) + 1) + raw + b"\0")
        else:
            if type(value) is not bytes or len(value) > tlv.size:
                raise _Decline
            out.append(_TLV_HEAD.pack(tlv.tag, len(value)) + value)


def _submit_like_encoder(cls: type[SubmitSm] | type[DeliverSm]) -> Callable[[Any], bytes]:
    """Fast encoder for submit_sm or deliver_sm: one ``pack`` for header and
    mandatory fields, precompiled structs for TLVs; generic on anything odd."""
    command_id = cls.command_id
    tlvs = _SPECS[cls].tlvs
    no_tlvs = (None,) * len(tlvs)
    payload_at = [tlv.name for tlv in tlvs].index("message_payload")

    def encode_submit_like(pdu: Any) -> bytes:
        fields = _astuple(pdu)
        tail = fields[_SUBMIT_MANDATORY:]
        (
            seq,
            status,
            extra,
            service_type,
            source_ton,
            source_npi,
            source_addr,
            dest_ton,
            dest_npi,
            destination_addr,
            esm_class,
            protocol_id,
            priority_flag,
            schedule,
            validity,
            registered_delivery,
            replace_flag,
            data_coding,
            default_msg_id,
            short_message,
        ) = fields[:_SUBMIT_MANDATORY]
        try:
            sa = source_addr.encode("latin-1")
            da = destination_addr.encode("latin-1")
            sm_length = len(short_message)
            if (
                sm_length > _MAX_SHORT_MESSAGE
                or 0 in sa
                or 0 in da
                or type(short_message) is not bytes
            ):
                raise _Decline
            if tail == no_tlvs and not extra:
                optional = b""
            else:
                if short_message and tail[payload_at] is not None:
                    raise _Decline  # §5.3.2.32: exclusive, the generic path says so
                parts: list[bytes] = []
                _encode_tlvs_fast(tlvs, tail, parts)
                if extra:
                    _encode_extra_tlvs(extra, parts)
                optional = b"".join(parts)
            if not (service_type or schedule or validity):
                packer = _PLAIN_SUBMIT_PACKERS[len(sa)][len(da)]
                head = packer.pack(
                    packer.size + sm_length + len(optional),
                    command_id,
                    status,
                    seq,
                    source_ton,
                    source_npi,
                    sa,
                    dest_ton,
                    dest_npi,
                    da,
                    esm_class,
                    protocol_id,
                    priority_flag,
                    registered_delivery,
                    replace_flag,
                    data_coding,
                    default_msg_id,
                    sm_length,
                )
            else:
                st = service_type.encode("latin-1")
                sdt = schedule.encode("latin-1")
                vp = validity.encode("latin-1")
                key = (len(st), len(sa), len(da), len(sdt), len(vp))
                general = _submit_packers.get(key) or _submit_packer(key)
                if general is None or 0 in st or 0 in sdt or 0 in vp:
                    raise _Decline
                head = general.pack(
                    general.size + sm_length + len(optional),
                    command_id,
                    status,
                    seq,
                    st,
                    source_ton,
                    source_npi,
                    sa,
                    dest_ton,
                    dest_npi,
                    da,
                    esm_class,
                    protocol_id,
                    priority_flag,
                    sdt,
                    vp,
                    registered_delivery,
                    replace_flag,
                    data_coding,
                    default_msg_id,
                    sm_length,
                )
            if optional:
                return b"".join((head, short_message, optional))
            return head + short_message
        except (_Decline, AttributeError, TypeError, IndexError, UnicodeEncodeError, struct.error):
            return _encode_generic(pdu)

    return encode_submit_like


_encode_submit_sm_any: Final = _submit_like_encoder(SubmitSm)
_encode_deliver_sm: Final = _submit_like_encoder(DeliverSm)

# The TLV fields of SubmitSm, checked one attribute at a time by
# encode_submit_sm: cheaper than astuple + slice + compare (~265 vs ~330 ns).
_SUBMIT_TLV_NAMES: Final = (
    "user_message_reference",
    "source_port",
    "source_addr_subunit",
    "destination_port",
    "dest_addr_subunit",
    "sar_msg_ref_num",
    "sar_total_segments",
    "sar_segment_seqnum",
    "more_messages_to_send",
    "payload_type",
    "message_payload",
    "privacy_indicator",
    "callback_num",
    "callback_num_pres_ind",
    "callback_num_atag",
    "source_subaddress",
    "dest_subaddress",
    "user_response_code",
    "display_time",
    "sms_signal",
    "ms_validity",
    "ms_msg_wait_facilities",
    "number_of_messages",
    "alert_on_message_delivery",
    "language_indicator",
    "its_reply_type",
    "its_session_info",
    "ussd_service_op",
)
if tuple(t.name for t in _SPECS[SubmitSm].tlvs) != _SUBMIT_TLV_NAMES:  # pragma: no cover
    raise AssertionError("SubmitSm: _SUBMIT_TLV_NAMES out of step with the TLV fields")


def encode_submit_sm(pdu: SubmitSm) -> bytes:
    """:func:`encode` of a ``SubmitSm`` (exactly that type; the session's batched
    write path calls it without the type dispatch). The usual submit_sm (no TLVs; empty service_type, schedule_delivery_time,
    validity_period), attributes read directly; anything else goes to
    ``_encode_submit_sm_any``, which has the same results."""
    if (
        pdu.extra_tlvs
        or pdu.service_type
        or pdu.schedule_delivery_time
        or pdu.validity_period
        or not (
            pdu.user_message_reference is None
            and pdu.source_port is None
            and pdu.source_addr_subunit is None
            and pdu.destination_port is None
            and pdu.dest_addr_subunit is None
            and pdu.sar_msg_ref_num is None
            and pdu.sar_total_segments is None
            and pdu.sar_segment_seqnum is None
            and pdu.more_messages_to_send is None
            and pdu.payload_type is None
            and pdu.message_payload is None
            and pdu.privacy_indicator is None
            and pdu.callback_num is None
            and pdu.callback_num_pres_ind is None
            and pdu.callback_num_atag is None
            and pdu.source_subaddress is None
            and pdu.dest_subaddress is None
            and pdu.user_response_code is None
            and pdu.display_time is None
            and pdu.sms_signal is None
            and pdu.ms_validity is None
            and pdu.ms_msg_wait_facilities is None
            and pdu.number_of_messages is None
            and pdu.alert_on_message_delivery is None
            and pdu.language_indicator is None
            and pdu.its_reply_type is None
            and pdu.its_session_info is None
            and pdu.ussd_service_op is None
        )
    ):
        return _encode_submit_sm_any(pdu)
    short_message = pdu.short_message
    try:
        sa = pdu.source_addr.encode("latin-1")
        da = pdu.destination_addr.encode("latin-1")
        sm_length = len(short_message)
        if sm_length > _MAX_SHORT_MESSAGE or 0 in sa or 0 in da or type(short_message) is not bytes:
            raise _Decline
        packer = _PLAIN_SUBMIT_PACKERS[len(sa)][len(da)]
        return (
            packer.pack(
                packer.size + sm_length,
                _SUBMIT_SM_ID,
                pdu.command_status,
                pdu.sequence_number,
                pdu.source_addr_ton,
                pdu.source_addr_npi,
                sa,
                pdu.dest_addr_ton,
                pdu.dest_addr_npi,
                da,
                pdu.esm_class,
                pdu.protocol_id,
                pdu.priority_flag,
                pdu.registered_delivery,
                pdu.replace_if_present_flag,
                pdu.data_coding,
                pdu.sm_default_msg_id,
                sm_length,
            )
            + short_message
        )
    except (_Decline, AttributeError, TypeError, IndexError, UnicodeEncodeError, struct.error):
        return _encode_generic(pdu)


class PlainSubmitTemplate:
    """The bodies of submit_sm without optional parameters for one set of fixed fields.

    A carrier's submit_sm differ only in a few fields: ``destination_addr``,
    ``esm_class``, ``registered_delivery``, ``data_coding`` and
    ``short_message``. The rest — ``service_type``, the source address, the
    destination's TON/NPI — is fixed per carrier, and ``protocol_id``,
    ``priority_flag``, ``schedule_delivery_time``, ``validity_period``,
    ``replace_if_present_flag`` and ``sm_default_msg_id`` are zero / empty.
    The template encodes the fixed part once; :meth:`body` is then one
    ``pack`` per message, with no TLV to look for (a template has none).

    ``body(...)`` is exactly the octets after the header that :func:`encode`
    writes for ``SubmitSm(<the template's fields>, <body's arguments>)``
    (property-tested against ``encode`` and aiosmpplib), or ``None`` when that
    PDU would not take the encoder's fast path (an address over 20 octets, a
    NUL, a character outside latin-1, a ``short_message`` over 254 octets or
    not ``bytes``, an integer out of range): the caller then builds the
    ``SubmitSm``, whose encoding words the error. The session writes a body
    with :meth:`Session.send_submits` (``connectors.session``).

    The constructor raises :class:`LocalProtocolError` if the fixed fields
    break the spec (as ``encode`` would for every PDU made with them).
    """

    __slots__ = ("_packers", "_prefix")

    def __init__(
        self,
        service_type: str = "",
        source_addr_ton: int = 0,
        source_addr_npi: int = 0,
        source_addr: str = "",
        dest_addr_ton: int = 0,
        dest_addr_npi: int = 0,
    ) -> None:
        fixed = SubmitSm(
            service_type=service_type,
            source_addr_ton=source_addr_ton,
            source_addr_npi=source_addr_npi,
            source_addr=source_addr,
            dest_addr_ton=dest_addr_ton,
            dest_addr_npi=dest_addr_npi,
        )
        body = _encode_generic(fixed)[HEADER_SIZE:]  # raises on a bad fixed field
        # service_type NUL, source_addr_ton, source_addr_npi, source_addr NUL,
        # dest_addr_ton, dest_addr_npi: the body up to destination_addr
        self._prefix: bytes = body[: len(service_type) + len(source_addr) + 6]
        size = len(self._prefix)
        self._packers: list[struct.Struct] = [
            struct.Struct(
                f">{size}s{n}s"  # the fixed prefix, destination_addr
                "xB"  # destination_addr NUL, esm_class
                "xx"  # protocol_id 0, priority_flag 0
                "xx"  # schedule_delivery_time "" NUL, validity_period "" NUL
                "Bx"  # registered_delivery, replace_if_present_flag 0
                "BxB"  # data_coding, sm_default_msg_id 0, sm_length
            )
            for n in range(21)
        ]

    def body(
        self, destination_addr: str, esm_class: int, registered_delivery: int, data_coding: int, short_message: bytes
    ) -> bytes | None:
        """The submit_sm body for these fields, or ``None`` (see the class doc)."""
        try:
            da = destination_addr.encode("latin-1")
            if type(short_message) is not bytes or 0 in da:
                return None
            sm_length = len(short_message)
            if sm_length > _MAX_SHORT_MESSAGE:
                return None
            return (
                self._packers[len(da)].pack(self._prefix, da, esm_class, registered_delivery, data_coding, sm_length)
                + short_message
            )
        except (AttributeError, IndexError, UnicodeEncodeError, struct.error):
            return None


def _header_only_encoder(cls: type[Pdu]) -> Callable[[Any], bytes]:
    """enquire_link, unbind, generic_nack and the body-less responses."""
    command_id = cls.command_id

    def encode_header_only(pdu: Any) -> bytes:
        if not pdu.extra_tlvs:
            try:
                return HEADER.pack(HEADER_SIZE, command_id, pdu.command_status, pdu.sequence_number)
            except struct.error:
                pass
        return _encode_generic(pdu)

    return encode_header_only


def _message_id_resp_encoder(cls: type[Pdu]) -> Callable[[Any], bytes]:
    """submit_sm_resp, deliver_sm_resp, data_sm_resp without TLVs."""
    command_id = cls.command_id
    no_tlvs = (None,) * len(_SPECS[cls].tlvs)

    def encode_message_id_resp(pdu: Any) -> bytes:
        fields = _astuple(pdu)
        sequence_number, command_status, extra, message_id = fields[:4]
        if not extra and fields[4:] == no_tlvs:
            if command_status and message_id == "":
                try:  # SMPP 3.4 §4.4.2: no body on error
                    return HEADER.pack(HEADER_SIZE, command_id, command_status, sequence_number)
                except struct.error:
                    return _encode_generic(pdu)
            try:
                raw: bytes = message_id.encode("latin-1")
                if len(raw) < 65 and 0 not in raw:
                    return (
                        HEADER.pack(
                            HEADER_SIZE + len(raw) + 1, command_id, command_status, sequence_number
                        )
                        + raw
                        + b"\0"
                    )
            except (AttributeError, struct.error):
                pass
        return _encode_generic(pdu)

    return encode_message_id_resp


_ENCODERS: Final[dict[type[Pdu], Callable[[Any], bytes]]] = {
    cls: _header_only_encoder(cls) if not spec.has_body else _encode_generic
    for cls, spec in _SPECS.items()
}
for _cls in (SubmitSmResp, DeliverSmResp, DataSmResp):
    _ENCODERS[_cls] = _message_id_resp_encoder(_cls)
_ENCODERS[SubmitSm] = encode_submit_sm
_ENCODERS[DeliverSm] = _encode_deliver_sm


def encode(pdu: Pdu) -> bytes:
    """Serialise ``pdu`` (header included) using its ``sequence_number`` and
    ``command_status``.

    Raises :class:`LocalProtocolError` (naming the field) when a field breaks
    the spec: a string too long or containing NUL or non-latin-1 characters,
    an integer out of range, ``short_message`` over 254 octets.
    """
    if type(pdu) is SubmitSm:  # the hot path, without a dict lookup
        return encode_submit_sm(pdu)
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise LocalProtocolError(f"not an SMPP PDU: {type(pdu).__name__}", "pdu")
    return encoder(pdu)


# --- decoding: generic --------------------------------------------------------------


def _decode_tlvs(pdu: Pdu, spec: _Spec, body: bytes, pos: int) -> None:
    """Parse the optional parameters from ``body[pos:]`` into ``pdu``."""
    by_tag = spec.tlv_by_tag
    end_of_body = len(body)
    extra: list[tuple[int, bytes]] = []
    while pos < end_of_body:
        if pos + 4 > end_of_body:
            raise RemoteProtocolError(
                "truncated TLV header", HEADER_SIZE + pos, command_status=ESME_RINVOPTPARSTREAM
            )
        tag, length = _TLV_HEAD.unpack_from(body, pos)
        start = pos + 4
        end = start + length
        if end > end_of_body:
            raise RemoteProtocolError(
                f"TLV 0x{tag:04X} length {length} runs past the end of the PDU",
                HEADER_SIZE + pos,
                command_status=ESME_RINVOPTPARSTREAM,
            )
        raw = body[start:end]
        tlv = by_tag.get(tag)
        if tlv is not None and getattr(pdu, tlv.name) is None:
            kind = tlv.kind
            if kind == _TLV_INT:
                # Lenient about the width (SMSCs disagree on some, e.g.
                # source_telematics_id): any 1-4 octets whose value fits.
                number = int.from_bytes(raw, "big")
                if 0 < length <= 4 and number >> (8 * tlv.size) == 0:
                    setattr(pdu, tlv.name, number)
                    pos = end
                    continue
            elif kind == _TLV_CSTR:
                nul = raw.find(0)
                setattr(pdu, tlv.name, (raw if nul < 0 else raw[:nul]).decode("latin-1"))
                pos = end
                continue
            else:
                setattr(pdu, tlv.name, raw)
                pos = end
                continue
        extra.append((tag, raw))
        pos = end
    if extra:
        pdu.extra_tlvs = tuple(extra)


def _read_int8(body: bytes, pos: int, name: str) -> int:
    if pos >= len(body):
        raise RemoteProtocolError(
            f"{name}: PDU ends early", HEADER_SIZE + pos, command_status=ESME_RINVCMDLEN
        )
    return body[pos]


def _read_cstr(body: bytes, pos: int, name: str, lenient: bool = False) -> tuple[str, int]:
    """The C-octet string at ``pos`` and the offset after its NUL."""
    nul = body.find(0, pos)
    if nul < 0:
        if not lenient:
            raise RemoteProtocolError(
                f"{name}: C-octet string without NUL terminator",
                HEADER_SIZE + pos,
                command_status=ESME_RINVCMDLEN,
            )
        nul = len(body)  # sloppy SMSC: a response's message_id without NUL
    return body[pos:nul].decode("latin-1"), nul + 1


def _read_dest_address(body: bytes, pos: int) -> tuple[tuple[Any, ...], int]:
    """number_of_dests + dest_address list, SMPP 3.4 §4.5.1.1."""
    count = _read_int8(body, pos, "number_of_dests")
    pos += 1
    dests: list[SmeAddress | DistributionList] = []
    for _ in range(count):
        flag = _read_int8(body, pos, "dest_flag")
        if flag == 1:
            ton = _read_int8(body, pos + 1, "dest_addr_ton")
            npi = _read_int8(body, pos + 2, "dest_addr_npi")
            address, pos = _read_cstr(body, pos + 3, "destination_addr")
            dests.append(SmeAddress(ton, npi, address))
        elif flag == 2:
            dl_name, pos = _read_cstr(body, pos + 1, "dl_name")
            dests.append(DistributionList(dl_name))
        else:
            raise RemoteProtocolError(
                f"dest_flag {flag} is neither 1 (SME) nor 2 (list)",
                HEADER_SIZE + pos,
                command_status=ESME_RINVDESTFLAG,
            )
    return tuple(dests), pos


def _read_unsuccess_sme(body: bytes, pos: int) -> tuple[tuple[Any, ...], int]:
    """no_unsuccess + unsuccess_sme list, SMPP 3.4 §4.5.2.1."""
    count = _read_int8(body, pos, "no_unsuccess")
    pos += 1
    smes: list[UnsuccessSme] = []
    for _ in range(count):
        ton = _read_int8(body, pos, "dest_addr_ton")
        npi = _read_int8(body, pos + 1, "dest_addr_npi")
        address, pos = _read_cstr(body, pos + 2, "destination_addr")
        if pos + 4 > len(body):
            raise RemoteProtocolError(
                "error_status_code: PDU ends early",
                HEADER_SIZE + pos,
                command_status=ESME_RINVCMDLEN,
            )
        smes.append(UnsuccessSme(ton, npi, address, int.from_bytes(body[pos : pos + 4], "big")))
        pos += 4
    return tuple(smes), pos


def _decode_generic(spec: _Spec, command_status: int, sequence_number: int, body: bytes) -> Pdu:
    """Reference decoder: walks the layout, words every error."""
    cls = spec.cls
    if not body and spec.is_resp:
        # SMPP 3.4 §4.1.2, §4.4.2: no body on error; also seen on success.
        return cls(sequence_number=sequence_number, command_status=command_status)
    values: list[Any] = [sequence_number, command_status, ()]
    pos = 0
    value: Any
    for name, kind, _arg in spec.layout:
        if kind == _INT8:
            value = _read_int8(body, pos, name)
            pos += 1
        elif kind == _SM:
            sm_length = _read_int8(body, pos, "sm_length")
            if pos + 1 + sm_length > len(body):
                raise RemoteProtocolError(
                    f"sm_length {sm_length} runs past the end of the PDU",
                    HEADER_SIZE + pos,
                    command_status=ESME_RINVMSGLEN,
                )
            value = body[pos + 1 : pos + 1 + sm_length]
            pos += 1 + sm_length
        elif kind == _DESTS:
            value, pos = _read_dest_address(body, pos)
        elif kind == _UNSUCCESS:
            value, pos = _read_unsuccess_sme(body, pos)
        else:
            value, pos = _read_cstr(body, pos, name, lenient=kind == _CSTR_LAST)
        values.append(value)
    pdu = cls(*values)
    if pos < len(body):
        _decode_tlvs(pdu, spec, body, pos)
    return pdu


# --- decoding: hot path ---------------------------------------------------------------


def _message_id_resp_decoder(cls: type[Pdu]) -> Callable[[int, int, bytes], Pdu]:
    """submit_sm_resp, deliver_sm_resp, data_sm_resp: "message_id\\0" and nothing else."""
    spec = _SPECS[cls]
    make: Any = cls

    def decode_message_id_resp(command_status: int, sequence_number: int, body: bytes) -> Pdu:
        message_id, nul, rest = body.partition(b"\0")
        if nul and not rest:
            pdu: Pdu = make(sequence_number, command_status, (), message_id.decode("latin-1"))
            return pdu
        return _decode_generic(spec, command_status, sequence_number, body)

    return decode_message_id_resp


def _header_only_decoder(cls: type[Pdu]) -> Callable[[int, int, bytes], Pdu]:
    spec = _SPECS[cls]

    def decode_header_only(command_status: int, sequence_number: int, body: bytes) -> Pdu:
        if body:
            return _decode_generic(spec, command_status, sequence_number, body)
        return cls(sequence_number, command_status)

    return decode_header_only


# submit_sm and deliver_sm share their mandatory fields (SMPP 3.4 §4.4.1,
# §4.6.1). The decoder runs regular expressions over the latin-1 text of the
# body, where character i is octet i, to find the five C-octet strings; the
# integer octets between them are then read by one struct chosen by the
# string lengths.
#
# The usual case: empty service_type, schedule_delivery_time, validity_period.
_PLAIN_STRINGS: Final = re.compile(
    "\0.."  # service_type "" NUL, source_addr_ton, source_addr_npi
    "([^\0]*)\0.."  # source_addr NUL, dest_addr_ton, dest_addr_npi
    "([^\0]*)\0..."  # destination_addr NUL, esm_class, protocol_id, priority_flag
    "\0\0",  # schedule_delivery_time "" NUL, validity_period "" NUL
    re.DOTALL,
)
_ALL_STRINGS: Final = re.compile(
    "([^\0]*)\0.."  # service_type NUL, source_addr_ton, source_addr_npi
    "([^\0]*)\0.."  # source_addr NUL, dest_addr_ton, dest_addr_npi
    "([^\0]*)\0..."  # destination_addr NUL, esm_class, protocol_id, priority_flag
    "([^\0]*)\0"  # schedule_delivery_time NUL
    "([^\0]*)\0",  # validity_period NUL
    re.DOTALL,
)
# The two receipt TLVs and nothing else, in either order: receipted_message_id
# (0x001E, a C-string shorter than 256 octets; its length octet is checked by
# the caller) and message_state (0x0427, length 1). Anything else: the loop.
_RECEIPT_TLVS: Final = re.compile(
    "\x00\x1e\x00(.)([^\0]*)\0\x04\x27\x00\x01(.)|\x04\x27\x00\x01(.)\x00\x1e\x00(.)([^\0]*)\0",
    re.DOTALL,
)


def _submit_unpacker_for(st: int, sa: int, da: int, sdt: int, vp: int) -> struct.Struct:
    return struct.Struct(
        f">{st + 1}xBB"  # service_type NUL; source_addr_ton, source_addr_npi
        f"{sa + 1}xBB"  # source_addr NUL; dest_addr_ton, dest_addr_npi
        f"{da + 1}xBBB"  # destination_addr NUL; esm_class, protocol_id, priority_flag
        f"{sdt + 1}x"  # schedule_delivery_time NUL
        # validity_period NUL; registered_delivery, replace_if_present_flag,
        # data_coding, sm_default_msg_id, sm_length
        f"{vp + 1}xBBBBB"
    )


# [len(source_addr)][len(destination_addr)] -> unpacker for the usual case.
_PLAIN_SUBMIT_UNPACKERS: Final = [
    [_submit_unpacker_for(0, sa, da, 0, 0) for da in range(21)] for sa in range(21)
]
# Anything else, by the five lengths, built on first use.
_submit_unpackers: dict[tuple[int, int, int, int, int], struct.Struct] = {}


def _submit_unpacker(
    service_type: str, source_addr: str, destination_addr: str, schedule: str, validity: str
) -> struct.Struct:
    key = (len(service_type), len(source_addr), len(destination_addr), len(schedule), len(validity))
    unpacker = _submit_unpackers.get(key)
    if unpacker is None:
        if len(_submit_unpackers) >= _STRUCT_CACHE_MAX:
            _submit_unpackers.clear()
        unpacker = _submit_unpackers[key] = _submit_unpacker_for(*key)
    return unpacker


def _submit_like_decoder(cls: type[SubmitSm] | type[DeliverSm]) -> Callable[[int, int, bytes], Pdu]:
    """Fast decoder for submit_sm or deliver_sm; the generic one on anything odd.

    For deliver_sm, a TLV part made of exactly the two receipt TLVs is parsed
    by one regular expression, and the values are passed to the constructor
    (they are the first two TLV fields of DeliverSm).
    """
    spec = _SPECS[cls]
    receipts = cls is DeliverSm
    make: Any = cls  # 22 positional fields; for SubmitSm the last two are None TLVs

    def decode_submit_like(command_status: int, sequence_number: int, body: bytes) -> Pdu:
        text = body.decode("latin-1")
        match = _PLAIN_STRINGS.match(text)
        if match is not None:
            source_addr, destination_addr = match.groups()
            service_type = schedule = validity = ""
            try:
                unpacker = _PLAIN_SUBMIT_UNPACKERS[len(source_addr)][len(destination_addr)]
            except IndexError:  # an address longer than 20: a less common struct
                unpacker = _submit_unpacker("", source_addr, destination_addr, "", "")
        else:
            match = _ALL_STRINGS.match(text)
            if match is None:
                return _decode_generic(spec, command_status, sequence_number, body)
            service_type, source_addr, destination_addr, schedule, validity = match.groups()
            unpacker = _submit_unpacker(
                service_type, source_addr, destination_addr, schedule, validity
            )
        try:
            (
                source_ton,
                source_npi,
                dest_ton,
                dest_npi,
                esm_class,
                protocol_id,
                priority_flag,
                registered_delivery,
                replace_flag,
                data_coding,
                default_msg_id,
                sm_length,
            ) = unpacker.unpack_from(body)
        except struct.error:
            return _decode_generic(spec, command_status, sequence_number, body)
        start = match.end() + 5  # validity_period NUL + 5 integer octets
        pos = sm_end = start + sm_length
        end_of_body = len(body)
        if pos > end_of_body:
            return _decode_generic(spec, command_status, sequence_number, body)
        receipted_message_id = message_state = None
        if receipts and pos < end_of_body:
            receipt = _RECEIPT_TLVS.fullmatch(text, pos)
            if receipt is not None:
                id_length_1, id_1, state_1, state_2, id_length_2, id_2 = receipt.groups()
                if id_1 is not None:
                    if ord(id_length_1) == len(id_1) + 1:
                        receipted_message_id = id_1
                        message_state = ord(state_1)
                        pos = end_of_body
                elif ord(id_length_2) == len(id_2) + 1:
                    receipted_message_id = id_2
                    message_state = ord(state_2)
                    pos = end_of_body
        pdu: Pdu = make(
            sequence_number,
            command_status,
            (),
            service_type,
            source_ton,
            source_npi,
            source_addr,
            dest_ton,
            dest_npi,
            destination_addr,
            esm_class,
            protocol_id,
            priority_flag,
            schedule,
            validity,
            registered_delivery,
            replace_flag,
            data_coding,
            default_msg_id,
            body[start:sm_end],
            receipted_message_id,
            message_state,
        )
        if pos < end_of_body:
            _decode_tlvs(pdu, spec, body, pos)
        return pdu

    return decode_submit_like


_decode_deliver_sm_any: Final = _submit_like_decoder(DeliverSm)

# The usual deliver_sm in one expression over the whole body: the
# _PLAIN_STRINGS fields and the 5 integer octets up to sm_length; then, if the
# body ends with them, the two receipt TLVs: short_message (its length is
# checked against sm_length by the caller), receipted_message_id (tag 0x001E,
# length, C-string) and message_state (tag 0x0427, length 1, value).
_PLAIN_DELIVER: Final = re.compile(
    "\0..([^\0]*)\0..([^\0]*)\0...\0\0....."  # as _PLAIN_STRINGS, then 5 octets
    "(?:"
    ".*"  # short_message
    "\x00\x1e\x00(.)([^\0]*)\0"  # receipted_message_id: tag, length, value, NUL
    "\x04\x27\x00\x01(.)\\Z"  # message_state: tag, length 1, value; the end
    ")?",
    re.DOTALL,
)


def _decode_deliver_sm(command_status: int, sequence_number: int, body: bytes) -> Pdu:
    """deliver_sm: a receipt with just the two usual TLVs, or no TLVs, by one
    expression; anything else by ``_decode_deliver_sm_any``."""
    match = _PLAIN_DELIVER.match(body.decode("latin-1"))
    if match is None:
        return _decode_deliver_sm_any(command_status, sequence_number, body)
    source_addr, destination_addr, id_length, receipted_message_id, state = match.groups()
    try:
        (
            source_ton,
            source_npi,
            dest_ton,
            dest_npi,
            esm_class,
            protocol_id,
            priority_flag,
            registered_delivery,
            replace_flag,
            data_coding,
            default_msg_id,
            sm_length,
        ) = _PLAIN_SUBMIT_UNPACKERS[len(source_addr)][len(destination_addr)].unpack_from(body)
    except IndexError:  # an address longer than 20
        return _decode_deliver_sm_any(command_status, sequence_number, body)
    start = len(source_addr) + len(destination_addr) + 17  # where short_message starts
    sm_end = start + sm_length
    if receipted_message_id is None:
        if sm_end != len(body):  # TLVs other than the usual two, or a bad sm_length
            return _decode_deliver_sm_any(command_status, sequence_number, body)
        message_state = None
    elif (
        sm_end + len(receipted_message_id) + 10 == len(body)
        and ord(id_length) == len(receipted_message_id) + 1
    ):  # short_message ends where the TLVs start, the id's length octet is right
        message_state = ord(state)
    else:
        return _decode_deliver_sm_any(command_status, sequence_number, body)
    return DeliverSm(
        sequence_number,
        command_status,
        (),
        "",
        source_ton,
        source_npi,
        source_addr,
        dest_ton,
        dest_npi,
        destination_addr,
        esm_class,
        protocol_id,
        priority_flag,
        "",
        "",
        registered_delivery,
        replace_flag,
        data_coding,
        default_msg_id,
        body[start:sm_end],
        receipted_message_id,
        message_state,
    )


_SUBMIT_SM_RESP_ID: Final = SubmitSmResp.command_id
_decode_submit_sm: Final = _submit_like_decoder(SubmitSm)


def _generic_decoder(spec: _Spec) -> Callable[[int, int, bytes], Pdu]:
    def decode_one(command_status: int, sequence_number: int, body: bytes) -> Pdu:
        return _decode_generic(spec, command_status, sequence_number, body)

    return decode_one


_DECODERS: Final[dict[int, Callable[[int, int, bytes], Pdu]]] = {
    command_id: _generic_decoder(spec) for command_id, spec in _SPECS_BY_ID.items()
}
for _cls in (SubmitSmResp, DeliverSmResp, DataSmResp):
    _DECODERS[_cls.command_id] = _message_id_resp_decoder(_cls)
for _spec in _SPECS.values():
    if not _spec.has_body:
        _DECODERS[_spec.cls.command_id] = _header_only_decoder(_spec.cls)
_DECODERS[DeliverSm.command_id] = _decode_deliver_sm
_DECODERS[SubmitSm.command_id] = _decode_submit_sm


def decode_body(
    command_id: int, command_status: int, sequence_number: int, body: bytes | bytearray | memoryview
) -> Pdu:
    """Decode a PDU from its header fields and body (the bytes after the header).

    Raises :class:`RemoteProtocolError` (with ``command_status`` set to the
    status a generic_nack should carry, and the header's ids) for an unknown
    command_id or a malformed body. Never raises anything else.
    """
    if type(body) is not bytes:
        body = bytes(body)
    if command_id == _SUBMIT_SM_RESP_ID:
        # The commonest PDU on the wire, "message_id\0", decoded inline (one
        # call fewer); anything else takes the usual decoder.
        message_id, nul, rest = body.partition(b"\0")
        if nul and not rest:
            return SubmitSmResp(sequence_number, command_status, (), message_id.decode("latin-1"))
    try:
        return _DECODERS[command_id](command_status, sequence_number, body)
    except KeyError:
        if command_id in _DECODERS:  # pragma: no cover - a bug in a decoder
            raise
        raise RemoteProtocolError(
            f"unknown command_id 0x{command_id:08X}",
            4,
            command_status=ESME_RINVCMDID,
            command_id=command_id,
            sequence_number=sequence_number,
        ) from None
    except RemoteProtocolError as exc:
        exc.command_id = command_id
        exc.sequence_number = sequence_number
        raise


def decode(data: bytes | bytearray | memoryview) -> Pdu:
    """Decode exactly one whole PDU (header included).

    Raises :class:`RemoteProtocolError` if ``data`` is shorter than a header,
    its command_length disagrees with ``len(data)``, or the PDU is malformed.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise RemoteProtocolError(
            f"{len(data)} octets, shorter than the PDU header", 0, command_status=ESME_RINVCMDLEN
        )
    command_length, command_id, command_status, sequence_number = HEADER.unpack_from(data)
    if command_length != len(data):
        raise RemoteProtocolError(
            f"command_length {command_length} but {len(data)} octets given",
            0,
            command_status=ESME_RINVCMDLEN,
            command_id=command_id,
            sequence_number=sequence_number,
        )
    return decode_body(command_id, command_status, sequence_number, data[HEADER_SIZE:])
