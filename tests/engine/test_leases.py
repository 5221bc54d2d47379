"""Bind leases (``[[carriers]] max_binds``): the decision logic alone, the Redis
scripts against a real Redis, and engines as real processes against the
simulator over TCP: the carrier never sees more binds than the cap, a dead
holder's lease goes to another engine, a stalled holder is fenced."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psutil
import pytest
from redis.asyncio import Redis

from connectors.simulator import Simulator, SimulatorConfig, start_simulator
from engine.config import ConfigError, settings_from_mapping
from engine.keys import Keys
from engine.leases import LeaseBook, LeaseManager
from tests.engine.harness import delete_prefix, push, subprocess_env, wait_events

T = TypeVar("T")


# -- LeaseBook: sans-IO -------------------------------------------------------


def test_a_lease_runs_from_when_its_call_was_sent_minus_the_margin() -> None:
    book = LeaseBook("c", ttl_s=9.0, margin_s=1.0)
    assert book.renew_every_s == 3.0 and book.ttl_ms == 9000
    lease = book.granted("P:b:c:0", "e1", 7, sent_at=100.0)
    assert lease.value == "e1:7" and lease.token == 7 and lease.deadline == 108.0
    assert book.expired(107.9) == []
    assert book.renewed("P:b:c:0", sent_at=103.0) == 111.0
    # A late reply to an older call never moves the deadline back.
    assert book.renewed("P:b:c:0", sent_at=101.0) == 111.0
    assert book.expired(111.0) == [lease]
    assert book.renewed("gone", 1.0) is None


def test_orphans_are_leases_the_pool_gave_up() -> None:
    book = LeaseBook("c", ttl_s=3.0)
    assert book.margin_s == pytest.approx(0.6)
    a = book.granted("P:b:c:0", "e", 1, 0.0)
    b = book.granted("P:b:c:1", "e", 2, 0.0)
    assert book.orphans(["P:b:c:1"]) == [a]
    assert book.drop("P:b:c:0") is a and book.drop("P:b:c:0") is None
    assert list(book.held.values()) == [b]
    with pytest.raises(ValueError):
        LeaseBook("c", ttl_s=1.0, margin_s=1.0)


def test_config_validates_the_lease_keys() -> None:
    def carrier(**extra: Any) -> dict[str, Any]:
        return {"carriers": [{"name": "a", "routes": [""], **extra}]}

    ok = settings_from_mapping(carrier(max_binds=2), env={}).carriers[0]
    assert ok.max_binds == 2 and ok.lease_ttl_s == 10.0
    assert settings_from_mapping(carrier(), env={}).carriers[0].max_binds == 0  # no cap
    with pytest.raises(ConfigError, match=r"carriers\[0\]\.max_binds"):
        settings_from_mapping(carrier(max_binds=-1), env={})
    with pytest.raises(ConfigError, match=r"carriers\[0\]\.lease_ttl_s"):
        settings_from_mapping(carrier(lease_ttl_s=0.5), env={})


# -- the manager against a real Redis ------------------------------------------


@dataclass
class LeasePoolStub:
    """What a leased BindPool shows the manager (the pool's own test is the process test below)."""

    want: int
    held: dict[str, float] = field(default_factory=dict)
    revoked: list[tuple[str, str]] = field(default_factory=list)

    def leases_wanted(self) -> int:
        return self.want - len(self.held)

    def leases(self) -> list[str]:
        return list(self.held)

    def lease_granted(self, lease: str, deadline: float) -> None:
        self.held[lease] = deadline

    def lease_renewed(self, lease: str, deadline: float) -> None:
        self.held[lease] = deadline

    def lease_revoked(self, lease: str, reason: str) -> None:
        self.held.pop(lease, None)
        self.revoked.append((lease, reason))


async def test_managers_share_the_slots_and_a_stale_holder_loses_its_lease(redis_url: str, key_prefix: str) -> None:
    redis = Redis.from_url(redis_url)
    keys = Keys(key_prefix)
    now = [0.0]
    try:
        p1, p2 = LeasePoolStub(want=2), LeasePoolStub(want=2)
        m1 = LeaseManager(redis, keys, "e1", {"c": (p1, 3, 5.0)}, clock=lambda: now[0])
        m2 = LeaseManager(redis, keys, "e2", {"c": (p2, 3, 5.0)}, clock=lambda: now[0])
        await m1.tick()
        await m2.tick()
        assert sorted(p1.held) == [keys.bind_lease("c", 0), keys.bind_lease("c", 1)]
        assert list(p2.held) == [keys.bind_lease("c", 2)]  # the cap: 3 across both
        assert await redis.get(keys.bind_lease("c", 2)) == b"e2:3"  # fencing tokens 1, 2, 3
        assert 0 < await redis.pttl(keys.bind_lease("c", 0)) <= 5000
        # e1 stalls past its TTL; the keys expire; e2 takes one over.
        await redis.delete(keys.bind_lease("c", 0), keys.bind_lease("c", 1))
        await m2.tick()
        assert sorted(p2.held) == [keys.bind_lease("c", 0), keys.bind_lease("c", 2)]
        assert await redis.get(keys.bind_lease("c", 0)) == b"e2:4"
        # e1 wakes after its local deadline: both revoked before any renewal, e2's key untouched.
        now[0] = 10.0
        await m1.tick()
        assert sorted(lease for lease, _ in p1.revoked) == [keys.bind_lease("c", 0), keys.bind_lease("c", 1)]
        assert all(reason == "not renewed before its deadline" for _, reason in p1.revoked)
        assert await redis.get(keys.bind_lease("c", 0)) == b"e2:4"
        assert list(p1.held) == [keys.bind_lease("c", 1)]  # the free slot, with a new token
        assert await redis.get(keys.bind_lease("c", 1)) == b"e1:5"
        # A renewal that finds its key taken over revokes.
        await redis.set(keys.bind_lease("c", 1), "e9:99")
        now[0] = 11.0
        await m1.tick()
        assert p1.revoked[-1] == (keys.bind_lease("c", 1), "taken over or expired in Redis")
        await m2.close()
        assert await redis.exists(keys.bind_lease("c", 0), keys.bind_lease("c", 2)) == 0
        assert await redis.get(keys.bind_lease("c", 1)) == b"e9:99"  # not ours: not deleted
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


# -- engines as processes ------------------------------------------------------


async def _until(probe: Callable[[], Awaitable[T | None] | T | None], what: str, timeout_s: float = 30.0) -> T:
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


@dataclass
class _Engine:
    proc: asyncio.subprocess.Process
    stderr: bytearray
    reader: asyncio.Future[None]

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in bytes(self.stderr).splitlines() if line.startswith(b"{")]
        return [line for line in lines if line.get("event") == name]

    def local_ports(self, port: int) -> set[int]:
        """This process's ends of its TCP connections to ``port`` (the simulator)."""
        conns = psutil.Process(self.proc.pid).net_connections(kind="tcp")
        return {c.laddr.port for c in conns if c.raddr and c.raddr.port == port}


@contextlib.asynccontextmanager
async def _fleet(tmp_path: Path, redis_url: str, prefix: str, max_binds: int) -> AsyncIterator[
    tuple[Simulator, Callable[[str], Awaitable[_Engine]]]
]:
    sim = await start_simulator(SimulatorConfig(dlr=True))
    engines: list[_Engine] = []
    config = tmp_path / "sendgate.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\nprefix = "{prefix}"\n'
        f'[engine]\nblock_ms = 20\ndrain_timeout_s = 2.0\n'
        f'[admin]\nlisten = ""\n[logging]\nlevel = "info"\nformat = "json"\n'
        f'[[carriers]]\nname = "sim"\nport = {sim.port}\nsystem_id = "t"\npassword = "pw"\nbinds = 1\n'
        f'window = 8\nmax_binds = {max_binds}\nlease_ttl_s = 3.0\nreconnect_min_s = 0.1\nroutes = [""]\n',
        encoding="utf-8",
    )
    env = subprocess_env()
    for var in ("REDIS_URL", "SENDGATE_CONFIG", "SENDGATE_PREFIX", "SENDGATE_ADMIN_LISTEN"):
        env.pop(var, None)

    async def spawn(name: str) -> _Engine:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.cli", "run", "-c", str(config), env={**env, "TMPDIR": str(tmp_path)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        stderr = bytearray()

        async def collect() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                stderr.extend(chunk)

        e = _Engine(proc, stderr, asyncio.ensure_future(collect()))
        engines.append(e)
        await _until(lambda: e.events("engine_started") or (proc.returncode is not None and _fail(stderr)),
                     f"engine {name} to start")
        return e

    redis = Redis.from_url(redis_url)
    try:
        yield sim, spawn
    finally:
        for e in engines:
            if e.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    e.proc.send_signal(signal.SIGCONT)
                    e.proc.send_signal(signal.SIGTERM)
        for e in engines:
            try:
                await asyncio.wait_for(e.proc.wait(), 20)
            except TimeoutError:
                e.proc.kill()
                await e.proc.wait()
            await e.reader
        await sim.close()
        await delete_prefix(redis, prefix)
        await redis.aclose()


def _fail(stderr: bytearray) -> bool:
    raise AssertionError("engine exited: " + stderr.decode(errors="replace")[-2000:])


def _jobs(tag: str, n: int) -> list[dict[str, str]]:
    return [{"id": f"{tag}-{i}", "to": "+4520112233", "text": f"hello {i}"} for i in range(n)]


@pytest.mark.slow
async def test_three_engines_never_hold_more_binds_than_the_cap(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    async with _fleet(tmp_path, redis_url, key_prefix, max_binds=2) as (sim, spawn):
        redis = Redis.from_url(redis_url)
        try:
            engines = [await spawn(f"e{i}") for i in range(3)]
            await _until(lambda: sim.stats.open_binds == 2, "two binds open")
            first = _jobs("lease-a", 60)
            await push(redis, key_prefix, first)
            events = await wait_events(redis, key_prefix, {j["id"] for j in first})
            assert all(evs[-1]["event"] == "delivered" for evs in events.values())
            assert sim.stats.max_open_binds == 2
            holders = [e for e in engines if e.events("lease_gained")]
            waiting = [e for e in engines if not e.events("lease_gained")]
            assert len(holders) == 2 and len(waiting) == 1

            # A holder dies: its slot goes to the engine that had none, within the TTL.
            holders[0].proc.send_signal(signal.SIGKILL)
            await holders[0].proc.wait()
            await _until(lambda: waiting[0].events("lease_gained"), "the third engine to take the lease over")
            await _until(lambda: sim.stats.open_binds == 2, "two binds open again")
            second = _jobs("lease-b", 60)
            await push(redis, key_prefix, second)
            events = await wait_events(redis, key_prefix, {j["id"] for j in second})
            assert all(evs[-1]["event"] == "delivered" for evs in events.values())
            assert sim.stats.max_open_binds == 2  # never more than the cap, at any moment
            gained = waiting[0].events("lease_gained")[0]
            assert gained["carrier"] == "sim" and gained["token"] >= 3  # a fresh fencing token
            for e in engines:
                text = bytes(e.stderr).decode(errors="replace")
                assert "20112233" not in text and "hello" not in text
        finally:
            await redis.aclose()


@pytest.mark.slow
async def test_a_holder_stopped_past_its_ttl_writes_nothing_on_its_old_bind(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    async with _fleet(tmp_path, redis_url, key_prefix, max_binds=2) as (sim, spawn):
        redis = Redis.from_url(redis_url)
        keys = Keys(key_prefix)
        try:
            a = await spawn("a")
            await _until(lambda: sim.stats.open_binds == 1, "a's bind")
            b = await spawn("b")
            await _until(lambda: sim.stats.open_binds == 2, "b's bind")
            warm = _jobs("warm", 20)
            await push(redis, key_prefix, warm)
            await wait_events(redis, key_prefix, {j["id"] for j in warm})
            a_ports = a.local_ports(sim.port)
            old = [c for c in sim.connections if c.transport and c.transport.get_extra_info("peername")[1] in a_ports]
            assert len(old) == 1
            old_bind = old[0]
            a_slot = a.events("lease_gained")[0]["slot"]
            a_key = keys.bind_lease("sim", a_slot)
            assert await redis.exists(a_key)

            a.proc.send_signal(signal.SIGSTOP)
            before = old_bind.submits
            # Past the TTL: a's lease is gone from Redis (nobody renewed it).
            await _until(lambda: _gone(redis, a_key), "a's lease to expire", timeout_s=10)
            jobs = _jobs("stall", 60)
            # a's blocked read may be handed some of them while it is stopped: it
            # holds them on waking, with a lease past its deadline.
            await push(redis, key_prefix, jobs)
            a.proc.send_signal(signal.SIGCONT)

            await _until(lambda: a.events("lease_lost"), "a to see it lost its lease")
            await _until(lambda: len(a.events("lease_gained")) == 2, "a to lease a bind again")
            events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
            assert all(evs[-1]["event"] == "delivered" for evs in events.values())
            await _until(lambda: old_bind.transport is None, "a's old bind to close")
            # Fenced: not one submit_sm on the old bind after the resume.
            assert old_bind.submits == before
            lost = a.events("lease_lost")[0]
            assert lost["slot"] == a_slot and lost["reason"] == "not renewed before its deadline"
            assert a.events("lease_gained")[1]["token"] > a.events("lease_gained")[0]["token"]
            fenced = a.events("bind_fenced")
            assert fenced and fenced[0]["bind"] == "sim-trx1" and fenced[0]["carrier"] == "sim"
            assert b.events("lease_lost") == []
            assert int(await redis.get(keys.lease_fence("sim"))) == 3  # a, b, a again
        finally:
            await redis.aclose()


async def _gone(redis: Redis, key: str) -> bool:
    return not await redis.exists(key)
