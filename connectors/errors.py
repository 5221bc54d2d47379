"""SMPP error hierarchy.

Why this shape: protocol errors split into "we broke it"
(:class:`LocalProtocolError`, raised by the encoder before anything reaches
the wire) and "the peer broke it" (:class:`RemoteProtocolError`, the *only*
exception the decoder and framer raise on bad input). Callers that feed
untrusted bytes catch exactly one type; an ``IndexError`` or ``struct.error``
escaping the decoder is a bug. (Model: h11 ``_util.py``.)

A non-zero ``command_status`` in a ``*_resp`` is *data*, never an exception
from the codec; :class:`BindError` is raised by the session/transport layer
when a bind is refused.

Messages never contain phone numbers or message text: they name the field and
the offset, not the value.
"""

from __future__ import annotations

__all__ = [
    "BindError",
    "ConnectionLostError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "ResponseTimeoutError",
    "SmppError",
]

# SMPP 3.4 §5.1.3 — kept here as literals so this module imports nothing.
_ESME_RSYSERR = 0x00000008


class SmppError(Exception):
    """Root of every error raised by ``connectors``."""


class LocalProtocolError(SmppError):
    """We tried to build something the protocol does not allow.

    Raised by :func:`connectors.codec.encode` for an out-of-range integer, a
    C-octet string longer than the spec allows, a NUL inside a string, and so
    on. ``field`` names the offending field (never its value).
    """

    def __init__(self, reason: str, field: str = "") -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class RemoteProtocolError(SmppError):
    """The peer sent bytes that are not valid SMPP.

    ``offset`` is the byte offset in the PDU (header included) where decoding
    failed, or -1 when not meaningful. ``command_status`` is the status a
    ``generic_nack`` answering it should carry (e.g. ``ESME_RINVCMDLEN`` for a
    bad length, ``ESME_RINVCMDID`` for an unknown command). ``command_id`` and
    ``sequence_number`` are filled in when the header was readable, so the
    nack can echo the sequence number.
    """

    def __init__(
        self,
        reason: str,
        offset: int = -1,
        *,
        command_status: int = _ESME_RSYSERR,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        self.reason = reason
        self.offset = offset
        self.command_status = command_status
        self.command_id = command_id
        self.sequence_number = sequence_number
        where = f" at offset {offset}" if offset >= 0 else ""
        super().__init__(f"{reason}{where}")


class ConnectionLostError(SmppError):
    """The TCP connection closed (or failed) while the session needed it."""


class BindError(SmppError):
    """The SMSC refused our bind with a non-zero ``command_status``."""

    def __init__(self, command_status: int, reason: str = "") -> None:
        self.command_status = command_status
        text = f"bind refused: command_status 0x{command_status:08X}"
        super().__init__(f"{text} ({reason})" if reason else text)


class ResponseTimeoutError(SmppError):
    """No response arrived for a request within the response timeout."""
