"""Inbound messages end to end: the simulator sends mobile-originated messages over
TCP (single, UDH 8/16-bit, SAR; GSM 7 bit and UCS-2; parts out of order, on
different binds, one missing) and each arrives on the inbound stream whole, or
`partial` after the reassembly wait; opt-out keywords change suppression lists."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from connectors.simulator import SimulatorConfig
from engine.keys import Keys
from privacy_hooks import KeyedHasher
from tests.engine.harness import running

PHONE = "4512345678"
SHOP_CODE = "1234"
CLIENTS = [{"id": "shop", "numbers": [SHOP_CODE, "+4570000000"]}]
LONG_GSM = "Hello from a phone, this message is long enough to need three parts [with escapes] {and more}. " * 4
assert len(LONG_GSM) == 380
LONG_UCS2 = "Привет! Это длинное сообщение из телефона, которое не помещается в одну часть. "


async def _inbound(redis: Redis, prefix: str, n: int, timeout_s: float = 15.0) -> list[dict[str, str]]:
    """Wait until the inbound stream holds ``n`` entries; return them decoded."""
    deadline = time.monotonic() + timeout_s
    last = "0"
    out: list[dict[str, str]] = []
    while len(out) < n:
        assert time.monotonic() < deadline, f"{len(out)} of {n} inbound message(s) arrived: {[(m['parts'], m['partial'], len(m['text'])) for m in out]}"
        reply = await redis.xread({Keys(prefix).inbound: last}, block=100)
        for _s, entries in reply or []:
            for eid, fields in entries:
                last = eid.decode()
                out.append({k.decode(): v.decode() for k, v in fields.items()})
    return out


async def _until(predicate: Any, timeout_s: float = 5.0) -> None:
    """Wait for a condition the engine reaches a moment after its Redis writes."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def _bound(sim: Any, binds: int = 2) -> None:
    await sim.wait_for(lambda: len(sim.receivers()) >= binds)


async def test_single_and_concatenated_messages_arrive_whole(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=CLIENTS) as (
        eng, sim, _rec, redis,
    ):
        await _bound(sim)
        sim.send_inbound(PHONE, SHOP_CODE, "Hello there")
        # 3 parts with an 8-bit reference, last part first, spread over both binds
        assert sim.send_inbound(PHONE, SHOP_CODE, LONG_GSM, concat="udh8", ref=7, order=[2, 0, 1],
                                spread=True) == 3
        # UCS-2 with a 16-bit reference, and with SAR TLVs, from another phone to a long number
        sim.send_inbound("4699887766", "+4570000000", LONG_UCS2 * 2, encoding="ucs2", concat="udh16", ref=0x1234,
                         order=[1, 2, 0], spread=True)
        sim.send_inbound("4699887766", "4588", LONG_UCS2 * 2, encoding="ucs2", concat="sar", ref=0x0203,
                         spread=True)
        got = await _inbound(redis, key_prefix, 4)
        by_text = {m["text"]: m for m in got}
        assert set(by_text) == {"Hello there", LONG_GSM, LONG_UCS2 * 2}
        single = by_text["Hello there"]
        assert (single["from"], single["to"], single["client"], single["parts"], single["partial"]) == (
            PHONE, SHOP_CODE, "shop", "1", "0")
        assert single["from_hash"] == KeyedHasher(eng.settings.privacy.hash_secret)(PHONE)
        assert int(single["retention_until"]) > time.time() + 100 * 86400
        assert by_text[LONG_GSM]["parts"] == "3"
        ucs2 = sorted((m for m in got if m["text"] == LONG_UCS2 * 2), key=lambda m: m["to"])
        assert [(m["to"], m["client"], m["parts"]) for m in ucs2] == [("4570000000", "shop", "3"), ("4588", "", "3")]
        # every part was answered, and nothing is left waiting for a part
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 10)
        assert await redis.zcard(Keys(key_prefix).inbound_due) == 0


async def test_a_missing_part_is_published_partial_after_the_wait(redis_url: str, key_prefix: str) -> None:
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False,
                       inbound={"reassembly_wait_s": 0.5}) as (eng, sim, _rec, redis):
        await _bound(sim)
        text = "0123456789 abcdefghi " * 19  # 399 septets without escapes: parts of 153, 153, 93
        assert sim.send_inbound(PHONE, SHOP_CODE, text, concat="udh8", ref=9, skip=[1]) == 2
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 2)  # answered once stored, not once complete
        keys = [k.decode() async for k in redis.scan_iter(match=f"{key_prefix}:inbound:parts:*")]
        assert len(keys) == 1 and PHONE not in keys[0]
        (msg,) = await _inbound(redis, key_prefix, 1)
        assert (msg["partial"], msg["parts"], msg["total"]) == ("1", "2", "3")
        assert msg["text"] == text[:153] + text[306:]
        partial = eng.metrics.inbound_partial._value  # type: ignore[attr-defined]
        await _until(lambda: partial.get() == 1)
        assert [k async for k in redis.scan_iter(match=f"{key_prefix}:inbound:parts:*")] == []
        # a whole message, then one of its parts again (an SMSC that missed our deliver_sm_resp):
        # published once, and the resent part does not come back as a `partial` message
        sim.send_inbound(PHONE, SHOP_CODE, text, concat="udh8", ref=10)
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 5)
        assert sim.send_inbound(PHONE, SHOP_CODE, text, concat="udh8", ref=10, skip=[0, 2]) == 1
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 6)
        assert [m["partial"] for m in await _inbound(redis, key_prefix, 2)] == ["1", "0"]
        assert await eng.receipts.inbound.sweep(int(time.time() * 1000) + 3_600_000) == 0
        assert await redis.xlen(Keys(key_prefix).inbound) == 2


async def test_stop_in_any_casing_suppresses_and_start_restores(redis_url: str, key_prefix: str) -> None:
    clients = [{"id": "shop", "numbers": [SHOP_CODE], "opt_out_reply": "You will get no more messages."}]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=clients) as (
        eng, sim, _rec, redis,
    ):
        await _bound(sim)
        k = Keys(key_prefix)
        phone_hash = KeyedHasher(eng.settings.privacy.hash_secret)(PHONE)
        other = "4611223344"
        sim.send_inbound(PHONE, SHOP_CODE, "  stop ")
        sim.send_inbound(other, "9999", "Afmeld")  # no client: the default list, Danish keyword
        sim.send_inbound("4622334455", SHOP_CODE, "stop please")  # not a keyword
        await _inbound(redis, key_prefix, 3)
        await sim.wait_for(lambda: sim.stats.dlr_resps >= 3)
        assert await redis.smembers(k.suppression("shop")) == {phone_hash.encode()}
        assert await redis.smembers(k.suppression("")) == {KeyedHasher(eng.settings.privacy.hash_secret)(other).encode()}
        # the confirmation reply is an ordinary job back to the phone, from the short code
        await sim.wait_for(lambda: sim.stats.submits >= 1)
        jobs = await redis.xrange(k.jobs)
        assert [(f[b"to"], f[b"from"], f[b"kind"]) for _id, f in jobs] == [(PHONE.encode(), SHOP_CODE.encode(),
                                                                            b"transactional")]
        audit = await redis.xrange(k.audit)
        actions = [f[b"action"] for _id, f in audit if f[b"action"].startswith(b"suppress")]
        assert actions == [b"suppress_add", b"suppress_add"]
        assert not any(PHONE.encode() in v or other.encode() in v for _id, f in audit for v in f.values())
        sim.send_inbound(PHONE, SHOP_CODE, "START")
        await _inbound(redis, key_prefix, 4)
        for _ in range(100):
            if not await redis.sismember(k.suppression("shop"), phone_hash):
                break
            await asyncio.sleep(0.02)
        assert not await redis.sismember(k.suppression("shop"), phone_hash)
        # no number in clear in any key the engine wrote
        names = [key.decode() async for key in redis.scan_iter(match=f"{key_prefix}:*")]
        assert not [n for n in names if PHONE in n or other in n]
        assert eng.metrics.opt_outs.labels("out")._value.get() == 2  # type: ignore[attr-defined]
        await _until(lambda: eng.metrics.opt_outs.labels("in")._value.get() == 1)  # type: ignore[attr-defined]
        from prometheus_client import generate_latest

        exposition = generate_latest(eng.metrics.registry)
        assert PHONE.encode() not in exposition and other.encode() not in exposition


async def test_a_clients_inbound_webhook_gets_the_message_signed_and_nothing_is_logged(
    redis_url: str, key_prefix: str, caplog: Any
) -> None:
    import hashlib
    import hmac
    import logging

    import orjson
    from aiohttp import web

    from engine.receipt_sink import webhook_secret

    received: list[tuple[bytes, str]] = []
    got = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get("X-Sendgate-Signature", "")))
        got.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/mo", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    clients = [{"id": "shop", "numbers": [SHOP_CODE], "inbound_webhook": f"http://127.0.0.1:{port}/mo"}]
    caplog.set_level(logging.DEBUG)
    try:
        # the receiver listens on 127.0.0.1: allowed here, refused by default
        async with running(
            redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=clients,
            webhooks={"allow_private": True},
        ) as (eng, sim, _rec, redis):
            await _bound(sim)
            sim.send_inbound(PHONE, SHOP_CODE, LONG_UCS2 * 2, encoding="ucs2", concat="sar", ref=5, spread=True)
            sim.send_inbound(PHONE, "5555", "not the shop's")  # another number: no webhook
            await _inbound(redis, key_prefix, 2)
            await asyncio.wait_for(got.wait(), 10)
            key = webhook_secret(eng.settings)
        assert len(received) == 1
        body, signature = received[0]
        assert signature == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        message = orjson.loads(body)
        assert (message["text"], message["from"], message["client"], message["parts"]) == (
            LONG_UCS2 * 2, PHONE, "shop", "3")
        assert message["id"] and message["partial"] == "0"
    finally:
        await runner.cleanup()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PHONE not in logged and "Привет" not in logged and "not the shop" not in logged


async def test_the_simulators_inbound_mode_sends_on_its_own(redis_url: str, key_prefix: str) -> None:
    """`sendgate simulate --inbound-every-s`: a message every interval, reassembled by the engine."""
    cfg = SimulatorConfig(dlr=False, inbound_every_s=0.05, inbound_from="4711223344", inbound_to=SHOP_CODE,
                          inbound_text=LONG_GSM, inbound_concat="udh16")
    async with running(redis_url, key_prefix, cfg, proxy=False, clients=CLIENTS) as (_eng, _sim, _rec, redis):
        got = await _inbound(redis, key_prefix, 2)
        assert [(m["text"], m["parts"], m["client"], m["from"]) for m in got[:2]] == [
            (LONG_GSM, "3", "shop", "4711223344")] * 2


async def test_stop_in_several_casings_and_spacings_and_unstop_restores(redis_url: str, key_prefix: str) -> None:
    """Each of these texts is an opt-out for the client it was sent to; UNSTOP and START
    (any casing, spaces around) take the sender off again; near misses change nothing."""
    phones = [f"45{40000000 + i}" for i in range(8)]
    opt_outs = ["STOP", "stop", "Stop", "sToP", "  STOP  ", "\r\nStop\n", " unsubscribe ", "QUIT"]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), proxy=False, clients=CLIENTS) as (
        eng, sim, _rec, redis,
    ):
        await _bound(sim, 1)
        k = Keys(key_prefix)
        hashes = [KeyedHasher(eng.settings.privacy.hash_secret)(p) for p in phones]
        for phone, text in zip(phones, opt_outs, strict=True):
            sim.send_inbound(phone, SHOP_CODE, text)
        sim.send_inbound("4549999999", SHOP_CODE, "S T O P")  # not a keyword
        sim.send_inbound("4549999998", SHOP_CODE, "STOP.")  # nor this
        await _inbound(redis, key_prefix, 10)
        await _until_async(lambda: _members(redis, k.suppression("shop"), 8))
        assert await redis.smembers(k.suppression("shop")) == {h.encode() for h in hashes}
        for phone, text in zip(phones[:3], (" UNSTOP ", "start", "Start\r\n"), strict=True):
            sim.send_inbound(phone, SHOP_CODE, text)
        await _inbound(redis, key_prefix, 13)
        await _until_async(lambda: _members(redis, k.suppression("shop"), 5))
        assert await redis.smembers(k.suppression("shop")) == {h.encode() for h in hashes[3:]}
        assert await redis.exists(k.suppression("")) == 0  # sent to the shop's code: nothing on the default list


async def _members(redis: Redis, key: str, n: int) -> bool:
    return int(await redis.scard(key)) == n


async def _until_async(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)
