"""What the audit stream records: config loads, purges, bind credential failures — actor, time, counts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig, start_simulator
from engine.app import Engine
from engine.erase import purge_main
from privacy_hooks.audit import AuditLog, default_actor
from tests.engine.harness import delete_prefix, make_settings


def _decoded(entries: list[Any]) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in entries]


async def test_every_entry_names_its_actor(redis_client: Any, key_prefix: str) -> None:
    audit = AuditLog(redis_client, f"{key_prefix}:audit")
    await audit.record("purge", removed=3)
    await audit.record("erase", actor="dpo@example", records=2)
    [(_i, first), (_j, second)] = await audit.entries()
    assert second["actor"] == default_actor() and "@" in second["actor"]
    assert first["actor"] == "dpo@example"


async def test_a_config_load_and_a_bind_credential_failure_are_audited(redis_url: str, key_prefix: str) -> None:
    sim = await start_simulator(SimulatorConfig(system_id="test", password="right"))
    settings = make_settings(redis_url, key_prefix, sim.port, carrier={"password": "wrongpw", "binds": 1})
    engine = Engine(settings, redis_url, config_source="/etc/sendgate/sendgate.toml")
    redis = Redis.from_url(redis_url)
    before_ms = int(time.time() * 1000)
    await engine.start()
    try:
        deadline = time.monotonic() + 20
        while not engine.pools["sim"].binds[0].auth_failures:
            assert time.monotonic() < deadline, "the bind was never refused"
            await asyncio.sleep(0.05)
        await engine._audit_bind_credentials()  # the maintenance loop does this every 5 s
        entries = _decoded(await redis.xrange(f"{key_prefix}:audit"))
    finally:
        await engine.close()
        await sim.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
    by_action = {e["action"]: e for e in entries}
    load = by_action["config_load"]
    assert load["actor"] == f"engine:{settings.consumer_name}"
    assert load["source"] == "/etc/sendgate/sendgate.toml" and load["carriers"] == "1" and load["clients"] == "0"
    assert int(load["ts"]) >= before_ms and len(load["digest"]) == 32
    refused = by_action["bind_credentials_refused"]
    assert refused["actor"] == load["actor"] and refused["failures"] == "1" and refused["carrier"] == "sim"
    for entry in entries:
        assert "wrongpw" not in "".join(entry.values())


async def test_purge_is_audited_with_its_counts(
    redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(redis_url, key_prefix, 2775)
    redis = Redis.from_url(redis_url)
    try:
        old = int((time.time() - 200 * 86400) * 1000)
        await redis.xadd(f"{key_prefix}:jobs", {"id": "old", "to": "+4512345678", "text": "x"}, id=f"{old}-0")
        assert await purge_main(settings) == 0
        [entry] = _decoded(await redis.xrange(f"{key_prefix}:audit"))
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
    assert entry["action"] == "purge" and entry["actor"] == default_actor()
    assert entry["removed"] == "1" and "jobs=1" in entry["streams"].split(",")
    assert "4512345678" not in "".join(entry.values())
    capsys.readouterr()
