"""The SMSC simulator: options, receipt format, CLI, and robustness against garbage."""

from __future__ import annotations

import asyncio
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from connectors.codec import decode, encode
from connectors.config import BindConfig
from connectors.constants import CommandId
from connectors.pdu import BindTransceiver, DeliverSm, SubmitSm
from connectors.pool import BindPool
from connectors.simulator import SimulatorConfig, build_parser, main, start_simulator
from connectors.status import ESME_RINVCMDID, ESME_RINVCMDLEN, ESME_RSUBMITFAIL
from tests.connectors.helpers import FAKE_DESTINATION, FAKE_SOURCE, RecordingHandler

C = CommandId
HEADER = struct.Struct(">IIII")
ROOT = Path(__file__).resolve().parents[2]
RECEIPT = re.compile(
    rb"^id:(?P<id>\w+) sub:001 dlvrd:(?P<dlvrd>\d{3}) submit date:\d{10} done date:\d{10} "
    rb"stat:(?P<stat>[A-Z]{7}) err:(?P<err>\d{3}) text:(?P<text>.*)$",
    re.DOTALL,
)
FAST = {"reconnect_min_s": 0.01, "reconnect_max_s": 0.05, "sweep_interval_s": 0.05}


def pool_for(port: int, handler: Any, **kwargs: Any) -> BindPool:
    values: dict[str, Any] = {"port": port, "system_id": "sim", "password": "pw", **FAST}
    values.update(kwargs)
    return BindPool(BindConfig(**values), handler)


def sms(text: bytes = b"hello from the simulator test", registered_delivery: int = 1) -> SubmitSm:
    return SubmitSm(
        source_addr=FAKE_SOURCE,
        destination_addr=FAKE_DESTINATION,
        short_message=text,
        registered_delivery=registered_delivery,
    )


async def run_submits(
    cfg: SimulatorConfig, n: int, *, wait_receipts: int | None = None, **submit_kwargs: Any
) -> tuple[RecordingHandler, Any]:
    sim = await start_simulator(cfg)
    try:
        handler = RecordingHandler()
        pool = pool_for(sim.port, handler)
        await pool.start()
        for i in range(n):
            pool.submit(sms(**submit_kwargs), i)
        receipts = n if wait_receipts is None else wait_receipts
        await handler.wait_for(
            lambda: len(handler.responses) == n and len(handler.delivers) >= receipts
        )
        await pool.close(1.0)
        return handler, sim.stats
    finally:
        await sim.close()


async def test_receipt_text_and_tlvs_follow_the_standard_format() -> None:
    handler, stats = await run_submits(SimulatorConfig(), 3)
    ids = {mid for _, _, mid in handler.responses}
    for pdu in handler.delivers:
        assert isinstance(pdu, DeliverSm)
        assert pdu.esm_class & 0x04
        match = RECEIPT.match(pdu.short_message)
        assert match is not None, pdu.short_message
        assert match["stat"] == b"DELIVRD" and match["dlvrd"] == b"001" and match["err"] == b"000"
        assert match["text"] == b"hello from the simula"[:20]  # first 20 characters
        assert match["id"].decode() == pdu.receipted_message_id
        assert pdu.message_state == 2
        # addresses are swapped: the receipt comes from the handset
        assert pdu.source_addr == FAKE_DESTINATION
        assert pdu.destination_addr == FAKE_SOURCE
    assert {p.receipted_message_id for p in handler.delivers} == ids
    assert all(re.fullmatch(r"[0-9a-f]+", mid) for mid in ids)
    assert stats.receipts == 3


async def test_decimal_message_ids() -> None:
    handler, _ = await run_submits(SimulatorConfig(id_format="dec", dlr=False), 20, wait_receipts=0)
    ids = [mid for _, _, mid in handler.responses]
    assert all(mid.isdigit() for mid in ids)
    assert len(set(ids)) == 20


async def test_weighted_mix_of_final_states() -> None:
    cfg = SimulatorConfig(
        dlr_states={"DELIVRD": 1, "UNDELIV": 1, "EXPIRED": 1, "REJECTD": 1}, seed=3
    )
    handler, _ = await run_submits(cfg, 80)
    stats = {RECEIPT.match(p.short_message)["stat"] for p in handler.delivers}  # type: ignore[index]
    assert stats == {b"DELIVRD", b"UNDELIV", b"EXPIRED", b"REJECTD"}
    states = {p.message_state for p in handler.delivers}
    assert states == {2, 5, 3, 8}


async def test_failure_only_receipts_skip_delivered() -> None:
    cfg = SimulatorConfig(dlr_states={"DELIVRD": 1, "UNDELIV": 1}, seed=5)
    sim = await start_simulator(cfg)
    try:
        handler = RecordingHandler()
        pool = pool_for(sim.port, handler)
        await pool.start()
        for i in range(40):
            pool.submit(sms(registered_delivery=2), i)
        await handler.wait_for(lambda: len(handler.responses) == 40)
        await sim.wait_for(lambda: sim.stats.dlr_resps == sim.stats.receipts)
        await pool.close(1.0)
    finally:
        await sim.close()
    assert 0 < len(handler.delivers) < 40
    assert all(b"stat:UNDELIV" in p.short_message for p in handler.delivers)


async def test_no_receipt_when_not_requested() -> None:
    handler, stats = await run_submits(SimulatorConfig(), 5, wait_receipts=0, registered_delivery=0)
    assert stats.receipts == 0
    assert handler.delivers == []


async def test_receipt_before_resp_mode() -> None:
    order: list[str] = []

    class Ordered(RecordingHandler):
        def on_submit_resp(self, token: object, command_status: int, message_id: str) -> None:
            order.append("resp")
            super().on_submit_resp(token, command_status, message_id)

        def on_deliver(self, bind: Any, pdu: Any) -> None:
            order.append("receipt")
            super().on_deliver(bind, pdu)

    sim = await start_simulator(SimulatorConfig(receipt_before_resp=True))
    try:
        handler = Ordered()
        pool = pool_for(sim.port, handler, window=1)
        await pool.start()
        for i in range(3):
            pool.submit(sms(), i)
        await handler.wait_for(lambda: len(handler.responses) == 3 and len(handler.delivers) == 3)
        await pool.close(1.0)
    finally:
        await sim.close()
    assert order == ["receipt", "resp"] * 3


async def test_error_injection() -> None:
    cfg = SimulatorConfig(error_rate=1.0, error_status=ESME_RSUBMITFAIL)
    handler, stats = await run_submits(cfg, 10, wait_receipts=0)
    assert {status for _, status, _ in handler.responses} == {ESME_RSUBMITFAIL}
    assert stats.errors_injected == 10
    assert stats.receipts == 0


async def test_throttle_above_tps_is_absorbed_by_the_pool() -> None:
    sim = await start_simulator(SimulatorConfig(throttle_tps=20, dlr=False))
    try:
        handler = RecordingHandler()
        pool = pool_for(sim.port, handler)
        await pool.start()
        for i in range(30):
            pool.submit(sms(), i)
        await handler.wait_for(lambda: len(handler.responses) == 30, timeout=15)
        await pool.close(1.0)
    finally:
        await sim.close()
    assert all(status == 0 for _, status, _ in handler.responses)
    assert sim.stats.throttled > 0
    assert pool.stats.throttled == sim.stats.throttled


async def test_dlr_delay_holds_receipts_back() -> None:
    sim = await start_simulator(SimulatorConfig(dlr_delay_ms=150))
    try:
        handler = RecordingHandler()
        pool = pool_for(sim.port, handler)
        await pool.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        pool.submit(sms(), 0)
        await handler.wait_for(lambda: len(handler.responses) == 1)
        assert handler.delivers == []
        await handler.wait_for(lambda: len(handler.delivers) == 1)
        assert loop.time() - t0 >= 0.14
        await pool.close(1.0)
    finally:
        await sim.close()


async def test_garbage_from_an_esme_gets_generic_nack_and_the_simulator_survives() -> None:
    sim = await start_simulator(SimulatorConfig())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(encode(BindTransceiver(system_id="raw", password="pw", sequence_number=1)))
        bind_resp = decode(await _read_pdu(reader))
        assert bind_resp.command_status == 0
        writer.write(HEADER.pack(16, 0x00000777, 0, 2))  # unknown command_id
        assert HEADER.unpack(await _read_pdu(reader)) == (16, C.GENERIC_NACK, ESME_RINVCMDID, 2)
        writer.write(HEADER.pack(5, C.SUBMIT_SM, 0, 3) + b"\xff" * 20)  # bad command_length
        _length, cid, status, _ = HEADER.unpack(await _read_pdu(reader))
        assert (cid, status) == (C.GENERIC_NACK, ESME_RINVCMDLEN)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then it hangs up
        writer.close()
        assert sim.stats.protocol_errors == 2
        # and it still serves
        handler, _ = RecordingHandler(), None
        pool = pool_for(sim.port, handler)
        await pool.start()
        pool.submit(sms(), 0)
        await handler.wait_for(lambda: len(handler.responses) == 1)
        await pool.close(1.0)
    finally:
        await sim.close()


async def _read_pdu(reader: asyncio.StreamReader) -> bytes:
    header = await asyncio.wait_for(reader.readexactly(16), 5)
    length = HEADER.unpack(header)[0]
    return header + await asyncio.wait_for(reader.readexactly(length - 16), 5)


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    renamed = {"dlr": "--no-dlr", "stats_interval_s": "--stats-interval"}
    for field in SimulatorConfig.__struct_fields__:
        flag = renamed.get(field, "--" + field.replace("_", "-"))
        assert flag in text, flag
    assert "--duration" in text and "--loop" in text


def test_parser_builds_a_config() -> None:
    from connectors.simulator import config_from_args

    args = build_parser().parse_args(
        ["--port", "0", "--dlr-states", "DELIVRD=9,UNDELIV=1", "--error-status", "0x45"]
    )
    cfg = config_from_args(args)
    assert cfg.dlr_states == {"DELIVRD": 9.0, "UNDELIV": 1.0}
    assert cfg.error_status == 0x45
    assert cfg.port == 0


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dlr-states", "NOPE=1", "--port", "0"]) == 2
    assert "dlr_states" in capsys.readouterr().err
    with pytest.raises((ValueError, msgspec.ValidationError)):
        SimulatorConfig(error_rate=2.0)


def test_cli_runs_in_its_own_process_and_reports_stats() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "connectors.simulator",
            "--port",
            "0",
            "--duration",
            "0.5",
            "--stats-interval",
            "0.1",
            "--loop",
            "asyncio",
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(rb"listening on 127\.0\.0\.1:\d+\n", proc.stdout)
    lines = [orjson.loads(line) for line in proc.stderr.splitlines() if line.startswith(b"{")]
    assert len(lines) >= 3  # per interval, plus the final one
    assert {"submits", "receipts", "window_violations", "throttled"} <= set(lines[-1])
    assert "submits_per_s" in lines[0]


async def test_receipt_window_refills_as_responses_arrive() -> None:
    handler, stats = await run_submits(SimulatorConfig(dlr_window=2), 25)
    assert len(handler.delivers) == 25
    assert stats.receipts == 25


async def test_truncated_submit_sm_gets_a_resp_but_no_receipt() -> None:
    sim = await start_simulator(SimulatorConfig())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(encode(BindTransceiver(system_id="raw", password="pw", sequence_number=1)))
        assert decode(await _read_pdu(reader)).command_status == 0
        body = b"\x00\x01\x01" + FAKE_SOURCE.encode()  # source_addr without its NUL, then nothing
        writer.write(HEADER.pack(16 + len(body), C.SUBMIT_SM, 0, 2) + body)
        resp = decode(await _read_pdu(reader))
        assert (resp.command_id, resp.sequence_number) == (C.SUBMIT_SM_RESP, 2)
        writer.write(HEADER.pack(16, C.ENQUIRE_LINK, 0, 3))  # still in step
        assert HEADER.unpack(await _read_pdu(reader)) == (16, C.ENQUIRE_LINK_RESP, 0, 3)
        assert sim.stats.receipts == 0
        writer.close()
    finally:
        await sim.close()


async def test_data_sm_is_answered_and_unsupported_requests_are_nacked() -> None:
    from connectors.pdu import DataSm, QuerySm

    sim = await start_simulator(SimulatorConfig())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        writer.write(encode(BindTransceiver(system_id="raw", password="pw", sequence_number=1)))
        assert decode(await _read_pdu(reader)).command_status == 0
        writer.write(encode(DataSm(destination_addr=FAKE_DESTINATION, sequence_number=2)))
        resp = decode(await _read_pdu(reader))
        assert (resp.command_id, resp.sequence_number, resp.command_status) == (
            C.DATA_SM_RESP,
            2,
            0,
        )
        assert resp.message_id
        writer.write(encode(QuerySm(message_id="1", sequence_number=3)))
        assert HEADER.unpack(await _read_pdu(reader)) == (16, C.GENERIC_NACK, ESME_RINVCMDID, 3)
        writer.close()
    finally:
        await sim.close()


def test_mobile_origin_parts_are_what_an_smsc_sends() -> None:
    from connectors.mobile_origin import gsm7_septets, mo_parts

    assert mo_parts("Hi") == [(0, 0x00, b"Hi", None)]
    assert gsm7_septets("€[") == [b"\x1b\x65", b"\x1b\x3c"]
    # an escape pair is never split: 152 plain septets, then "€" would straddle 153
    parts = mo_parts("a" * 152 + "€" + "b" * 20, ref=0x41)
    assert [p.short_message[:6] for p in parts] == [b"\x05\x00\x03\x41\x02\x01", b"\x05\x00\x03\x41\x02\x02"]
    assert parts[0].short_message[6:] == b"a" * 152 and parts[1].short_message[6:8] == b"\x1b\x65"
    udh16 = mo_parts("c" * 200, concat="udh16", ref=0x1234)
    assert udh16[0].short_message[:7] == b"\x06\x08\x04\x12\x34\x02\x01" and len(udh16[0].short_message) == 7 + 152
    sar = mo_parts("д" * 100, encoding="ucs2", concat="sar", ref=9)
    assert [(p.esm_class, p.data_coding, p.sar, len(p.short_message)) for p in sar] == [
        (0, 0x08, (9, 2, 1), 134), (0, 0x08, (9, 2, 2), 66)]
    with pytest.raises(ValueError):
        mo_parts("emoji 🙂")  # not GSM 7 bit
