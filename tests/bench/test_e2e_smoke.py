"""Smoke test of the end-to-end load harness (`sendgate bench`): a small real run.

Real Redis, a real simulator process and a real engine process; checks the
result's contract fields (docs/contract.md §6, "Command line"), that no job is lost,
that every child process is gone and the run's keys are deleted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import redis

from bench.e2e import (
    bench_reader_redis_us,
    cpu_per_msg,
    engine_counters,
    main,
    parse_mix,
    percentiles,
    proc_cpu_s,
    redis_command_costs,
    redis_cpu_s,
    slow_calls,
)

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
    sim = r["simulator"]
    assert isinstance(sim, dict)
    assert sim["window_violations"] == 0 and sim["protocol_errors"] == 0
    assert sim["receipts"] >= 300 - dead
    # CPU per message of the engines (/proc) and of Redis (INFO cpu): present and
    # plausible (a job costs more than nothing, and far less than a second)
    for key in ("engine_us_per_msg", "redis_us_per_msg"):
        value = r[key]
        assert isinstance(value, float) and 0 < value < 1_000_000, (key, value)
    # the bench's own reads: some Redis time (it read every event), and part of redis_us_per_msg
    reader = r["bench_reader_redis_us_per_msg"]
    assert isinstance(reader, float) and reader > 0
    engine_cpu = r["cpu_us_per_job"]
    assert isinstance(engine_cpu, dict) and abs(r["engine_us_per_msg"] - engine_cpu["engine-0"]) <= 0.2
    if "redis" in engine_cpu:  # a local Redis: its /proc figure and INFO cpu agree within a tick per job
        assert abs(r["redis_us_per_msg"] - engine_cpu["redis"]) <= 1e6 * 0.05 / 300 + 1
    version, allocator = r["redis_server"].split(", ")  # which Redis the figures are of
    assert version.count(".") == 2 and allocator not in ("", "?")
    _assert_clean(r, redis_url)


def test_no_dlr_two_workers_three_carriers_stock_asyncio(tmp_path: Path, redis_url: str) -> None:
    r = _run(tmp_path, redis_url, "--no-dlr", "--workers", "2", "--carriers", "3", "--loop", "asyncio")
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


def test_slow_calls_name_scripts_by_sha() -> None:
    from engine.scripts import Script

    record_sha = Script("record").sha  # what EVALSHA calls: the file with its generated header
    entries = [
        {"start_time": 100, "duration": 2000, "command": f"EVALSHA {record_sha} 3 a b c sendgate x".encode()},
        {"start_time": 100, "duration": 4000, "command": f"EVALSHA {record_sha} 3 a b c sendgate y".encode()},
        {"start_time": 100, "duration": 1000, "command": b"EVALSHA 0123456789abcdef 2 k1 k2 apply 1"},
        {"start_time": 100, "duration": 900, "command": b"XREADGROUP GROUP g c COUNT 10"},
        {"start_time": 10, "duration": 99000, "command": b"KEYS *"},  # before the run: ignored
    ]
    rows = slow_calls(entries, since_ts=50)
    assert rows[0] == {"call": "engine/record.lua sendgate", "count": 2, "total_ms": 6.0, "mean_ms": 3.0, "max_ms": 4.0}
    assert {r["call"] for r in rows} == {"engine/record.lua sendgate", "0123456789ab apply", "xreadgroup"}


def test_redis_command_costs_are_deltas() -> None:
    before = {"cmdstat_set": {"calls": 10, "usec": 100}, "cmdstat_get": {"calls": 5, "usec": 5}}
    after = {"cmdstat_set": {"calls": 30, "usec": 300}, "cmdstat_get": {"calls": 5, "usec": 5},
             "cmdstat_evalsha": {"calls": 2, "usec": 1000}}
    rows = redis_command_costs(before, after, jobs=10)
    assert [r["command"] for r in rows] == ["evalsha", "set"]
    assert rows[1] == {"command": "set", "calls": 20, "usec": 200, "usec_per_call": 10.0, "usec_per_job": 20.0}


def test_bench_reader_redis_us_counts_only_the_bench_commands_over_the_window() -> None:
    before = {"cmdstat_xread": {"calls": 5, "usec": 1_000}, "cmdstat_evalsha": {"calls": 1, "usec": 50}}
    after = {"cmdstat_xread": {"calls": 9, "usec": 3_000}, "cmdstat_xlen": {"calls": 2, "usec": 20},
             "cmdstat_info": {"calls": 3, "usec": 180}, "cmdstat_evalsha": {"calls": 9, "usec": 90_000},
             "cmdstat_xreadgroup": {"calls": 4, "usec": 7_000}}
    # (3000 - 1000) + 20 + 180 usec over 100 messages; the engines' EVALSHA and XREADGROUP are not the bench's
    assert bench_reader_redis_us(before, after, 100) == 22.0
    assert bench_reader_redis_us({}, {}, 0) == 0.0


def test_cpu_per_msg_sums_engines_and_divides_by_messages() -> None:
    cpu = {"engine-0": 1.5, "engine-1": 0.5, "simulator": 9.0, "redis": 7.0, "bench": 3.0}
    assert cpu_per_msg(cpu, 0.8, 40_000) == {"engine_us_per_msg": 50.0, "redis_us_per_msg": 20.0}
    assert redis_cpu_s({"used_cpu_sys": "1.25", "used_cpu_user": 2.5, "used_cpu_sys_children": 9.0}) == 3.75


def test_proc_cpu_s_counts_below_a_clock_tick() -> None:
    """A process's CPU in nanoseconds, not /proc's 10 ms ticks: 300 jobs' engine CPU
    (~7 ms) once read as 0 and engine_us_per_msg as 0."""
    pid = os.getpid()
    assert abs(proc_cpu_s(pid) - time.process_time()) < 0.005
    before, start = proc_cpu_s(pid), time.process_time()
    while time.process_time() - start < 0.003:  # burn 3 ms of CPU
        pass
    spent = proc_cpu_s(pid) - before
    assert 0.002 < spent < 0.009, spent  # ticks would give 0.0 or 0.01
    assert proc_cpu_s(2**22 + 12345) == 0.0  # no such process


def test_engine_counters_sum_labels_and_workers() -> None:
    w0 = (b"# HELP sendgate_submits_total x\n"
          b'sendgate_submits_total{carrier="sim",result="ok"} 10.0\n'
          b'sendgate_submits_total{carrier="sim",result="retry"} 2.0\n'
          b"sendgate_submits_created 1.7e9\n"
          b"sendgate_batches_total 3.0\n")
    w1 = b'sendgate_submits_total{carrier="sim",result="ok"} 5.0\n'
    assert engine_counters([w0, w1]) == {"batches": 3, "submits": 17}


def test_receipt_cost_alternates_receipts_on_and_off(tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cost.json"
    rc = main(["--jobs", "200", "--redis-url", redis_url, "--quiet", "--timeout-s", "20",
               "--receipt-cost", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    runs = report["runs"]
    assert [r["settings"]["dlr"] for r in runs] == [True, False]
    on, off = report["summary"]["receipts_on"], report["summary"]["receipts_off"]
    assert runs[0]["events"].get("delivered", 0) > 0 and "delivered" not in runs[1]["events"]
    assert on["lost"] == off["lost"] == 0 and on["duplicates"] == off["duplicates"] == 0
    assert on["median_msgs_per_s"] == round(runs[0]["msgs_per_s"])
    expected = round(100 * (1 - on["median_msgs_per_s"] / off["median_msgs_per_s"]), 1)
    assert report["summary"]["drop_pct"] == expected
    # One pair: the same two runs, from their unrounded rates (the medians above are
    # rounded to whole msgs/s first, so the two may differ in the last digit).
    pair = round(100 * (1 - runs[0]["msgs_per_s"] / runs[1]["msgs_per_s"]), 1)
    assert report["summary"]["pair_drops_pct"] == [pair]
    assert abs(pair - expected) <= 0.1 + 1e-9
    cpu_on, cpu_off = sum(runs[0]["cpu_us_per_job"].values()), sum(runs[1]["cpu_us_per_job"].values())
    assert report["summary"]["cpu_drop_median_pct"] == round(100 * (1 - cpu_off / cpu_on), 1)
    assert report["summary"]["redis_server"] == [runs[0]["redis_server"]]
    printed = capsys.readouterr().out
    assert "drop" in printed and runs[0]["redis_server"] in printed
    for r in runs:
        _assert_clean(r, redis_url)


def test_prefill_writes_earlier_records_and_cleans_them(tmp_path: Path, redis_url: str) -> None:
    r = _run(tmp_path, redis_url, "--prefill", "1000")
    settings = r["settings"]
    assert isinstance(settings, dict) and settings["prefill"] == 1000
    assert r["lost"] == 0 and r["foreign_events"] == 0  # the prefill publishes no events
    _assert_clean(r, redis_url)  # the prefilled keys share the run's prefix and go with it


def test_prefill_records_look_like_the_engines(redis_url: str) -> None:
    import asyncio

    from redis.asyncio import Redis

    from bench.e2e import _prefill
    from engine.keys import Keys
    from tests.engine.harness import get_mark

    async def go() -> None:
        client = Redis.from_url(redis_url)
        prefix = "sgbench-prefill-test"
        try:
            await _prefill(client, prefix, "r1", 12)
            # a set: SCAN may return a key twice (while Redis resizes its table)
            keys = {k async for k in client.scan_iter(match=f"{prefix}:*")}
            # what a finished job leaves: its idempotency mark (a field of a bucket), nothing else
            assert all(key.startswith(f"{prefix}:marks:".encode()) for key in keys)
            assert await get_mark(client, Keys(prefix), "r1-pf11") == b"1700000000000000011"
            ttls = [await client.ttl(key) for key in keys if not key.endswith(b":legacy")]
            assert all(168 * 3600 < t <= 2 * 168 * 3600 + 300 for t in ttls), ttls
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    asyncio.run(go())


def test_receipt_hold_s_reaches_the_engines_config_only_when_set(tmp_path: Path) -> None:
    from bench.e2e import BenchOptions, engine_toml
    from engine.config import load_settings

    def hold(o: BenchOptions) -> float:
        path = tmp_path / "engine.toml"
        path.write_text(engine_toml(o, "redis://127.0.0.1:1/0", "p", 2775, 0, 9999))
        return load_settings(path, env={}).engine.receipt_hold_s

    default = hold(BenchOptions())
    assert default == 5.0  # the engine's own default: nothing written
    assert hold(BenchOptions(receipt_hold_s=600.0)) == 600.0


def test_the_measured_window_is_announced_to_a_profiler(tmp_path: Path, redis_url: str) -> None:
    import asyncio

    from bench.e2e import LIVE_CHILDREN, BenchOptions, run_bench

    edges: list[tuple[str, int]] = []
    client = redis.Redis.from_url(redis_url)

    def on_window(edge: str) -> None:  # what bench/redis_profile.py does: toggle a profiler
        edges.append((edge, int(client.info("stats")["total_commands_processed"])))

    o = BenchOptions(jobs=200, redis_url=redis_url, quiet=True, timeout_s=20.0, receipt_hold_s=30.0,
                     mix=parse_mix("gsm=1"))
    try:
        r = asyncio.run(run_bench(o, redis_url, tmp_path, on_window=on_window))
    finally:
        for children in LIVE_CHILDREN:
            children.stop_all(5.0)
        LIVE_CHILDREN.clear()
        client.close()
    assert [e for e, _ in edges] == ["start", "end"]
    assert r["lost"] == 0 and r["final"] == 200
    # the engines' whole run falls between the two calls: their scripts, reads and acks
    assert edges[1][1] - edges[0][1] > 20


def test_history_private_pg_archives_the_run_then_stops_and_removes_its_server(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--history private-pg``: the bench starts a durable PostgreSQL of its own with the
    guide's settings, the engine's archiver writes the run's jobs into it, and at the end
    the server is stopped and its folder removed."""
    import asyncio

    import asyncpg

    import bench.e2e as e2e
    from bench.pg_server import find_pg_bin

    if find_pg_bin() is None:
        pytest.skip("initdb/pg_ctl not found")
    seen: dict[str, object] = {}
    start = e2e.start_private_pg

    def recording_start(quiet: bool = False) -> tuple[object, str]:
        server, dsn = start(quiet)
        assert server is not None, dsn
        destroy = server.destroy

        def destroy_after_counting() -> None:
            async def count() -> tuple[int, list[str]]:
                conn = await asyncpg.connect(dsn)
                try:
                    rows = await conn.fetchval("SELECT count(*) FROM messages")
                    settings = [await conn.fetchval(f"SHOW {name}") for name in
                                ("synchronous_commit", "fsync", "full_page_writes", "wal_compression", "max_wal_size")]
                    return rows, settings
                finally:
                    await conn.close()

            seen["rows"], seen["settings"] = asyncio.run(count())
            destroy()

        server.destroy = destroy_after_counting  # type: ignore[method-assign]
        seen["folder"], seen["port"] = server.folder, server.port
        return server, dsn

    monkeypatch.setattr(e2e, "start_private_pg", recording_start)
    r = _run(tmp_path, redis_url, "--history", "private-pg")
    assert r["lost"] == 0
    archive = r["archive"]
    assert isinstance(archive, dict) and archive["events"] > 0
    assert seen["rows"] == 300 - int(r["dead_letters"])  # type: ignore[call-overload]  # each job sent: one row
    assert seen["settings"] == ["on", "on", "on", "lz4", "16GB"]
    folder = seen["folder"]
    assert isinstance(folder, Path) and not folder.exists()
    import socket

    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", int(seen["port"]))) != 0  # type: ignore[call-overload]
