"""Bind leases on Redis Cluster: the shape of tests/engine/test_leases.py's process
tests, with ``[redis] cluster = true`` — the cap holds across 3 engines on 3
shards, a dead holder's slot moves, and a holder stopped past its TTL is
fenced (one shard, a tagged prefix) and, fenced off for good, hands the jobs it
holds back at once."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bench.cluster import LocalCluster
from connectors.simulator import SimulatorConfig, start_simulator
from engine.keys import Keys
from privacy_hooks.masking import redact_text
from tests.cluster.fleet import fleet, until, write_config
from tests.engine.harness import push, wait_events

LEASED = {"binds": 1, "window": 8, "max_binds": 2, "lease_ttl_s": 3.0}


def _jobs(tag: str, n: int) -> list[dict[str, str]]:
    return [{"id": f"{tag}-{i}", "to": "+4520112233", "text": f"hello {i}"} for i in range(n)]


async def _gone(redis: object, key: str) -> bool:
    return not await redis.exists(key)  # type: ignore[attr-defined]


@pytest.mark.slow
async def test_three_engines_on_the_cluster_never_hold_more_binds_than_the_cap(
    redis_cluster: LocalCluster, tagged_prefix: str, tmp_path: Path
) -> None:
    # Three shards (an untagged prefix): the leases on their own slot, the jobs on the shards'.
    prefix, shards = tagged_prefix.strip("{}"), 3
    sim = await start_simulator(SimulatorConfig(dlr=True))
    config = write_config(tmp_path / "e.toml", redis_cluster.url, prefix, sim.port, carrier=LEASED,
                          redis={"shards": shards})
    try:
        async with fleet(tmp_path, redis_cluster.url, prefix) as (f, redis):
            engines = [await f.spawn(f"e{i}", config) for i in range(3)]
            await until(lambda: sim.stats.open_binds == 2, "two binds open")
            first = _jobs("lease-a", 60)
            await push(redis, prefix, first, shards=shards)
            events = await wait_events(redis, prefix, {j["id"] for j in first}, shards=shards)
            assert all(evs[-1]["event"] == "delivered" for evs in events.values())
            holders = [e for e in engines if e.events("lease_gained")]
            waiting = [e for e in engines if not e.events("lease_gained")]
            assert len(holders) == 2 and len(waiting) == 1

            holders[0].proc.send_signal(signal.SIGKILL)  # its slot goes to the third engine within the TTL
            await holders[0].proc.wait()
            await until(lambda: waiting[0].events("lease_gained"), "the third engine to take the lease over")
            await until(lambda: sim.stats.open_binds == 2, "two binds open again")
            second = _jobs("lease-b", 60)
            await push(redis, prefix, second, shards=shards)
            events = await wait_events(redis, prefix, {j["id"] for j in second}, shards=shards)
            assert all(evs[-1]["event"] == "delivered" for evs in events.values())
            assert sim.stats.max_open_binds == 2  # never more than the cap, at any moment
            assert waiting[0].events("lease_gained")[0]["token"] >= 3  # a fresh fencing token
            for e in engines:
                assert not e.errors(), e.errors()[:3]
    finally:
        await sim.close()


@pytest.mark.slow
async def test_a_holder_stopped_past_its_ttl_on_the_cluster_writes_nothing_on_its_old_bind(
    redis_cluster: LocalCluster, tagged_prefix: str, tmp_path: Path
) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    config = write_config(tmp_path / "e.toml", redis_cluster.url, tagged_prefix, sim.port, carrier=LEASED)
    keys = Keys(tagged_prefix)
    try:
        async with fleet(tmp_path, redis_cluster.url, tagged_prefix) as (f, redis):
            a = await f.spawn("a", config)
            await until(lambda: sim.stats.open_binds == 1, "a's bind")
            b = await f.spawn("b", config)
            await until(lambda: sim.stats.open_binds == 2, "b's bind")
            warm = _jobs("warm", 20)
            await push(redis, tagged_prefix, warm)
            await wait_events(redis, tagged_prefix, {j["id"] for j in warm})
            a_ports = a.local_ports(sim.port)
            old = [c for c in sim.connections if c.transport and c.transport.get_extra_info("peername")[1] in a_ports]
            assert len(old) == 1
            old_bind = old[0]
            a_slot = a.events("lease_gained")[0]["slot"]
            a_key = keys.bind_lease("sim", a_slot)
            assert await redis.exists(a_key)

            a.proc.send_signal(signal.SIGSTOP)
            before = old_bind.submits
            await until(lambda: _gone(redis, a_key), "a's lease to expire", timeout_s=10)
            jobs = _jobs("stall", 60)
            await push(redis, tagged_prefix, jobs)
            a.proc.send_signal(signal.SIGCONT)

            await until(lambda: a.events("lease_lost"), "a to see it lost its lease")
            events = await wait_events(redis, tagged_prefix, {j["id"] for j in jobs})
            assert all(evs[-1]["event"] == "delivered" for evs in events.values())
            await until(lambda: old_bind.transport is None, "a's old bind to close")
            assert old_bind.submits == before  # fenced: not one submit_sm on the old bind after the resume
            assert a.events("lease_lost")[0]["slot"] == a_slot
            assert a.events("bind_fenced")
            assert b.events("lease_lost") == []
            await until(lambda: len(a.events("lease_gained")) == 2, "a to lease a bind again")
            assert int(await redis.get(keys.lease_fence("sim"))) == 3  # a, b, a again
    finally:
        await sim.close()


@pytest.mark.slow
async def test_an_engine_fenced_off_its_carrier_hands_its_claimed_jobs_back_at_once(
    redis_cluster: LocalCluster, tagged_prefix: str, tmp_path: Path
) -> None:
    # One bind for the fleet (max_binds = 1), a slow carrier: the holder, a, has a
    # window in flight and about as many jobs claimed (marks taken) queued in its
    # pool when it is stopped past its TTL. b takes the lease over; a, on waking,
    # holds no lease and never will (b keeps it): its claimed and in-hand jobs go
    # back to the park streams (marks with them) and b sends them — each once,
    # long before any visibility timeout (300 s here) could hand them over.
    sim = await start_simulator(SimulatorConfig(dlr=True, latency_ms=400.0))
    config = write_config(tmp_path / "e.toml", redis_cluster.url, tagged_prefix, sim.port,
                          carrier={**LEASED, "max_binds": 1, "window": 8},
                          engine={"visibility_timeout_s": 300.0, "claim_interval_s": 300.0})
    keys = Keys(tagged_prefix)
    try:
        async with fleet(tmp_path, redis_cluster.url, tagged_prefix) as (f, redis):
            a = await f.spawn("a", config)
            await until(lambda: sim.stats.open_binds == 1, "a's bind")
            b = await f.spawn("b", config)
            jobs = _jobs("fenced", 120)
            await push(redis, tagged_prefix, jobs)
            # Its first window written (answers 400 ms away), its second claimed and queued.
            await until(lambda: sim.stats.submits >= 8, "a to have sent a window")
            a.proc.send_signal(signal.SIGSTOP)
            a_key = keys.bind_lease("sim", 0)
            await until(lambda: b.events("lease_gained"), "b to take the lease over", timeout_s=15)
            a.proc.send_signal(signal.SIGCONT)

            # Within a maintenance tick or two of waking (0.5 s each), not a visibility timeout.
            await until(lambda: sum(h["claimed"] for h in a.events("jobs_handed_back")), "a to hand back its claimed jobs",
                        timeout_s=5)
            assert all(h["carrier"] == "sim" for h in a.events("jobs_handed_back"))
            events = await wait_events(redis, tagged_prefix, {j["id"] for j in jobs}, timeout_s=60)
            finals = [evs[-1]["event"] for evs in events.values()]
            assert finals.count("delivered") == len(jobs), sorted(set(finals))
            # Never sent twice: one submit_sm per job at the carrier, one `submitted` per job.
            assert sim.stats.submits == len(jobs)
            assert all([e["event"] for e in evs] == ["submitted", "delivered"] for evs in events.values())
            # The lease is b's (its id as b's log shows it: redacted, as a long pid would be).
            holder = await redis.get(a_key)
            assert holder is not None and redact_text(holder.decode()).startswith(b.events("lease_gained")[0]["engine"])
            assert a.events("lease_lost") and not b.events("jobs_handed_back")
            for e in (a, b):
                assert not e.errors(), e.errors()[:3]
                text = bytes(e.stderr).decode(errors="replace")
                assert "20112233" not in text and "hello" not in text
    finally:
        await sim.close()
