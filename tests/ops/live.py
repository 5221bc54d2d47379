"""A running engine with its admin server, the simulator and a real Redis, for the ops tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from connectors.simulator import Simulator, SimulatorConfig, start_simulator
from engine.app import Engine
from tests.engine.harness import delete_prefix, make_settings

#: The bind password of the live engine: it must never appear on /status, / or /metrics.
SECRET_PASSWORD = "Zq7#xK2w"  # 8 characters: the SMPP maximum


@dataclass
class Live:
    engine: Engine
    sim: Simulator
    redis: Redis
    http: aiohttp.ClientSession
    base: str

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.base + path) as resp:
            return resp.status, await resp.text()

    async def status(self) -> dict[str, Any]:
        async with self.http.get(self.base + "/status") as resp:
            assert resp.status == 200
            data: dict[str, Any] = await resp.json()
            return data

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        _, text = await self.get("/metrics")
        return samples(text)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text exposition."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= set(ls))


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 20.0) -> Any:
    """Poll ``check`` (every 100 ms) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@contextlib.asynccontextmanager
async def live_engine(
    redis_url: str, prefix: str, sim_config: SimulatorConfig | None = None, *, carrier: dict[str, Any] | None = None,
    sample_interval_s: float = 0.5, **engine: Any,
) -> AsyncIterator[Live]:
    sim = await start_simulator(sim_config or SimulatorConfig(dlr=True))
    settings = make_settings(
        redis_url, prefix, sim.port, carrier={"password": SECRET_PASSWORD, **(carrier or {})}, **engine,
    )
    settings = msgspec.structs.replace(settings, admin=msgspec.structs.replace(settings.admin, listen="127.0.0.1:0"))
    eng = Engine(settings, redis_url)
    eng.sampler.interval_s = sample_interval_s
    eng.sampler.slow_every = 1
    redis = Redis.from_url(redis_url)
    await eng.start()
    assert eng.admin is not None
    http = aiohttp.ClientSession()
    try:
        yield Live(eng, sim, redis, http, f"http://127.0.0.1:{eng.admin.port}")
    finally:
        await http.close()
        await eng.close()
        await sim.close()
        await delete_prefix(redis, prefix)
        await redis.aclose()
