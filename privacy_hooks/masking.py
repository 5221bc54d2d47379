"""Phone numbers out of sight: masks for people, keyed hashes for machines.

Why two forms: an operator reading a log needs to tell "the Danish number
ending in 78" from another one — a mask (``+45******78``) does that without
identifying anybody. Correlating records of one subject (erasure, audit,
suppression) needs a stable identifier that is not the number — a keyed
hash (HMAC) does that, and without the secret it cannot be reversed by
hashing every possible number, which a plain hash of a 10-digit number
could be in minutes.

* ``mask_number``: keep a leading ``+``, the first two digits (country-code-ish)
  and the last two; mask everything else. Inputs with fewer than 8 digits
  (short codes, fragments) are masked entirely. Separators are dropped.
* ``keyed_hash``: HMAC-SHA256 (RFC 2104) keyed with ``[privacy] hash_secret``
  over the *normalised* number — its ASCII digits only, so ``+4512345678``,
  ``4512345678`` and ``+45 12 34 56 78`` give the same hash — hex-encoded and
  truncated to the first 16 bytes (32 hex characters; 128 bits is plenty
  against collisions among the world's numbers, RFC 2104 §5 allows truncation).
* ``redact_text``: masks every phone-number-like run in free text — 6 or more
  digits, optionally after a ``+`` — except where the digits are part of a
  token that is clearly an identifier: a UUID, or a 16-64 character hex token
  containing a letter (keyed hashes, hex message ids). A digits-only token is
  always masked, however long.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

__all__ = [
    "HASH_HEX_LEN",
    "KeyedHasher",
    "keyed_hash",
    "looks_like_number",
    "mask_number",
    "normalise_number",
    "redact_text",
]

#: Length of a keyed hash in hex characters (16 bytes).
HASH_HEX_LEN = 32

# Inputs shorter than this many digits are masked entirely.
_MIN_DIGITS_TO_SHOW = 8
_NON_DIGIT = re.compile(r"\D+")
_NON_ASCII_DIGIT = re.compile(r"[^0-9]+")

# One pass over the text; the first two alternatives are identifiers kept as
# they are (unless all digits), the last one a number-like run to mask.
_REDACT = re.compile(
    r"(?<![0-9A-Za-z])(?:"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,64}"
    r")(?![0-9A-Za-z])"
    r"|\+?\d{6,}"
)


def mask_number(number: str) -> str:
    """``"+4512345678"`` → ``"+45******78"``; short inputs fully masked; no digits → ``"***"``."""
    number = number.strip()
    plus = number[:1] == "+"
    digits = number[1:] if plus else number
    if not digits.isdigit():
        digits = _NON_DIGIT.sub("", digits)
    n = len(digits)
    if n == 0:
        return "***"
    if n < _MIN_DIGITS_TO_SHOW:
        return "+" + "*" * n if plus else "*" * n
    masked = digits[:2] + "*" * (n - 4) + digits[-2:]
    return "+" + masked if plus else masked


def _mask_match(match: re.Match[str]) -> str:
    token = match.group(0)
    if token[0] == "+" or token.isdigit():
        return mask_number(token)
    return token


def redact_text(text: str) -> str:
    """Mask every phone-number-like run in ``text`` (see the module docstring)."""
    return _REDACT.sub(_mask_match, text)


def looks_like_number(text: str) -> bool:
    """True when ``redact_text`` would change ``text``."""
    for match in _REDACT.finditer(text):
        token = match.group(0)
        if token[0] == "+" or token.isdigit():
            return True
    return False


def normalise_number(number: str) -> str:
    """The ASCII digits of ``number`` (E.164 without ``+`` or separators)."""
    if number.isascii() and number.isdigit():
        return number
    return _NON_ASCII_DIGIT.sub("", number)


class KeyedHasher:
    """``keyed_hash`` with the key set up once: ``KeyedHasher(secret)(number)``."""

    __slots__ = ("_mac",)

    def __init__(self, secret: bytes | str) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("privacy.hash_secret must not be empty")
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, number: str) -> str:
        digits = normalise_number(number)
        if not digits:
            # Never echo the input: it may be a number in some other form.
            raise ValueError("cannot hash a number without digits")
        mac = self._mac.copy()
        mac.update(digits.encode("ascii"))
        return mac.hexdigest()[:HASH_HEX_LEN]


@functools.lru_cache(maxsize=8)
def _hasher(secret: bytes | str) -> KeyedHasher:
    return KeyedHasher(secret)


def keyed_hash(secret: bytes | str, number: str) -> str:
    """HMAC-SHA256 of the number's digits keyed with ``secret``, 32 hex chars (16 bytes)."""
    return _hasher(secret)(number)
