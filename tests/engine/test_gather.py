"""[engine] gather_ms (issue #17): at a steady trickle the engine's calls carry
several jobs each, and a high job still goes out at once.

Real Redis, the SMSC simulator over TCP. Jobs per read and per record call are the
engine's own counters (Pipeline.reads / read_jobs, _recorded / the batches metric):
the Redis of the tests is shared, so its commandstats are not this test's.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from connectors.simulator import SimulatorConfig
from tests.engine.harness import push, running, wait_events


def _jobs(n: int, tag: str, **extra: str) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:6]
    return [{"id": f"{tag}-{run}-{i}", "to": f"+4501{i:06d}", "text": "hi", "dlr": "0", **extra} for i in range(n)]


async def _trickle(redis: object, prefix: str, jobs: list[dict[str, str]], per_tick: int, tick_s: float) -> None:
    """Push ``jobs`` a few at a time, as a steady producer would (the pacing is the load, not a wait)."""
    for i in range(0, len(jobs), per_tick):
        await push(redis, prefix, jobs[i : i + per_tick])  # type: ignore[arg-type]
        await asyncio.sleep(tick_s)


async def test_a_steady_trickle_is_read_and_recorded_in_batches(redis_url: str, key_prefix: str) -> None:
    """~1,000 jobs/s pushed 2 at a time: with gather_ms = 20 a read and a record call
    carry several jobs each (without it, at this rate, one or two: the engine keeps up)."""
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, gather_ms=20) as (eng, _sim, _rec, redis):
        jobs = _jobs(600, "trickle")
        await _trickle(redis, key_prefix, jobs, 2, 0.002)
        await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=30)
        p = eng.pipeline
        per_read = p.read_jobs / max(1, p.reads)
        record_calls = eng.metrics.batches._value.get()  # type: ignore[attr-defined]
        per_record = p._recorded / max(1, record_calls)
        print(f"\n[gather] 600 jobs at ~1,000/s: {per_read:.1f} jobs per read ({p.reads} reads), "
              f"{per_record:.1f} per record call ({record_calls:.0f}), {p.gathers} gathers")
        assert p.gathers > 0
        assert per_read >= 5, per_read
        assert per_record >= 5, per_record


async def test_a_high_job_ends_the_gather_at_once(redis_url: str, key_prefix: str) -> None:
    """gather_ms = 200: after a read of one normal job the reader waits for more, and a
    high job pushed meanwhile reaches the carrier long before the 200 ms are up."""
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, gather_ms=200) as (eng, sim, _rec, redis):
        p = eng.pipeline
        first = _jobs(1, "first")
        await push(redis, key_prefix, first)
        await sim.wait_for(lambda: sim.stats.submits >= 1, timeout=10)
        assert p.gathers >= 1  # the reader is in its gather wait (it began right after that read)
        high = _jobs(1, "urgent", priority="high")
        pushed = time.monotonic()
        await push(redis, key_prefix, high, lane="jobs:high")
        await sim.wait_for(lambda: sim.stats.submits >= 2, timeout=10)
        waited_ms = (time.monotonic() - pushed) * 1000
        print(f"\n[gather] high job pushed during a 200 ms gather reached the carrier after {waited_ms:.0f} ms")
        assert waited_ms < 120, waited_ms
        await wait_events(redis, key_prefix, {first[0]["id"], high[0]["id"]}, final=False, timeout_s=10)


async def test_gather_ms_zero_never_waits(redis_url: str, key_prefix: str) -> None:
    """gather_ms = 0 (off): the reader and the recorder never wait for more."""
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, gather_ms=0) as (eng, _sim, _rec, redis):
        jobs = _jobs(40, "off")
        await _trickle(redis, key_prefix, jobs, 2, 0.002)
        await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=30)
        assert eng.pipeline.gathers == 0
