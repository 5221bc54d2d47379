"""`sendgate bench --duration S --rate R`: a short real soak (real Redis, simulator and
engine processes), and the in-flight tracker's bookkeeping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import redis

from bench.e2e import main
from bench.soak import Tracker, proc_rss_mb


def test_soak_reports_every_interval_and_loses_nothing(tmp_path: Path, redis_url: str) -> None:
    out = tmp_path / "soak.json"
    rc = main(["--duration", "6", "--rate", "400", "--interval", "1", "--drain-s", "20", "--redis-url", redis_url,
               "--quiet", "--json", str(out), "--mix", "gsm=0.9,long=0.05,invalid=0.05"])
    r = json.loads(out.read_text())
    assert rc == 0, r
    assert r["jobs"] == 2400
    assert r["lost"] == 0 and r["duplicates"] == 0
    assert r["dead_letters"] == r["invalid_pushed"] > 0
    assert r["final"] + r["dead_letters"] == 2400
    rows = r["intervals"]
    assert len(rows) >= 6  # one per second of load, then the drain's last row
    assert sum(x["done"] for x in rows) == 2400
    steady = rows[1:5]
    for x in rows:
        assert x["engine_rss_mb"] and all(v > 10 for v in x["engine_rss_mb"])
        assert x["redis_used_memory_mb"] > 0
        for key in ("receipt_latency_ms", "submit_latency_ms"):
            lat = x[key]
            assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    for x in steady:  # paced: about the asked rate in every full interval, with receipts
        assert 200 <= x["msgs_per_s"] <= 600, x
        assert x["engine_us_per_msg"] > 0 and x["redis_us_per_msg"] > 0
        assert x["receipts"] > 0.8 * x["done"]  # latency samples: jobs with submitted and receipt
    # the run's processes are gone and its keys deleted
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{r['prefix']}:*", count=1000)) == []
    finally:
        client.close()


def test_soak_with_shards_reads_every_shard(tmp_path: Path, redis_url: str) -> None:
    """`--shards 3`: jobs go to their shard's lane and the events and dead letters of
    every shard are counted (a soak that read shard 0 alone would report the others lost)."""
    out = tmp_path / "soak.json"
    rc = main(["--duration", "3", "--rate", "300", "--interval", "1", "--drain-s", "20", "--redis-url", redis_url,
               "--quiet", "--json", str(out), "--shards", "3", "--mix", "gsm=0.95,invalid=0.05"])
    r = json.loads(out.read_text())
    assert rc == 0, r
    assert r["settings"]["shards"] == 3
    assert r["jobs"] == 900
    assert r["lost"] == 0 and r["duplicates"] == 0
    assert r["dead_letters"] == r["invalid_pushed"] > 0
    assert r["final"] + r["dead_letters"] == 900
    assert r["foreign_events"] == 0
    client = redis.Redis.from_url(redis_url)
    try:
        assert list(client.scan_iter(match=f"{r['prefix']}:*", count=1000)) == []
    finally:
        client.close()


def test_duration_needs_a_rate() -> None:
    assert main(["--duration", "5"]) == 2
    assert main(["--duration", "5", "--rate", "10", "--interval", "0"]) == 2
    assert main(["--duration", "5", "--rate", "10", "--cluster"]) == 2  # a soak runs on one Redis


def test_tracker_keeps_only_jobs_in_flight() -> None:
    t = Tracker(4, dlr=True)
    t.pushed.update({0: 1000, 1: 1000, 2: 1000})
    t.on_event(0, b"submitted", 1010)
    t.on_event(0, b"delivered", 1030)
    t.on_event(1, b"submitted", 1020)
    t.on_event(1, b"submitted", 1025)  # sent twice
    t.on_dead(2)
    t.on_event(3, b"submitted", 1040)  # read before its XADD's reply: no push time
    t.on_event(3, b"undeliverable", 1041)
    assert t.pushed == {} and t.submitted == {1: 1020}  # only job 1 still awaits its receipt
    assert t.count_final == 2 and t.count_dead == 1
    done, receipt_lat, submit_lat = t.take_interval()
    assert (done, sorted(receipt_lat), sorted(submit_lat)) == (3, [1, 20], [10, 20])
    assert t.take_interval() == (0, [], [])
    assert sum(1 for c in t.submits if c > 1) == 1
    assert proc_rss_mb(os.getpid()) > 1
