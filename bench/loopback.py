"""Loopback load run: one ESME bind → the SMSC simulator in its own process.

Measures submit_sm+resp per second through the real stack the engine uses
(``BindPool`` → ``SmppBind`` → ``Session`` → codec → TCP) against
``python -m connectors.simulator`` in a separate process, and with receipts
on, deliver_sm receipts per second (answered by ``bind.respond``). Reports
the client's and the simulator's CPU seconds.

    python bench/loopback.py                       # uvloop, 200k submits, window 256
    python bench/loopback.py --loop asyncio --dlr  # client on stock asyncio, receipts on

The simulator runs on uvloop unless ``--sim-loop asyncio``.

Prints one JSON object per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from connectors.config import BindConfig  # noqa: E402
from connectors.pdu import DataSm, DeliverSm, SubmitSm  # noqa: E402
from connectors.pool import BindPool  # noqa: E402

_CLK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """user+system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK


class _Counter:
    def __init__(self, total: int, want_receipts: bool) -> None:
        self.total = total
        self.want_receipts = want_receipts
        self.responses = 0
        self.errors = 0
        self.lost = 0
        self.receipts = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _check(self) -> None:
        finished = self.responses + self.lost >= self.total and (
            not self.want_receipts or self.receipts >= self.responses - self.errors
        )
        if finished and not self.done.done():
            self.done.set_result(None)

    def on_submit_resp(self, token: object, command_status: int, message_id: str) -> None:
        self.responses += 1
        if command_status:
            self.errors += 1
        if self.responses + self.lost >= self.total:
            self._check()

    def on_submit_lost(self, token: object, reason: str) -> None:
        self.lost += 1
        self._check()

    def on_deliver(self, bind: Any, pdu: DeliverSm | DataSm) -> None:
        self.receipts += 1
        bind.respond(pdu, 0)
        if self.receipts + self.errors >= self.total:
            self._check()

    def on_claimed(self, bind: Any, items: list[tuple[int, Any]]) -> None:
        # only with a claim_deliver hook, which this pool does not set
        self.receipts += len(items)
        bind.respond_sequences([seq for seq, _ in items], [], 0)
        if self.receipts + self.errors >= self.total:
            self._check()

    def on_bind_state(self, bind_name: str, up: bool) -> None:
        pass


def start_simulator_process(loop_name: str, dlr: bool) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m connectors.simulator --port 0``; returns the process and its port."""
    cmd = [sys.executable, "-m", "connectors.simulator", "--port", "0", "--loop", loop_name]
    cmd += ["--duration", "600"]  # stops by itself whatever happens to us
    if not dlr:
        cmd.append("--no-dlr")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("listening on"):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


async def run_load(port: int, total: int, window: int, dlr: bool, sim_pid: int) -> dict[str, Any]:
    counter = _Counter(total, dlr)
    config = BindConfig(
        name="bench", port=port, system_id="bench", password="bench", window=window, binds=1
    )
    pool = BindPool(config, counter)
    await pool.start()
    if pool.binds_up() != 1:
        raise RuntimeError("bind did not come up")
    registered = 1 if dlr else 0
    text = b"loopback benchmark message"
    batch = window * 4
    sim_cpu0 = _cpu_of(sim_pid)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        await pool.wait_pending_below(batch)
        n = min(batch, total - sent)
        for i in range(sent, sent + n):
            pool.submit(
                SubmitSm(
                    source_addr="sendgate",
                    destination_addr="4500000001",
                    registered_delivery=registered,
                    short_message=text,
                ),
                i,
            )
        sent += n
    await asyncio.wait_for(counter.done, 120)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    sim_cpu = _cpu_of(sim_pid) - sim_cpu0
    await pool.close(2.0)
    result: dict[str, Any] = {
        "submits": total,
        "window": window,
        "elapsed_s": round(elapsed, 3),
        "submit_resp_per_s": round(total / elapsed),
        "us_per_submit": round(elapsed / total * 1e6, 2),
        "client_cpu_s": round(cpu, 2),
        "simulator_cpu_s": round(sim_cpu, 2),
        "lost": counter.lost,
        "errors": counter.errors,
        "throttled": pool.stats.throttled,
    }
    if dlr:
        result["receipts"] = counter.receipts
        result["receipts_per_s"] = round(counter.receipts / elapsed)
    return result


def run(
    loop_name: str, total: int, window: int, dlr: bool, sim_loop: str = "uvloop"
) -> dict[str, Any]:
    """One load run; ``loop_name`` is the client's loop, the simulator runs on ``sim_loop``."""
    proc, port = start_simulator_process(sim_loop, dlr)
    try:
        coro = run_load(port, total, window, dlr, proc.pid)
        if loop_name == "uvloop":
            import uvloop

            result = uvloop.run(coro)
        else:
            result = asyncio.run(coro)
    finally:
        proc.terminate()
        proc.wait(10)
    result["loop"] = loop_name
    result["simulator_loop"] = sim_loop
    result["dlr"] = dlr
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("-n", "--submits", type=int, default=200_000)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--dlr", action="store_true", help="ask for receipts and count them")
    p.add_argument("--sim-loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = p.parse_args(argv)
    result = run(args.loop, args.submits, args.window, args.dlr, args.sim_loop)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
