"""Message text in the history store, encrypted: ``[history] keep_text = true``.

Without ``keep_text`` (the default) no text reaches the store: ``text_enc`` is
NULL in every row. With it, the text of each job (and of each inbound
message) is sealed with AES-256-GCM before it leaves the engine's process:

- the key: 32 random bytes, written as 64 hex digits or as base64 (44
  characters), in ``[history] text_key_file`` or ``SENDGATE_HISTORY_TEXT_KEY``
  (``head -c 32 /dev/urandom | base64 > text.key``). Several keys, separated
  by white space or new lines: the first seals, every one opens (rotation:
  put the new key first, keep the old ones until their rows are past retention);
- a fresh random 96-bit nonce per text (``os.urandom``, drawn once per batch);
- the associated data binds a blob to its row: ``job:<job id>`` for a job,
  ``inbound:<entry id>`` for an inbound message, so a blob copied onto another
  row does not open;
- the stored bytes (``text_enc``): ``version (1 byte, 1) | key id (4 bytes:
  the first 4 of SHA-256 of the key) | nonce (12) | ciphertext | tag (16)``,
  33 bytes over the UTF-8 text. The key id picks the key that opens it.

On the events stream a job's blob travels base64-encoded in the field
``text_enc`` of its first event (never the text); the archiver copies the
bytes into the row. Sans-IO: no Redis, no database; ``cryptography`` is
imported only when a cipher is built (the ``history-text`` extra).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "TextCipher",
    "TextKeyError",
    "TextOpenError",
    "cipher_available",
    "inbound_aad",
    "job_aad",
    "parse_keys",
]

FORMAT_VERSION = 1
_NONCE = 12
_KID = 4
_HEAD = 1 + _KID + _NONCE
_KEY_BYTES = 32
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{64}$")


class TextKeyError(ValueError):
    """The configured key text is not one or more 32-byte keys (the message never shows the key)."""


class TextOpenError(ValueError):
    """A stored text does not open: another key, another row, or altered bytes."""


def cipher_available() -> bool:
    """The ``cryptography`` package (extra ``history-text``) is installed."""
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
    except ImportError:
        return False
    return True


def parse_keys(text: str) -> list[bytes]:
    """Keys from ``[history] text_key``: 64 hex digits or base64 of 32 bytes each,
    separated by white space; the first seals. Raises `TextKeyError`."""
    words = text.split()
    if not words:
        raise TextKeyError("no key given")
    keys: list[bytes] = []
    for n, word in enumerate(words, 1):
        if _HEX_KEY.match(word):
            key = bytes.fromhex(word)
        else:
            try:
                key = base64.b64decode(word, validate=True)
            except (binascii.Error, ValueError):
                raise TextKeyError(f"key {n}: neither 64 hex digits nor base64") from None
        if len(key) != _KEY_BYTES:
            raise TextKeyError(f"key {n}: {len(key)} bytes, needs {_KEY_BYTES} (head -c 32 /dev/urandom | base64)")
        keys.append(key)
    return keys


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KID]


def job_aad(job_id: str) -> bytes:
    return b"job:" + job_id.encode()


def inbound_aad(entry_id: str) -> bytes:
    return b"inbound:" + entry_id.encode()


class TextCipher:
    """Seals and opens message text (see the module docstring)."""

    __slots__ = ("_aeads", "_kid", "_seal")

    def __init__(self, keys: Sequence[bytes]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise TextKeyError("no key given")
        self._aeads: dict[bytes, Any] = {}
        for key in keys:
            self._aeads.setdefault(_key_id(key), AESGCM(key))
        self._kid = _key_id(keys[0])
        self._seal = self._aeads[self._kid].encrypt

    @classmethod
    def from_text(cls, text: str) -> TextCipher:
        return cls(parse_keys(text))

    def __repr__(self) -> str:  # never the key
        return f"TextCipher(key_id={self._kid.hex()}, keys={len(self._aeads)})"

    def seal_many(self, items: Sequence[tuple[bytes, str]]) -> list[bytes]:
        """``[(associated data, text), …]`` → the stored bytes of each; one
        ``os.urandom`` call for the batch's nonces."""
        n = len(items)
        if not n:
            return []
        nonces = os.urandom(_NONCE * n)
        head = bytes((FORMAT_VERSION,)) + self._kid
        seal = self._seal
        out = []
        i = 0
        for aad, text in items:
            nonce = nonces[i : i + _NONCE]
            out.append(head + nonce + seal(nonce, text.encode("utf-8", "surrogatepass"), aad))
            i += _NONCE
        return out

    def seal(self, aad: bytes, text: str) -> bytes:
        return self.seal_many([(aad, text)])[0]

    def open(self, aad: bytes, blob: bytes) -> str:
        """The text of a stored blob; `TextOpenError` when it does not open."""
        from cryptography.exceptions import InvalidTag

        blob = bytes(blob)
        if len(blob) < _HEAD + 16:
            raise TextOpenError("stored text too short: not written by sendgate")
        if blob[0] != FORMAT_VERSION:
            raise TextOpenError(f"stored text has format version {blob[0]}, this engine reads {FORMAT_VERSION}")
        kid = blob[1 : 1 + _KID]
        aead = self._aeads.get(kid)
        if aead is None:
            raise TextOpenError(f"stored text was sealed with key id {kid.hex()}, which is not configured")
        try:
            plain: bytes = aead.decrypt(blob[1 + _KID : _HEAD], blob[_HEAD:], aad)
        except InvalidTag:
            raise TextOpenError("stored text does not open: altered, or moved from another row") from None
        return plain.decode("utf-8", "surrogatepass")


def b64(blob: bytes) -> str:
    """A sealed blob as it travels in an event field."""
    return base64.b64encode(blob).decode("ascii")
