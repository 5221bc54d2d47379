from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.job import DEAD_LETTER_CODES, JobError, normalise_number, parse_job

NOW = 1_800_000_000.0


def f(**kw: str) -> dict[bytes, bytes]:
    base = {"id": "j1", "to": "+4512345678", "text": "hello"}
    base.update(kw)
    return {k.encode(): v.encode() for k, v in base.items() if v is not None}


def test_minimal_job() -> None:
    job = parse_job(f(), NOW)
    assert (job.id, job.to, job.text, job.dlr, job.encoding) == ("j1", "4512345678", "hello", True, "auto")


def test_all_optional_fields() -> None:
    job = parse_job(
        f(**{"from": "ACME", "carrier": "c1", "dlr": "0", "encoding": "ucs2", "expires_at": str(NOW + 60),
             "validity": "3600", "callback": "https://example.org/cb", "ref": "r", "client": "t",
             "kind": "marketing", "priority": "bulk", "send_at": str(NOW + 5)}),
        NOW,
    )
    assert job.sender == "ACME" and job.carrier == "c1" and job.dlr is False
    assert job.encoding == "ucs2" and job.validity == 3600 and job.priority == "bulk"
    assert job.send_at == NOW + 5 and job.kind == "marketing"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"id": ""}, "missing_field"),
        ({"to": ""}, "missing_field"),
        ({"to": "12ab"}, "bad_number"),
        ({"to": "+0123456789"}, "bad_number"),
        ({"to": "1234567890123456"}, "bad_number"),
        ({"text": ""}, "empty_text"),
        ({"from": "ThisIsTooLongSender"}, "bad_sender"),
        ({"from": "12"}, "bad_sender"),
        ({"encoding": "latin1"}, "bad_encoding"),
        ({"expires_at": str(NOW - 1)}, "expired"),
        ({"callback": "ftp://x/y"}, "invalid"),
        ({"dlr": "yes"}, "invalid"),
        ({"priority": "urgent"}, "invalid"),
        ({"id": "x" * 65}, "invalid"),
    ],
)
def test_bad_jobs_get_dead_letter_codes(fields: dict[str, str], code: str) -> None:
    with pytest.raises(JobError) as info:
        parse_job(f(**fields), NOW)
    assert info.value.code == code
    assert info.value.code in DEAD_LETTER_CODES
    # Never the number or the text in the reason.
    assert "4512345678" not in info.value.reason and "hello" not in info.value.reason


def test_missing_text_and_malformed_utf8() -> None:
    fields = f()
    del fields[b"text"]
    with pytest.raises(JobError) as info:
        parse_job(fields, NOW)
    assert info.value.code == "missing_field"
    fields[b"text"] = b"caf\xc3"
    with pytest.raises(JobError) as info:
        parse_job(fields, NOW)
    assert info.value.code == "invalid" and "UTF-8" in info.value.reason


@pytest.mark.parametrize(("dlr", "expected"), [("1", True), ("0", False), ("", True)])
def test_a_job_of_four_fields_with_dlr(dlr: str, expected: bool) -> None:
    # the fast path of a job with `dlr` as its only optional field
    job = parse_job(f(dlr=dlr), NOW)
    assert (job.id, job.to, job.text, job.dlr) == ("j1", "4512345678", "hello", expected)
    other = parse_job(f(ref="r1"), NOW)  # four fields, not `dlr`: the general path
    assert (other.ref, other.dlr) == ("r1", True)


@pytest.mark.parametrize("name", [b"id", b"to"])
def test_a_required_field_not_utf8_is_invalid(name: bytes) -> None:
    fields = f()
    fields[name] = b"\xff\xfe"
    with pytest.raises(JobError) as info:
        parse_job(fields, NOW)
    assert info.value.code == "invalid"
    assert info.value.reason == f"field {name.decode()!r} is not valid UTF-8"


@pytest.mark.parametrize("name", [b"id", b"ref", b"client", b"callback"])
def test_a_field_holding_a_nul_is_invalid(name: bytes) -> None:
    fields = f()
    fields[name] = b"a\x00b"
    with pytest.raises(JobError) as info:
        parse_job(fields, NOW)
    assert info.value.code == "invalid"
    assert info.value.reason == f"field {name.decode()!r} holds a NUL character"


def test_normalise_number() -> None:
    assert normalise_number("+4512345678") == "4512345678"
    assert normalise_number(" 4512345678 ") == "4512345678"
    assert normalise_number("45 12") is None


def _normalise_by_regex(raw: str) -> str | None:
    """normalise_number's general path alone (the rule: docs/contract.md §2.3)."""
    raw = raw.strip()
    if re.fullmatch(r"\+?[1-9][0-9]{6,14}", raw):
        return raw[1:] if raw[0] == "+" else raw
    return None


_NUMBERS = st.one_of(
    st.text(alphabet="+0123456789", max_size=18),
    st.text(alphabet="+0123456789 \t\n-٣²𝟗a", max_size=18),
    st.from_regex(r"\A\s?\+?[0-9]{5,17}\s?\Z"),
)


@settings(max_examples=500, deadline=None)
@given(_NUMBERS)
@example("+45123456²")  # digits to isdigit, not to the regex
@example("4512345٣78")
@example("4512345𝟗78")
@example("+04512345678")
@example("++4512345678")
@example(" 4512345678")
@example("4512345678\n")
@example("123456")
@example("1234567")
@example("123456789012345")
@example("1234567890123456")
def test_normalise_number_fast_path_answers_as_the_regex(raw: str) -> None:
    """The fast path for plain ASCII digits (and parse_job's inline copy of it) gives
    what the regex gives, for every input: non-ASCII digits, spaces, a leading 0 or
    a second "+" go to the general path and are refused or stripped as before."""
    want = _normalise_by_regex(raw)
    assert normalise_number(raw) == want
    fields = {b"id": b"j1", b"to": raw.encode(), b"text": b"hi"}
    if not raw:
        return  # missing_field, before the number is looked at
    if want is None:
        with pytest.raises(JobError) as info:
            parse_job(fields, NOW)
        assert info.value.code == "bad_number"
    else:
        assert parse_job(fields, NOW).to == want


def test_fields_are_read_back_into_the_same_job() -> None:
    from engine.job import Job

    job = Job(
        id="j9", to="+4512345678", text="hi", sender="ACME", carrier="c1", dlr=False, encoding="gsm7",
        expires_at=int(NOW) + 60, validity=600, callback="https://example.org/cb", ref="r", client="t",
        kind="marketing", priority="bulk", send_at=int(NOW) + 5,
    )
    back = parse_job(job.fields(), NOW)
    assert back == Job(**{**{f: getattr(job, f) for f in Job.__struct_fields__}, "to": "4512345678"})
    assert isinstance(back.expires_at, int) and isinstance(back.send_at, int)


def test_fields_leave_defaults_out_and_defaults_match_the_contract() -> None:
    from engine.job import Job

    job = Job(id="j1", to="+4512345678", text="hello")
    assert job.fields() == {b"id": b"j1", b"to": b"+4512345678", b"text": b"hello"}
    # docs/contract.md §2.3, "Job stream": the defaults a producer gets without saying them.
    assert (job.kind, job.priority, job.encoding, job.dlr, job.expires_at, job.send_at) == (
        "transactional", "normal", "auto", True, 0, 0
    )
    assert parse_job(job.fields(), NOW) == Job(id="j1", to="4512345678", text="hello")


def test_seconds_fields_are_whole_seconds() -> None:
    job = parse_job(f(expires_at=f"{NOW + 60.9}", send_at=f"{NOW + 5.5}"), NOW)
    assert (job.expires_at, job.send_at) == (int(NOW) + 60, int(NOW) + 5)
    with pytest.raises(JobError) as info:
        parse_job(f(send_at="inf"), NOW)
    assert info.value.code == "invalid"


@pytest.mark.parametrize(
    "callback",
    ["http://127.0.0.1:8080/cb", "http://localhost/cb", "https://169.254.169.254/latest", "http://[::1]/x",
     "http://10.0.0.7/hook", "http://metadata.internal/x", "http://224.0.0.1/x"],
)
def test_a_callback_to_a_private_address_is_refused_unless_allowed(callback: str) -> None:
    with pytest.raises(JobError) as info:
        parse_job(f(callback=callback), NOW)
    assert info.value.code == "invalid"
    assert "allow_private" in info.value.reason and callback not in info.value.reason
    assert parse_job(f(callback=callback), NOW, allow_private_callbacks=True).callback == callback
