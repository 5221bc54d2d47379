"""Account closure end to end: a closed client's jobs are dead-lettered, its records re-stamped, reopening restores."""

from __future__ import annotations

import asyncio
import time
import uuid

from connectors.simulator import SimulatorConfig
from engine.closure import close_client, reopen_client
from engine.history import deltas_from_entries
from engine.keys import Keys
from tests.engine.harness import push, running, wait_events
from tests.history.events import event_fields

DAY = 86_400


async def test_close_and_reopen_client(redis_url: str, key_prefix: str) -> None:
    from engine.history.cli import store_for

    run = uuid.uuid4().hex[:6]
    closed, other = f"shop-{run}", f"else-{run}"
    k = Keys(key_prefix)
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False)) as (engine, _sim, proxy, redis):
        settings = engine.settings
        store = store_for(settings)
        try:
            await store.migrate()
            first_ms = int(time.time() * 1000) - 10 * DAY * 1000  # a job of ten days ago
            await store.write(deltas_from_entries([(b"1-0", event_fields(f"{run}-old", "delivered", first_ms,
                                                                        first=True, client=closed))]), first_ms)
            await redis.sadd(k.suppression(closed), "ab" * 16)
            t0 = int(time.time())
            done = await close_client(redis, settings, closed, store=store)
            assert done["history_rows"] == 1 and done["already_closed"] == 0
            [row] = await store.find(client=closed)
            assert row.retention_until == done["closed_at"] + 120 * DAY  # 60 + 60 days from closure
            assert 60 * DAY - 5 <= await redis.ttl(k.suppression(closed)) <= 60 * DAY  # contacts: 60 days
            # the engine loads closures every few seconds (no call per message)
            for _ in range(200):
                if closed in engine.pipeline.closed_clients:
                    break
                await asyncio.sleep(0.05)
            assert closed in engine.pipeline.closed_clients
            await push(redis, key_prefix, [{"id": f"{run}-c", "to": "+4500000001", "text": "x", "client": closed},
                                           {"id": f"{run}-o", "to": "+4500000002", "text": "y", "client": other}])
            events = await wait_events(redis, key_prefix, {f"{run}-c", f"{run}-o"}, final=False)
            assert [(e["event"], e["error"]) for e in events[f"{run}-c"]] == [("rejected", "client_closed")]
            assert events[f"{run}-o"][0]["event"] == "submitted"
            assert proxy is not None and {str(p.destination_addr) for p in proxy.submits} == {"4500000002"}
            [(_id, dead)] = await redis.xrange(k.dead)
            assert (dead[b"id"], dead[b"code"]) == (f"{run}-c".encode(), b"client_closed")
            # closing again changes no deadline
            again = await close_client(redis, settings, closed, store=store, now_s=t0 + 100)
            assert again["already_closed"] == 1 and again["closed_at"] == done["closed_at"]
            # reopening: the mark goes, rows get their normal deadline back, the list its expiry off
            back = await reopen_client(redis, settings, closed, store=store)
            assert back["was_closed"] == 1 and not await redis.hexists(k.clients_closed, closed)
            row = await store.get(f"{run}-old")
            assert row is not None and row.retention_until == first_ms // 1000 + 120 * DAY
            assert await redis.ttl(k.suppression(closed)) == -1
            actions = [f[b"action"] for _i, f in await redis.xrange(k.audit) if f[b"action"].startswith(b"client_")]
            assert actions == [b"client_close", b"client_close", b"client_reopen"]
        finally:
            await store.close()
