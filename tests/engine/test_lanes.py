"""Priority, fairness and isolation, end to end: real Redis, simulators over TCP.

No carrier holds back another (a dead one, a slow one); ``high`` overtakes a
bulk backlog; normal and bulk share by ``lane_weights``; two clients share a
lane by ``[[clients]] weight``; outages fail over or fail with
``carrier_unavailable``. Each test awaits events in Redis (or the simulator's
counters) with a deadline; the bounds asserted are generous, the measured
figures are printed (``pytest -s``) for the README.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from redis.asyncio import Redis

from connectors.simulator import Simulator, SimulatorConfig, start_simulator
from engine.app import Engine
from engine.keys import Keys
from tests.engine.harness import delete_prefix, get_mark, make_settings, push


def _closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (an unreachable carrier)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jobs(n: int, prefix: str, number: str, **extra: str) -> list[dict[str, str]]:
    run = uuid.uuid4().hex[:6]
    return [{"id": f"{prefix}-{run}-{i}", "to": f"+{number}{i:06d}", "text": "hi", "dlr": "0", **extra}
            for i in range(n)]


@contextlib.asynccontextmanager
async def _engine(
    redis_url: str, prefix: str, first: dict[str, Any], *others: dict[str, Any], **engine: Any
) -> AsyncIterator[tuple[Engine, Redis]]:
    settings = make_settings(redis_url, prefix, first.pop("port"), carrier=first, extra_carriers=list(others), **engine)
    eng = Engine(settings, redis_url)
    redis = Redis.from_url(redis_url)
    await eng.start()
    try:
        yield eng, redis
    finally:
        await eng.close()
        await delete_prefix(redis, prefix)
        await redis.aclose()


async def _sims(*configs: SimulatorConfig) -> list[Simulator]:
    return [await start_simulator(c) for c in configs]


class _Events:
    """Follows the events stream: submitted time (event ts, s) per job id, events by name."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis, self.stream, self.last = redis, Keys(prefix).events, "0"
        self.first: dict[str, dict[str, str]] = {}

    async def poll(self) -> None:
        reply = await self.redis.xread({self.stream: self.last}, count=5000, block=50)
        for _s, entries in reply or []:
            for eid, f in entries:
                self.last = eid.decode()
                ev = {k.decode(): v.decode() for k, v in f.items()}
                self.first.setdefault(ev["id"], ev)

    async def until(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            await self.poll()

    def count(self, ids: set[str], event: str | None = None) -> int:
        return sum(1 for i in ids if i in self.first and (event is None or self.first[i]["event"] == event))


async def _wait(cond: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def _carrier(name: str, port: int, route: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": port, "system_id": "test", "password": "pw", "binds": 2, "window": 32,
            "routes": [route], "reconnect_min_s": 0.2, "reconnect_max_s": 0.5, **extra}


# -- isolation -----------------------------------------------------------------
async def _one_carrier_stuck(redis_url: str, key_prefix: str, acme: dict[str, Any], sims: list[Simulator]) -> None:
    beta_sim = sims[-1]
    async with _engine(redis_url, key_prefix, acme, _carrier("beta", beta_sim.port, "4502")) as (eng, redis):
        stuck = _jobs(5000, "acme", "4501")
        mine = _jobs(100, "beta", "4502")
        await push(redis, key_prefix, stuck)
        await push(redis, key_prefix, mine)
        t0 = time.monotonic()
        events = _Events(redis, key_prefix)
        ids = {j["id"] for j in mine}
        await events.until(lambda: events.count(ids, "submitted") == 100, 20, "beta's 100 jobs")
        took = time.monotonic() - t0
        print(f"\n[lanes] beta's 100 jobs behind 5,000 for a stuck acme: all submitted {took:.2f} s after the push")
        assert took < 10, took  # the figure is 2 s; generous here (2 shared cores)
        assert beta_sim.stats.submits == 100
        # acme's jobs wait in Redis (its park stream), not in memory
        held = sum(k.held for per_lane in eng.pipeline._classes["acme"] for k in per_lane.values())
        budget = eng.pipeline._classes["acme"][1]["other"].budget
        assert held <= budget, (held, budget)
        # Every one of acme's jobs is accounted for at one instant: unread or
        # unacked in its park stream, unacked in the lane (in hand), or sent.
        k = Keys(key_prefix)
        pipe = redis.pipeline(transaction=True)
        pipe.xinfo_groups(k.park("acme", "normal"))
        pipe.xinfo_groups(k.jobs)
        pipe.xlen(k.events)
        pipe.xinfo_stream(k.jobs)
        park_g, lane_g, n_events, lane_s = await pipe.execute()
        park_g, lane_g = park_g[0], lane_g[0]
        # the whole lane was read: acme's jobs did not stop the reading
        assert lane_g["last-delivered-id"] == lane_s["last-generated-id"]
        if "lag" not in park_g:  # Redis < 7 does not count unread entries: the rest needs it
            assert lane_g["pending"] + park_g["pending"] <= budget
            return
        in_park = park_g["lag"] + park_g["pending"]
        assert in_park + lane_g["pending"] + (n_events - 100) == 5000, (park_g, lane_g, n_events)
        assert lane_g["pending"] + park_g["pending"] <= budget  # in memory: the budget at most
        assert in_park >= 5000 - budget - (n_events - 100)


async def test_a_dead_carrier_holds_back_no_other(redis_url: str, key_prefix: str) -> None:
    """acme unreachable, 5,000 of its jobs ahead of 100 for beta: beta's are sent, acme's wait parked."""
    sims = await _sims(SimulatorConfig(dlr=False))
    try:
        await _one_carrier_stuck(redis_url, key_prefix, _carrier("acme", _closed_port(), "4501"), sims)
    finally:
        for s in sims:
            await s.close()


async def test_a_slow_carrier_holds_back_no_other(redis_url: str, key_prefix: str) -> None:
    """acme answers 10 submit_sm a second (ESME_RTHROTTLED above), the engine not told: the same."""
    sims = await _sims(SimulatorConfig(dlr=False, throttle_tps=10), SimulatorConfig(dlr=False))
    try:
        await _one_carrier_stuck(redis_url, key_prefix, _carrier("acme", sims[0].port, "4501"), sims)
        assert sims[0].stats.submits < 5000  # it was slow: most of its jobs waited
    finally:
        for s in sims:
            await s.close()


async def test_an_outage_moves_waiting_jobs_to_the_fallback(redis_url: str, key_prefix: str) -> None:
    sims = await _sims(SimulatorConfig(dlr=False))
    acme = _carrier("acme", _closed_port(), "4501", fallback="beta", outage_fail_after_s=1.0)
    try:
        async with _engine(redis_url, key_prefix, acme, _carrier("beta", sims[0].port, "4502")) as (_eng, redis):
            jobs = _jobs(600, "acme", "4501")
            await push(redis, key_prefix, jobs)
            events = _Events(redis, key_prefix)
            ids = {j["id"] for j in jobs}
            await events.until(lambda: events.count(ids) == 600, 30, "acme's jobs sent through beta")
            assert {events.first[i]["event"] for i in ids} == {"submitted"}
            assert {events.first[i]["carrier"] for i in ids} == {"beta"}
            assert sims[0].stats.submits == 600
    finally:
        await sims[0].close()


async def test_an_outage_without_fallback_fails_jobs_with_a_clear_code(redis_url: str, key_prefix: str) -> None:
    sims = await _sims(SimulatorConfig(dlr=False))
    acme = _carrier("acme", _closed_port(), "4501", outage_fail_after_s=1.0)
    try:
        async with _engine(redis_url, key_prefix, acme, _carrier("beta", sims[0].port, "4502")) as (_eng, redis):
            jobs = _jobs(300, "acme", "4501", ref="r1")
            await push(redis, key_prefix, jobs)
            events = _Events(redis, key_prefix)
            ids = {j["id"] for j in jobs}
            await events.until(lambda: events.count(ids) == 300, 30, "acme's jobs failed")
            assert {(events.first[i]["event"], events.first[i]["error"], events.first[i]["ref"]) for i in ids} == {
                ("failed", "carrier_unavailable", "r1")
            }
            dead = await redis.xrange(Keys(key_prefix).dead)
            assert {f[b"code"] for _i, f in dead} == {b"carrier_unavailable"} and len(dead) == 300
            assert sims[0].stats.submits == 0
    finally:
        await sims[0].close()


async def test_an_outage_of_the_only_carrier_fails_its_jobs_too(redis_url: str, key_prefix: str) -> None:
    """No carrier has room, so nothing would be read: a carrier in outage is read
    for anyway (its jobs parked, then failed)."""
    acme = _carrier("acme", _closed_port(), "", outage_fail_after_s=1.0)
    async with _engine(redis_url, key_prefix, acme) as (_eng, redis):
        jobs = _jobs(120, "solo", "4501", priority="bulk")
        await push(redis, key_prefix, jobs, lane="jobs:bulk")
        events = _Events(redis, key_prefix)
        ids = {j["id"] for j in jobs}
        await events.until(lambda: events.count(ids) == 120, 30, "the jobs failed")
        assert {(events.first[i]["event"], events.first[i]["error"]) for i in ids} == {("failed", "carrier_unavailable")}


async def test_with_outage_fail_after_0_jobs_stay_queued(redis_url: str, key_prefix: str) -> None:
    """The default: a carrier without a bind keeps its jobs (parked), fails none, sends none."""
    sims = await _sims(SimulatorConfig(dlr=False))
    acme = _carrier("acme", _closed_port(), "4501")
    try:
        async with _engine(redis_url, key_prefix, acme, _carrier("beta", sims[0].port, "4502")) as (eng, redis):
            jobs = _jobs(50, "acme", "4501")
            marker = _jobs(1, "beta", "4502")
            await push(redis, key_prefix, jobs + marker)
            events = _Events(redis, key_prefix)
            await events.until(lambda: marker[0]["id"] in events.first, 20, "beta's job")
            park = Keys(key_prefix).park("acme", "normal")

            async def all_parked() -> bool:
                return int(await redis.xlen(park)) == 50

            await _wait(all_parked, 10, "acme's jobs parked")
            await eng.pipeline.check_outages()
            await events.poll()
            assert events.count({j["id"] for j in jobs}) == 0
            assert not await redis.exists(Keys(key_prefix).dead)
    finally:
        await sims[0].close()


# -- priority and weights --------------------------------------------------------
async def test_high_overtakes_a_bulk_backlog_and_lanes_share_by_weight(redis_url: str, key_prefix: str) -> None:
    """300 TPS, 20,000 bulk and 10,000 normal jobs queued: a high job pushed behind
    them is submitted within a second or so; normal and bulk are sent 4:1 meanwhile."""
    sims = await _sims(SimulatorConfig(dlr=False))
    carrier = _carrier("acme", sims[0].port, "", tps=300)
    try:
        async with _engine(redis_url, key_prefix, carrier, batch_size=500) as (_eng, redis):
            bulk = _jobs(20_000, "bulk", "4501")
            normal = _jobs(10_000, "norm", "4502")
            await push(redis, key_prefix, bulk, lane="jobs:bulk")
            await push(redis, key_prefix, normal)
            events = _Events(redis, key_prefix)
            await events.until(lambda: len(events.first) >= 600, 20, "the backlog flowing")
            high = _jobs(1, "high", "4503")
            pushed = time.time()
            await push(redis, key_prefix, high, lane="jobs:high")
            await events.until(lambda: high[0]["id"] in events.first, 10, "the high job")
            waited = int(events.first[high[0]["id"]]["ts"]) / 1000 - pushed
            print(f"\n[lanes] high job behind 30,000 queued at 300 TPS: submitted after {waited * 1000:.0f} ms")
            assert waited < 3.0, waited  # the bound is 1 s; generous for a shared CI machine
            # 20 s of sending, counted by the events' own timestamps
            start = time.time()
            await events.until(lambda: time.time() - start > 21, 30, "20 s of sending")
            t_from = start * 1000
            t_to = t_from + 20_000
            sent = [ev for ev in events.first.values() if t_from <= int(ev["ts"]) < t_to]
            n_normal = sum(1 for ev in sent if ev["id"].startswith("norm-"))
            n_bulk = sum(1 for ev in sent if ev["id"].startswith("bulk-"))
            ratio = n_normal / max(1, n_bulk)
            print(f"[lanes] over 20 s: normal {n_normal}, bulk {n_bulk} (ratio {ratio:.2f}, weights 4:1)")
            assert n_bulk > 0  # bulk never starves
            assert 3.6 <= ratio <= 4.4, (n_normal, n_bulk)
    finally:
        await sims[0].close()


async def test_two_clients_share_a_lane_by_their_weights(redis_url: str, key_prefix: str) -> None:
    """Client a (weight 3) pushed its whole campaign before b (weight 1): they still share 3:1."""
    sims = await _sims(SimulatorConfig(dlr=False))
    carrier = _carrier("acme", sims[0].port, "", tps=300)
    try:
        settings_extra = {"clients": [{"id": "a", "weight": 3}, {"id": "b", "weight": 1}]}
        async with _engine_with(redis_url, key_prefix, carrier, settings_extra) as (eng, redis):
            a = _jobs(6000, "a", "4501", client="a")
            b = _jobs(6000, "b", "4502", client="b")
            await push(redis, key_prefix, a, lane="jobs:bulk")
            await push(redis, key_prefix, b, lane="jobs:bulk")
            events = _Events(redis, key_prefix)
            b_ids = {j["id"] for j in b}
            await events.until(lambda: events.count(b_ids) >= 50, 30, "b's campaign started")
            start = time.time()
            await events.until(lambda: time.time() - start > 10.5, 20, "10 s of sending")
            sent = [ev for ev in events.first.values() if start * 1000 <= int(ev["ts"]) < start * 1000 + 10_000]
            n_a = sum(1 for ev in sent if ev["id"].startswith("a-"))
            n_b = sum(1 for ev in sent if ev["id"].startswith("b-"))
            ratio = n_a / max(1, n_b)
            print(f"\n[lanes] two clients, weights 3:1, over 10 s: a {n_a}, b {n_b} (ratio {ratio:.2f})")
            assert 2.7 <= ratio <= 3.3, (n_a, n_b)
            # the per-client share is visible in metrics, labelled by configured client only
            admitted = eng.metrics.admitted
            assert admitted.labels("acme", "bulk", "a")._value.get() >= n_a
            assert admitted.labels("acme", "bulk", "b")._value.get() >= n_b
    finally:
        await sims[0].close()


@contextlib.asynccontextmanager
async def _engine_with(
    redis_url: str, prefix: str, carrier: dict[str, Any], top: dict[str, Any]
) -> AsyncIterator[tuple[Engine, Redis]]:
    from engine.config import settings_from_mapping

    settings = settings_from_mapping(
        {
            "redis": {"url": redis_url, "prefix": prefix},
            "engine": {"batch_size": 500, "block_ms": 20, "drain_timeout_s": 5.0},
            "admin": {"listen": ""},
            "carriers": [carrier],
            **top,
        },
        env={},
    )
    eng = Engine(settings, redis_url)
    redis = Redis.from_url(redis_url)
    await eng.start()
    try:
        yield eng, redis
    finally:
        await eng.close()
        await delete_prefix(redis, prefix)
        await redis.aclose()


# -- scheduled, cancel, backpressure -----------------------------------------------
async def test_a_scheduled_job_is_released_exactly_once_with_two_engines(redis_url: str, key_prefix: str) -> None:
    sims = await _sims(SimulatorConfig(dlr=False))
    carrier = _carrier("acme", sims[0].port, "")
    try:
        async with _engine(redis_url, key_prefix, dict(carrier), consumer="one") as (_one, redis):
            second = Engine(make_settings(redis_url, key_prefix, sims[0].port, carrier=carrier, consumer="two"),
                            redis_url)
            await second.start()
            try:
                jobs = _jobs(40, "sched", "4501", send_at=str(int(time.time()) + 2))
                await push(redis, key_prefix, jobs)
                k = Keys(key_prefix)

                async def held() -> bool:
                    return int(await redis.zcard(k.scheduled)) == 40

                await _wait(held, 10, "the jobs held")
                events = _Events(redis, key_prefix)
                ids = {j["id"] for j in jobs}
                await events.until(lambda: events.count(ids) == 40, 20, "the scheduled jobs sent")
                # both engines release every 0.5 s: each job went back to its lane once
                assert int(await redis.xlen(k.jobs)) == 80  # 40 pushed + 40 released
                assert int(await redis.zcard(k.scheduled)) == 0
                assert not [key async for key in redis.scan_iter(match=f"{k.scheduled_id_prefix}*")]
                assert sims[0].stats.submits == 40
                xs = await redis.xrange(k.events)
                assert sorted(f[b"id"].decode() for _i, f in xs) == sorted(ids)  # one event each
            finally:
                await second.close()
    finally:
        await sims[0].close()


async def test_cancel_a_waiting_job_never_sends_it(redis_url: str, key_prefix: str) -> None:
    """Cancelled while held for send_at (event at once) and while queued in a lane
    behind others for a slow carrier (event when the engine meets it); a job
    already submitted is not cancellable."""
    from engine.producer import Producer

    sims = await _sims(SimulatorConfig(dlr=False, latency_ms=200))
    carrier = _carrier("acme", sims[0].port, "", binds=1, window=1)
    try:
        async with _engine(redis_url, key_prefix, carrier) as (_eng, redis):
            producer = Producer(redis, key_prefix)
            held = _jobs(1, "held", "4501", send_at=str(int(time.time()) + 30), ref="r-held")[0]
            queue = _jobs(6, "q", "4502")
            await push(redis, key_prefix, [held, *queue])
            k = Keys(key_prefix)

            async def is_held() -> bool:
                return bool(await redis.exists(k.scheduled_id(held["id"])))

            await _wait(is_held, 10, "the job held")
            assert await producer.cancel(held["id"]) is True
            assert int(await redis.zcard(k.scheduled)) == 0
            last = queue[-1]["id"]  # five jobs ahead of it at 200 ms each
            assert await producer.cancel(last) is True
            assert await producer.cancel(last) is False  # cancelled before
            events = _Events(redis, key_prefix)
            ids = {held["id"], *(j["id"] for j in queue)}
            await events.until(lambda: events.count(ids) == 7, 20, "every job's event")
            assert events.first[held["id"]]["event"] == "cancelled" and events.first[held["id"]]["ref"] == "r-held"
            assert events.first[last]["event"] == "cancelled"
            assert events.count({j["id"] for j in queue[:-1]}, "submitted") == 5
            assert sims[0].stats.submits == 5
            assert await producer.cancel(queue[0]["id"]) is False  # already submitted
            xs = await redis.xrange(k.events)
            assert [f[b"id"].decode() for _i, f in xs].count(last) == 1  # its event once
            assert await get_mark(redis, k, last) == b"done"
    finally:
        await sims[0].close()


async def test_readyz_reports_a_lane_above_its_high_water(redis_url: str, key_prefix: str) -> None:
    """An unreachable carrier, 300 bulk jobs, lane_high_water 100: /readyz 503 with the
    reason, the gauge shows the backlog, Producer.ready() is False; never a job trimmed."""
    import aiohttp

    from engine.producer import Producer

    acme = _carrier("acme", _closed_port(), "")
    settings = make_settings(redis_url, key_prefix, acme.pop("port"), carrier=acme, lane_high_water=100)
    settings = type(settings)(**{**{f: getattr(settings, f) for f in settings.__struct_fields__},
                                 "admin": type(settings.admin)(listen="127.0.0.1:0")})
    eng = Engine(settings, redis_url)
    redis = Redis.from_url(redis_url)
    await eng.start()
    try:
        producer = Producer(redis, key_prefix)
        assert await producer.ready() is True
        await push(redis, key_prefix, _jobs(300, "b", "4501"), lane="jobs:bulk")
        assert eng.admin is not None
        url = f"http://127.0.0.1:{eng.admin.port}/readyz"
        async with aiohttp.ClientSession() as http:

            async def not_ready() -> bool:
                async with http.get(url) as resp:
                    body = await resp.json()
                    return resp.status == 503 and body.get("reason") == "lane_high_water"

            await _wait(not_ready, 15, "/readyz to report the bulk lane")
            async with http.get(url) as resp:
                body = await resp.json()
            assert body["over"] == {"bulk": 300} and body["high_water"] == 100
        assert eng.metrics.lane_backlog.labels("bulk")._value.get() == 300
        assert await producer.backlog() == {"high": 0, "normal": 0, "bulk": 300}
        assert await producer.ready() is False
        assert await producer.ready(high_water=1000) is True
        assert int(await redis.xlen(Keys(key_prefix).jobs_bulk)) == 300  # nothing trimmed
    finally:
        await eng.close()
        await delete_prefix(redis, key_prefix)
        await redis.aclose()


async def test_an_outage_mid_flight_leaves_no_job_stuck(redis_url: str, key_prefix: str) -> None:
    """The SMSC goes away with parts claimed and queued in the pool: after
    outage_fail_after_s every job has its outcome (in flight: unknown; queued,
    in hand, parked: failed with carrier_unavailable), none is sent twice."""
    sims = await _sims(SimulatorConfig(dlr=False, latency_ms=300))
    acme = _carrier("acme", sims[0].port, "", binds=1, window=2, outage_fail_after_s=1.0)
    try:
        async with _engine(redis_url, key_prefix, acme) as (_eng, redis):
            jobs = _jobs(40, "m", "4501")
            await push(redis, key_prefix, jobs)

            async def started() -> bool:
                return sims[0].stats.submits >= 2

            await _wait(started, 10, "the first submits")
            await sims[0].close()
            events = _Events(redis, key_prefix)
            ids = {j["id"] for j in jobs}
            await events.until(lambda: events.count(ids) == 40, 30, "every job's outcome")
            outcomes = Counter((ev["event"], ev["error"]) for i, ev in events.first.items() if i in ids)
            assert {ev for ev, _err in outcomes} <= {"submitted", "unknown", "failed"}, outcomes
            assert {err for ev, err in outcomes if ev == "failed"} == {"carrier_unavailable"}
            # some were claimed and queued in the pool (recorded failed, no dead letter), the rest unclaimed
            dead = int(await redis.xlen(Keys(key_prefix).dead))
            assert outcomes[("failed", "carrier_unavailable")] > dead > 0, (outcomes, dead)
            assert outcomes[("failed", "carrier_unavailable")] >= 30, outcomes
    finally:
        await sims[0].close()


async def test_jobs_parked_for_a_client_no_longer_configured_go_back_to_their_lane(
    redis_url: str, key_prefix: str
) -> None:
    """A park stream nobody reads any more (its client was removed from [[clients]]):
    the next engine moves its jobs back to the lane, and they are sent."""
    sims = await _sims(SimulatorConfig(dlr=False))
    k = Keys(key_prefix)
    orphan = k.park("acme", "bulk", "gone")
    redis = Redis.from_url(redis_url)
    try:
        jobs = _jobs(30, "o", "4501", client="gone")
        for job in jobs:
            await redis.xadd(orphan, job)  # type: ignore[arg-type]
        async with _engine(redis_url, key_prefix, _carrier("acme", sims[0].port, "")) as (_eng, r):
            events = _Events(r, key_prefix)
            ids = {j["id"] for j in jobs}
            await events.until(lambda: events.count(ids, "submitted") == 30, 20, "the orphaned jobs sent")
            assert int(await r.xlen(k.jobs_bulk)) == 30  # they went back through their lane
            assert (await r.xinfo_groups(orphan))[0]["pending"] == 0
            assert int(await r.xlen(orphan)) <= 1  # trimmed to the last id the group delivered
    finally:
        await redis.aclose()
        await sims[0].close()


async def test_one_lane_one_client_one_carrier_never_parks(redis_url: str, key_prefix: str) -> None:
    """The common case pays nothing for parking: each lane is read no further than
    its own room (an empty high or bulk lane's room does not count for normal)."""
    sims = await _sims(SimulatorConfig(dlr=False))
    try:
        async with _engine(redis_url, key_prefix, _carrier("acme", sims[0].port, "")) as (eng, redis):
            jobs = _jobs(3000, "one", "4501")
            await push(redis, key_prefix, jobs)
            events = _Events(redis, key_prefix)
            ids = {j["id"] for j in jobs}
            await events.until(lambda: events.count(ids, "submitted") == 3000, 60, "every job sent")
            parked = [s.value for m in eng.metrics.jobs_parked.collect() for s in m.samples
                      if s.name.endswith("_total")]
            assert sum(parked) == 0
            assert eng.pipeline._classes["acme"][1]["other"].budget < 3000  # the budget did fill
    finally:
        await sims[0].close()


async def test_priority_on_the_normal_lane_decides_the_lane_class(redis_url: str, key_prefix: str) -> None:
    """A producer may set `priority` on the normal stream instead of pushing to a lane:
    the job is admitted in that lane's class (counted there), and acked on the stream
    it came from."""
    sims = await _sims(SimulatorConfig(dlr=False))
    try:
        async with _engine(redis_url, key_prefix, _carrier("acme", sims[0].port, "")) as (eng, redis):
            high = _jobs(3, "prio-high", "4501", priority="high")
            bulk = _jobs(2, "prio-bulk", "4502", priority="bulk")
            plain = _jobs(1, "prio-none", "4503")
            await push(redis, key_prefix, high + bulk + plain)
            events = _Events(redis, key_prefix)
            ids = {j["id"] for j in high + bulk + plain}
            await events.until(lambda: events.count(ids, "submitted") == 6, 20, "the six jobs")
            admitted = eng.metrics.admitted
            assert admitted.labels("acme", "high", "other")._value.get() == 3  # type: ignore[attr-defined]
            assert admitted.labels("acme", "bulk", "other")._value.get() == 2  # type: ignore[attr-defined]
            assert admitted.labels("acme", "normal", "other")._value.get() == 1  # type: ignore[attr-defined]
            k = Keys(key_prefix)
            assert (await redis.xpending(k.jobs, "sendgate"))["pending"] == 0  # acked on the normal stream
    finally:
        await sims[0].close()
