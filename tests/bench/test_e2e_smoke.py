"""Smoke test of the end-to-end load harness (`sendgate bench`): a small real run.

Real Redis, a real simulator process and a real engine process; checks the
result's contract fields (DESIGN.md, "Command line"), that no job is lost,
that every child process is gone and the run's keys are deleted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from bench.e2e import main, parse_mix, percentiles

_CONTRACT = ("jobs", "msgs_per_s", "receipts_per_s", "submit_latency_ms", "receipt_latency_ms",
             "lost", "dead_letters", "cpu_s", "peak_rss_mb")


def _run(tmp_path: Path, redis_url: str, *extra: str) -> dict[str, object]:
    out = tmp_path / "result.json"
    rc = main(["--jobs", "300", "--redis-url", redis_url, "--quiet", "--timeout-s", "20",
               "--mix", "gsm=0.8,ucs2=0.1,long=0.05,invalid=0.05", "--json", str(out), *extra])
    result: dict[str, object] = json.loads(out.read_text())
    assert rc == 0, result
    return result


def _assert_clean(result: dict[str, object], redis_url: str) -> None:
    pids = result["pids"]
    assert isinstance(pids, dict)
    for name, pid in pids.items():
        if name != "redis":
            assert not os.path.exists(f"/proc/{pid}"), f"{name} still running"
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{result['prefix']}:*", count=1000)) == []
    finally:
        client.close()


def test_receipts_on_every_job_final(tmp_path: Path, redis_url: str) -> None:
    r = _run(tmp_path, redis_url)
    for key in _CONTRACT:
        assert key in r
    assert r["jobs"] == 300
    assert r["lost"] == 0
    assert r["duplicates"] == 0
    dead = r["dead_letters"]
    assert isinstance(dead, int) and dead > 0  # the mix has invalid jobs
    assert r["final"] == 300 - dead
    events = r["events"]
    assert isinstance(events, dict) and events["submitted"] == 300 - dead
    for key in ("submit_latency_ms", "receipt_latency_ms"):
        lat = r[key]
        assert isinstance(lat, dict) and set(lat) == {"p50", "p95", "p99", "max"}
        assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    cpu = r["cpu_s"]
    assert isinstance(cpu, dict) and {"engine-0", "simulator"} <= set(cpu)
    rss = r["peak_rss_mb"]
    assert isinstance(rss, dict) and rss["engine-0"] > 0
    assert isinstance(r["msgs_per_s"], float) and r["msgs_per_s"] > 0
    assert isinstance(r["receipts_per_s"], float) and r["receipts_per_s"] > 0
    _assert_clean(r, redis_url)


def test_no_dlr_two_workers_stock_asyncio(tmp_path: Path, redis_url: str) -> None:
    r = _run(tmp_path, redis_url, "--no-dlr", "--workers", "2", "--loop", "asyncio")
    assert r["lost"] == 0
    assert r["receipts_per_s"] == 0
    events = r["events"]
    assert isinstance(events, dict) and set(events) == {"submitted"}
    cpu = r["cpu_s"]
    assert isinstance(cpu, dict) and {"engine-0", "engine-1"} <= set(cpu)
    _assert_clean(r, redis_url)


def test_mix_and_percentiles() -> None:
    assert parse_mix("gsm=3,invalid=1") == {"gsm": 0.75, "invalid": 0.25}
    with pytest.raises(ValueError, match="--mix"):
        parse_mix("emoji=1")
    with pytest.raises(ValueError, match="--mix"):
        parse_mix("gsm=0")
    p = percentiles([float(x) for x in range(1, 101)])
    assert p == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert percentiles([]) == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}


def test_bad_arguments_exit_2() -> None:
    assert main(["--mix", "nope"]) == 2
    assert main(["--jobs", "0"]) == 2
