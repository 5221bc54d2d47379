"""Crash, shutdown and Redis-loss recovery: no job lost, none sent twice.

The engine under test runs as a real subprocess (``sendgate run``) where a
signal is part of the test; the simulator and a recording proxy run in the
test process on 127.0.0.1, so every submit_sm on the wire is counted.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig, start_simulator
from engine.app import Engine
from tests.engine.harness import (
    RecordingProxy,
    delete_prefix,
    make_settings,
    push,
    subprocess_env,
    wait_events,
)

ROOT = Path(__file__).resolve().parents[2]


def _jobs(n: int) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    # Unique destination per job: the proxy's record tells how often each was sent.
    return [{"id": f"{run}-{i}", "to": f"+4502{i:06d}", "text": f"msg {i}", "dlr": "0"} for i in range(n)]


def _write_config(path: Path, redis_url: str, prefix: str, port: int, **engine: object) -> Path:
    lines = [
        "[redis]", f'url = "{redis_url}"', f'prefix = "{prefix}"',
        "[engine]", "batch_size = 100", "block_ms = 20", "drain_timeout_s = 10.0",
        *(f"{k} = {v!r}".replace("'", '"') for k, v in engine.items()),
        "[admin]", 'listen = ""',
        "[logging]", 'level = "info"', 'format = "text"',
        "[[carriers]]", 'name = "sim"', f"port = {port}", 'system_id = "test"', 'password = "pw"',
        "binds = 2", "window = 16", 'routes = [""]',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def _spawn(config: Path) -> asyncio.subprocess.Process:
    env = subprocess_env()
    env.pop("REDIS_URL", None)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "run", "-c", str(config),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )


async def _until(predicate: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def _kill_clients(redis: Redis, name: str) -> int:
    """CLIENT KILL every connection named ``name``; returns how many went."""
    killed = 0
    for c in await redis.client_list():
        if c.get("name") == name:
            killed += int(await redis.execute_command("CLIENT", "KILL", "ID", c["id"]) in (True, b"OK", "OK", 1))
    return killed


async def _cleanup(redis: Redis, prefix: str) -> None:
    await delete_prefix(redis, prefix)
    await redis.aclose()


def _sent_per_destination(proxy: RecordingProxy) -> Counter[str]:
    return Counter(p.destination_addr for p in proxy.submits)


async def test_sigkill_mid_batch_then_another_consumer_reclaims(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=False, latency_ms=50))
    proxy = await RecordingProxy(sim.port).start()
    redis = Redis.from_url(redis_url)
    jobs = _jobs(600)
    try:
        await push(redis, key_prefix, jobs)
        cfg = _write_config(tmp_path / "a.toml", redis_url, key_prefix, proxy.port, consumer="victim")
        victim = await _spawn(cfg)
        await _until(lambda: len(proxy.submits) >= 100)
        victim.kill()  # SIGKILL: no cleanup, windows full, batches unrecorded
        await victim.wait()

        settings = make_settings(
            redis_url, key_prefix, proxy.port, consumer="rescuer", visibility_timeout_s=1.0, claim_interval_s=0.3
        )
        engine = Engine(settings, redis_url)
        await engine.start()
        try:
            events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=60)
        finally:
            await engine.close()
        # Exactly one outcome per job; never sent twice.
        outcomes = Counter()
        for job in jobs:
            names = [e["event"] for e in events[job["id"]]]
            assert len(names) == 1, (job["id"], names)
            outcomes[names[0]] += 1
        assert set(outcomes) <= {"submitted", "unknown"}
        sent = _sent_per_destination(proxy)
        assert max(sent.values()) == 1
        assert outcomes["submitted"] + outcomes["unknown"] == len(jobs)
        # `unknown` means written, or claimed to be written next: the claim is
        # taken for at most two windows' worth (window 16 x 2 binds).
        unknown_never_written = [
            j for j in jobs if events[j["id"]][0]["event"] == "unknown" and sent[j["to"].lstrip("+")] == 0
        ]
        assert len(unknown_never_written) <= 2 * 16 * 2
        assert outcomes["submitted"] > len(jobs) // 2
        pending = await redis.xpending(f"{key_prefix}:jobs", "sendgate")
        assert pending["pending"] == 0
    finally:
        await proxy.close()
        await sim.close()
        await _cleanup(redis, key_prefix)


async def test_sigterm_drains_without_loss_or_duplicate(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=False, latency_ms=20))
    proxy = await RecordingProxy(sim.port).start()
    redis = Redis.from_url(redis_url)
    jobs = _jobs(800)
    try:
        await push(redis, key_prefix, jobs)
        cfg = _write_config(tmp_path / "a.toml", redis_url, key_prefix, proxy.port, consumer="first")
        first = await _spawn(cfg)
        await _until(lambda: len(proxy.submits) >= 100)
        first.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(first.wait(), 30)
        assert first.stderr is not None
        log = (await first.stderr.read()).decode()
        assert rc == 0, log[-2000:]
        assert "4502" not in log  # no number in clear in the engine's log
        # Whatever the first one had in hand is recorded; the rest waits in the stream.
        pending = await redis.xpending(f"{key_prefix}:jobs", "sendgate")
        assert pending["pending"] == 0

        cfg2 = _write_config(tmp_path / "b.toml", redis_url, key_prefix, proxy.port, consumer="second")
        second = await _spawn(cfg2)
        try:
            events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=60)
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 30) == 0
        for job in jobs:
            assert [e["event"] for e in events[job["id"]]] == ["submitted"]
        sent = _sent_per_destination(proxy)
        assert len(sent) == len(jobs) and max(sent.values()) == 1
    finally:
        await proxy.close()
        await sim.close()
        await _cleanup(redis, key_prefix)


@pytest.mark.parametrize("receipts", [False, True], ids=["submits", "receipts"])
async def test_redis_connection_killed_mid_run(redis_url: str, key_prefix: str, receipts: bool) -> None:
    """Every connection of the engine's Redis client killed, twice, while jobs
    (and, with receipts, their receipts: the store packs that call itself) flow:
    nothing lost, nothing sent twice, one final event per job."""
    states = {"dlr_states": {"DELIVRD": 0.8, "UNDELIV": 0.2}} if receipts else {}
    sim = await start_simulator(SimulatorConfig(dlr=receipts, latency_ms=5, **states))
    proxy = await RecordingProxy(sim.port).start()
    redis = Redis.from_url(redis_url)
    jobs = [dict(j, dlr="1" if receipts else "0") for j in _jobs(1500)]
    settings = make_settings(redis_url, key_prefix, proxy.port, consumer=f"victim-{key_prefix}")
    engine = Engine(settings, redis_url)

    def progress() -> int:
        return sim.stats.dlr_resps if receipts else len(proxy.submits)

    try:
        await engine.start()
        await push(redis, key_prefix, jobs[:500])
        await _until(lambda: progress() >= 200)
        for round_ in range(2):
            assert await _kill_clients(redis, f"sendgate-victim-{key_prefix}") >= 1
            await push(redis, key_prefix, jobs[500:1000] if round_ == 0 else jobs[1000:])
            await _until(lambda: progress() >= 700)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=receipts, timeout_s=60)
        for job in jobs:
            names = [e["event"] for e in events[job["id"]]]
            if receipts:
                assert names[0] == "submitted" and len(names) == 2, names
                assert names[1] in ("delivered", "undeliverable"), names
            else:
                assert names == ["submitted"], names
        sent = _sent_per_destination(proxy)
        assert len(sent) == len(jobs) and max(sent.values()) == 1
        assert engine.metrics.redis_errors._value.get() >= 1  # type: ignore[attr-defined]
    finally:
        await engine.close()
        await proxy.close()
        await sim.close()
        await _cleanup(redis, key_prefix)
