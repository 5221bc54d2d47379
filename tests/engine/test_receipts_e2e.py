"""Receipts end to end: simulator over TCP → engine → correlation → events → webhooks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from typing import Any

import orjson
import pytest
from aiohttp import web

from connectors.pdu import DataSm, DeliverSm
from connectors.simulator import SimulatorConfig
from engine.config import settings_from_mapping
from engine.metrics import Metrics
from engine.receipt_sink import ReceiptSink, webhook_secret
from tests.correlation import put_entry
from tests.engine.harness import delete_prefix, push, running, wait_events


def _job(i: int, run: str, **extra: str) -> dict[str, str]:
    return {"id": f"{run}-{i}", "to": f"+4503{i:06d}", "text": f"receipt test {i}", **extra}


async def test_receipt_before_resp_is_still_matched(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    jobs = [_job(i, run) for i in range(50)]
    # the receipt leaves at once, the submit_sm_resp 20 ms later: the receipt is held
    cfg = SimulatorConfig(dlr=True, receipt_before_resp=True, latency_ms=20.0)
    async with running(redis_url, key_prefix, cfg, receipt_hold_s=10.0) as (_e, sim, _p, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        for job in jobs:
            assert [e["event"] for e in events[job["id"]]] == ["submitted", "delivered"]
        assert await redis.xlen(f"{key_prefix}:dlr:unmatched") == 0
        assert sim.stats.receipts == 50
        # every receipt was held (it came before its submit was recorded) and written on
        # a retry: its event's ts is when it was written, after the submitted event's
        # (docs/contract.md §2.4), not when the receipt was received
        early = [j["id"] for j in jobs if int(events[j["id"]][1]["ts"]) < int(events[j["id"]][0]["ts"])]
        assert not early, f"{len(early)} of 50 final events carry a ts before their submitted event's"


async def test_receipts_arrive_on_the_rx_bind_of_a_tx_rx_pair(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    jobs = [_job(i, run) for i in range(40)]
    carrier = {"bind": "transmitter+receiver", "binds": 1}
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=True), carrier=carrier) as (engine, _s, _p, redis):
        assert [b.mode for b in engine.pools["sim"].binds] == ["transmitter", "receiver"]
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        assert all(events[j["id"]][-1]["event"] == "delivered" for j in jobs)


async def test_decimal_ids_in_receipts_for_a_hex_carrier(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    jobs = [_job(i, run) for i in range(30)]
    cfg = SimulatorConfig(dlr=True, id_format="hex", receipt_id_format="dec")
    carrier = {"dlr_id_format": "hex-to-dec"}
    async with running(redis_url, key_prefix, cfg, carrier=carrier) as (_e, _s, _p, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        for job in jobs:
            sub, final = events[job["id"]]
            assert final["event"] == "delivered"
            # Events carry the ids as the carrier returned them in submit_sm_resp.
            assert all(c in "0123456789abcdef" for c in sub["message_ids"])


async def test_multipart_mixed_final_states_take_the_worst(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    jobs = [_job(i, run, text="part " * 80) for i in range(20)]  # 3 parts each
    cfg = SimulatorConfig(dlr=True, dlr_states={"DELIVRD": 0.6, "UNDELIV": 0.4}, seed=3)
    async with running(redis_url, key_prefix, cfg) as (_e, _s, _p, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        mixed = 0
        for job in jobs:
            final = events[job["id"]][-1]
            record = await redis.hgetall(f"{key_prefix}:job:{job['id']}")
            states = [record[f"s:{n}".encode()].decode() for n in (1, 2, 3)]
            want = "delivered" if set(states) == {"delivered"} else "undeliverable"
            assert final["event"] == want, (states, final)
            if want != "delivered":
                assert final["part_states"].split(",") == states
                mixed += "delivered" in states
        assert mixed > 0  # the seed gives at least one job with both kinds of parts


async def test_receipt_never_comes_then_expiry_sweep_says_unknown(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    jobs = [_job(i, run) for i in range(5)]
    carrier = {"dlr_wait_h": 1.0 / 3600}  # one second
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), carrier=carrier) as (_e, _s, _p, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, timeout_s=20)
        for job in jobs:
            assert [e["event"] for e in events[job["id"]]] == ["submitted", "unknown"]
            assert events[job["id"]][1]["error"] == "dlr_timeout"
        # Correlation entries are gone with the final event: their buckets and the
        # sweep's list of them.
        assert not [k async for k in redis.scan_iter(match=f"{key_prefix}:dlr:c:sim:*")]
        assert not await redis.exists(f"{key_prefix}:dlr:due", f"{key_prefix}:dlr:idx:sim")


async def test_callbacks_receive_signed_events_with_retries(redis_url: str, key_prefix: str) -> None:
    received: list[tuple[dict[str, Any], str]] = []
    failures = {"left": 2}
    got_all = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=503)
        received.append((orjson.loads(body), request.headers.get("X-Sendgate-Signature", "")))
        if len(received) >= 2:
            got_all.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    run = uuid.uuid4().hex[:6]
    job = _job(0, run, callback=f"http://127.0.0.1:{port}/hook", ref="order-9")
    try:
        async with running(
            redis_url, key_prefix, SimulatorConfig(dlr=True), webhooks={"allow_private": True}
        ) as (engine, _s, _p, redis):
            await push(redis, key_prefix, [job])
            await wait_events(redis, key_prefix, {job["id"]})
            await asyncio.wait_for(got_all.wait(), 30)
            key = webhook_secret(engine.settings)
        names = sorted(ev["event"] for ev, _sig in received)
        assert names == ["delivered", "submitted"]
        for ev, sig in received:
            assert ev["id"] == job["id"] and ev["ref"] == "order-9"
            body = orjson.dumps(ev)
            assert sig == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    finally:
        await runner.cleanup()


class _Bind:
    """Stands in for an SmppBind: records the deliver_sm_resp the sink sends."""

    def __init__(self) -> None:
        self.responses: list[tuple[int, int]] = []

    def respond(self, pdu: DeliverSm, command_status: int = 0) -> None:
        self.responses.append((pdu.sequence_number, command_status))

    def respond_many(self, pdus: list[DeliverSm], command_status: int = 0) -> None:
        for pdu in pdus:
            self.respond(pdu, command_status)

    def respond_sequences(self, deliver: list[int], data: list[int], command_status: int = 0) -> None:
        self.responses.extend((seq, command_status) for seq in deliver + data)


async def test_unparseable_receipt_is_acked_counted_and_kept(redis_url: str, key_prefix: str) -> None:
    from redis.asyncio import Redis

    settings = settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": key_prefix}, "carriers": [{"name": "c1"}]}, env={}
    )
    redis = Redis.from_url(redis_url)
    metrics = Metrics()
    sink = ReceiptSink(settings, redis, metrics)
    sink.start()
    bind = _Bind()
    try:
        sink.on_deliver("c1", bind, DeliverSm(sequence_number=7, esm_class=0x04, short_message=b"garbage without fields"))
        sink.on_deliver("c1", bind, DeliverSm(sequence_number=8, esm_class=0x00, source_addr="4599999999",
                                              destination_addr="1234", short_message=b"STOP"))
        for _ in range(200):
            if len(bind.responses) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(bind.responses) == [(7, 0), (8, 0)]
        invalid = await redis.xrange(f"{key_prefix}:dlr:invalid")
        assert len(invalid) == 1 and invalid[0][1][b"reason"]
        assert metrics.receipts_invalid.labels("c1")._value.get() == 1  # type: ignore[attr-defined]
        inbound = await redis.xrange(f"{key_prefix}:inbound")
        assert len(inbound) == 1 and inbound[0][1][b"text"] == b"STOP"
    finally:
        await sink.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_a_data_sm_receipt_is_correlated_and_answered(redis_url: str, key_prefix: str) -> None:
    """data_sm carries no short_message: the receipt is read from its TLVs and
    message_payload, its id normalised like a deliver_sm's ("00ABC" -> "abc")."""
    from redis.asyncio import Redis

    settings = settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": key_prefix}, "carriers": [{"name": "c1"}]}, env={}
    )
    redis = Redis.from_url(redis_url)
    sink = ReceiptSink(settings, redis, Metrics())
    # what the record script leaves for a single-part job without callback: the
    # entry alone (fast form), no job record
    await put_entry(redis, key_prefix, "c1", "abc", "=1764307800000\x1f00ABC\x1fref-7\x1fj-data")
    sink.start()
    bind = _Bind()
    try:
        sink.on_deliver("c1", bind, DataSm(sequence_number=11, esm_class=0x04, receipted_message_id="00ABC",
                                           message_state=2, message_payload=b"id:00ABC stat:DELIVRD err:000"))
        for _ in range(200):
            if bind.responses:
                break
            await asyncio.sleep(0.01)
        assert bind.responses == [(11, 0)]
        events = await redis.xrange(f"{key_prefix}:events")
        assert [(e[1][b"id"], e[1][b"event"], e[1][b"ref"]) for e in events] == [(b"j-data", b"delivered", b"ref-7")]
        assert not await redis.exists(f"{key_prefix}:job:j-data")  # none created
    finally:
        await sink.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_a_held_retry_whose_reply_is_lost_still_hands_over_its_callback_events(
    redis_url: str, key_prefix: str
) -> None:
    """A held receipt (it came before its submit was recorded) is retried; the call
    runs but both replies are lost (the store's own second try too). Meanwhile
    another receipt is held. The failed retry must be sent again unchanged: then
    it gets the first reply back and the job's callback event is handed over;
    merged with the new one it would only see that its receipt was retired (a duplicate)."""
    from redis.asyncio import Redis

    from dlr.store import ReceiptStore
    from tests.dlr.test_store import _ReplyCutter, rec, submit_job

    settings = settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": key_prefix}, "carriers": [{"name": "acme"}]}, env={}
    )
    cutter = await _ReplyCutter(redis_url, b"apply").start()
    cut_client = Redis.from_url(cutter.url)
    live = Redis.from_url(redis_url)
    sink = ReceiptSink(settings, live, Metrics())
    sink.store = ReceiptStore(cut_client, key_prefix)
    forwarded: list[tuple[str, dict[str, str]]] = []
    sink.webhooks.forward = lambda url, fields: forwarded.append((url, fields))  # type: ignore[method-assign]
    held = sink.unmatched["acme"]
    try:
        await submit_job(live, key_prefix, "held-cb", "acme", ["h1"])  # with a callback URL
        assert (await sink.store.apply("acme", [rec("nothing")])).unmatched  # script loaded
        held.hold(rec("h1"), now_ms=10**13)
        cutter.armed = 2
        with pytest.raises(Exception):  # noqa: B017 - redis-py's error for a connection closed mid-reply
            await sink._retry_held(everything=True)
        assert cutter.cuts == 2 and not forwarded
        [(_id, published)] = await live.xrange(f"{key_prefix}:events")  # it did run
        assert published[b"id"] == b"held-cb"
        held.hold(rec("other"), now_ms=10**13)  # a newer held receipt
        await sink._retry_held(everything=True)
        assert [(url, f["id"], f["event"]) for url, f in forwarded] == [("http://127.0.0.1/cb", "held-cb", "delivered")]
        assert len(await live.xrange(f"{key_prefix}:events")) == 1  # published once
        assert len(held) == 1  # "other" is held again, still unmatched
    finally:
        await delete_prefix(live, key_prefix)
        await live.aclose()
        await cut_client.aclose()
        await cutter.close()


async def test_receipt_on_the_last_part_only(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    jobs = [_job(i, run, text="part " * 80) for i in range(10)]  # 3 parts each
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=True), carrier={"registered_delivery": "last"}) as (
        _e, sim, proxy, redis,
    ):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs})
        assert all([e["event"] for e in events[j["id"]]] == ["submitted", "delivered"] for j in jobs)
        assert proxy is not None
        flags = sorted(p.registered_delivery for p in proxy.submits)
        assert flags == [0] * 20 + [1] * 10
        assert sim.stats.receipts == 10


async def test_no_receipt_requested_when_dlr_is_0(redis_url: str, key_prefix: str) -> None:
    run = uuid.uuid4().hex[:6]
    jobs = [_job(i, run, dlr="0") for i in range(10)]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=True)) as (_e, sim, proxy, redis):
        await push(redis, key_prefix, jobs)
        events = await wait_events(redis, key_prefix, {j["id"] for j in jobs}, final=False)
        assert all([e["event"] for e in events[j["id"]]] == ["submitted"] for j in jobs)
        assert proxy is not None and {p.registered_delivery for p in proxy.submits} == {0}
        assert sim.stats.receipts == 0
        # no correlation entry was written
        assert not [k async for k in redis.scan_iter(match=f"{key_prefix}:dlr:c:sim:*")]
        assert not await redis.exists(f"{key_prefix}:dlr:due", f"{key_prefix}:dlr:idx:sim")


async def test_held_receipts_survive_a_redis_outage_during_their_retry(redis_url: str, key_prefix: str) -> None:
    """Held receipts were answered to the SMSC already: a retry or a park that
    fails (Redis unreachable, for real: a closed port) must keep them."""
    import socket

    from redis.asyncio import Redis

    from dlr.store import ReceiptRecord, ReceiptStore

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    settings = settings_from_mapping(
        {"redis": {"url": redis_url, "prefix": key_prefix}, "carriers": [{"name": "c1"}]}, env={}
    )
    dead = Redis.from_url(f"redis://127.0.0.1:{dead_port}/0", socket_connect_timeout=0.5)
    live = Redis.from_url(redis_url)
    sink = ReceiptSink(settings, dead, Metrics())
    held = sink.unmatched["c1"]
    early, late = ReceiptRecord("r-early", "delivered", True, "", 1), ReceiptRecord("r-late", "expired", True, "", 1)
    try:
        held.hold(early, now_ms=10**13)  # first seen now: to retry
        held.hold(late, now_ms=1)  # first seen long ago: to park
        with pytest.raises(Exception):  # noqa: B017 - whatever redis-py raises for a refused connection
            await sink._retry_held(everything=True)
        # the failed retry is kept as it was (to be sent again unchanged), the one to park is held
        assert sink._stalled_held == {"c1": [early]}
        assert held.has_work()
        retry, expired = held.due(10**13, everything=True)
        assert retry == [] and expired == [late]
        held.give_back(expired)
        # Redis is back: the retry matches, the old one is parked
        sink.store = ReceiptStore(live, key_prefix)
        await live.hset(f"{key_prefix}:job:j-early", mapping={"parts": 1, "state": "submitted"})
        await put_entry(live, key_prefix, "c1", "r-early", "=5\x1fR-EARLY\x1f\x1fj-early")
        await sink._retry_held(everything=True)
        assert not held.has_work() and not sink._stalled_held
        [(_id, event)] = await live.xrange(f"{key_prefix}:events")
        assert event[b"id"] == b"j-early" and event[b"event"] == b"delivered"
        [(_id, parked)] = await live.xrange(f"{key_prefix}:dlr:unmatched")
        assert parked[b"message_id"] == b"r-late"
    finally:
        await delete_prefix(live, key_prefix)
        await live.aclose()
        await dead.aclose()
