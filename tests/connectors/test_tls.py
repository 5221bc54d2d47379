"""SMPP over TLS: a bind to the simulator listening with a certificate the test made."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from connectors.config import BindConfig, ConfigError
from connectors.simulator import Simulator, SimulatorConfig, start_simulator
from connectors.transport import SmppBind, tls_context
from tests.connectors.test_transport import Listener, cfg, submit
from tests.tls_certs import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_sim(pki: Pki) -> Any:
    sim: Simulator = await start_simulator(
        SimulatorConfig(dlr=False, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    )
    try:
        yield sim
    finally:
        await sim.close()


async def test_a_bind_over_tls_submits(tls_sim: Simulator, pki: Pki) -> None:
    listener = Listener()
    bind = SmppBind(cfg(tls_sim.port, tls=True, ca_file=str(pki.ca)), listener)
    await bind.start()
    assert bind.is_up() and bind.last_error == ""
    assert bind.protocol is not None and bind.protocol.transport is not None
    assert bind.protocol.transport.get_extra_info("ssl_object") is not None  # really TLS
    bind.submit(submit(), "over-tls")
    await listener.until(lambda: len(listener.responses) == 1)
    assert listener.responses[0].context == "over-tls" and listener.responses[0].pdu.command_status == 0
    await bind.close(1.0)
    assert tls_sim.stats.submits == 1


async def test_server_name_is_what_the_certificate_is_checked_against(tls_sim: Simulator, pki: Pki) -> None:
    listener = Listener()
    bind = SmppBind(cfg(tls_sim.port, tls=True, ca_file=str(pki.ca), server_name="localhost"), listener)
    await bind.start()
    assert bind.is_up()
    await bind.close(1.0)


async def _failing_bind(port: int, caplog: pytest.LogCaptureFixture, **tls: Any) -> SmppBind:
    bind = SmppBind(cfg(port, tls=True, **tls), Listener())
    with caplog.at_level(logging.WARNING, logger="sendgate.connectors.transport"):
        await bind.start()  # returns after the first attempt
        deadline = asyncio.get_running_loop().time() + 10
        while bind.connects < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)  # reconnects with backoff
    return bind


async def test_a_wrong_ca_fails_with_a_clear_error_and_retries(
    tls_sim: Simulator, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    bind = await _failing_bind(tls_sim.port, caplog, ca_file=str(pki.wrong_ca))
    try:
        assert not bind.is_up()
        assert bind.last_error.startswith(f"bind {bind.name}: TLS certificate not trusted: ")
        assert "certificate" in bind.last_error.split("not trusted: ", 1)[1]
        assert bind.connects >= 2  # backoff and try again, not give up
        lines = [r.getMessage() for r in caplog.records if "TLS certificate not trusted" in r.getMessage()]
        assert lines and "retry in" in lines[0]
        assert tls_sim.stats.binds == 0
    finally:
        await bind.close(0.5)


async def test_a_name_the_certificate_does_not_carry_is_refused(
    tls_sim: Simulator, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    bind = await _failing_bind(tls_sim.port, caplog, ca_file=str(pki.ca), server_name="smsc.example.com")
    try:
        assert not bind.is_up()
        assert "TLS certificate not trusted" in bind.last_error and "mismatch" in bind.last_error.lower()
    finally:
        await bind.close(0.5)


async def test_tls_to_a_plain_listener_fails_clearly(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    sim = await start_simulator(SimulatorConfig(dlr=False))
    try:
        bind = await _failing_bind(sim.port, caplog, ca_file=str(pki.ca), bind_timeout_s=2.0)
        try:
            assert not bind.is_up() and bind.last_error.startswith(f"bind {bind.name}: ")
        finally:
            await bind.close(0.5)
    finally:
        await sim.close()


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ca_file: needs tls"):
        BindConfig(ca_file="/x.pem")
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="ca_file: cannot load"):
        tls_context(BindConfig(tls=True, ca_file=str(missing)))


def test_simulator_cli_takes_a_certificate(pki: Pki) -> None:
    from connectors.simulator import build_parser, config_from_args

    args = build_parser().parse_args(["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)])
    config = config_from_args(args)
    assert config.tls_cert == str(pki.server_cert) and config.tls_key == str(pki.server_key)
