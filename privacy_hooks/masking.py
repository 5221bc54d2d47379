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
  over the *normalised* number — its ASCII digits only, so ``+4500112233``,
  ``4500112233`` and ``+45 00 11 22 33`` give the same hash — hex-encoded and
  truncated to the first 16 bytes (32 hex characters; 128 bits is plenty
  against collisions among the world's numbers, RFC 2104 §5 allows truncation).
* ``redact_text``: masks every phone-number-like run in free text — 6 or more
  digits, optionally after a ``+`` — except where the digits are part of a
  word shaped exactly like one of our identifiers: a keyed hash (32 lowercase
  hex characters, not all digits), a canonical UUID, or a ``0x`` literal of
  at most 8 hex digits (SMPP command_status ``0x00000058``). The exemptions
  are deliberately narrow: a number glued to a few letters is still masked,
  and so are other hex ids (e.g. 16-char message ids) that happen to hold 6
  digits in a row — readability loses to privacy.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable

_sha256: Callable[[bytes], hashlib._Hash]
try:  # CPython's built-in SHA-256 (see KeyedHasher); OpenSSL's where there is none
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]  # 3.12+
except ImportError:
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]  # <= 3.11
    except ImportError:  # pragma: no cover - a Python built without them
        _sha256 = hashlib.sha256

__all__ = [
    "DIGIT_RUN",
    "DIGIT_TABLE",
    "HASH_HEX_LEN",
    "KeyedHasher",
    "has_run",
    "keyed_hash",
    "looks_like_number",
    "mask_e164_digits",
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

# Number-like runs; each is then judged by the word around it (rare, so cheap):
# a scan that only stops at digits is ~5x faster than one regex that also
# tries the identifier patterns at every letter.
# (Spelled out: ``\d\d\d\d\d\d+`` scans ~2x faster than ``\d{6,}`` in CPython's re.)
_RUN = re.compile(r"\d\d\d\d\d\d+")
#: The pattern of a number-like run (``redact_text`` judges each match by its word).
DIGIT_RUN = _RUN
_WORD_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX_WORD = re.compile(rf"[0-9a-f]{{{HASH_HEX_LEN}}}|0[xX][0-9a-fA-F]{{1,8}}")
_UUID = re.compile(
    r"(?<![0-9A-Za-z])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"(?![0-9A-Za-z])"
)


def mask_number(number: str) -> str:
    """``"+4500112233"`` → ``"+45******33"``; short inputs fully masked; no digits → ``"***"``."""
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


_STARS = ["*" * i for i in range(16)]


def mask_e164_digits(digits: str) -> str:
    """``mask_number("+" + digits)`` for a number already normalised to its E.164
    digits (the engine's job model): the same answer, without the checks, once per
    message on the record path."""
    n = len(digits)
    if n < _MIN_DIGITS_TO_SHOW or n >= 20 or not digits.isdigit():
        return mask_number("+" + digits)
    return f"+{digits[:2]}{_STARS[n - 4]}{digits[-2:]}"  # one string built, not three


def _is_identifier(text: str, start: int, end: int) -> bool:
    """Is the digit run ``text[start:end]`` part of a UUID, hex token or 0x literal?"""
    words = _WORD_CHARS
    left = start
    while left and text[left - 1] in words:
        left -= 1
    right, size = end, len(text)
    while right < size and text[right] in words:
        right += 1
    word = text[left:right]
    if not word.isdigit() and _HEX_WORD.fullmatch(word):
        return True
    if (left and text[left - 1] == "-") or (right < size and text[right] == "-"):
        # Only the 8- and 12-char groups of a UUID can hold a 6-digit run.
        for match in _UUID.finditer(text, max(0, left - 28), min(size, right + 28)):
            if match.start() <= start and end <= match.end():
                return True
    return False


# ASCII text (nearly every log line) is checked for a run without the regex: its
# bytes with every digit made "0" and every other byte "a", then a substring test
# for six "0"s -- five C calls, ~2,100 instructions, where a ``_RUN.search``
# costs ~1,000 to start and ~80 per character (~7,000 for a 40-character line):
# sre tests every position against the ``\d`` category. In ASCII text ``\d``
# matches exactly 0-9, so the answer is the same; other text takes the regex.
#: ``bytes.translate`` table: ASCII digits to ``0``, every other byte to ``a``.
DIGIT_TABLE = bytes(0x30 if 0x30 <= i <= 0x39 else 0x61 for i in range(256))


def has_run(text: str) -> bool:
    """Does ``text`` hold a run of 6 or more digits (``redact_text`` has work to do)?"""
    if len(text) < 6:
        return False
    if text.isascii():
        return "000000" in text.encode().translate(DIGIT_TABLE).decode()
    return _RUN.search(text) is not None


def redact_text(text: str) -> str:
    """Mask every phone-number-like run in ``text`` (see the module docstring)."""
    if len(text) < 6:
        return text
    if text.isascii():  # most text: no run of 6 digits, found in C (``has_run``)
        if "000000" not in text.encode().translate(DIGIT_TABLE).decode():
            return text
    elif _RUN.search(text) is None:
        return text
    parts: list[str] | None = None
    pos = 0
    for match in _RUN.finditer(text):
        start, end = match.span()
        if start and text[start - 1] == "+":
            start -= 1  # a leading + makes it a number, and stays in the mask
        elif _is_identifier(text, start, end):
            continue
        if parts is None:
            parts = []
        parts.append(text[pos:start])
        parts.append(mask_number(text[start:end]))
        pos = end
    if parts is None:
        return text
    parts.append(text[pos:])
    return "".join(parts)


def looks_like_number(text: str) -> bool:
    """True when ``redact_text`` would change ``text``."""
    for match in _RUN.finditer(text):
        start, end = match.span()
        if (start and text[start - 1] == "+") or not _is_identifier(text, start, end):
            return True
    return False


def normalise_number(number: str) -> str:
    """The ASCII digits of ``number`` (E.164 without ``+`` or separators)."""
    if number.isascii() and number.isdigit():
        return number
    return _NON_ASCII_DIGIT.sub("", number)


class KeyedHasher:
    """``keyed_hash`` with the key set up once: ``KeyedHasher(secret)(number)``.

    HMAC-SHA256 as RFC 2104 spells it, H(K ^ opad, H(K ^ ipad, m)), with the two
    keyed SHA-256 states computed once and copied per call: the same hash as
    ``hmac.new(key, m, sha256)`` at about two thirds of its cost (the engine hashes
    every message's number; ``hmac.HMAC.copy`` builds a Python wrapper each time).
    The states are CPython's own SHA-256 (``_sha256``; ``_sha2`` from 3.12) where it
    has one: copying an OpenSSL state (``EVP_MD_CTX_copy``) costs more than the two
    compressions a number's hash takes (callgrind, per hash: 10.2k instructions
    against 14.9k; the same digest, SHA-256 is SHA-256).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes | str) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("privacy.hash_secret must not be empty")
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = _sha256(key.translate(_IPAD))
        self._outer = _sha256(key.translate(_OPAD))

    def __call__(self, number: str) -> str:
        digits = normalise_number(number)
        if not digits:
            # Never echo the input: it may be a number in some other form.
            raise ValueError("cannot hash a number without digits")
        inner = self._inner.copy()
        inner.update(digits.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:HASH_HEX_LEN]

    def digits(self, digits: str) -> str:
        """``self(digits)`` for a number already normalised (``normalise_number``'s
        answer: the engine's ``Job.to``), without normalising it again: once per
        message on the claim path. Not for anything else (it checks nothing)."""
        inner = self._inner.copy()
        inner.update(digits.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[:HASH_HEX_LEN]


_SHA256_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=8)
def _hasher(secret: bytes | str) -> KeyedHasher:
    return KeyedHasher(secret)


def keyed_hash(secret: bytes | str, number: str) -> str:
    """HMAC-SHA256 of the number's digits keyed with ``secret``, 32 hex chars (16 bytes)."""
    return _hasher(secret)(number)
