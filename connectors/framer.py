"""Split a TCP byte stream into SMPP PDUs (sans-IO).

Why a separate framer: the socket delivers arbitrary chunks (half a header,
three PDUs and a bit, a bind_resp with a deliver_sm glued behind it). The
framer only reads the 16-octet header (one ``unpack_from`` per PDU, SMPP 3.4
§3.2) to find where each PDU ends, and hands out ``Frame`` tuples; decoding
bodies is left to :func:`decode_frame` so the session can decide, for
example, to decode only what it needs.

Buffering: frames are sliced straight from the chunk the socket gave (one
copy per body, none for the chunk). Only the tail of a chunk that ends
inside a PDU goes to a ``bytearray``; the next chunk contributes just the
bytes that PDU is missing (first the rest of the header, then the rest of
the body) and is otherwise parsed in place, so a 64 KiB read behind a split
PDU is not copied, and feeding a 64 KiB PDU one byte at a time stays linear.

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

    __slots__ = ("_buffer", "_error", "_need", "_plain", "max_command_length")

    def __init__(self, max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH, *, plain: bool = False) -> None:
        """``plain``: frames as plain tuples ``(command_id, command_status,
        sequence_number, body)``, not :class:`Frame` (the session's: it unpacks
        them; a plain tuple is one allocation, a ``Frame`` two)."""
        if max_command_length < HEADER_SIZE:
            raise ValueError("max_command_length must be at least 16")
        self.max_command_length = max_command_length
        self._plain = plain
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
        chunk = data if type(data) is bytes else bytes(data)
        frames: list[Frame] = []
        pos = 0
        if self._buffer:
            pos = self._complete_buffered(chunk, frames)
            if pos < 0:
                return frames
        append = frames.append
        max_length = self.max_command_length
        plain = self._plain
        size = len(chunk)
        need = HEADER_SIZE
        while size - pos >= HEADER_SIZE:
            command_length, command_id, command_status, sequence_number = _unpack_header(chunk, pos)
            if command_length < HEADER_SIZE or command_length > max_length:
                error = self._fail(command_length, command_id, sequence_number)
                if frames:
                    return frames  # the error is raised by the next feed()
                raise error
            end = pos + command_length
            if end > size:
                need = command_length
                break
            if plain:
                append((command_id, command_status, sequence_number, chunk[pos + HEADER_SIZE : end]))  # type: ignore[arg-type]
            else:  # tuple.__new__ skips NamedTuple's Python-level __new__ (3x faster).
                append(
                    _new_tuple(
                        Frame,
                        (command_id, command_status, sequence_number, chunk[pos + HEADER_SIZE : end]),
                    )
                )
            pos = end
        if pos < size:
            self._buffer += memoryview(chunk)[pos:]
            self._need = need
        return frames

    def _complete_buffered(self, chunk: bytes, frames: list[Frame]) -> int:
        """Finish the PDU held in the buffer from the head of ``chunk``.

        Copies only the missing bytes, so a large read behind a split PDU is
        not copied. Returns the offset in ``chunk`` after that PDU, or -1 if
        ``chunk`` did not complete it (everything was buffered).
        """
        buffer = self._buffer
        pos = 0
        while True:
            missing = self._need - len(buffer)
            if len(chunk) - pos < missing:
                buffer += memoryview(chunk)[pos:]
                return -1
            buffer += memoryview(chunk)[pos : pos + missing]
            pos += missing
            command_length, command_id, command_status, sequence_number = _unpack_header(buffer)
            if len(buffer) == HEADER_SIZE and command_length != HEADER_SIZE:
                if command_length < HEADER_SIZE or command_length > self.max_command_length:
                    raise self._fail(command_length, command_id, sequence_number)
                self._need = command_length  # header complete; now the body
                continue
            whole = (command_id, command_status, sequence_number, bytes(buffer[HEADER_SIZE:]))
            frames.append(whole if self._plain else _new_tuple(Frame, whole))  # type: ignore[arg-type]
            buffer.clear()
            self._need = HEADER_SIZE
            return pos

    def _fail(
        self, command_length: int, command_id: int, sequence_number: int
    ) -> RemoteProtocolError:
        """Remember (and return) the error that ends this stream."""
        self._error = RemoteProtocolError(
            f"command_length {command_length} outside 16..{self.max_command_length}",
            0,
            command_status=ESME_RINVCMDLEN,
            command_id=command_id,
            sequence_number=sequence_number,
        )
        return self._error
