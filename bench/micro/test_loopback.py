"""SMPP loopback and session benchmarks.

Target (issue 2): one ESME bind with window 256 pushes more than 100,000
submit_sm+resp per second on uvloop to the simulator running in its own
process. The loopback runs are single rounds (each spawns the simulator);
their figures are in ``extra_info`` and printed. The session micro benchmarks
time the per-PDU sans-IO work: send (sequence number, in-flight, encode) and
receiving a window of submit_sm_resp.

Run: ``pytest bench/micro/test_loopback.py --benchmark-only -s``.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.loopback import run
from connectors.pdu import BindTransceiver, BindTransceiverResp, SubmitSm, SubmitSmResp
from connectors.session import ESME, SMSC, Session

TARGET_PER_S = 100_000


@pytest.mark.parametrize(
    ("loop", "dlr", "n"),
    [
        ("uvloop", False, 300_000),
        ("asyncio", False, 200_000),
        ("uvloop", True, 100_000),
        ("asyncio", True, 100_000),
    ],
)
def test_loopback(benchmark: Any, loop: str, dlr: bool, n: int) -> None:
    result: dict[str, Any] = benchmark.pedantic(
        run, args=(loop, n, 256, dlr), rounds=1, iterations=1
    )
    benchmark.extra_info.update(result)
    print(f"\nloopback {result}")
    assert result["lost"] == 0 and result["errors"] == 0
    if dlr:
        assert result["receipts"] == n
    if loop == "uvloop" and not dlr:
        assert result["submit_resp_per_s"] > TARGET_PER_S


def _bound_pair(window: int) -> tuple[Session, Session]:
    esme = Session(ESME, window)
    smsc = Session(SMSC, window)
    smsc.receive_data(esme.send(BindTransceiver(system_id="b"), 0.0))
    esme.receive_data(smsc.send(BindTransceiverResp(sequence_number=1), 0.0))
    return esme, smsc


def test_session_send_submit_sm(benchmark: Any) -> None:
    """Per PDU: sequence number, window check, in-flight entry, encode."""
    esme, _ = _bound_pair(window=1 << 16)
    pdu = SubmitSm(source_addr="sendgate", destination_addr="4500000001", short_message=b"x" * 40)

    def send_256() -> None:
        for _ in range(256):
            esme.send(pdu, 0.0, None)
        esme.in_flight.clear()
        esme.windowed = 0

    benchmark(send_256)
    print(f"\nsession.send per PDU: {benchmark.stats.stats.mean / 256 * 1e6:.2f} µs")


def test_session_receive_submit_sm_resp_window(benchmark: Any) -> None:
    """Per PDU: frame, decode submit_sm_resp, match in-flight, Response event."""
    esme, smsc = _bound_pair(window=256)
    pdu = SubmitSm(destination_addr="4500000001", short_message=b"x")

    def setup() -> tuple[tuple[bytes], dict[str, Any]]:
        esme.in_flight.clear()
        esme.windowed = 0
        seqs = []
        for _ in range(256):
            esme.send(pdu, 0.0, None)
            seqs.append(pdu.sequence_number)
        data = b"".join(
            smsc.send(SubmitSmResp(sequence_number=s, message_id=f"{s:x}"), 0.0) for s in seqs
        )
        return (data,), {}

    benchmark.pedantic(esme.receive_data, setup=setup, rounds=200)
    print(f"\nsession.receive_data per resp: {benchmark.stats.stats.mean / 256 * 1e6:.2f} µs")
