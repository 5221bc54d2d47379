"""Segmentation micro benchmarks (engine/text/segmenter.py, engine/text/gsm7.py).

Targets (2-core dev machine): one-part ASCII GSM-7 ≤ 2 µs, three-part GSM-7
≤ 10 µs, two-part UCS-2 ≤ 10 µs. The targets are recorded in ``extra_info``
rather than asserted, so a busy CI machine does not fail the build; compare
runs with ``make bench-compare``.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from pytest_benchmark.fixture import BenchmarkFixture

from engine.text.cli import run_jsonl
from engine.text.segmenter import SegmentOptions, describe, segment

ONE_PART = "Your verification code is 123456. It expires in 10 minutes. Do not share it."
THREE_PARTS = (
    "Hello, your order 12345 has shipped and will arrive on Tuesday between 9 and 12. "
    "Track it at example.com/t/abc. Reply STOP to opt out. "
) * 3  # 405 septets
THREE_PARTS_EXT = THREE_PARTS.replace("(", "[").replace(".", "{", 3)  # extension characters
TWO_PARTS_UCS2 = "Привет! Ваш заказ отправлен и прибудет во вторник. Спасибо за покупку! Ждём вас снова."  # 2 parts
TURKISH = "Merhaba Şükrü, siparişiniz yola çıktı ve salı günü gelecek. Teşekkürler! " * 3
ACCENTED = "Rendez-vous confirmé à 14h30 chez Dr Müller, 12 rue de Lyon. Répondez OUI/NON."
CURLY = "We’re open “24/7” – see you soon…"

SHIFT = SegmentOptions(shift_tables=("turkish", "spanish", "portuguese"))
SMART = SegmentOptions(smart_replace=True)
PACKED = SegmentOptions(packed=True)


def test_gsm_one_part_ascii(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 2
    result = benchmark(segment, ONE_PART)
    assert result.encoding == "gsm7" and len(result.parts) == 1


def test_gsm_one_part_latin(benchmark: BenchmarkFixture) -> None:
    result = benchmark(segment, ACCENTED)
    assert result.encoding == "gsm7" and len(result.parts) == 1


def test_gsm_three_parts(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 10
    result = benchmark(segment, THREE_PARTS, ref=42)
    assert result.encoding == "gsm7" and len(result.parts) == 3


def test_gsm_three_parts_extension_chars(benchmark: BenchmarkFixture) -> None:
    result = benchmark(segment, THREE_PARTS_EXT, ref=42)
    assert result.encoding == "gsm7" and len(result.parts) == 3


def test_gsm_three_parts_packed(benchmark: BenchmarkFixture) -> None:
    result = benchmark(segment, THREE_PARTS, PACKED, ref=42)
    assert len(result.parts) == 3


def test_ucs2_two_parts(benchmark: BenchmarkFixture) -> None:
    benchmark.extra_info["target_us"] = 10
    result = benchmark(segment, TWO_PARTS_UCS2, ref=7)
    assert result.encoding == "ucs2" and len(result.parts) == 2


def test_turkish_shift_table(benchmark: BenchmarkFixture) -> None:
    result = benchmark(segment, TURKISH, SHIFT, ref=7)
    assert result.encoding == "gsm7" and result.parts[0].esm_class == 0x40


def test_smart_replace(benchmark: BenchmarkFixture) -> None:
    result = benchmark(segment, CURLY, SMART)
    assert result.encoding == "gsm7" and result.replaced


def test_describe(benchmark: BenchmarkFixture) -> None:
    result = benchmark(describe, THREE_PARTS)
    assert result["segments"] == 3


def test_jsonl_20k_lines(benchmark: BenchmarkFixture) -> None:
    """``sendgate segments --jsonl`` core: 20,000 mixed lines per round (lines/s in extra_info)."""
    texts = [ONE_PART, THREE_PARTS, TWO_PARTS_UCS2, ACCENTED, "short"] * 4000
    lines = [orjson.dumps(t) + b"\n" for t in texts]

    def run() -> int:
        return run_jsonl(lines, io.BytesIO(), SegmentOptions())

    count = benchmark.pedantic(run, rounds=3, iterations=1)  # type: ignore[no-untyped-call]
    assert count == len(lines)
    stats: Any = benchmark.stats
    benchmark.extra_info["lines"] = len(lines)
    benchmark.extra_info["lines_per_s"] = round(len(lines) / stats.stats.mean)
