"""End to end with the archiver inside the engine (and in its child process): jobs → SMPP
(real TCP, simulator) → events → the history store, every event exactly once (SQLite and
PostgreSQL)."""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig, start_simulator
from engine.app import Engine
from engine.config import settings_from_mapping
from engine.history import open_store
from engine.history.archiver import Archiver
from engine.history.process import ArchiverProcess
from tests.engine.harness import delete_prefix, push, wait_events
from tests.history.pg_server import PgServer
from tests.history.test_archiver import until

pytestmark = pytest.mark.slow


async def test_every_event_of_an_engine_run_reaches_the_store_once(
    redis_url: str, key_prefix: str, history_url: str
) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    settings = settings_from_mapping({
        "redis": {"url": redis_url, "prefix": key_prefix},
        "engine": {"batch_size": 200, "block_ms": 20},
        "admin": {"listen": ""},
        "history": {"url": history_url, "batch_size": 250, "block_ms": 20, "archiver": "inline"},
        "carriers": [{"name": "sim", "port": sim.port, "system_id": "t", "password": "pw", "routes": [""], "window": 32}],
    }, env={})
    engine = Engine(settings, redis_url)
    redis = Redis.from_url(redis_url)
    run = uuid.uuid4().hex[:8]
    jobs = [{"id": f"{run}-{i}", "to": f"+4501{i:06d}", "text": f"Hi {i}", "ref": f"ref-{i % 7}"} for i in range(400)]
    await engine.start()
    try:
        assert engine.archiver is not None
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        archiver = engine.archiver

        async def archived() -> bool:
            return (await archiver.lag()).entries == 0 and archiver.archived >= sum(map(len, events.values()))

        await until(archived, what="every event archived")
        _ok, details = await engine._ready()
        assert details["archive"] == {"lag": 0, "behind_s": 0.0}
    finally:
        await engine.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
    assert archiver.archived == sum(map(len, events.values()))  # nothing read twice in one run
    store = open_store(history_url)
    try:
        for job in jobs:
            row = await store.get(job["id"])
            assert row is not None, job["id"]
            stream = {e["event"]: int(e["ts"]) for e in events[job["id"]]}
            assert row.events == stream
            assert (row.final_state, row.ref, row.carrier) == ("delivered", job["ref"], "sim")
            assert row.message_ids == events[job["id"]][0]["message_ids"] != ""
        total = 0
        for k in range(7):
            total += len(await store.find(ref=f"ref-{k}", limit=1000))
        assert total == len(jobs)  # one row per job, no second row for a receipt
    finally:
        await store.close()


async def test_database_down_while_the_engine_sends_then_everything_lands(
    redis_url: str, key_prefix: str, pg_server: PgServer, pg_dsn: str
) -> None:
    import asyncio

    if not pg_server.private:
        pytest.skip("needs a private PostgreSQL to stop and start (initdb/pg_ctl not usable here)")
    sim = await start_simulator(SimulatorConfig(dlr=True))
    settings = settings_from_mapping({
        "redis": {"url": redis_url, "prefix": key_prefix},
        "engine": {"batch_size": 200, "block_ms": 20},
        "admin": {"listen": ""},
        "history": {"url": pg_dsn, "batch_size": 250, "block_ms": 20, "archiver": "inline"},
        "carriers": [{"name": "sim", "port": sim.port, "system_id": "t", "password": "pw", "routes": [""], "window": 32}],
    }, env={})
    engine = Engine(settings, redis_url)
    redis = Redis.from_url(redis_url)
    run = uuid.uuid4().hex[:8]
    jobs = [{"id": f"{run}-{i}", "to": f"+4502{i:06d}", "text": f"Hi {i}"} for i in range(600)]
    await engine.start()
    try:
        archiver = engine.archiver
        assert archiver is not None
        await push(redis, key_prefix, jobs[:200])
        first = await wait_events(redis, key_prefix, {j["id"] for j in jobs[:200]})
        await until(lambda: _archived(archiver, first), what="first jobs archived")
        await asyncio.to_thread(pg_server.stop)
        try:
            await push(redis, key_prefix, jobs[200:])
            events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})  # sending goes on
            await until(lambda: _failing(archiver), what="the archiver sees the database down")
            lag = await archiver.lag()
            _ok, details = await engine._ready()
            assert lag.entries > 0 and details["archive"]["lag"] == lag.entries
        finally:
            await asyncio.to_thread(pg_server.start)
        await until(lambda: _archived(archiver, events), timeout=60, what="everything archived after the restart")
    finally:
        await engine.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
    store = open_store(pg_dsn)
    try:
        for job in jobs:
            row = await store.get(job["id"])
            assert row is not None, job["id"]
            assert row.events == {e["event"]: int(e["ts"]) for e in events[job["id"]]}
    finally:
        await store.close()


async def _archived(archiver: Archiver, events: dict[str, list[dict[str, str]]]) -> bool:
    return (await archiver.lag()).entries == 0 and archiver.archived >= sum(map(len, events.values()))


async def _failing(archiver: Archiver) -> bool:
    return archiver.write_failures >= 2


async def test_the_archiver_process_archives_once_survives_a_kill_and_stops_with_the_engine(
    redis_url: str, key_prefix: str, pg_dsn: str
) -> None:
    """PostgreSQL: by default the archiver runs as the engine's child process."""
    sim = await start_simulator(SimulatorConfig(dlr=True))
    settings = settings_from_mapping({
        "redis": {"url": redis_url, "prefix": key_prefix},
        "engine": {"batch_size": 200, "block_ms": 20},
        "admin": {"listen": ""},
        "history": {"url": pg_dsn, "batch_size": 250, "block_ms": 20, "settle_ms": 100},
        "carriers": [{"name": "sim", "port": sim.port, "system_id": "t", "password": "pw", "routes": [""], "window": 32}],
    }, env={})
    engine = Engine(settings, redis_url)
    redis = Redis.from_url(redis_url)
    run = uuid.uuid4().hex[:8]
    jobs = [{"id": f"{run}-{i}", "to": f"+4503{i:06d}", "text": f"Hi {i}"} for i in range(600)]
    await engine.start()
    child = engine.archiver_process
    try:
        assert child is not None and child.alive() and child.pid != os.getpid()
        archiver = engine.archiver
        assert archiver is not None
        await push(redis, key_prefix, jobs[:300])
        first = await wait_events(redis, key_prefix, {j["id"] for j in jobs[:300]})

        async def caught_up() -> bool:
            return (await archiver.lag()).entries == 0

        await until(caught_up, what="the child archived the first jobs")
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # mid-run: whatever it had read and not acked stays pending
        await push(redis, key_prefix, jobs[300:])
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        await until(lambda: _restarted(child, pid), what="the child restarted")
        await until(caught_up, timeout=60, what="everything archived by the new child")
        _ok, details = await engine._ready()
        assert details["archive"]["lag"] == 0
        assert archiver.archived == 0  # nothing archived in the engine's own process
    finally:
        await engine.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
    assert child is not None and not child.alive()  # stopped with the engine
    assert len(first) == 300
    store = open_store(pg_dsn)
    try:
        for job in jobs:
            row = await store.get(job["id"])
            assert row is not None, job["id"]
            assert row.events == {e["event"]: int(e["ts"]) for e in events[job["id"]]}
            assert row.final_state == "delivered"
    finally:
        await store.close()


async def _restarted(child: ArchiverProcess, old_pid: int) -> bool:
    return child.starts >= 2 and child.alive() and child.pid != old_pid
