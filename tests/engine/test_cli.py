"""The command line as a user runs it: real processes, real Redis, real simulator."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from engine.cli import build_parser, main
from engine.keys import Keys
from tests.engine.harness import delete_prefix, get_mark, set_mark, subprocess_env

ROOT = Path(__file__).resolve().parents[2]


_env = subprocess_env


def test_every_command_has_complete_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    help_text = parser.format_help()
    for command in ("run", "demo", "send", "cancel", "segments", "simulate", "bench", "erase", "purge", "archive",
                    "history"):
        assert command in help_text
    for command in ("run", "send", "cancel", "erase", "purge", "archive", "history"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "usage: sendgate " + command in out
    for command in ("demo", "segments", "simulate", "bench"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_run_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[carriers]]\nname = "x"\nport = "twenty"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "-c", str(cfg)],
        env=_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "carriers[0].port" in proc.stderr


async def test_send_pushes_a_validated_job(redis_url: str, key_prefix: str) -> None:
    env = _env(REDIS_URL=redis_url, SENDGATE_PREFIX=key_prefix)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "send", "--to", "+4505000001", "--text", "hi", "--id", "cli-1",
        "--ref", "r1", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    assert b"queued job cli-1" in out
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "send", "--to", "12ab", "--text", "hi",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await bad.communicate()
    assert bad.returncode == 2 and b"bad_number" in err and b"12ab" not in err
    redis = Redis.from_url(redis_url)
    try:
        entries = await redis.xrange(f"{key_prefix}:jobs")
        assert [(f[b"id"], f[b"to"], f[b"ref"]) for _i, f in entries] == [(b"cli-1", b"+4505000001", b"r1")]
    finally:
        await redis.delete(f"{key_prefix}:jobs")
        await redis.aclose()


async def test_cancel_says_whether_a_job_could_be_cancelled(redis_url: str, key_prefix: str) -> None:
    """Exit 0 for a waiting job (its mark becomes `c`), 1 with a clear line for one
    already handed to a bind (mark `s|…`) or cancelled before."""
    env = _env(REDIS_URL=redis_url, SENDGATE_PREFIX=key_prefix)
    redis = Redis.from_url(redis_url)

    async def cancel(job_id: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "cancel", job_id,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    try:
        k = Keys(key_prefix)
        await set_mark(redis, k, "sent-1", "s|1-1")
        code, _out, err = await cancel("sent-1")
        assert code == 1 and "not cancellable: already submitted" in err
        assert await get_mark(redis, k, "sent-1") == b"s|1-1"
        code, out, _err = await cancel("wait-1")
        assert code == 0 and "cancelled job wait-1" in out
        assert await get_mark(redis, k, "wait-1") == b"c"
        code, _out, err = await cancel("wait-1")
        assert code == 1 and "cancelled already" in err
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


def test_demo_runs_end_to_end_with_an_embedded_redis() -> None:
    env = _env()
    env.pop("REDIS_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "demo", "--count", "400", "--quiet", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["jobs"] == 400 and summary["lost"] == 0
    assert summary["dead_lettered"] > 0  # the demo mixes in invalid jobs on purpose
    assert summary["submitted"] + summary["dead_lettered"] == 400
    assert summary["delivered"] > 0
    assert "+4501" not in proc.stdout + proc.stderr  # no number in clear


async def test_second_signal_exits_at_once(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    from connectors.simulator import SimulatorConfig, start_simulator

    # A slow SMSC: the first SIGTERM waits for the window to drain, the second cuts it short.
    sim = await start_simulator(SimulatorConfig(dlr=False, latency_ms=5000))
    cfg = tmp_path / "e.toml"
    cfg.write_text(
        f'[redis]\nurl = "{redis_url}"\nprefix = "{key_prefix}"\n[engine]\ndrain_timeout_s = 60.0\n'
        f'[admin]\nlisten = ""\n[[carriers]]\nname = "sim"\nport = {sim.port}\nroutes = [""]\n'
    )
    redis = Redis.from_url(redis_url)
    try:
        await redis.xadd(f"{key_prefix}:jobs", {"id": "slow", "to": "+4505000002", "text": "x"})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "run", "-c", str(cfg), env=_env(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while sim.stats.submits < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert proc.returncode is None  # still draining
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 10)
        assert rc == 1 and time.monotonic() - t0 < 5
    finally:
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_send_reaches_the_embedded_redis_of_a_running_engine(tmp_path: Path) -> None:
    from connectors.simulator import SimulatorConfig, start_simulator

    sim = await start_simulator(SimulatorConfig(dlr=True))
    cfg = tmp_path / "e.toml"
    cfg.write_text(f'[admin]\nlisten = ""\n[[carriers]]\nname = "sim"\nport = {sim.port}\nroutes = [""]\n')
    env = _env()
    env.pop("REDIS_URL", None)
    engine = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "run", "-c", str(cfg), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while sim.stats.binds < 1:  # the engine is up (after its embedded Redis)
            assert time.monotonic() < deadline and engine.returncode is None
            await asyncio.sleep(0.05)
        send = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "send", "--to", "+4505000003", "--text", "hi", "--wait", "20",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(send.communicate(), 40)
        assert send.returncode == 0, err
        assert b"queued job" in out and b"delivered: parts=1" in out
    finally:
        engine.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(engine.wait(), 30) == 0
        await sim.close()
