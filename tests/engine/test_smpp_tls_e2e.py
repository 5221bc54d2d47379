"""The whole engine sends over SMPP TLS to the simulator listening with a certificate the test made."""

from __future__ import annotations

import uuid
from pathlib import Path

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
