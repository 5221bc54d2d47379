"""Character tables of 3GPP TS 23.038: the GSM 7 bit default alphabet and national tables.

Why a data module: the codecs in ``engine/text/gsm7.py`` build their translation
tables once at import from these literals, so the tables stay readable and
reviewable against the spec while the hot path only does C-level lookups.

Conventions:

* A *locking shift table* (the default alphabet is one, TS 23.038 §6.2.1) is a
  128-character string indexed by septet value. Position 0x1B is the escape to
  the single shift table and holds the placeholder ``ESC_PLACEHOLDER``; it is
  never a character (a U+001B in user text is not encodable). Unassigned cells
  (national tables only) hold ``UNASSIGNED``.
* A *single shift table* (the default extension table is one, §6.2.1.1) is a
  dict ``septet -> character``; it is reached with ESC (0x1B) + septet, so each
  of its characters costs two septets. 0x1B inside it is reserved and absent.
* The national tables are written column by column as in the spec (columns are
  the high nibble 0x00, 0x10, ... 0x70; rows the low nibble), one 16-character
  string per column, and checked against the spec layout by the tests. The
  Indian languages and Urdu live in ``engine/text/shift_tables.py``.
"""

from __future__ import annotations

from engine.text.shift_tables import ESC_PLACEHOLDER, INDIC_AND_URDU, UNASSIGNED

__all__ = [
    "DEFAULT_BASIC",
    "DEFAULT_EXTENSION",
    "ESC",
    "ESC_PLACEHOLDER",
    "NATIONAL_LANGUAGES",
    "UNASSIGNED",
    "NationalLanguage",
]

ESC = 0x1B


def _columns(*cols: str) -> str:
    """Join eight 16-character spec columns into a 128-character table."""
    if len(cols) != 8 or any(len(c) != 16 for c in cols):  # pragma: no cover - import-time guard
        raise ValueError("a locking shift table is eight columns of sixteen characters")
    return "".join(cols)


# TS 23.038 §6.2.1 GSM 7 bit default alphabet.
DEFAULT_BASIC = _columns(
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
)

# TS 23.038 §6.2.1.1 GSM 7 bit default alphabet extension table.
DEFAULT_EXTENSION: dict[int, str] = {
    0x0A: "\x0c",  # FORM FEED (page break)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}


def _extend(extra: dict[int, str]) -> dict[int, str]:
    """National single shift tables repeat the default extension and add to it."""
    table = dict(DEFAULT_EXTENSION)
    table.update(extra)
    return table


# TS 23.038 Annex A.3.1 Turkish national language locking shift table.
TURKISH_LOCKING = _columns(
    "@£$¥€éùıòÇ\nĞğ\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "İABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "çabcdefghijklmno",
    "pqrstuvwxyzäöñüà",
)

# Annex A.2.1 Turkish national language single shift table.
TURKISH_SINGLE = _extend(
    {0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x67: "ğ", 0x69: "ı", 0x73: "ş"}
)

# Annex A.2.2 Spanish national language single shift table (Spanish has no locking table).
SPANISH_SINGLE = _extend(
    {
        0x09: "ç",
        0x41: "Á",
        0x49: "Í",
        0x4F: "Ó",
        0x55: "Ú",
        0x61: "á",
        0x69: "í",
        0x6F: "ó",
        0x75: "ú",
    }
)

# Annex A.3.3 Portuguese national language locking shift table.
PORTUGUESE_LOCKING = _columns(
    "@£$¥êéúíóç\nÔô\rÁá",
    "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ",
    " !\"#º%&'()*+,-./",
    "0123456789:;<=>?",
    "ÍABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÃÕÚÜ§",
    "~abcdefghijklmno",
    "pqrstuvwxyzãõ`üà",
)

# Annex A.2.3 Portuguese national language single shift table.
PORTUGUESE_SINGLE = _extend(
    {
        0x05: "ê",
        0x09: "ç",
        0x0B: "Ô",
        0x0C: "ô",
        0x0E: "Á",
        0x0F: "á",
        0x12: "Φ",
        0x13: "Γ",
        0x15: "Ω",
        0x16: "Π",
        0x17: "Ψ",
        0x18: "Σ",
        0x19: "Θ",
        0x1F: "Ê",
        0x41: "À",
        0x49: "Í",
        0x4F: "Ó",
        0x55: "Ú",
        0x5B: "Ã",
        0x5C: "Õ",
        0x61: "Â",
        0x69: "í",
        0x6F: "ó",
        0x75: "ú",
        0x7B: "ã",
        0x7C: "õ",
        0x7F: "â",
    }
)


class NationalLanguage:
    """One national language of TS 23.038 §6.2.1.2.4 with its tables (either may be absent)."""

    __slots__ = ("language_id", "locking", "name", "single")

    def __init__(
        self,
        name: str,
        language_id: int,
        locking: str | None,
        single: dict[int, str] | None,
    ) -> None:
        self.name = name
        # value of the UDH IE 0x24 / 0x25 (TS 23.040 §9.2.3.24.15/16)
        self.language_id = language_id
        self.locking = locking
        self.single = single

    def __repr__(self) -> str:
        return f"NationalLanguage({self.name!r}, {self.language_id})"


# Language identifiers: TS 23.038 §6.2.1.2.4.
NATIONAL_LANGUAGES: dict[str, NationalLanguage] = {
    lang.name: lang
    for lang in (
        NationalLanguage("turkish", 0x01, TURKISH_LOCKING, TURKISH_SINGLE),
        NationalLanguage("spanish", 0x02, None, SPANISH_SINGLE),
        NationalLanguage("portuguese", 0x03, PORTUGUESE_LOCKING, PORTUGUESE_SINGLE),
        *(NationalLanguage(*entry) for entry in INDIC_AND_URDU),  # engine/text/shift_tables.py
    )
}
