"""The send job: flat stream fields in, a validated typed `Job` out.

Producers in any language `XADD` flat string fields (docs/contract.md §2.3, "Job
stream"). `parse_job` turns one entry's fields into a `Job` or raises
`JobError` whose ``code`` is one of the stable dead-letter codes and whose
``reason`` is for people — and never contains the number or the text.

One schema for both sides: `Job` is also what a Python producer builds
(``engine.producer.SendJob`` is this class), `Job.fields` is the inverse of
`parse_job`, and the producer validates by running `parse_job` on those
fields — so it accepts exactly what the engine will.

Validation is a handful of dict lookups and precompiled regexes per job:
this runs for every message on the hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import msgspec

from dlr.address_policy import callback_host_refusal

__all__ = [
    "DEAD_LETTER_CODES",
    "Job",
    "JobError",
    "normalise_number",
    "parse_job",
]

DEAD_LETTER_CODES = frozenset(
    {
        "missing_field",
        "bad_number",
        "bad_sender",
        "empty_text",
        "bad_encoding",
        "unknown_carrier",
        "too_many_parts",
        "expired",
        "suppressed",
        "client_closed",
        "invalid",
    }
)


class JobError(ValueError):
    """A job that cannot be sent; ``code`` is a dead-letter code (docs/contract.md §2.6)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class Job(msgspec.Struct, kw_only=True, gc=False):  # str/int/bool fields only: no cycle to collect
    """One send job, the fields of docs/contract.md §2.3, "Job fields", typed.

    From `parse_job` it is validated and ``to`` is digits only (E.164 without
    ``+``); a producer builds one with the number as it has it and pushes
    `fields`. ``sender`` is the ``from`` field; ``expires_at`` and
    ``send_at`` are unix seconds (0: none).
    """

    id: str
    to: str
    text: str
    sender: str = ""  # the `from` field
    carrier: str = ""
    dlr: bool = True
    encoding: str = "auto"
    expires_at: int = 0
    validity: int = 0
    callback: str = ""
    ref: str = ""
    client: str = ""
    kind: str = "transactional"
    priority: str = "normal"
    send_at: int = 0

    def fields(self) -> dict[bytes, bytes]:
        """The flat stream fields of this job; defaults and empty values are left out.

        `parse_job` reads them back into an equal job (``to`` normalised).
        """
        out = {b"id": self.id.encode(), b"to": self.to.encode(), b"text": self.text.encode()}
        for name, attr in _FIELD_ATTRS:
            value = getattr(self, attr)
            if value == _DEFAULTS[attr] or value == "":
                continue
            if value is True or value is False:
                out[name] = b"1" if value else b"0"
            else:
                out[name] = str(value).encode()
        return out


_NUMBER_RE = re.compile(r"\+?[1-9][0-9]{6,14}")
_SHORT_CODE_RE = re.compile(r"[0-9]{3,8}")
_ALNUM_SENDER_RE = re.compile(r"[A-Za-z0-9 .&@'_!#$%*+=?-]{1,11}")
_ENCODINGS = frozenset({"auto", "gsm7", "ucs2"})
_KINDS = frozenset({"transactional", "marketing"})
_PRIORITIES = frozenset({"high", "normal", "bulk"})
_MAX_ID = 64
_MAX_TEXT_BYTES = 64 * 1024


def normalise_number(raw: str) -> str | None:
    """E.164 digits without ``+``, or None when ``raw`` is not a phone number."""
    # The common case without the regex: 7-15 ASCII digits, the first not 0, after an
    # optional "+", nothing to strip (for ASCII, isdigit is exactly [0-9]): what the
    # general path below returns for it (tests/engine/test_job.py), ~600 instructions a
    # call fewer (bench/RESULTS.md, "Job path").
    digits = raw[1:] if raw[:1] == "+" else raw
    if 7 <= len(digits) <= 15 and digits.isdigit() and digits.isascii() and digits[0] != "0":
        return digits
    raw = raw.strip()
    if _NUMBER_RE.fullmatch(raw):
        return raw[1:] if raw[0] == "+" else raw
    return None


def _text(fields: Mapping[bytes, bytes], name: bytes) -> str | None:
    v = fields.get(name)
    if v is None:
        return None
    try:
        text = v.decode("utf-8")
    except UnicodeDecodeError:
        raise JobError("invalid", f"field {name.decode()!r} is not valid UTF-8") from None
    if "\x00" in text:  # no PostgreSQL text holds one: the history store could not archive it
        raise JobError("invalid", f"field {name.decode()!r} holds a NUL character")
    return text


def _number_field(fields: Mapping[bytes, bytes], name: bytes) -> int:
    """A field in whole seconds (0 when absent or empty); a fraction is cut off."""
    v = fields.get(name)
    if v is None or v == b"":
        return 0
    try:
        return int(float(v))
    except (ValueError, OverflowError):
        raise JobError("invalid", f"field {name.decode()!r} must be a number (seconds)") from None


def _check_sender(sender: str) -> None:
    if not sender:
        return
    if sender.isdigit() or sender[0] == "+":
        if _NUMBER_RE.fullmatch(sender) or _SHORT_CODE_RE.fullmatch(sender):
            return
        raise JobError("bad_sender", "numeric sender must be a short code (3-8 digits) or an E.164 number")
    if _ALNUM_SENDER_RE.fullmatch(sender):
        return
    raise JobError("bad_sender", "alphanumeric sender must be 1-11 characters of A-Z a-z 0-9 and common punctuation")


class _PrivateCallback(JobError):
    """The callback's host is private; raised after ``job.callback`` is set (allowed or not)."""


def _check_callback(url: str) -> str:
    """The URL's host; `JobError` unless an http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise JobError("invalid", "callback is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JobError("invalid", "callback must be an http or https URL with a host")
    return parts.hostname


def parse_job(fields: Mapping[bytes, bytes], now_s: float, *, allow_private_callbacks: bool = False) -> Job:
    """Validate one jobs-stream entry. Raises `JobError` with a dead-letter code.

    A ``callback`` whose host is a literal loopback, link-local, private or
    multicast IP, or a name that can only be local (``localhost``,
    ``*.internal``…), is refused (code ``invalid``) unless
    ``allow_private_callbacks`` (``[webhooks] allow_private``); names are checked
    again after DNS when the webhook connects (dlr/address_policy.py).
    """
    # The required fields inline (this runs for every message): the same checks,
    # codes and reasons as `_text` + `normalise_number`, in the same order.
    get = fields.get
    raw = get(b"id")
    try:
        job_id = raw.decode() if raw else ""  # (UTF-8, strict: decode() without the name costs less)
    except UnicodeDecodeError:
        raise JobError("invalid", "field 'id' is not valid UTF-8") from None
    if not job_id:
        raise JobError("missing_field", "field 'id' is required")
    if "\x00" in job_id:
        raise JobError("invalid", "field 'id' holds a NUL character")
    if len(job_id) > _MAX_ID:
        raise JobError("invalid", f"field 'id' is longer than {_MAX_ID} characters")
    raw = get(b"to")
    try:
        raw_to = raw.decode() if raw else ""
    except UnicodeDecodeError:
        raise JobError("invalid", "field 'to' is not valid UTF-8") from None
    if not raw_to:
        raise JobError("missing_field", "field 'to' is required")
    # normalise_number's common case inline (a call fewer), else normalise_number
    to = raw_to[1:] if raw_to[0] == "+" else raw_to
    if not (7 <= len(to) <= 15 and to.isdigit() and to.isascii() and to[0] != "0"):
        general = normalise_number(raw_to)
        if general is None:
            raise JobError("bad_number", "field 'to' is not an E.164 number (7-15 digits, optional +)")
        to = general
    raw_text = get(b"text")
    if raw_text is None:
        raise JobError("missing_field", "field 'text' is required")
    if len(raw_text) > _MAX_TEXT_BYTES:
        raise JobError("too_many_parts", f"text is {len(raw_text)} bytes, over the {_MAX_TEXT_BYTES} byte limit")
    try:
        text = raw_text.decode()
    except UnicodeDecodeError as err:
        raise JobError("invalid", f"field 'text' is not valid UTF-8 (bad byte at offset {err.start})") from None
    if not text:
        raise JobError("empty_text", "field 'text' is empty")

    job = Job(id=job_id, to=to, text=text)
    n = len(fields)
    if n == 3:  # the common minimal job: nothing more to check
        return job
    if n == 4:  # the minimal job with `dlr` (what most producers push): no set of names to build
        dlr = get(b"dlr")
        if dlr is not None:
            if dlr == b"1" or dlr == b"":
                return job
            if dlr == b"0":
                job.dlr = False
                return job
    for name in fields.keys() - _REQUIRED:
        handler = _OPTIONAL.get(name)
        if handler is not None:  # unknown fields are carried along, not refused
            try:
                handler(job, fields, name, now_s)
            except _PrivateCallback:
                if not allow_private_callbacks:
                    raise
    return job


def _opt_from(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    sender = _text(fields, name)
    if sender:
        _check_sender(sender)
        job.sender = sender[1:] if sender[0] == "+" else sender


def _opt_carrier(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    job.carrier = _text(fields, name) or ""


def _opt_dlr(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    dlr = fields[name]
    if dlr == b"":
        return
    if dlr not in (b"0", b"1"):
        raise JobError("invalid", "field 'dlr' must be 0 or 1")
    job.dlr = dlr == b"1"


def _opt_encoding(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    encoding = _text(fields, name)
    if encoding:
        if encoding not in _ENCODINGS:
            raise JobError("bad_encoding", "field 'encoding' must be auto, gsm7 or ucs2")
        job.encoding = encoding


def _opt_expires_at(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    job.expires_at = _number_field(fields, name)
    if job.expires_at and job.expires_at <= now_s:
        raise JobError("expired", "expires_at has passed before the job could be submitted")


def _opt_validity(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    validity = _number_field(fields, name)
    if validity:
        if not 0 < validity <= 99 * 86400:
            raise JobError("invalid", "field 'validity' must be 1..8553600 seconds")
        job.validity = validity


def _opt_callback(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    callback = _text(fields, name)
    if callback:
        host = _check_callback(callback)
        job.callback = callback
        refusal = callback_host_refusal(host)  # cached per host
        if refusal is not None:
            raise _PrivateCallback("invalid", f"{refusal}; set [webhooks] allow_private = true to allow it")


def _opt_ref(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    job.ref = _text(fields, name) or ""


def _opt_client(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    job.client = _text(fields, name) or ""


def _opt_kind(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    kind = _text(fields, name)
    if kind:
        if kind not in _KINDS:
            raise JobError("invalid", "field 'kind' must be transactional or marketing")
        job.kind = kind


def _opt_priority(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    priority = _text(fields, name)
    if priority:
        if priority not in _PRIORITIES:
            raise JobError("invalid", "field 'priority' must be high, normal or bulk")
        job.priority = priority


def _opt_send_at(job: Job, fields: Mapping[bytes, bytes], name: bytes, now_s: float) -> None:
    job.send_at = _number_field(fields, name)


_REQUIRED = frozenset({b"id", b"to", b"text"})
_OPTIONAL: dict[bytes, Callable[[Job, Mapping[bytes, bytes], bytes, float], None]] = {
    b"from": _opt_from,
    b"carrier": _opt_carrier,
    b"dlr": _opt_dlr,
    b"encoding": _opt_encoding,
    b"expires_at": _opt_expires_at,
    b"validity": _opt_validity,
    b"callback": _opt_callback,
    b"ref": _opt_ref,
    b"client": _opt_client,
    b"kind": _opt_kind,
    b"priority": _opt_priority,
    b"send_at": _opt_send_at,
}
# Job.fields: each optional stream field and its attribute, and the defaults it leaves out.
_FIELD_ATTRS: tuple[tuple[bytes, str], ...] = tuple(
    (name, "sender" if name == b"from" else name.decode()) for name in _OPTIONAL
)
_DEFAULTS: dict[str, object] = dict(
    zip(Job.__struct_fields__[-len(Job.__struct_defaults__):], Job.__struct_defaults__, strict=True)
)
