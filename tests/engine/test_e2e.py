"""End to end: jobs stream → engine → SMPP (real TCP) → simulator → receipts → events.

Real Redis (REDIS_URL or embedded), real simulator on 127.0.0.1, a recording
proxy on the wire.
"""

from __future__ import annotations

import uuid
from collections import Counter

from connectors.simulator import SimulatorConfig
from engine.text.segmenter import SegmentOptions, segment
from tests.engine.harness import push, running, wait_events

ORDER = {"submitted": 0, "enroute": 1, "accepted": 1, "delivered": 2, "undeliverable": 2, "expired": 2}


def _jobs(n: int, **extra: str) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    return [{"id": f"{run}-{i}", "to": f"+4501{i:06d}", "text": f"Hello number {i}", **extra} for i in range(n)]


async def test_jobs_are_submitted_receipted_and_acked(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix) as (_engine, sim, proxy, redis):
        jobs = _jobs(300)
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        for job in jobs:
            names = [e["event"] for e in events[job["id"]]]
            assert names == ["submitted", "delivered"], names
            sub, dlv = events[job["id"]]
            assert sub["ref"] == "" and sub["carrier"] == "sim" and sub["parts"] == "1"
            assert dlv["message_ids"] == sub["message_ids"] != ""
        assert sim.stats.submits == 300
        assert sim.stats.window_violations == 0
        assert proxy is not None and len(proxy.submits) == 300
        # Every stream entry acked.
        pending = await redis.xpending(f"{key_prefix}:jobs", "sendgate")
        assert pending["pending"] == 0


async def test_engine_raises_the_collector_threshold_while_it_runs(redis_url: str, key_prefix: str) -> None:
    """engine.app.GC_GEN0_THRESHOLD while running (the default 700 cost ~15 % of the
    engine's CPU); the process's own thresholds again after close()."""
    import gc

    from engine.app import GC_GEN0_THRESHOLD

    before = gc.get_threshold()
    assert before[0] != GC_GEN0_THRESHOLD
    async with running(redis_url, key_prefix, proxy=False):
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before


def test_engines_in_one_process_restore_the_collector_threshold_in_any_order() -> None:
    """Two engines in one process (the shard tests run two): the first to start raises
    the threshold, the last to close restores the process's own, whichever closes first."""
    import gc

    from engine.app import GC_GEN0_THRESHOLD, _GcThreshold

    before = gc.get_threshold()
    g = _GcThreshold()
    try:
        assert g.raise_threshold() == before
        assert g.raise_threshold() == before  # the second engine saves nothing of its own
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
        g.restore()  # the first engine closes: the second still runs
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
        g.restore()
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)


async def test_pdus_on_the_wire_match_the_segmenter(redis_url: str, key_prefix: str) -> None:
    texts = {
        "gsm": "Plain GSM text with extension chars {[]} and €",
        "ucs2": "Привет, мир 🎉",
        "long": "Long message. " * 30,
        "longucs2": "Ω" * 140,
    }
    run = uuid.uuid4().hex[:6]
    jobs = [{"id": f"{run}-{k}", "to": "+4501000001", "text": t} for k, t in texts.items()]
    async with running(redis_url, key_prefix) as (_engine, _sim, proxy, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        assert proxy is not None
        for job in jobs:
            expected = segment(job["text"], SegmentOptions())
            sub = events[job["id"]][0]
            assert sub["event"] == "submitted" and sub["parts"] == str(len(expected.parts))
        # The wire carries exactly the segmenter's parts (UDH ref aside).
        wire = sorted((p.data_coding, p.esm_class, len(p.short_message)) for p in proxy.submits)
        want = sorted(
            (part.data_coding, part.esm_class, len(part.short_message))
            for job in jobs
            for part in segment(job["text"], SegmentOptions()).parts
        )
        assert wire == want
        for p in proxy.submits:
            assert p.destination_addr == "4501000001"
            assert p.registered_delivery == 1


async def test_dead_letters_carry_codes_and_reasons(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    bad = [
        ({"id": f"{run}-1", "text": "x"}, "missing_field"),
        ({"id": f"{run}-2", "to": "12ab", "text": "x"}, "bad_number"),
        ({"id": f"{run}-3", "to": "+4501000001", "text": ""}, "empty_text"),
        ({"id": f"{run}-4", "to": "+4501000001", "text": "x", "carrier": "nope"}, "unknown_carrier"),
        ({"id": f"{run}-5", "to": "+4501000001", "text": "x" * 2000}, "too_many_parts"),
        ({"id": f"{run}-6", "to": "+4501000001", "text": "x", "expires_at": "1000"}, "expired"),
        ({"id": f"{run}-7", "to": "+4501000001", "text": "Ж", "encoding": "gsm7"}, "bad_encoding"),
    ]
    async with running(redis_url, key_prefix) as (_engine, sim, _proxy, redis):
        pipe = redis.pipeline(transaction=False)
        for fields, _code in bad:
            pipe.xadd(f"{key_prefix}:jobs", fields)
        pipe.xadd(f"{key_prefix}:jobs", {"id": f"{run}-8", "to": "+4501000001", "text": b"caf\xc3"})
        await pipe.execute()
        good = _jobs(1)
        await push(redis, key_prefix, good)
        got = await wait_events(redis, key_prefix, {good[0]["id"]})
        assert [e["event"] for e in got[good[0]["id"]]] == ["submitted", "delivered"], got
        dead = await redis.xrange(f"{key_prefix}:dead")
        by_id = {f[b"id"].decode(): f for _eid, f in dead}
        for fields, code in bad:
            entry = by_id[fields["id"]]
            assert entry[b"code"].decode() == code
            assert entry[b"reason"]
            assert b"4501000001" not in entry[b"reason"]
        malformed = by_id[f"{run}-8"]
        assert malformed[b"code"] == b"invalid" and malformed[b"text"] == b"caf\xc3"
        assert sim.stats.submits == 1
        expired = await wait_events(redis, key_prefix, {f"{run}-6"})
        assert expired[f"{run}-6"][0]["event"] == "expired"
        # its only event is its first: it describes the job for the history row, number masked
        first = expired[f"{run}-6"][0]
        assert first["to_mask"] == "+45******01" and len(first["to_hash"]) == 32 and first["kind"] == "transactional"
        pending = await redis.xpending(f"{key_prefix}:jobs", "sendgate")
        assert pending["pending"] == 0


async def test_duplicate_job_ids_are_sent_once(redis_url: str, key_prefix: str) -> None:
    jobs = _jobs(20)
    async with running(redis_url, key_prefix) as (_engine, sim, _proxy, redis):
        await push(redis, key_prefix, jobs + jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        await push(redis, key_prefix, jobs[:5])  # again, later
        marker = _jobs(1)
        await push(redis, key_prefix, marker)
        await wait_events(redis, key_prefix, {marker[0]["id"]})
        assert sim.stats.submits == 21
        for job in jobs:
            assert [e["event"] for e in events[job["id"]]].count("submitted") == 1
        pending = await redis.xpending(f"{key_prefix}:jobs", "sendgate")
        assert pending["pending"] == 0


async def test_multipart_receipts_aggregate(redis_url: str, key_prefix: str) -> None:
    cfg = SimulatorConfig(dlr=True, dlr_states={"DELIVRD": 1.0})
    run = uuid.uuid4().hex[:6]
    job = {"id": f"{run}-long", "to": "+4501000002", "text": "word " * 100}
    async with running(redis_url, key_prefix, cfg) as (_engine, _sim, _proxy, redis):
        await push(redis, key_prefix, [job])
        events = await wait_events(redis, key_prefix, {job["id"]})
        names = [e["event"] for e in events[job["id"]]]
        assert names == ["submitted", "delivered"]
        assert events[job["id"]][1]["parts"] == "4"
        assert len(events[job["id"]][1]["message_ids"].split(",")) == 4


async def test_scheduled_job_is_held_until_send_at(redis_url: str, key_prefix: str) -> None:
    import time

    job = _jobs(1)[0]
    job["send_at"] = str(int(time.time()) + 2)
    async with running(redis_url, key_prefix) as (_engine, sim, _proxy, redis):
        await push(redis, key_prefix, [job])
        t0 = time.time()
        events = await wait_events(redis, key_prefix, {job["id"]})
        sent_at = int(events[job["id"]][0]["ts"]) / 1000
        assert sent_at >= float(job["send_at"]) - 0.5
        assert time.time() - t0 < 10
        assert sim.stats.submits == 1


async def test_carrier_tps_limit_holds_across_two_engines(redis_url: str, key_prefix: str) -> None:
    """Two engine processes' worth of pipelines share one carrier TPS budget through Redis."""
    import time

    from engine.app import Engine
    from tests.engine.harness import make_settings

    tps = 100
    jobs = _jobs(400)
    async with running(redis_url, key_prefix, carrier={"tps": tps}, consumer="one") as (_e, sim, proxy, redis):
        second = Engine(make_settings(redis_url, key_prefix, proxy.port if proxy else sim.port,
                                      carrier={"tps": tps}, consumer="two"), redis_url)
        await second.start()
        try:
            t0 = time.monotonic()
            await push(redis, key_prefix, jobs)
            await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=30)
            elapsed = time.monotonic() - t0
        finally:
            await second.close()
        # 400 submits at 100/s with a burst of at most one second's worth: >= 3 s in all.
        assert sim.stats.submits == 400
        assert elapsed >= (400 - tps) / tps * 0.95, elapsed


async def test_job_expiring_while_waiting_for_the_window_is_not_sent(redis_url: str, key_prefix: str) -> None:
    """A slow SMSC and a window of one: jobs queue in the engine past their expires_at."""
    import time

    jobs = _jobs(5)
    # 1-2 s from now (whole seconds): room for the engine to claim the first chunk on
    # a loaded machine, well before the 2.5 s resp frees the window for the next
    deadline = str(int(time.time()) + 2)
    for job in jobs:
        job["expires_at"] = deadline
    cfg = SimulatorConfig(dlr=False, latency_ms=2500)
    async with running(redis_url, key_prefix, cfg, carrier={"binds": 1, "window": 1}) as (_e, sim, _p, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=30)
        outcomes = [events[j["id"]][0]["event"] for j in jobs]
        # Claimed before the deadline (at most two windows' worth): sent; the rest expired unsent.
        sent, expired = outcomes.count("submitted"), outcomes.count("expired")
        assert sent + expired == 5 and 1 <= sent <= 2, outcomes
        dead = await redis.xrange(f"{key_prefix}:dead")
        assert [f[b"code"] for _i, f in dead] == [b"expired"] * expired
        assert sim.stats.submits == sent
        assert (await redis.xpending(f"{key_prefix}:jobs", "sendgate"))["pending"] == 0


async def test_bind_refused_for_credentials_is_audited_without_the_password(redis_url: str, key_prefix: str) -> None:
    import asyncio
    import time

    cfg = SimulatorConfig(system_id="test", password="right")
    async with running(redis_url, key_prefix, cfg, proxy=False) as (engine, sim, _p, redis):
        assert engine.pools["sim"].binds_up() == 0
        deadline = time.monotonic() + 20
        entries: list = []
        while not entries:
            assert time.monotonic() < deadline, "no audit entry"
            entries = await redis.xrange(f"{key_prefix}:audit")
            await asyncio.sleep(0.1)
        for _id, fields in entries:  # one per bind refused
            assert fields[b"action"] == b"bind_credentials_refused"
            assert fields[b"carrier"] == b"sim" and fields[b"system_id"] == b"test"
            assert fields[b"bind"].startswith(b"sim-")
            assert b"pw" not in b" ".join(fields.values())
        assert sim.stats.bind_failures >= 1


async def test_parts_lost_with_a_dropped_bind_are_resent_when_configured(redis_url: str, key_prefix: str) -> None:
    jobs = _jobs(200)
    for job in jobs:
        job["dlr"] = "0"
    cfg = SimulatorConfig(dlr=False, latency_ms=20, drop_after=60, drop_limit=1)
    async with running(redis_url, key_prefix, cfg, resend_unknown=True, carrier={"reconnect_min_s": 0.05}) as (
        _e, sim, proxy, redis,
    ):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=30)
        assert all([e["event"] for e in events[j["id"]]] == ["submitted"] for j in jobs)
        assert sim.stats.drops == 1
        assert proxy is not None
        sent = {p.destination_addr for p in proxy.submits}
        assert len(sent) == 200  # every job reached the SMSC; some twice (at least once)


async def test_parts_lost_with_a_dropped_bind_are_unknown_by_default(redis_url: str, key_prefix: str) -> None:
    jobs = _jobs(200)
    for job in jobs:
        job["dlr"] = "0"
    cfg = SimulatorConfig(dlr=False, latency_ms=20, drop_after=60, drop_limit=1)
    async with running(redis_url, key_prefix, cfg, carrier={"reconnect_min_s": 0.05}) as (_e, sim, proxy, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=30)
        outcomes = [events[j["id"]][0]["event"] for j in jobs]
        assert set(outcomes) == {"submitted", "unknown"} and sim.stats.drops == 1
        assert proxy is not None
        per_destination = Counter(p.destination_addr for p in proxy.submits)
        assert max(per_destination.values()) == 1  # never sent twice


async def test_admin_endpoints_of_a_running_engine(redis_url: str, key_prefix: str) -> None:
    import aiohttp
    import orjson

    jobs = _jobs(20)
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=True)) as (engine, _s, _p, redis):
        # the harness runs without admin; start one on an ephemeral port like `[admin] listen` does
        from engine.admin import AdminServer

        admin = AdminServer("127.0.0.1:0", engine.metrics.registry, engine._ready, engine.status)
        await admin.start()
        try:
            await push(redis, key_prefix, jobs)
            await wait_events(redis, key_prefix, {j["id"] for j in jobs})
            base = f"http://127.0.0.1:{admin.port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/healthz") as r:
                    assert r.status == 200
                async with http.get(f"{base}/readyz") as r:
                    body = orjson.loads(await r.read())
                    assert r.status == 200 and body["ready"] is True and body["binds_up"] == {"sim": 2}
                async with http.get(f"{base}/status") as r:
                    status = orjson.loads(await r.read())
                    assert status["carriers"]["sim"]["binds_up"] == 2
                async with http.get(f"{base}/metrics") as r:
                    text = (await r.read()).decode()
            assert 'sendgate_submits_total{carrier="sim",result="ok"} 20.0' in text
            assert 'sendgate_receipts_total{carrier="sim",state="delivered"} 20.0' in text
            assert 'sendgate_receipt_latency_seconds_count{carrier="sim"} 20.0' in text
            assert 'sendgate_binds_up{carrier="sim"} 2.0' in text
            assert 'sendgate_bind_inflight{bind="sim-trx1",carrier="sim"}' in text
            assert "sendgate_submit_latency_seconds_bucket" in text
            assert "4501" not in text  # no number in a label
        finally:
            await admin.close()
