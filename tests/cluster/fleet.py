"""Engines as real processes (``sendgate run``) against the private Redis Cluster.

The shape of tests/engine/test_leases.py's fleet, with ``[redis] cluster =
true``: each engine is a child process reading its own TOML file, its log on
stderr (JSON lines) collected; the simulator runs in the test process on
127.0.0.1. Everything started here is stopped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psutil
from redis.asyncio import Redis

from engine.redis_client import cluster_from_url
from tests.engine.harness import delete_prefix, subprocess_env

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


async def until(probe: Callable[[], Awaitable[T | None] | T | None], what: str, timeout_s: float = 30.0) -> T:
    """Poll ``probe`` until it returns something true; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path, url: str, prefix: str, port: int, *, redis: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None, carrier: dict[str, Any] | None = None, admin_listen: str = "",
    history: dict[str, Any] | None = None,
) -> Path:
    """A ``sendgate run`` config for the cluster at ``url`` and one simulator carrier at ``port``."""
    sections: list[tuple[str, dict[str, Any]]] = [
        ("[redis]", {"url": url, "prefix": prefix, "cluster": True, **(redis or {})}),
        ("[engine]", {"block_ms": 20, "drain_timeout_s": 2.0, "batch_size": 100, **(engine or {})}),
        ("[admin]", {"listen": admin_listen, "sample_interval_s": 0.5}),
        ("[logging]", {"level": "info", "format": "json"}),
        ("[privacy]", {"hash_secret": "cluster-test-secret"}),
    ]
    if history is not None:
        sections.append(("[history]", history))
    sections.append(("[[carriers]]", {
        "name": "sim", "port": port, "system_id": "t", "password": "pw", "binds": 1, "window": 16,
        "reconnect_min_s": 0.1, "routes": [""], **(carrier or {}),
    }))
    lines: list[str] = []
    for head, values in sections:
        lines.append(head)
        lines.extend(f"{k} = {_toml(v)}" for k, v in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def child_env(tmp_path: Path) -> dict[str, str]:
    env = subprocess_env(TMPDIR=str(tmp_path))
    for var in ("REDIS_URL", "SENDGATE_CONFIG", "SENDGATE_PREFIX", "SENDGATE_ADMIN_LISTEN", "SENDGATE_REDIS_CLUSTER"):
        env.pop(var, None)
    return env


@dataclass
class EngineProc:
    """One ``sendgate run`` child and its collected stderr."""

    name: str
    proc: asyncio.subprocess.Process
    stderr: bytearray
    reader: asyncio.Future[None]

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in bytes(self.stderr).splitlines() if line.startswith(b"{")]
        return [line for line in lines if line.get("event") == name]

    def errors(self) -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in bytes(self.stderr).splitlines() if line.startswith(b"{")]
        return [line for line in lines if line.get("level") in ("error", "ERROR", "critical", "CRITICAL")]

    def local_ports(self, port: int) -> set[int]:
        """This process's ends of its TCP connections to ``port``."""
        conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        return {c.laddr.port for c in conns if c.raddr and c.raddr.port == port}


class Fleet:
    """Spawns engines from config files; stops every one of them on leaving."""

    def __init__(self, tmp_path: Path, url: str, prefix: str) -> None:
        self.tmp_path = tmp_path
        self.url = url
        self.prefix = prefix
        self.engines: list[EngineProc] = []
        self.env = child_env(tmp_path)

    async def spawn(self, name: str, config: Path) -> EngineProc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "run", "-c", str(config), env=self.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT),
        )
        stderr = bytearray()

        async def collect() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                stderr.extend(chunk)

        e = EngineProc(name, proc, stderr, asyncio.ensure_future(collect()))
        self.engines.append(e)
        await until(lambda: e.events("engine_started") or (proc.returncode is not None and _fail(e)),
                    f"engine {name} to start")
        return e

    async def cli(self, config: Path, *args: str, timeout_s: float = 60.0) -> tuple[int, str, str]:
        """Run ``sendgate <args> -c config``; (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", *args, "-c", str(config), env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT),
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        return int(proc.returncode or 0), out.decode(errors="replace"), err.decode(errors="replace")

    async def stop(self) -> None:
        for e in self.engines:
            if e.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    e.proc.send_signal(signal.SIGCONT)
                    e.proc.send_signal(signal.SIGTERM)
        for e in self.engines:
            try:
                await asyncio.wait_for(e.proc.wait(), 20)
            except TimeoutError:
                e.proc.kill()
                await e.proc.wait()
            await e.reader


def _fail(e: EngineProc) -> bool:
    raise AssertionError(f"engine {e.name} exited: " + e.stderr.decode(errors="replace")[-2000:])


@contextlib.asynccontextmanager
async def fleet(tmp_path: Path, url: str, prefix: str) -> AsyncIterator[tuple[Fleet, Redis]]:
    """A :class:`Fleet` and a cluster client; on leaving, the engines stopped and the prefix's keys deleted."""
    f = Fleet(tmp_path, url, prefix)
    redis = cluster_from_url(url)
    try:
        yield f, redis
    finally:
        await f.stop()
        await delete_prefix(redis, prefix)
        await redis.aclose()
