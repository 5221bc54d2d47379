"""``sendgate archive --once`` and ``sendgate history`` as a user runs them: real processes."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.engine.harness import subprocess_env
from tests.history.events import SECRET, event_fields

NUMBER = "+4512345678"
OTHER = "+4587654321"


async def sendgate(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_history_finds_a_job_by_each_key_without_the_number(
    redis_client: Any, redis_url: str, key_prefix: str, history_url: str, tmp_path: Path
) -> None:
    cfg = tmp_path / "sendgate.toml"
    cfg.write_text(f'[privacy]\nhash_secret = "{SECRET}"\n[history]\nurl = "{history_url}"\n')
    env = subprocess_env(REDIS_URL=redis_url, SENDGATE_PREFIX=key_prefix)
    t = int(time.time() * 1000)
    events = f"{key_prefix}:events"
    await redis_client.xadd(events, event_fields("old-1", "submitted", t - 5000, first=True, to=NUMBER, ref="R-9", client="shop"))
    await redis_client.xadd(events, event_fields("new-2", "submitted", t - 1000, first=True, to=NUMBER, ref="R-9", client="shop"))
    await redis_client.xadd(events, event_fields("new-2", "delivered", t, message_ids="abc"))
    await redis_client.xadd(events, event_fields("else-3", "submitted", t, first=True, to=OTHER, ref="R-1", client="x"))

    code, out, err = await sendgate("archive", "-c", str(cfg), "--once", env=env)
    assert code == 0, err
    assert "archived 4 event(s)" in out
    # A job Redis knows and the store does not yet (its events not archived): found among
    # the events after the archiver's position (Redis has no index by number any more).
    await redis_client.xadd(events, event_fields("hot-4", "submitted", t + 10, first=True, to=NUMBER, client="shop"))

    for key, value in (("--id", "new-2"), ("--ref", "R-9"), ("--to", NUMBER), ("--client", "shop")):
        code, out, err = await sendgate("history", "-c", str(cfg), key, value, env=env)
        assert code == 0, (key, err)
        assert "new-2" in out, key
        assert "+45******78" in out, key
        assert "delivered" in out, key
        for text in (out, err):
            assert "12345678" not in text and "87654321" not in text, key  # no number in clear
        assert "else-3" not in out, key

    code, out, _ = await sendgate("history", "-c", str(cfg), "--to", NUMBER, "--json", env=env)
    assert code == 0
    items = json.loads(out)
    assert [i["job_id"] for i in items] == ["hot-4", "new-2", "old-1"]  # newest first, store and Redis
    assert items[0]["store"] is None and items[0]["redis"]["state"] == "submitted"
    assert items[1]["store"]["final_state"] == "delivered" and items[1]["store"]["events"].keys() == {"submitted", "delivered"}
    assert "12345678" not in out

    code, out, _ = await sendgate("history", "-c", str(cfg), "--id", "nope", env=env)
    assert code == 1 and "no job found" in out


@pytest.mark.slow
async def test_archive_process_killed_mid_run_then_restarted_loses_and_duplicates_nothing(
    redis_client: Any, redis_url: str, key_prefix: str, history_url: str, tmp_path: Path
) -> None:
    import signal

    from engine.history import open_store
    from tests.history.test_archiver import check_exactly_once, push_jobs, until

    cfg = tmp_path / "sendgate.toml"
    cfg.write_text(f'[history]\nurl = "{history_url}"\nbatch_size = 300\nconsumer = "kill-test"\n')
    env = subprocess_env(REDIS_URL=redis_url, SENDGATE_PREFIX=key_prefix)
    events = f"{key_prefix}:events"
    await push_jobs(redis_client, events, 0, 6000)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "archive", "-c", str(cfg), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    # Positions by entry id, not XINFO's entries-read / lag (Redis 7 only: the
    # embedded Redis of a machine without one is 6.2).
    first_900 = await redis_client.xrange(events, "-", "+", count=900)
    mark_id = first_900[-1][0]

    def _id(value: Any) -> tuple[int, int]:
        text = value.decode() if isinstance(value, bytes) else str(value)
        ms, _, seq = text.partition("-")
        return int(ms), int(seq or 0)

    try:
        async def some_acked() -> bool:  # the archiver is in the middle of the stream
            groups = await redis_client.xinfo_groups(events)
            return bool(groups) and _id(groups[0]["last-delivered-id"]) >= _id(mark_id)
        await until(some_acked, what="the archiver under way")
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    groups = await redis_client.xinfo_groups(events)
    last = (await redis_client.xinfo_stream(events))["last-generated-id"]
    assert _id(groups[0]["last-delivered-id"]) < _id(last)  # killed before the end
    code, _out, err = await sendgate("archive", "-c", str(cfg), "--once", env=env)
    assert code == 0, err
    store = open_store(history_url)
    try:
        await check_exactly_once(store, 6000)
    finally:
        await store.close()
    pending: Any = await redis_client.xpending(events, "archiver")
    assert pending["pending"] == 0
