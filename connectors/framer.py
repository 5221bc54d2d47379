"""Split a TCP byte stream into SMPP PDUs (sans-IO).

Why a separate framer: the socket delivers arbitrary chunks (half a header,
three PDUs and a bit, a bind_resp with a deliver_sm glued behind it). The
framer only reads the 16-octet header (one ``unpack_from`` per PDU, SMPP 3.4
§3.2) to find where each PDU ends, and hands out ``Frame`` tuples; decoding
bodies is left to :func:`decode_frame` so the session can decide, for
example, to decode only what it needs.

Buffering: when a chunk holds only whole PDUs (the common case under load)
frames are sliced straight from it, with no copy into the buffer. Leftover
bytes go to one ``bytearray``; the framer does not look at them again until
enough has arrived for the header, then for the whole PDU, so feeding a
64 KiB PDU one byte at a time stays linear.

Errors: a command_length below 16 or above ``max_command_length`` means the
stream is out of step; nothing after it can be trusted. The framer raises
:class:`RemoteProtocolError` (``command_status`` = ESME_RINVCMDLEN, with the
header's command_id and sequence_number so a generic_nack can echo it) and
stays failed. Frames parsed from the same chunk *before* the bad header are
not lost: they are returned by that ``feed()`` call and the error is raised
by the next one (``feed(b"")`` will do); :attr:`Framer.failed` says so.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from .codec import HEADER, HEADER_SIZE, decode_body
from .errors import RemoteProtocolError
from .pdu import Pdu
from .status import ESME_RINVCMDLEN

__all__ = ["DEFAULT_MAX_COMMAND_LENGTH", "Frame", "Framer", "decode_frame"]

DEFAULT_MAX_COMMAND_LENGTH: Final = 65536

_unpack_header = HEADER.unpack_from


class Frame(NamedTuple):
    """One PDU cut from the stream: the header fields and the raw body."""

    command_id: int
    command_status: int
    sequence_number: int
    body: bytes


def decode_frame(frame: Frame) -> Pdu:
    """Decode a frame's body into its PDU (raises RemoteProtocolError only)."""
    return decode_body(*frame)


_new_tuple = tuple.__new__


class Framer:
    """Incremental PDU framer: ``feed(chunk) -> [Frame, ...]``."""

    __slots__ = ("_buffer", "_error", "_need", "max_command_length")

    def __init__(self, max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH) -> None:
        if max_command_length < HEADER_SIZE:
            raise ValueError("max_command_length must be at least 16")
        self.max_command_length = max_command_length
        self._buffer = bytearray()
        # Bytes the buffer must hold before parsing is worth trying again.
        self._need = HEADER_SIZE
        self._error: RemoteProtocolError | None = None

    @property
    def failed(self) -> bool:
        """True once a bad command_length was seen; every later feed raises."""
        return self._error is not None

    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a PDU."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Add received bytes; return every PDU completed by them, in order."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            chunk = bytes(buffer)
            buffer.clear()
        elif type(data) is bytes:
            chunk = data
        else:
            chunk = bytes(data)
        frames: list[Frame] = []
        append = frames.append
        max_length = self.max_command_length
        pos = 0
        size = len(chunk)
        need = HEADER_SIZE
        while size - pos >= HEADER_SIZE:
            command_length, command_id, command_status, sequence_number = _unpack_header(chunk, pos)
            if command_length < HEADER_SIZE or command_length > max_length:
                self._error = RemoteProtocolError(
                    f"command_length {command_length} outside 16..{max_length}",
                    0,
                    command_status=ESME_RINVCMDLEN,
                    command_id=command_id,
                    sequence_number=sequence_number,
                )
                if frames:
                    return frames
                raise self._error
            end = pos + command_length
            if end > size:
                need = command_length
                break
            # tuple.__new__ skips NamedTuple's Python-level __new__ (3x faster).
            append(
                _new_tuple(
                    Frame,
                    (command_id, command_status, sequence_number, chunk[pos + HEADER_SIZE : end]),
                )
            )
            pos = end
        if pos < size:
            buffer += memoryview(chunk)[pos:]
            self._need = need
        return frames
