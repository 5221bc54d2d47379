"""`sendgate erase` end to end: records of one number hidden or deleted, audited without the number."""

from __future__ import annotations

import uuid

import pytest

from connectors.simulator import SimulatorConfig
from engine.erase import erase_main, purge_main
from privacy_hooks import keyed_hash
from tests.engine.harness import delete_prefix, push, running, wait_events


@pytest.mark.parametrize("immediate", [False, True])
async def test_erase_by_number(redis_url: str, key_prefix: str, immediate: bool, capsys: pytest.CaptureFixture[str]) -> None:
    run = uuid.uuid4().hex[:6]
    subject, other = "+4504000001", "+4504000002"
    jobs = [
        {"id": f"{run}-a", "to": subject, "text": "one", "client": "shop"},
        {"id": f"{run}-b", "to": subject, "text": "two"},
        {"id": f"{run}-c", "to": other, "text": "three"},
    ]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=True)) as (engine, _s, _p, redis):
        await push(redis, key_prefix, jobs)
        await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        record = await redis.hgetall(f"{key_prefix}:job:{run}-a")
        assert record[b"to_hash"].decode() == keyed_hash(engine.settings.privacy.hash_secret.encode(), "4504000001")
        assert record[b"src_id"]
        rc = await erase_main(engine.settings, to=subject, client=None, now=immediate)
        assert rc == 0
        out = capsys.readouterr().out
        assert "4504000001" not in out and "2 record(s)" in out
        for jid in (f"{run}-a", f"{run}-b"):
            rec = await redis.hgetall(f"{key_prefix}:job:{jid}")
            if immediate:
                assert rec == {}
            else:
                assert rec[b"erased"] == b"1" and b"to_hash" not in rec and b"ref" not in rec
                assert 0 < await redis.ttl(f"{key_prefix}:job:{jid}") <= 120 * 86400
        assert (await redis.hgetall(f"{key_prefix}:job:{run}-c"))[b"state"] == b"delivered"
        # Raw payloads of the subject are gone from the lane; the other one stays.
        remaining = [f[b"to"] for _id, f in await redis.xrange(f"{key_prefix}:jobs")]
        assert remaining == [other.encode()]
        audit = await redis.xrange(f"{key_prefix}:audit")
        assert len(audit) == 1 and b"4504000001" not in b"".join(b"".join(kv) for kv in audit[0][1].items())


async def test_purge_trims_old_entries(redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    from redis.asyncio import Redis

    from engine.config import settings_from_mapping

    settings = settings_from_mapping({"redis": {"url": redis_url, "prefix": key_prefix}}, env={})
    redis = Redis.from_url(redis_url)
    try:
        await redis.xadd(f"{key_prefix}:events", {"id": "old"}, id="1000-0")
        await redis.xadd(f"{key_prefix}:events", {"id": "new"})
        assert await purge_main(settings) == 0
        ids = [f[b"id"] for _i, f in await redis.xrange(f"{key_prefix}:events")]
        assert ids == [b"new"]
        assert "1 entry past 120 days removed" in capsys.readouterr().out
    finally:
        await delete_prefix(redis, key_prefix)
        await redis.aclose()
