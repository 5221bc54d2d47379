"""SMPP 3.4 PDUs as plain data (``msgspec.Struct``), one class per command.

Why msgspec Structs: they are C-level slots objects, cheaper to build than
dataclasses (the decoder builds one per PDU on the hot path), compare by
value (``decode(encode(pdu)) == pdu`` is the codec's core property) and are
mutable so a session can stamp ``sequence_number`` before encoding.

Conventions (SMPP 3.4 §4, §5):

- Field names are the spec's, in wire order: mandatory fields first, then
  the optional parameters (TLVs) the spec allows for that PDU (§5.3.2), then
  nothing else. ``command_length`` and ``sm_length`` are not fields; the
  encoder computes them.
- Every field has a default, so ``SubmitSm(destination_addr="4500112233")``
  is a complete PDU. Header fields ``sequence_number`` and
  ``command_status`` are on every PDU; ``command_id`` is a class constant.
- C-octet strings are ``str`` (decoded as latin-1, so decoding never fails on
  non-ASCII); ``short_message`` and octet-string TLVs are ``bytes``; integer
  TLVs are ``int``; C-string TLVs (``receipted_message_id``,
  ``additional_status_info_text``) are ``str``. An absent TLV is ``None``.
- TLVs the codec does not know for that PDU (vendor tags, or a standard tag
  the spec does not list for the PDU) are kept in ``extra_tlvs`` as raw
  ``(tag, value)`` pairs, so they survive a decode/encode round trip.
  ``extra_tlvs`` is written after the named TLVs.

``repr()`` of a PDU hides addresses, message content and passwords (it
shows their lengths), so a PDU can be logged without leaking a number.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

from .constants import INTERFACE_VERSION_34, CommandId

__all__ = [
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DistributionList",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "Outbind",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SmeAddress",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Unbind",
    "UnbindResp",
    "UnsuccessSme",
]

# Fields whose values must never reach a log line in clear.
_SECRET_FIELDS = frozenset(
    {
        "password",
        "source_addr",
        "destination_addr",
        "esme_addr",
        "short_message",
        "message_payload",
        "callback_num",
        "callback_num_atag",
        "source_subaddress",
        "dest_subaddress",
        "dest_address",
        "unsuccess_sme",
    }
)


class Pdu(msgspec.Struct, gc=False):
    """Base of every PDU: the header fields and unknown TLVs."""

    command_id: ClassVar[int] = 0

    sequence_number: int = 0
    command_status: int = 0
    extra_tlvs: tuple[tuple[int, bytes], ...] = ()

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in _SECRET_FIELDS:
                if not value:
                    continue
                parts.append(f"{name}=<{len(value)}>")
            elif value is None or (name == "extra_tlvs" and not value):
                continue
            else:
                parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# --- session management, SMPP 3.4 §4.1-§4.3, §4.11 ---------------------------


class _Bind(Pdu):
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


class _BindResp(Pdu):
    system_id: str = ""
    sc_interface_version: int | None = None


class BindTransmitter(_Bind):
    """bind_transmitter, SMPP 3.4 §4.1.1."""

    command_id: ClassVar[int] = CommandId.BIND_TRANSMITTER


class BindTransmitterResp(_BindResp):
    """bind_transmitter_resp, SMPP 3.4 §4.1.2 (body omitted on error)."""

    command_id: ClassVar[int] = CommandId.BIND_TRANSMITTER_RESP


class BindReceiver(_Bind):
    """bind_receiver, SMPP 3.4 §4.1.3."""

    command_id: ClassVar[int] = CommandId.BIND_RECEIVER


class BindReceiverResp(_BindResp):
    """bind_receiver_resp, SMPP 3.4 §4.1.4."""

    command_id: ClassVar[int] = CommandId.BIND_RECEIVER_RESP


class BindTransceiver(_Bind):
    """bind_transceiver, SMPP 3.4 §4.1.5."""

    command_id: ClassVar[int] = CommandId.BIND_TRANSCEIVER


class BindTransceiverResp(_BindResp):
    """bind_transceiver_resp, SMPP 3.4 §4.1.6."""

    command_id: ClassVar[int] = CommandId.BIND_TRANSCEIVER_RESP


class Outbind(Pdu):
    """outbind, SMPP 3.4 §4.1.7 (SMSC asks the ESME to bind)."""

    command_id: ClassVar[int] = CommandId.OUTBIND
    system_id: str = ""
    password: str = ""


class Unbind(Pdu):
    """unbind, SMPP 3.4 §4.2.1 (header only)."""

    command_id: ClassVar[int] = CommandId.UNBIND


class UnbindResp(Pdu):
    """unbind_resp, SMPP 3.4 §4.2.2 (header only)."""

    command_id: ClassVar[int] = CommandId.UNBIND_RESP


class GenericNack(Pdu):
    """generic_nack, SMPP 3.4 §4.3.1 (header only; the status says why)."""

    command_id: ClassVar[int] = CommandId.GENERIC_NACK


class EnquireLink(Pdu):
    """enquire_link, SMPP 3.4 §4.11.1 (header only)."""

    command_id: ClassVar[int] = CommandId.ENQUIRE_LINK


class EnquireLinkResp(Pdu):
    """enquire_link_resp, SMPP 3.4 §4.11.2 (header only)."""

    command_id: ClassVar[int] = CommandId.ENQUIRE_LINK_RESP


# --- message submission and delivery, SMPP 3.4 §4.4, §4.6, §4.7 ---------------


class SubmitSm(Pdu):
    """submit_sm, SMPP 3.4 §4.4.1."""

    command_id: ClassVar[int] = CommandId.SUBMIT_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    # Optional parameters, SMPP 3.4 §4.4.1 table 4-14 / §5.3.2.
    user_message_reference: int | None = None
    source_port: int | None = None
    source_addr_subunit: int | None = None
    destination_port: int | None = None
    dest_addr_subunit: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    more_messages_to_send: int | None = None
    payload_type: int | None = None
    message_payload: bytes | None = None
    privacy_indicator: int | None = None
    callback_num: bytes | None = None
    callback_num_pres_ind: int | None = None
    callback_num_atag: bytes | None = None
    source_subaddress: bytes | None = None
    dest_subaddress: bytes | None = None
    user_response_code: int | None = None
    display_time: int | None = None
    sms_signal: int | None = None
    ms_validity: int | None = None
    ms_msg_wait_facilities: int | None = None
    number_of_messages: int | None = None
    alert_on_message_delivery: bytes | None = None
    language_indicator: int | None = None
    its_reply_type: int | None = None
    its_session_info: bytes | None = None
    ussd_service_op: int | None = None


class SubmitSmResp(Pdu):
    """submit_sm_resp, SMPP 3.4 §4.4.2 (body omitted on error).

    The error TLVs are not in 3.4's submit_sm_resp but SMSCs send them (they
    are data_sm_resp's in 3.4 and submit_sm_resp's in 5.0), so they are named.
    """

    command_id: ClassVar[int] = CommandId.SUBMIT_SM_RESP
    message_id: str = ""
    delivery_failure_reason: int | None = None
    network_error_code: bytes | None = None
    additional_status_info_text: str | None = None
    dpf_result: int | None = None


class DeliverSm(Pdu):
    """deliver_sm, SMPP 3.4 §4.6.1 (MO messages and delivery receipts)."""

    command_id: ClassVar[int] = CommandId.DELIVER_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    # Optional parameters, SMPP 3.4 §4.6.1 table 4-16 / §5.3.2; the receipt ones
    # first (the order of TLVs on the wire is free, §3.2.4).
    receipted_message_id: str | None = None
    message_state: int | None = None
    network_error_code: bytes | None = None
    user_message_reference: int | None = None
    source_port: int | None = None
    destination_port: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    user_response_code: int | None = None
    privacy_indicator: int | None = None
    payload_type: int | None = None
    message_payload: bytes | None = None
    callback_num: bytes | None = None
    source_subaddress: bytes | None = None
    dest_subaddress: bytes | None = None
    language_indicator: int | None = None
    its_session_info: bytes | None = None
    ussd_service_op: int | None = None  # USSD gateways send it on deliver_sm


class DeliverSmResp(Pdu):
    """deliver_sm_resp, SMPP 3.4 §4.6.2 (message_id unused, NULL)."""

    command_id: ClassVar[int] = CommandId.DELIVER_SM_RESP
    message_id: str = ""


class DataSm(Pdu):
    """data_sm, SMPP 3.4 §4.7.1."""

    command_id: ClassVar[int] = CommandId.DATA_SM
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    # Optional parameters, SMPP 3.4 §4.7.1 table 4-18 / §5.3.2.
    source_port: int | None = None
    source_addr_subunit: int | None = None
    source_network_type: int | None = None
    source_bearer_type: int | None = None
    source_telematics_id: int | None = None
    destination_port: int | None = None
    dest_addr_subunit: int | None = None
    dest_network_type: int | None = None
    dest_bearer_type: int | None = None
    dest_telematics_id: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    more_messages_to_send: int | None = None
    qos_time_to_live: int | None = None
    payload_type: int | None = None
    message_payload: bytes | None = None
    set_dpf: int | None = None
    receipted_message_id: str | None = None
    message_state: int | None = None
    network_error_code: bytes | None = None
    user_message_reference: int | None = None
    privacy_indicator: int | None = None
    callback_num: bytes | None = None
    callback_num_pres_ind: int | None = None
    callback_num_atag: bytes | None = None
    source_subaddress: bytes | None = None
    dest_subaddress: bytes | None = None
    user_response_code: int | None = None
    display_time: int | None = None
    sms_signal: int | None = None
    ms_validity: int | None = None
    ms_msg_wait_facilities: int | None = None
    number_of_messages: int | None = None
    alert_on_message_delivery: bytes | None = None
    language_indicator: int | None = None
    its_reply_type: int | None = None
    its_session_info: bytes | None = None


class DataSmResp(Pdu):
    """data_sm_resp, SMPP 3.4 §4.7.2."""

    command_id: ClassVar[int] = CommandId.DATA_SM_RESP
    message_id: str = ""
    delivery_failure_reason: int | None = None
    network_error_code: bytes | None = None
    additional_status_info_text: str | None = None
    dpf_result: int | None = None


# --- ancillary operations, SMPP 3.4 §4.8-§4.10, §4.12 --------------------------


class QuerySm(Pdu):
    """query_sm, SMPP 3.4 §4.8.1."""

    command_id: ClassVar[int] = CommandId.QUERY_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


class QuerySmResp(Pdu):
    """query_sm_resp, SMPP 3.4 §4.8.2."""

    command_id: ClassVar[int] = CommandId.QUERY_SM_RESP
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


class CancelSm(Pdu):
    """cancel_sm, SMPP 3.4 §4.9.1."""

    command_id: ClassVar[int] = CommandId.CANCEL_SM
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


class CancelSmResp(Pdu):
    """cancel_sm_resp, SMPP 3.4 §4.9.2 (header only)."""

    command_id: ClassVar[int] = CommandId.CANCEL_SM_RESP


class ReplaceSm(Pdu):
    """replace_sm, SMPP 3.4 §4.10.1."""

    command_id: ClassVar[int] = CommandId.REPLACE_SM
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


class ReplaceSmResp(Pdu):
    """replace_sm_resp, SMPP 3.4 §4.10.2 (header only)."""

    command_id: ClassVar[int] = CommandId.REPLACE_SM_RESP


class AlertNotification(Pdu):
    """alert_notification, SMPP 3.4 §4.12.1 (no response)."""

    command_id: ClassVar[int] = CommandId.ALERT_NOTIFICATION
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""
    ms_availability_status: int | None = None


# --- submit_multi, SMPP 3.4 §4.5 ---------------------------------------------------


class SmeAddress(msgspec.Struct, frozen=True, gc=False):
    """One destination of a submit_multi (dest_flag 1), SMPP 3.4 §4.5.1.1."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""

    def __repr__(self) -> str:
        return f"SmeAddress(<{len(self.destination_addr)}>)"


class DistributionList(msgspec.Struct, frozen=True, gc=False):
    """A distribution list destination of a submit_multi (dest_flag 2)."""

    dl_name: str = ""


class UnsuccessSme(msgspec.Struct, frozen=True, gc=False):
    """A destination submit_multi could not deliver to, SMPP 3.4 §4.5.2.1."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0

    def __repr__(self) -> str:
        return (
            f"UnsuccessSme(<{len(self.destination_addr)}>, "
            f"error_status_code=0x{self.error_status_code:08X})"
        )


class SubmitMulti(Pdu):
    """submit_multi, SMPP 3.4 §4.5.1 (number_of_dests is ``len(dest_address)``)."""

    command_id: ClassVar[int] = CommandId.SUBMIT_MULTI
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_address: tuple[SmeAddress | DistributionList, ...] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    # Optional parameters, SMPP 3.4 §4.5.1 table 4-15 / §5.3.2.
    user_message_reference: int | None = None
    source_port: int | None = None
    source_addr_subunit: int | None = None
    destination_port: int | None = None
    dest_addr_subunit: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    payload_type: int | None = None
    message_payload: bytes | None = None
    privacy_indicator: int | None = None
    callback_num: bytes | None = None
    callback_num_pres_ind: int | None = None
    callback_num_atag: bytes | None = None
    source_subaddress: bytes | None = None
    dest_subaddress: bytes | None = None
    display_time: int | None = None
    sms_signal: int | None = None
    ms_validity: int | None = None
    ms_msg_wait_facilities: int | None = None
    alert_on_message_delivery: bytes | None = None
    language_indicator: int | None = None


class SubmitMultiResp(Pdu):
    """submit_multi_resp, SMPP 3.4 §4.5.2 (no_unsuccess is ``len(unsuccess_sme)``)."""

    command_id: ClassVar[int] = CommandId.SUBMIT_MULTI_RESP
    message_id: str = ""
    unsuccess_sme: tuple[UnsuccessSme, ...] = ()
