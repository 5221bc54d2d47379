"""command_status registry: what each SMPP error code means and what to do.

Why a registry and not an enum: statuses come from the peer. An SMSC may
answer with a vendor code (0x400-0x4FF) or anything else; ``IntEnum(code)``
would raise and leave the session out of step. :func:`status_info` never
raises: unknown codes get a generic, permanent entry named like
``0x00000401``. (Model: aiokafka ``errors.for_code``.)

Flags (decisions for the pool and the engine, not for the codec):

- ``retriable``: the same PDU may succeed if sent again later (system error,
  queue full, throttling, temporary application error). Everything else is
  permanent for that message.
- ``throttled``: the SMSC asks us to slow down (ESME_RTHROTTLED 0x58,
  ESME_RMSGQFUL 0x14). Never fails a job; the bind backs off.
- ``close_session``: the session is no longer usable as is (bad bind state,
  stream out of step); drop and rebind.
- ``auth_failure``: a bind was refused for credentials (0x0D, 0x0E, 0x0F);
  retry binding slowly and raise an audit entry.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = [
    "ESME_RALYBND",
    "ESME_RBINDFAIL",
    "ESME_RCANCELFAIL",
    "ESME_RCNTSUBDL",
    "ESME_RDELIVERYFAILURE",
    "ESME_RINVBNDSTS",
    "ESME_RINVCMDID",
    "ESME_RINVCMDLEN",
    "ESME_RINVDESTFLAG",
    "ESME_RINVDFTMSGID",
    "ESME_RINVDLNAME",
    "ESME_RINVDSTADR",
    "ESME_RINVDSTNPI",
    "ESME_RINVDSTTON",
    "ESME_RINVESMCLASS",
    "ESME_RINVEXPIRY",
    "ESME_RINVMSGID",
    "ESME_RINVMSGLEN",
    "ESME_RINVNUMDESTS",
    "ESME_RINVNUMMSGS",
    "ESME_RINVOPTPARAMVAL",
    "ESME_RINVOPTPARSTREAM",
    "ESME_RINVPARLEN",
    "ESME_RINVPASWD",
    "ESME_RINVPRTFLG",
    "ESME_RINVREGDLVFLG",
    "ESME_RINVREPFLAG",
    "ESME_RINVSCHED",
    "ESME_RINVSERTYP",
    "ESME_RINVSRCADR",
    "ESME_RINVSRCNPI",
    "ESME_RINVSRCTON",
    "ESME_RINVSUBREP",
    "ESME_RINVSYSID",
    "ESME_RINVSYSTYP",
    "ESME_RMISSINGOPTPARAM",
    "ESME_RMSGQFUL",
    "ESME_ROK",
    "ESME_ROPTPARNOTALLWD",
    "ESME_RQUERYFAIL",
    "ESME_RREPLACEFAIL",
    "ESME_RSUBMITFAIL",
    "ESME_RSYSERR",
    "ESME_RTHROTTLED",
    "ESME_RUNKNOWNERR",
    "ESME_RX_P_APPN",
    "ESME_RX_R_APPN",
    "ESME_RX_T_APPN",
    "STATUSES",
    "StatusInfo",
    "format_status",
    "is_retriable",
    "is_throttled",
    "status_info",
    "status_name",
]

# SMPP 3.4 §5.1.3 (Table 5-2), in spec order.
ESME_ROK: Final = 0x00000000
ESME_RINVMSGLEN: Final = 0x00000001
ESME_RINVCMDLEN: Final = 0x00000002
ESME_RINVCMDID: Final = 0x00000003
ESME_RINVBNDSTS: Final = 0x00000004
ESME_RALYBND: Final = 0x00000005
ESME_RINVPRTFLG: Final = 0x00000006
ESME_RINVREGDLVFLG: Final = 0x00000007
ESME_RSYSERR: Final = 0x00000008
ESME_RINVSRCADR: Final = 0x0000000A
ESME_RINVDSTADR: Final = 0x0000000B
ESME_RINVMSGID: Final = 0x0000000C
ESME_RBINDFAIL: Final = 0x0000000D
ESME_RINVPASWD: Final = 0x0000000E
ESME_RINVSYSID: Final = 0x0000000F
ESME_RCANCELFAIL: Final = 0x00000011
ESME_RREPLACEFAIL: Final = 0x00000013
ESME_RMSGQFUL: Final = 0x00000014
ESME_RINVSERTYP: Final = 0x00000015
ESME_RINVNUMDESTS: Final = 0x00000033
ESME_RINVDLNAME: Final = 0x00000034
ESME_RINVDESTFLAG: Final = 0x00000040
ESME_RINVSUBREP: Final = 0x00000042
ESME_RINVESMCLASS: Final = 0x00000043
ESME_RCNTSUBDL: Final = 0x00000044
ESME_RSUBMITFAIL: Final = 0x00000045
ESME_RINVSRCTON: Final = 0x00000048
ESME_RINVSRCNPI: Final = 0x00000049
ESME_RINVDSTTON: Final = 0x00000050
ESME_RINVDSTNPI: Final = 0x00000051
ESME_RINVSYSTYP: Final = 0x00000053
ESME_RINVREPFLAG: Final = 0x00000054
ESME_RINVNUMMSGS: Final = 0x00000055
ESME_RTHROTTLED: Final = 0x00000058
ESME_RINVSCHED: Final = 0x00000061
ESME_RINVEXPIRY: Final = 0x00000062
ESME_RINVDFTMSGID: Final = 0x00000063
ESME_RX_T_APPN: Final = 0x00000064
ESME_RX_P_APPN: Final = 0x00000065
ESME_RX_R_APPN: Final = 0x00000066
ESME_RQUERYFAIL: Final = 0x00000067
ESME_RINVOPTPARSTREAM: Final = 0x000000C0
ESME_ROPTPARNOTALLWD: Final = 0x000000C1
ESME_RINVPARLEN: Final = 0x000000C2
ESME_RMISSINGOPTPARAM: Final = 0x000000C3
ESME_RINVOPTPARAMVAL: Final = 0x000000C4
ESME_RDELIVERYFAILURE: Final = 0x000000FE
ESME_RUNKNOWNERR: Final = 0x000000FF


class StatusInfo(NamedTuple):
    """What a command_status means and how to react to it."""

    code: int
    name: str
    description: str
    retriable: bool = False
    close_session: bool = False
    throttled: bool = False
    auth_failure: bool = False


def _s(
    code: int,
    name: str,
    description: str,
    *,
    retriable: bool = False,
    close_session: bool = False,
    throttled: bool = False,
    auth_failure: bool = False,
) -> StatusInfo:
    return StatusInfo(code, name, description, retriable, close_session, throttled, auth_failure)


_TABLE: Final = (
    _s(ESME_ROK, "ESME_ROK", "No error"),
    _s(ESME_RINVMSGLEN, "ESME_RINVMSGLEN", "Message length is invalid"),
    # The peer could not frame our PDU: the stream may be out of step.
    _s(ESME_RINVCMDLEN, "ESME_RINVCMDLEN", "Command length is invalid", close_session=True),
    _s(ESME_RINVCMDID, "ESME_RINVCMDID", "Invalid command ID"),
    _s(
        ESME_RINVBNDSTS,
        "ESME_RINVBNDSTS",
        "Incorrect bind status for given command",
        retriable=True,
        close_session=True,
    ),
    _s(ESME_RALYBND, "ESME_RALYBND", "ESME already in bound state"),
    _s(ESME_RINVPRTFLG, "ESME_RINVPRTFLG", "Invalid priority flag"),
    _s(ESME_RINVREGDLVFLG, "ESME_RINVREGDLVFLG", "Invalid registered delivery flag"),
    _s(ESME_RSYSERR, "ESME_RSYSERR", "System error", retriable=True),
    _s(ESME_RINVSRCADR, "ESME_RINVSRCADR", "Invalid source address"),
    _s(ESME_RINVDSTADR, "ESME_RINVDSTADR", "Invalid destination address"),
    _s(ESME_RINVMSGID, "ESME_RINVMSGID", "Message ID is invalid"),
    _s(
        ESME_RBINDFAIL,
        "ESME_RBINDFAIL",
        "Bind failed",
        close_session=True,
        auth_failure=True,
    ),
    _s(
        ESME_RINVPASWD,
        "ESME_RINVPASWD",
        "Invalid password",
        close_session=True,
        auth_failure=True,
    ),
    _s(
        ESME_RINVSYSID,
        "ESME_RINVSYSID",
        "Invalid system ID",
        close_session=True,
        auth_failure=True,
    ),
    _s(ESME_RCANCELFAIL, "ESME_RCANCELFAIL", "Cancel SM failed"),
    _s(ESME_RREPLACEFAIL, "ESME_RREPLACEFAIL", "Replace SM failed"),
    _s(ESME_RMSGQFUL, "ESME_RMSGQFUL", "Message queue full", retriable=True, throttled=True),
    _s(ESME_RINVSERTYP, "ESME_RINVSERTYP", "Invalid service type"),
    _s(ESME_RINVNUMDESTS, "ESME_RINVNUMDESTS", "Invalid number of destinations"),
    _s(ESME_RINVDLNAME, "ESME_RINVDLNAME", "Invalid distribution list name"),
    _s(ESME_RINVDESTFLAG, "ESME_RINVDESTFLAG", "Destination flag is invalid (submit_multi)"),
    _s(ESME_RINVSUBREP, "ESME_RINVSUBREP", "Invalid 'submit with replace' request"),
    _s(ESME_RINVESMCLASS, "ESME_RINVESMCLASS", "Invalid esm_class field data"),
    _s(ESME_RCNTSUBDL, "ESME_RCNTSUBDL", "Cannot submit to distribution list"),
    # Generic "submit failed": SMSCs use it for transient trouble too.
    _s(ESME_RSUBMITFAIL, "ESME_RSUBMITFAIL", "submit_sm or submit_multi failed", retriable=True),
    _s(ESME_RINVSRCTON, "ESME_RINVSRCTON", "Invalid source address TON"),
    _s(ESME_RINVSRCNPI, "ESME_RINVSRCNPI", "Invalid source address NPI"),
    _s(ESME_RINVDSTTON, "ESME_RINVDSTTON", "Invalid destination address TON"),
    _s(ESME_RINVDSTNPI, "ESME_RINVDSTNPI", "Invalid destination address NPI"),
    _s(ESME_RINVSYSTYP, "ESME_RINVSYSTYP", "Invalid system_type field"),
    _s(ESME_RINVREPFLAG, "ESME_RINVREPFLAG", "Invalid replace_if_present flag"),
    _s(ESME_RINVNUMMSGS, "ESME_RINVNUMMSGS", "Invalid number of messages"),
    _s(
        ESME_RTHROTTLED,
        "ESME_RTHROTTLED",
        "Throttling error (ESME has exceeded allowed message limits)",
        retriable=True,
        throttled=True,
    ),
    _s(ESME_RINVSCHED, "ESME_RINVSCHED", "Invalid scheduled delivery time"),
    _s(ESME_RINVEXPIRY, "ESME_RINVEXPIRY", "Invalid message validity period (expiry time)"),
    _s(ESME_RINVDFTMSGID, "ESME_RINVDFTMSGID", "Predefined message invalid or not found"),
    _s(
        ESME_RX_T_APPN,
        "ESME_RX_T_APPN",
        "ESME receiver temporary app error code",
        retriable=True,
    ),
    _s(ESME_RX_P_APPN, "ESME_RX_P_APPN", "ESME receiver permanent app error code"),
    _s(ESME_RX_R_APPN, "ESME_RX_R_APPN", "ESME receiver reject message error code"),
    _s(ESME_RQUERYFAIL, "ESME_RQUERYFAIL", "query_sm request failed"),
    _s(
        ESME_RINVOPTPARSTREAM,
        "ESME_RINVOPTPARSTREAM",
        "Error in the optional part of the PDU body",
    ),
    _s(ESME_ROPTPARNOTALLWD, "ESME_ROPTPARNOTALLWD", "Optional parameter not allowed"),
    _s(ESME_RINVPARLEN, "ESME_RINVPARLEN", "Invalid parameter length"),
    _s(ESME_RMISSINGOPTPARAM, "ESME_RMISSINGOPTPARAM", "Expected optional parameter missing"),
    _s(ESME_RINVOPTPARAMVAL, "ESME_RINVOPTPARAMVAL", "Invalid optional parameter value"),
    # data_sm_resp: delivery_failure_reason tells transient from permanent;
    # treat as transient so the message is not failed on a single try.
    _s(ESME_RDELIVERYFAILURE, "ESME_RDELIVERYFAILURE", "Delivery failure", retriable=True),
    _s(ESME_RUNKNOWNERR, "ESME_RUNKNOWNERR", "Unknown error"),
)

#: Every SMPP 3.4 command_status, by code.
STATUSES: Final[dict[int, StatusInfo]] = {info.code: info for info in _TABLE}
# The throttled flag as a set: is_throttled runs once per submit_sm_resp.
_THROTTLED_CODES: Final = frozenset(info.code for info in _TABLE if info.throttled)


def format_status(code: int) -> str:
    """``0x58 -> "0x00000058"`` (the form used in events and logs)."""
    return f"0x{code & 0xFFFFFFFF:08X}"


def _generic(code: int) -> StatusInfo:
    if 0x400 <= code <= 0x4FF:
        description = "SMSC vendor specific error"
    elif 0x100 <= code <= 0x3FF:
        description = "Reserved for SMPP extension"
    else:
        description = "Reserved / unknown error"
    return StatusInfo(code, format_status(code), description)


def status_info(code: int) -> StatusInfo:
    """The registry entry for ``code``. Never raises.

    Unknown codes, including the vendor range 0x400-0x4FF, get a generic
    permanent entry whose name is the hex code (``"0x00000401"``).
    """
    info = STATUSES.get(code)
    return info if info is not None else _generic(code)


def status_name(code: int) -> str:
    """``0x58 -> "ESME_RTHROTTLED"``; unknown codes -> ``"0x00000401"``."""
    info = STATUSES.get(code)
    return info.name if info is not None else format_status(code)


def is_retriable(code: int) -> bool:
    """Shortcut for ``status_info(code).retriable``."""
    info = STATUSES.get(code)
    return info is not None and info.retriable


def is_throttled(code: int) -> bool:
    """Shortcut for ``status_info(code).throttled`` (ESME_RTHROTTLED, ESME_RMSGQFUL)."""
    return code in _THROTTLED_CODES
