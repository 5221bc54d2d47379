"""Inbound decoding micro benchmarks (engine/text/udh.py, engine/text/decoder.py).

One received part: ``parse_udh`` then ``decode_text``, as the inbound path
will run them per deliver_sm. Target (2-core dev machine): ≤ 5 µs per part
for a full 153-septet GSM-7 part and a full 67-character UCS-2 part,
recorded in ``extra_info`` rather than asserted.
"""

from __future__ import annotations

from pytest_benchmark.fixture import BenchmarkFixture

from engine.text.decoder import decode_text
from engine.text.segmenter import Part, SegmentOptions, segment
from engine.text.udh import parse_udh

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
