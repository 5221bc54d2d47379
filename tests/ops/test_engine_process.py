"""`sendgate run` as a process: the lag gauge through a SIGSTOP, its log lines, and
`sendgate send` finding it without being told where (the run's announcement).

Each test gives its processes a private TMPDIR, so the announcement files of
other engines on this machine (other test runs) are not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig, start_simulator
from tests.engine.harness import delete_prefix, push, subprocess_env, wait_events
from tests.ops.live import samples, total, until

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    admin: str
    config: Path
    env: dict[str, str]
    stderr: bytearray

    async def metrics(self, http: aiohttp.ClientSession) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        async with http.get(self.admin + "/metrics") as resp:
            return samples(await resp.text())


@contextlib.asynccontextmanager
async def engine_process(tmp_path: Path, redis_url: str, prefix: str, *, tps: int = 0) -> AsyncIterator[Proc]:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    admin_port = _free_port()
    config = tmp_path / "sendgate.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\n'
        f'[engine]\nblock_ms = 20\ndrain_timeout_s = 3.0\n'
        f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n'
        f'[logging]\nlevel = "info"\nformat = "json"\n'
        f'[[carriers]]\nname = "sim"\nport = {sim.port}\nsystem_id = "t"\npassword = "pw"\nbinds = 2\n'
        f'window = 16\ntps = {tps}\nroutes = [""]\n',
        encoding="utf-8",
    )
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = subprocess_env(TMPDIR=str(tmp))
    for var in ("REDIS_URL", "SENDGATE_CONFIG", "SENDGATE_PREFIX", "SENDGATE_ADMIN_LISTEN"):
        env.pop(var, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "run", "-c", str(config), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    stderr = bytearray()

    async def collect() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            stderr.extend(chunk)

    reader = asyncio.ensure_future(collect())
    p = Proc(proc, f"http://127.0.0.1:{admin_port}", config, env, stderr)
    redis = Redis.from_url(redis_url)
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                assert proc.returncode is None, stderr.decode(errors="replace")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(p.admin + "/readyz") as resp:
                        return resp.status == 200
                return False

            await until(ready, "the engine to be ready", timeout_s=30)
        yield p
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await reader
        await sim.close()
        await delete_prefix(redis, prefix)
        await redis.aclose()


async def test_lag_gauge_rises_while_the_engine_is_stopped_and_falls_after(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    # 20 submits a second: the 60 jobs pushed during the pause take ~3 s after it.
    async with engine_process(tmp_path, redis_url, key_prefix, tps=20) as p, aiohttp.ClientSession() as http:
        redis = Redis.from_url(redis_url)
        try:
            before = await p.metrics(http)
            assert total(before, "sendgate_lane_lag", lane="normal") == 0
            p.proc.send_signal(signal.SIGSTOP)
            jobs = [{"id": f"stopjob-{i}", "to": "+4520112233", "text": f"hello {i}"} for i in range(60)]
            await push(redis, key_prefix, jobs)
            assert await redis.xlen(f"{key_prefix}:jobs") == 60
            p.proc.send_signal(signal.SIGCONT)

            async def risen() -> tuple[float, float] | None:
                m = await p.metrics(http)
                lag = total(m, "sendgate_lane_lag", lane="normal")
                age = total(m, "sendgate_lane_oldest_age_seconds", lane="normal")
                return (lag, age) if lag > 0 and age > 0 else None

            lag, _age = await until(risen, "the lane's backlog to show")
            assert 0 < lag <= 60

            async def fallen() -> bool:
                m = await p.metrics(http)
                return (
                    total(m, "sendgate_lane_lag", lane="normal") == 0
                    and total(m, "sendgate_lane_oldest_age_seconds", lane="normal") == 0
                )

            await until(fallen, "the lane's backlog to drain", timeout_s=30)
            await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        finally:
            await redis.aclose()
        p.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(p.proc.wait(), 20) == 0

    # One JSON line per event that matters, none per message.
    lines = [orjson.loads(line) for line in bytes(p.stderr).splitlines() if line.strip()]
    events = [line.get("event") for line in lines]
    for wanted in ("config_loaded", "engine_started", "shutdown_requested", "shutdown"):
        assert events.count(wanted) == 1, (wanted, events)
    assert events.count("bind_up") == 2
    assert {(line["carrier"], line["bind"]) for line in lines if line.get("event") == "bind_up"} == {
        ("sim", "sim-trx1"), ("sim", "sim-trx2"),
    }
    downs = [line for line in lines if line.get("event") == "bind_down"]
    assert len(downs) == 2 and all(d["reason"] == "engine stopping" for d in downs)
    info = [line for line in lines if line["level"] == "info"]
    assert len(info) < 20, info  # 60 jobs: nothing per message
    text = bytes(p.stderr).decode()
    assert "stopjob" not in text  # no job id
    assert "20112233" not in text and "hello" not in text
    config_line = next(line for line in lines if line.get("event") == "config_loaded")
    assert config_line["config"] == str(p.config) and config_line["carriers"] == ["sim"]


async def test_send_finds_the_local_run_without_being_told(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    async with engine_process(tmp_path, redis_url, key_prefix) as p:
        # The announcement: user-private, names the config and the Redis.
        tmp = Path(p.env["TMPDIR"]) / f"sendgate-{os.getuid()}"
        ann = tmp / f"run-{p.proc.pid}.json"
        assert ann.exists()
        assert tmp.stat().st_mode & 0o777 == 0o700 and ann.stat().st_mode & 0o777 == 0o600
        data = orjson.loads(ann.read_bytes())
        assert data["config"] == str(p.config) and data["redis_url"] == redis_url and data["prefix"] == key_prefix

        # `sendgate send` with no -c, no SENDGATE_CONFIG, no REDIS_URL: the local run's Redis and prefix.
        send = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "send", "--to", "+4520112233", "--text", "hi", "--id", "cli-1",
            "--wait", "20", env=p.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(send.communicate(), 60)
        assert send.returncode == 0, err.decode()
        assert f"from the local `sendgate run` pid {p.proc.pid}, config {p.config}" in err.decode()
        assert "using Redis at " in err.decode()
        assert "delivered" in out.decode()

        # SENDGATE_CONFIG comes before the announcement, and says so.
        env = {**p.env, "SENDGATE_CONFIG": str(p.config)}
        send = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "send", "--to", "+4520112233", "--text", "hi", "--id", "cli-2",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(send.communicate(), 60)
        assert send.returncode == 0, err.decode()
        assert f"(from [redis] url of SENDGATE_CONFIG={p.config})" in err.decode()

        p.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(p.proc.wait(), 20) == 0
        assert not ann.exists()  # withdrawn at stop

    # No engine any more: the same command says what it tried.
    send = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "send", "--to", "+4520112233", "--text", "hi",
        env=p.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(send.communicate(), 60)
    assert send.returncode == 2
    assert "no Redis configured" in err.decode() and "no `sendgate run` is running" in err.decode()
