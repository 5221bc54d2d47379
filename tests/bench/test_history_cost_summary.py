"""`sendgate bench --history-cost`'s summary: pair ratios by throughput and by the
box's CPU per job (a pure function of the runs' results)."""
from __future__ import annotations

from typing import Any

from bench.e2e import box_cpu_us_per_job, format_history_cost, history_cost_summary


def _run(history: str, msgs_per_s: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {
        "settings": {"history": history}, "msgs_per_s": msgs_per_s, "cpu_us_per_job": cpu,
        "lost": 0, "duplicates": 0, "redis_server": "redis 7",
        **({"archive": {"archiver_cpu_us_per_event": 4.0, "catch_up_s": 1.5}} if history != "off" else {}),
    }


def test_box_cpu_counts_every_measured_process() -> None:
    run = _run("pg", 1.0, {"engine-0": 25.0, "redis": 18.5, "simulator": 5.0, "bench": 8.0, "archiver-0": 0.5})
    assert box_cpu_us_per_job(run) == 57.0


def test_pairs_by_throughput_and_by_box_cpu_in_abba_order() -> None:
    runs = [
        _run("pg", 30_000, {"engine-0": 25.0, "redis": 20.0, "archiver-0": 5.0}),   # pair 1: on first
        _run("off", 25_000, {"engine-0": 25.0, "redis": 20.0}),
        _run("off", 20_000, {"engine-0": 30.0, "redis": 20.0}),                     # pair 2: off first
        _run("pg", 24_000, {"engine-0": 30.0, "redis": 20.0}),
    ]
    s = history_cost_summary(runs)
    assert s["pair_ratios_on_off"] == [1.2, 1.2]
    # off ÷ on: the archiver's 5 µs in pair 1 shows as 45/50, pair 2 costs nothing
    assert s["pair_box_cpu_ratios_off_on"] == [0.9, 1.0]
    assert s["pair_box_cpu_ratio_median"] == 0.95
    assert s["archiver_on"]["box_cpu_us_per_job"] == [50.0, 50.0]
    assert s["archiver_off"]["box_cpu_us_per_job"] == [45.0, 50.0]
    text = format_history_cost(s)
    assert "by box CPU per job [0.9, 1.0] (median 0.95)" in text
