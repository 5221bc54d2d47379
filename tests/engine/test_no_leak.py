"""No number and no message text in any log line or log file of a whole engine run.

The run: debug logging to stderr and to a rotating file, a few thousand jobs
with distinct numbers and distinct texts, receipts on, jobs that become dead
letters (a callback to 127.0.0.1 among them), a carrier whose bind is refused
for its password. Then every line is scanned for each number in the formats
people write them — ``+4571000159``, ``004571000159``, ``4571000159``,
``71000159``, spaced or dashed (``+45 71 00 01 59``, ``7100-0159``) — and for
the texts. Mobile-originated messages too: single and in parts (one set
left partial), opt-out keywords with a confirmation reply, from numbers of
the same form, with texts of their own, archived to the history store; the
metrics' exposition is scanned as well.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.simulator import SimulatorConfig, start_simulator
from privacy_hooks import configure_logging
from tests.engine.harness import push, running, wait_events
from tests.privacy.test_logging import clean_root as clean_root  # the fixture

JOBS = 3000
COUNTRY = "45"


def national(i: int) -> str:
    """8 distinct digits per job: ``71`` + 4 digits of ``i`` + ``59`` (unlike any timestamp or id)."""
    return f"71{i:04d}59"


def _leaks(text: str, numbers: set[str]) -> list[str]:
    """Every 8-digit window of ``text`` (separators between digits removed) that is one of ``numbers``."""
    joined = re.sub(r"(?<=\d)[ \-.()/](?=\d)", "", text)
    found = []
    for run in re.findall(r"\d{8,}", joined):
        for k in range(len(run) - 7):
            if run[k : k + 8] in numbers:
                found.append(run)
                break
    return found


def test_the_scanner_finds_every_format() -> None:
    numbers = {national(7)}
    for written in ("+4571000759", "004571000759", "4571000759", "71000759", "+45 71 00 07 59",
                    "7100-0759", "(+45) 7100 0759", "tel:+45.71.00.07.59"):
        assert _leaks(f"x {written} y", numbers), written
    assert not _leaks("2026-12-06T01:43:14.123Z +45******59 id=1733449394123-0", numbers)


@pytest.mark.usefixtures("clean_root")
async def test_no_number_or_text_in_any_log_line_or_file(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    stderr = io.StringIO()
    log_file = tmp_path / "logs" / "engine.log"
    log_file.parent.mkdir()
    configure_logging("debug", "json", str(log_file), stream=stderr, retention_days=30)
    run = uuid.uuid4().hex[:6]
    texts = [f"Hemmelig besked {i} til kunden QZX{run}" if i % 3 else f"Tajný text č. {i} ✓ QZX{run}" for i in range(JOBS)]
    jobs: list[dict[str, str]] = [
        {"id": f"{run}-{i}", "to": f"+{COUNTRY}{national(i)}" if i % 2 else f"{COUNTRY}{national(i)}", "text": texts[i]}
        for i in range(JOBS)
    ]
    invalid_base = JOBS
    invalid: list[dict[str, str]] = [
        {"id": f"{run}-bad-number", "to": f"+{COUNTRY}{national(invalid_base)}x", "text": f"bad number QZX{run}"},
        {"id": f"{run}-short", "to": f"{national(invalid_base + 1)[:5]}", "text": f"too short QZX{run}"},
        {"id": f"{run}-empty", "to": f"+{COUNTRY}{national(invalid_base + 2)}", "text": ""},
        {"id": f"{run}-callback", "to": f"+{COUNTRY}{national(invalid_base + 3)}", "text": f"cb QZX{run}",
         "callback": f"http://127.0.0.1:9/cb?to=%2B{COUNTRY}{national(invalid_base + 3)}"},
        {"id": f"{run}-carrier", "to": f"+{COUNTRY}{national(invalid_base + 4)}", "text": f"c QZX{run}", "carrier": "nowhere"},
        {"id": f"{run}-sender", "to": f"+{COUNTRY}{national(invalid_base + 5)}", "text": f"s QZX{run}",
         "from": f"+{COUNTRY}{national(invalid_base + 5)}00000000"},
    ]
    inbound_base = invalid_base + len(invalid)
    numbers = {national(i) for i in range(inbound_base + INBOUND)}
    strict = await start_simulator(SimulatorConfig(system_id="test", password="right"))
    locked = {"name": "locked", "port": strict.port, "system_id": "test", "password": "nope", "binds": 1,
              "routes": ["999"], "auth_retry_s": 60.0}
    try:
        await _run_and_check(redis_url, key_prefix, run, jobs, invalid, texts, numbers, locked, stderr, log_file)
    finally:
        await strict.close()


async def _run_and_check(
    redis_url: str, key_prefix: str, run: str, jobs: list[dict[str, str]], invalid: list[dict[str, str]],
    texts: list[str], numbers: set[str], locked: dict[str, Any], stderr: io.StringIO, log_file: Path,
) -> None:
    async with running(
        redis_url, key_prefix,
        # some submits refused (retried, some failed) and some receipts undeliverable: their log lines too
        SimulatorConfig(dlr=True, system_id="test", password="pw", error_rate=0.02, seed=7,
                        dlr_states={"DELIVRD": 0.95, "UNDELIV": 0.05}),
        proxy=False,
        batch_size=500, extra_carriers=[locked], carrier={"password": "pw"},
        clients=[{"id": "shop", "numbers": ["1234"], "opt_out_reply": f"Afmeldt QZX{run}"}],
        inbound={"reassembly_wait_s": 0.5},
    ) as (engine, sim, _p, redis):
        started = time.monotonic()
        await push(redis, key_prefix, jobs + invalid)
        await _send_inbound(engine, sim, redis, key_prefix, run, len(jobs) + len(invalid))
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, timeout_s=120)
        finals = [events[j["id"]][-1]["event"] for j in jobs]  # (the opt-out replies, dlr=0, end at submitted)
        assert set(finals) <= {"delivered", "undeliverable", "failed"} and finals.count("delivered") > JOBS // 2
        dead = {f[b"id"].decode(): f for _i, f in await redis.xrange(f"{key_prefix}:dead")}
        assert set(dead) == {j["id"] for j in invalid}
        assert _leaks(repr(list(dead.values())), numbers)  # the scanner sees the numbers as they were pushed
        refused = dead[f"{run}-callback"]
        assert refused[b"code"] == b"invalid" and b"loopback" in refused[b"reason"]  # a callback to 127.0.0.1
        # the carrier with a wrong password: refused, and audited
        locked_bind = engine.pools["locked"].binds[0]
        assert locked_bind.auth_failures >= 1
        await engine._audit_bind_credentials()
        audit = [f for _i, f in await redis.xrange(f"{key_prefix}:audit")]
        assert any(f[b"action"] == b"bind_credentials_refused" and f[b"carrier"] == b"locked" for f in audit)
        elapsed = time.monotonic() - started
        from prometheus_client import generate_latest

        exposition = {"engine": generate_latest(engine.metrics.registry).decode()}
    for handler in logging.getLogger().handlers:
        handler.flush()
    files = sorted(log_file.parent.iterdir())
    contents = {"stderr": stderr.getvalue(), **{p.name: p.read_text(encoding="utf-8") for p in files}}
    assert contents["engine.log"] == contents["stderr"]  # the file got every line stderr got
    lines = contents["stderr"].splitlines()
    assert any('"level":"debug"' in line for line in lines), "debug logging did not run"
    assert any("locked" in line and "credentials" in line for line in lines)  # the bind failure was logged
    for name, text in contents.items():
        leaks = _leaks(text, numbers)
        assert not leaks, f"{name}: numbers in clear, e.g. {leaks[:3]}"
        assert f"QZX{run}" not in text, f"{name}: a message text in the log"
        for sample in (texts[1], texts[3], "Hemmelig besked", "Tajný text"):
            assert sample not in text, f"{name}: message text {sample!r} in the log"
    for name, text in exposition.items():
        assert not _leaks(text, numbers), f"metrics {name}: numbers in clear"
        assert f"QZX{run}" not in text, f"metrics {name}: a message text"
    print(f"{JOBS} jobs, {INBOUND} inbound messages, {len(lines)} log lines scanned in {elapsed:.1f}s of engine time")


INBOUND = 40


async def _send_inbound(engine: Any, sim: Any, redis: Any, prefix: str, run: str, pushed: int) -> None:
    """Mobile-originated messages from ``INBOUND`` numbers (national and international forms):
    texts, STOP in a few casings (a confirmation reply each), a message in 3 parts and
    one left partial; returns once all are published, settled and archived."""
    from engine.keys import Keys

    await sim.wait_for(lambda: len(sim.receivers()) >= 1)
    base = pushed  # the numbers after the jobs'
    long_text = f"Hemmelig besked fra telefonen QZX{run} " * 12
    for j in range(INBOUND):
        sender = f"{COUNTRY}{national(base + j)}" if j % 2 else national(base + j)
        if j % 10 == 0:
            sim.send_inbound(sender, "1234", (" STOP ", "Stop", "stop\n", "STOP")[j // 10])
        elif j == 5:
            sim.send_inbound(sender, "1234", long_text, concat="udh8", ref=5, order=[2, 0, 1])
        elif j == 7:
            sim.send_inbound(sender, "1234", long_text, concat="sar", ref=7, skip=[1])  # partial
        else:
            sim.send_inbound(sender, "+4570000000", f"Tajný text {j} QZX{run}", encoding="ucs2")
    k = Keys(prefix)
    deadline = time.monotonic() + 30
    while int(await redis.xlen(k.inbound)) < INBOUND or int(await redis.scard(k.suppression("shop"))) < 4:
        assert time.monotonic() < deadline, "inbound messages not all published"
        await asyncio.sleep(0.05)
    archiver = engine.inbound_archiver
    while archiver is not None and (await archiver.lag()).entries:
        assert time.monotonic() < deadline, "inbound messages not archived"
        await asyncio.sleep(0.05)
