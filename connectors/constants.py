"""SMPP 3.4 numeric constants: command ids, TLV tags, TON/NPI, field bits.

Why plain ``int`` class attributes and not ``IntEnum``: these values sit on
the hot path (every PDU carries a command_id) and arrive from the wire, where
a vendor may send anything. An enum lookup raises on an unknown value and
costs an attribute walk; a plain int compares at C speed and an unknown value
is just an int. Names are for people: :func:`command_name` and the
``*_NAMES`` dicts turn numbers into text for logs, never raising.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "COMMAND_NAMES",
    "DATA_CODING_NAMES",
    "ESM_CONVERSATION_ABORT",
    "ESM_DELIVERY_ACK",
    "ESM_DELIVERY_RECEIPT",
    "ESM_INTERMEDIATE_NOTIFICATION",
    "ESM_MODE_DATAGRAM",
    "ESM_MODE_DEFAULT",
    "ESM_MODE_FORWARD",
    "ESM_MODE_MASK",
    "ESM_MODE_STORE_AND_FORWARD",
    "ESM_RECEIPT",
    "ESM_REPLY_PATH",
    "ESM_TYPE_DEFAULT",
    "ESM_TYPE_MASK",
    "ESM_UDHI",
    "ESM_USER_ACK",
    "GENERIC_NACK",
    "INTERFACE_VERSION_34",
    "MESSAGE_STATE_NAMES",
    "REGISTERED_DELIVERY_FAILURE",
    "REGISTERED_DELIVERY_INTERMEDIATE",
    "REGISTERED_DELIVERY_MASK",
    "REGISTERED_DELIVERY_NONE",
    "REGISTERED_DELIVERY_SME_ACK_BOTH",
    "REGISTERED_DELIVERY_SME_ACK_DELIVERY",
    "REGISTERED_DELIVERY_SME_ACK_MANUAL",
    "REGISTERED_DELIVERY_SUCCESS_OR_FAILURE",
    "RESPONSE_BIT",
    "TAG_NAMES",
    "CommandId",
    "DataCoding",
    "MessageState",
    "Npi",
    "Tag",
    "Ton",
    "command_name",
    "is_response",
    "response_id",
]

# SMPP 3.4 §5.1.2.1 — interface_version we speak.
INTERFACE_VERSION_34: Final = 0x34

# SMPP 3.4 §5.1.2.1: a response's command_id is its request's with bit 31 set.
RESPONSE_BIT: Final = 0x80000000


class CommandId:
    """command_id values, SMPP 3.4 §5.1.2.1 (Table 5-1)."""

    GENERIC_NACK: Final = 0x80000000
    BIND_RECEIVER: Final = 0x00000001
    BIND_RECEIVER_RESP: Final = 0x80000001
    BIND_TRANSMITTER: Final = 0x00000002
    BIND_TRANSMITTER_RESP: Final = 0x80000002
    QUERY_SM: Final = 0x00000003
    QUERY_SM_RESP: Final = 0x80000003
    SUBMIT_SM: Final = 0x00000004
    SUBMIT_SM_RESP: Final = 0x80000004
    DELIVER_SM: Final = 0x00000005
    DELIVER_SM_RESP: Final = 0x80000005
    UNBIND: Final = 0x00000006
    UNBIND_RESP: Final = 0x80000006
    REPLACE_SM: Final = 0x00000007
    REPLACE_SM_RESP: Final = 0x80000007
    CANCEL_SM: Final = 0x00000008
    CANCEL_SM_RESP: Final = 0x80000008
    BIND_TRANSCEIVER: Final = 0x00000009
    BIND_TRANSCEIVER_RESP: Final = 0x80000009
    OUTBIND: Final = 0x0000000B
    ENQUIRE_LINK: Final = 0x00000015
    ENQUIRE_LINK_RESP: Final = 0x80000015
    SUBMIT_MULTI: Final = 0x00000021
    SUBMIT_MULTI_RESP: Final = 0x80000021
    ALERT_NOTIFICATION: Final = 0x00000102
    DATA_SM: Final = 0x00000103
    DATA_SM_RESP: Final = 0x80000103


GENERIC_NACK: Final = CommandId.GENERIC_NACK

#: command_id -> spec name in snake_case (``"submit_sm_resp"``).
COMMAND_NAMES: Final[dict[int, str]] = {
    value: name.lower()
    for name, value in vars(CommandId).items()
    if name.isupper() and isinstance(value, int)
}


def is_response(command_id: int) -> bool:
    """True for response PDUs (bit 31 set; generic_nack included)."""
    return bool(command_id & RESPONSE_BIT)


def response_id(command_id: int) -> int:
    """The command_id of the response to request ``command_id``."""
    return command_id | RESPONSE_BIT


def command_name(command_id: int) -> str:
    """Spec name of a command id, or ``"0x%08X"`` for unknown ids. Never raises."""
    name = COMMAND_NAMES.get(command_id)
    return name if name is not None else f"0x{command_id & 0xFFFFFFFF:08X}"


class Tag:
    """Optional parameter (TLV) tags, SMPP 3.4 §5.3.2 (Table 5-3)."""

    DEST_ADDR_SUBUNIT: Final = 0x0005
    DEST_NETWORK_TYPE: Final = 0x0006
    DEST_BEARER_TYPE: Final = 0x0007
    DEST_TELEMATICS_ID: Final = 0x0008
    SOURCE_ADDR_SUBUNIT: Final = 0x000D
    SOURCE_NETWORK_TYPE: Final = 0x000E
    SOURCE_BEARER_TYPE: Final = 0x000F
    SOURCE_TELEMATICS_ID: Final = 0x0010
    QOS_TIME_TO_LIVE: Final = 0x0017
    PAYLOAD_TYPE: Final = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT: Final = 0x001D
    RECEIPTED_MESSAGE_ID: Final = 0x001E
    MS_MSG_WAIT_FACILITIES: Final = 0x0030
    PRIVACY_INDICATOR: Final = 0x0201
    SOURCE_SUBADDRESS: Final = 0x0202
    DEST_SUBADDRESS: Final = 0x0203
    USER_MESSAGE_REFERENCE: Final = 0x0204
    USER_RESPONSE_CODE: Final = 0x0205
    SOURCE_PORT: Final = 0x020A
    DESTINATION_PORT: Final = 0x020B
    SAR_MSG_REF_NUM: Final = 0x020C
    LANGUAGE_INDICATOR: Final = 0x020D
    SAR_TOTAL_SEGMENTS: Final = 0x020E
    SAR_SEGMENT_SEQNUM: Final = 0x020F
    SC_INTERFACE_VERSION: Final = 0x0210
    CALLBACK_NUM_PRES_IND: Final = 0x0302
    CALLBACK_NUM_ATAG: Final = 0x0303
    NUMBER_OF_MESSAGES: Final = 0x0304
    CALLBACK_NUM: Final = 0x0381
    DPF_RESULT: Final = 0x0420
    SET_DPF: Final = 0x0421
    MS_AVAILABILITY_STATUS: Final = 0x0422
    NETWORK_ERROR_CODE: Final = 0x0423
    MESSAGE_PAYLOAD: Final = 0x0424
    DELIVERY_FAILURE_REASON: Final = 0x0425
    MORE_MESSAGES_TO_SEND: Final = 0x0426
    MESSAGE_STATE: Final = 0x0427
    USSD_SERVICE_OP: Final = 0x0501
    DISPLAY_TIME: Final = 0x1201
    SMS_SIGNAL: Final = 0x1203
    MS_VALIDITY: Final = 0x1204
    ALERT_ON_MESSAGE_DELIVERY: Final = 0x130C
    ITS_REPLY_TYPE: Final = 0x1380
    ITS_SESSION_INFO: Final = 0x1383


#: TLV tag -> spec name (``0x001E -> "receipted_message_id"``).
TAG_NAMES: Final[dict[int, str]] = {
    value: name.lower()
    for name, value in vars(Tag).items()
    if name.isupper() and isinstance(value, int)
}


class Ton:
    """Type of Number, SMPP 3.4 §5.2.5."""

    UNKNOWN: Final = 0
    INTERNATIONAL: Final = 1
    NATIONAL: Final = 2
    NETWORK_SPECIFIC: Final = 3
    SUBSCRIBER_NUMBER: Final = 4
    ALPHANUMERIC: Final = 5
    ABBREVIATED: Final = 6


class Npi:
    """Numbering Plan Indicator, SMPP 3.4 §5.2.6."""

    UNKNOWN: Final = 0
    ISDN: Final = 1  # E.163 / E.164
    DATA: Final = 3  # X.121
    TELEX: Final = 4  # F.69
    LAND_MOBILE: Final = 6  # E.212
    NATIONAL: Final = 8
    PRIVATE: Final = 9
    ERMES: Final = 10
    INTERNET: Final = 14  # IP
    WAP_CLIENT_ID: Final = 18


# esm_class, SMPP 3.4 §5.2.12.
# Bits 1-0: messaging mode (submit_sm / data_sm).
ESM_MODE_MASK: Final = 0x03
ESM_MODE_DEFAULT: Final = 0x00
ESM_MODE_DATAGRAM: Final = 0x01
ESM_MODE_FORWARD: Final = 0x02
ESM_MODE_STORE_AND_FORWARD: Final = 0x03
# Bits 5-2: message type.
ESM_TYPE_MASK: Final = 0x3C
ESM_TYPE_DEFAULT: Final = 0x00
ESM_DELIVERY_RECEIPT: Final = 0x04  # SMSC delivery receipt (deliver_sm)
ESM_RECEIPT: Final = ESM_DELIVERY_RECEIPT  # short alias
ESM_DELIVERY_ACK: Final = 0x08  # SME delivery acknowledgement
ESM_USER_ACK: Final = 0x10  # SME manual/user acknowledgement
ESM_CONVERSATION_ABORT: Final = 0x18  # Korean CDMA
ESM_INTERMEDIATE_NOTIFICATION: Final = 0x20
# Bits 7-6: GSM network specific features.
ESM_UDHI: Final = 0x40  # short_message starts with a User Data Header
ESM_REPLY_PATH: Final = 0x80

# registered_delivery, SMPP 3.4 §5.2.17.
REGISTERED_DELIVERY_MASK: Final = 0x03  # bits 1-0: SMSC delivery receipt
REGISTERED_DELIVERY_NONE: Final = 0x00
REGISTERED_DELIVERY_SUCCESS_OR_FAILURE: Final = 0x01
REGISTERED_DELIVERY_FAILURE: Final = 0x02
REGISTERED_DELIVERY_SME_ACK_DELIVERY: Final = 0x04  # bits 3-2: SME acknowledgement
REGISTERED_DELIVERY_SME_ACK_MANUAL: Final = 0x08
REGISTERED_DELIVERY_SME_ACK_BOTH: Final = 0x0C
REGISTERED_DELIVERY_INTERMEDIATE: Final = 0x10  # bit 4: intermediate notification


class DataCoding:
    """data_coding values, SMPP 3.4 §5.2.19."""

    SMSC_DEFAULT: Final = 0x00  # usually GSM 03.38 default alphabet
    IA5: Final = 0x01  # IA5 (CCITT T.50) / ASCII
    OCTET_UNSPECIFIED_2: Final = 0x02
    LATIN_1: Final = 0x03  # ISO-8859-1
    OCTET_UNSPECIFIED: Final = 0x04  # 8-bit binary
    JIS: Final = 0x05  # X 0208-1990
    CYRILLIC: Final = 0x06  # ISO-8859-5
    LATIN_HEBREW: Final = 0x07  # ISO-8859-8
    UCS2: Final = 0x08  # ISO/IEC-10646, UTF-16BE on the wire
    PICTOGRAM: Final = 0x09
    ISO_2022_JP: Final = 0x0A  # music codes
    EXTENDED_KANJI: Final = 0x0D  # JIS X 0212-1990
    KS_C_5601: Final = 0x0E


DATA_CODING_NAMES: Final[dict[int, str]] = {
    value: name.lower()
    for name, value in vars(DataCoding).items()
    if name.isupper() and isinstance(value, int)
}


class MessageState:
    """message_state values (query_sm_resp, receipts), SMPP 3.4 §5.2.28."""

    ENROUTE: Final = 1
    DELIVERED: Final = 2
    EXPIRED: Final = 3
    DELETED: Final = 4
    UNDELIVERABLE: Final = 5
    ACCEPTED: Final = 6
    UNKNOWN: Final = 7
    REJECTED: Final = 8


MESSAGE_STATE_NAMES: Final[dict[int, str]] = {
    value: name
    for name, value in vars(MessageState).items()
    if name.isupper() and isinstance(value, int)
}
