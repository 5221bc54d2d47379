"""The whole engine sends over SMPP TLS to the simulator listening with a certificate the test made."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path

import pytest

from connectors.simulator import SimulatorConfig
from tests.engine.harness import push, running, wait_events
from tests.tls_certs import make_pki


async def test_the_engine_sends_over_tls(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    sim_config = SimulatorConfig(dlr=True, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    carrier = {"tls": True, "ca_file": str(pki.ca), "server_name": "localhost"}
    run = uuid.uuid4().hex[:6]
    jobs = [{"id": f"{run}-{i}", "to": f"+4571{i:04d}59", "text": f"tls {i}"} for i in range(50)]
    async with running(redis_url, key_prefix, sim_config, proxy=False, carrier=carrier) as (engine, sim, _p, redis):
        assert engine.pools["sim"].binds_up() == 2
        assert all(b.protocol is not None and b.protocol.transport is not None
                   and b.protocol.transport.get_extra_info("ssl_object") is not None for b in engine.pools["sim"].binds)
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
    assert {evs[-1]["event"] for evs in events.values()} == {"delivered"}
    assert sim.stats.submits == 50


async def test_a_wrong_ca_fails_clearly_and_nothing_is_sent(
    redis_url: str, key_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole engine with a CA that did not sign the simulator's certificate: no
    bind comes up, each says why in its error and its log line, and a job pushed
    meanwhile is neither sent nor lost (it waits, no dead letter)."""
    pki = make_pki(tmp_path / "pki")
    sim_config = SimulatorConfig(dlr=True, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    carrier = {"tls": True, "ca_file": str(pki.wrong_ca), "server_name": "localhost"}
    job = {"id": f"{uuid.uuid4().hex[:6]}-w", "to": "+4571000159", "text": "never over an untrusted link"}
    with caplog.at_level(logging.WARNING, logger="sendgate.connectors.transport"):
        async with running(redis_url, key_prefix, sim_config, proxy=False, carrier=carrier) as (engine, sim, _p, redis):
            pool = engine.pools["sim"]
            await push(redis, key_prefix, [job])
            deadline = time.monotonic() + 15
            while not all(b.connects >= 2 for b in pool.binds):  # each tried, backed off, tried again
                assert time.monotonic() < deadline, "the binds did not retry"
                await asyncio.sleep(0.02)
            assert pool.binds_up() == 0
            for b in pool.binds:
                assert b.last_error.startswith(f"bind {b.name}: TLS certificate not trusted: ")
            assert sim.stats.binds == 0 and sim.stats.submits == 0
            assert await redis.xlen(f"{key_prefix}:dead") == 0  # waiting, not dead-lettered
    lines = [r.getMessage() for r in caplog.records if "TLS certificate not trusted" in r.getMessage()]
    assert lines and all("4571000159" not in line for line in lines)
