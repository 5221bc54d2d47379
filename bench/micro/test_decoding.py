"""Inbound decoding micro benchmarks (engine/text/udh.py, engine/text/decoder.py).

One received part: ``parse_udh`` then ``decode_text``, as the inbound path
will run them per deliver_sm. Target (2-core dev machine): ≤ 5 µs per part
for a full 153-septet GSM-7 part and a full 67-character UCS-2 part,
recorded in ``extra_info`` rather than asserted. The ``deliver_sm`` benchmarks
measure the whole per-part step of the inbound path (``engine.inbound.read_part``:
header, text, SAR, the sender's keyed hash, the client), same target.
"""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture

from connectors.pdu import DeliverSm
from engine.inbound import read_part, sender_hasher
from engine.text.decoder import decode_text
from engine.text.segmenter import Part, SegmentOptions, segment
from engine.text.udh import parse_udh
from privacy_hooks import KeyedHasher

GSM_TEXT = (
    "Hello, your order 12345 has shipped and will arrive on Tuesday between 9 and 12. "
    "Track it at example.com/t/abc. Reply STOP to opt out. "
) * 3  # 405 septets: parts of 153, 153, 99
GSM_EXT_TEXT = GSM_TEXT.replace("(", "[").replace(".", "{", 3)
UCS2_TEXT = "Привет! Ваш заказ отправлен и прибудет во вторник. Спасибо за покупку! Ждём вас снова."


def _first_part(text: str, options: SegmentOptions, units: int) -> Part:
    part = segment(text, options, ref=42).parts[0]
    assert part.esm_class == 0x40 and len(part.text) == units
    return part


def _read(part: Part, packed: bool = False) -> str | None:
    udh = parse_udh(part.short_message, part.esm_class & 0x40)
    return decode_text(part.short_message, part.data_coding, udh, packed=packed)


def test_gsm7_part_153_septets(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 5
    part = _first_part(GSM_TEXT, SegmentOptions(), 153)
    assert benchmark(_read, part) == part.text


def test_gsm7_part_with_escapes(benchmark: BenchmarkFixture) -> None:
    part = _first_part(GSM_EXT_TEXT, SegmentOptions(), 150)  # 3 escapes: 153 septets
    assert benchmark(_read, part) == part.text


def test_gsm7_packed_part_153_septets(benchmark: BenchmarkFixture) -> None:
    part = _first_part(GSM_TEXT, SegmentOptions(packed=True), 153)
    assert benchmark(_read, part, True) == part.text


def test_ucs2_part_67_chars(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 5
    part = _first_part(UCS2_TEXT, SegmentOptions(), 67)
    assert benchmark(_read, part) == part.text


# -- the inbound path: one received deliver_sm → one part (engine/inbound.py) ------------------


def _deliver_sm(text: str, encoding: str) -> DeliverSm:
    from connectors.codec import decode, encode
    from connectors.mobile_origin import mo_parts

    part = mo_parts(text, encoding=encoding, concat="udh8", ref=42)[0]  # type: ignore[arg-type]
    pdu = DeliverSm(sequence_number=1, source_addr_ton=1, source_addr_npi=1, source_addr="4512345678",
                    destination_addr="1234", esm_class=part.esm_class, data_coding=part.data_coding,
                    short_message=part.short_message)
    decoded = decode(encode(pdu))  # as the bind's session hands it over
    assert isinstance(decoded, DeliverSm)
    return decoded


def test_deliver_sm_to_inbound_part_gsm7(benchmark: BenchmarkFixture) -> None:
    """parse_udh + decode_text + the sender's keyed hash + the part, per deliver_sm."""
    benchmark.extra_info["target_us"] = 5
    pdu = _deliver_sm(GSM_TEXT, "gsm7")
    hasher = sender_hasher(KeyedHasher(b"bench-secret"), b"bench-secret")
    numbers = {"1234": "shop"}
    part, malformed = benchmark(read_part, "acme", pdu, 1_700_000_000_000, numbers, hasher)
    assert not malformed and part.client == "shop" and (part.seq, part.total) == (1, 3)
    assert part.text == GSM_TEXT[: len(part.text)] and len(part.text) == 153


def test_deliver_sm_to_inbound_part_ucs2(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 5
    pdu = _deliver_sm(UCS2_TEXT * 2, "ucs2")
    hasher = sender_hasher(KeyedHasher(b"bench-secret"), b"bench-secret")
    part, malformed = benchmark(read_part, "acme", pdu, 1_700_000_000_000, {}, hasher)
    assert not malformed and part.text == (UCS2_TEXT * 2)[:67]


def test_deliver_sm_to_inbound_part_new_sender(benchmark: BenchmarkFixture) -> None:
    """As above with the sender's hash never cached (a sender seen for the first time): + one HMAC."""
    benchmark.extra_info["target_us"] = 5
    pdu = _deliver_sm(GSM_TEXT, "gsm7")
    hasher = sender_hasher(KeyedHasher(b"bench-secret"), b"bench-secret", cache_size=0)
    part, _malformed = benchmark(read_part, "acme", pdu, 1_700_000_000_000, {}, hasher)
    assert len(part.from_hash) == 32


def test_deliver_sm_to_inbound_part_new_sender_with_escapes(benchmark: BenchmarkFixture) -> None:
    """The worst common case: a sender seen for the first time, a full GSM-7 part with
    three escapes ({ [ € ...: one extra septet each)."""
    benchmark.extra_info["target_us"] = 5
    pdu = _deliver_sm(GSM_EXT_TEXT, "gsm7")
    hasher = sender_hasher(KeyedHasher(b"bench-secret"), b"bench-secret", cache_size=0)
    part, malformed = benchmark(read_part, "acme", pdu, 1_700_000_000_000, {}, hasher)
    assert not malformed and part.text.count("{") == 3 and len(part.text) == 150


def test_deliver_sm_from_the_wire_new_sender(benchmark: BenchmarkFixture) -> None:
    """Octets of a deliver_sm → the part: the SMPP decode (connectors.codec) as well,
    a sender seen for the first time (for information: the target is the part's step)."""
    from connectors.codec import decode, encode

    raw = encode(_deliver_sm(GSM_TEXT, "gsm7"))
    hasher = sender_hasher(KeyedHasher(b"bench-secret"), b"bench-secret", cache_size=0)

    def from_wire() -> object:
        return read_part("acme", decode(raw), 1_700_000_000_000, {}, hasher)[0]

    assert len(benchmark(from_wire).text) == 153
