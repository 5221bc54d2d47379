"""mask_number, keyed_hash, redact_text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privacy_hooks import (
    HASH_HEX_LEN,
    KeyedHasher,
    keyed_hash,
    looks_like_number,
    mask_number,
    normalise_number,
    redact_text,
)


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+4512345678", "+45******78"),
        ("4512345678", "45******78"),
        ("+45 12 34 56 78", "+45******78"),
        ("+1-555-010-0199", "+15*******99"),
        ("  +4512345678 ", "+45******78"),
        ("12345678", "12****78"),
        ("1234567", "*******"),
        ("+1234", "+****"),
        ("", "***"),
        ("ACME", "***"),
    ],
)
def test_mask_number(number: str, masked: str) -> None:
    assert mask_number(number) == masked


def test_keyed_hash_normalises_and_is_stable() -> None:
    secret = b"test-secret"
    h = keyed_hash(secret, "+4512345678")
    assert re.fullmatch(rf"[0-9a-f]{{{HASH_HEX_LEN}}}", h)
    assert keyed_hash(secret, "4512345678") == h
    assert keyed_hash(secret, "+45 12-34 56 78") == h
    assert keyed_hash("test-secret", "+4512345678") == h
    assert KeyedHasher(secret)("+4512345678") == h
    assert keyed_hash(b"other-secret", "+4512345678") != h
    assert keyed_hash(secret, "+4512345679") != h


def test_keyed_hash_is_hmac_sha256_truncated() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"4512345678", hashlib.sha256).hexdigest()[:32]
    assert keyed_hash(b"k", "+4512345678") == expected


@given(key=st.binary(min_size=1, max_size=200), digits=st.from_regex(r"[0-9]{1,20}", fullmatch=True))
def test_keyed_hasher_is_hmac_for_any_key(key: bytes, digits: str) -> None:
    """The precomputed inner/outer states give hmac's answer, keys longer than
    SHA-256's 64-byte block (hashed first, RFC 2104) included, and stay reusable."""
    import hashlib
    import hmac

    hasher = KeyedHasher(key)
    expected = hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_LEN]
    assert hasher(digits) == expected
    assert hasher("+" + digits) == expected  # the states were copied, not consumed
    assert hasher.digits(digits) == expected  # (the engine's Job.to: digits already)
    assert hasher(digits) == expected


def test_keyed_hash_errors_never_echo_the_input() -> None:
    with pytest.raises(ValueError, match="hash_secret"):
        KeyedHasher(b"")
    with pytest.raises(ValueError) as info:
        keyed_hash(b"k", "no digits here")
    assert "no digits" not in str(info.value)


def test_normalise_number() -> None:
    assert normalise_number("+45 1234-5678") == "4512345678"
    assert normalise_number("4512345678") == "4512345678"


def test_redact_text_masks_numbers_and_keeps_identifiers() -> None:
    h = keyed_hash(b"k", "+4512345678")
    text = (
        f"to +4512345678 and 4598765432, hash {h}, "
        "job 550e8400-e29b-41d4-a716-446655440000, small 12345, mid 123456, "
        "glued id98765432x, long 12345678901234567890"
    )
    out = redact_text(text)
    assert "4512345678" not in out
    assert "98765432" not in out
    assert "123456," not in out
    assert "12345678901234567890" not in out
    assert "+45******78" in out
    assert h in out
    assert "550e8400-e29b-41d4-a716-446655440000" in out
    assert "small 12345," in out


@pytest.mark.parametrize(
    "text",
    [
        "job-550e8400-e29b-41d4-a716-446655440000 done",
        "id=00000000-0000-4000-8000-000000000000",
        "hash=" + "1" * 31 + "a",
        "status=0x00000058, tag 0x1403",
    ],
)
def test_identifiers_with_digit_runs_are_kept(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1" * 32, "11" + "*" * 28 + "11"),  # all digits: a number, however long
        ("550e8400-4512345678", "550e8400-45******78"),  # not a UUID
        ("tel:+4512345678;ext", "tel:+45******78;ext"),
        ("id 4512345678abcdef", "id 45******78abcdef"),  # a 16-char hex id is no exemption
        ("AB" + "4512345678901234" + "CDEF" * 3, "AB45************34" + "CDEF" * 3),
        ("0x4512345678", "0x45******78"),  # longer than a 32-bit literal
        ("٤٥١٢٣٤٥٦٧٨", "٤٥******٧٨"),  # Arabic-Indic digits are digits too
    ],
)
def test_numbers_next_to_identifier_like_text_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_smpp_status_codes_stay_readable() -> None:
    line = "submit_sm_resp status=0x00000058 (ESME_RTHROTTLED), 0x0000000B"
    assert redact_text(line) == line


def test_looks_like_number() -> None:
    assert looks_like_number("call +4512345678")
    assert not looks_like_number(keyed_hash(b"k", "+4512345678"))
    assert not looks_like_number("12345 things")


_numbers = st.from_regex(r"\A\+?[1-9][0-9]{7,14}\Z", fullmatch=True)
# Noise never forms one of the documented identifier shapes around the number:
# at most 8 chars a side (a keyed-hash word is 32), no "x" (a 0x literal).
_noise = st.text(
    alphabet=st.characters(
        blacklist_categories=("Nd",),  # type: ignore[arg-type]
        blacklist_characters="xX",
    ),
    max_size=8,
)


@given(number=_numbers, before=_noise, after=_noise)
def test_no_number_survives_redaction(number: str, before: str, after: str) -> None:
    out = redact_text(before + number + after)
    assert number.lstrip("+") not in out
    # The mask keeps at most the first two and last two digits.
    assert sum(c.isdigit() for c in out) <= sum(c.isdigit() for c in before + after) + 4


@given(st.text(alphabet="0123456789", min_size=0, max_size=22))
def test_mask_e164_digits_is_mask_number_of_the_plus_form(digits: str) -> None:
    from privacy_hooks.masking import mask_e164_digits

    assert mask_e164_digits(digits) == mask_number("+" + digits)
