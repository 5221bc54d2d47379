"""A real engine, simulator and Redis: what /metrics and /status report is what happened.

The counters are checked against the two witnesses outside the engine: the
simulator's own counts of what came over the wire, and the events and
dead-letter streams in Redis.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

import pytest

from connectors.simulator import SimulatorConfig
from engine.keys import Keys
from tests.engine.harness import push, wait_events
from tests.ops.live import SECRET_PASSWORD, live_engine, total, until

pytestmark = pytest.mark.slow

NUMBERS = ["+4520112233", "+4520445566", "+4931234567"]


def _jobs() -> tuple[list[dict[str, str]], set[str]]:
    jobs: list[dict[str, str]] = []
    for i in range(30):
        jobs.append({"id": f"g{i}", "to": NUMBERS[i % 3], "text": f"code {i} for you"})
    for i in range(10):
        jobs.append({"id": f"u{i}", "to": NUMBERS[i % 3], "text": f"Привет {i}"})
    for i in range(5):  # 3 parts each in GSM-7 (153 septets a part)
        jobs.append({"id": f"m{i}", "to": NUMBERS[i % 3], "text": "x" * 400})
    valid = {j["id"] for j in jobs}
    jobs.append({"id": "bad1", "to": "not-a-number", "text": "hi"})
    jobs.append({"id": "bad2", "to": "+45", "text": "hi"})
    return jobs, valid


async def test_metrics_equal_what_the_simulator_saw_and_the_streams_hold(redis_url: str, key_prefix: str) -> None:
    async with live_engine(redis_url, key_prefix, SimulatorConfig(dlr=True)) as live:
        jobs, valid = _jobs()
        await push(live.redis, key_prefix, jobs)
        await wait_events(live.redis, key_prefix, valid)
        keys = Keys(key_prefix)
        dead_len = await live.redis.xlen(keys.dead)
        assert dead_len == 2
        events = Counter(
            f[b"event"].decode() for _id, f in await live.redis.xrange(keys.events, count=10_000)
        )
        stats = live.sim.stats
        assert stats.submits == 30 + 10 + 5 * 3
        assert stats.receipts == stats.submits

        m = await live.metrics()
        assert total(m, "sendgate_jobs_consumed_total", lane="normal") == len(jobs)
        assert total(m, "sendgate_submits_total", result="ok") == stats.submits
        assert total(m, "sendgate_submits_total") == stats.submits  # no retry, no loss
        assert total(m, "sendgate_segments_total") == stats.submits
        assert total(m, "sendgate_segments_total", carrier="sim", encoding="gsm7") == 30 + 15
        assert total(m, "sendgate_segments_total", carrier="sim", encoding="ucs2") == 10
        assert total(m, "sendgate_receipts_total") == stats.receipts
        assert total(m, "sendgate_receipts_total", state="delivered") == stats.receipts
        assert total(m, "sendgate_receipts_unmatched_total") == 0
        assert total(m, "sendgate_receipts_invalid_total") == 0
        assert total(m, "sendgate_dead_letters_total") == dead_len
        assert total(m, "sendgate_dead_letters_total", code="bad_number") == dead_len
        for event, n in events.items():
            assert total(m, "sendgate_events_total", event=event) == n, event
        assert total(m, "sendgate_callbacks_total") == 0
        assert total(m, "sendgate_build_info") == 1

        # The sampler: once everything is done, no lane has a backlog; Redis answered.
        async def settled() -> bool:
            await live.engine.sampler.wait_sampled()
            m2 = await live.metrics()
            return total(m2, "sendgate_lane_lag") == 0 and total(m2, "sendgate_redis_rtt_seconds") > 0

        await until(settled, "lane backlog 0 and a Redis RTT")

        status = await live.status()
        assert status["dead_letters"]["recent"] == [{"code": "bad_number", "count": 2}]
        assert status["dead_letters"]["since_start"] == {"bad_number": 2}
        sim_status = status["carriers"]["sim"]
        assert sim_status["binds_up"] == 2
        assert [b["state"] for b in sim_status["binds"]] == ["bound", "bound"]
        assert sim_status["receipts_pending"] == 0
        assert set(status["lanes"]) == {"high", "normal", "bulk"}


async def test_status_page_and_endpoints_hold_no_number_text_job_id_or_password(redis_url: str, key_prefix: str) -> None:
    async with live_engine(redis_url, key_prefix, SimulatorConfig(dlr=True, dlr_delay_ms=60_000)) as live:
        jobs, valid = _jobs()
        await push(live.redis, key_prefix, jobs)
        await wait_events(live.redis, key_prefix, valid, final=False)

        # Receipts are held back by the simulator: they show as pending, per carrier.
        async def receipts_pending() -> bool:
            await live.engine.sampler.wait_sampled()
            return bool((await live.status())["carriers"]["sim"]["receipts_pending"] == 55)

        await until(receipts_pending, "55 receipts pending")
        bodies = {path: (await live.get(path)) for path in ("/status", "/", "/metrics", "/readyz", "/healthz")}
        for path, (code, body) in bodies.items():
            assert code == 200, path
            assert SECRET_PASSWORD not in body, path
            for number in NUMBERS:
                assert number.lstrip("+") not in body, (path, number)
            assert "Привет" not in body and "code 1 for you" not in body, path
            assert not re.search(r'"(g|u|m)\d+"', body), path  # no job id
        page = bodies["/"][1]
        assert "<script" in page and "fetch(\"status\"" in page
        # Self-contained: nothing loaded from elsewhere.
        assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page)
        assert "@import" not in page


async def test_binds_show_down_with_a_reason_when_the_carrier_goes_away(redis_url: str, key_prefix: str) -> None:
    async with live_engine(redis_url, key_prefix, carrier={"reconnect_min_s": 0.2, "reconnect_max_s": 0.5}) as live:
        status = await live.status()
        assert [b["state"] for b in status["carriers"]["sim"]["binds"]] == ["bound", "bound"]
        await live.sim.close()

        async def all_down() -> dict[str, object] | None:
            s = await live.status()
            binds = s["carriers"]["sim"]["binds"]
            return s if all(b["state"] == "down" for b in binds) else None

        status = await until(all_down, "both binds down")
        sim_status = status["carriers"]["sim"]
        assert sim_status["binds_up"] == 0
        assert all(b["reason"] for b in sim_status["binds"])
        code, body = await live.get("/readyz")
        assert code == 503 and '"ready":false' in body


async def test_log_events_for_throttle_backoff_and_reconnect(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sendgate")

    def events(name: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "event", None) == name]

    # The simulator throttles above 100 submits/s, and drops the first link after 300 PDUs.
    sim_config = SimulatorConfig(dlr=False, throttle_tps=100, drop_after=300, drop_limit=1)
    carrier = {"reconnect_min_s": 0.1, "reconnect_max_s": 0.3, "binds": 1}
    async with live_engine(redis_url, key_prefix, sim_config, carrier=carrier) as live:
        jobs = [{"id": f"t{i}", "to": NUMBERS[0], "text": f"t {i}", "dlr": "0"} for i in range(400)]
        await push(live.redis, key_prefix, jobs)

        async def started() -> bool:
            return bool(events("backoff_started"))

        await until(started, "a backoff_started log line")
        # dlr=0: a job is done at its first event (submitted, or unknown for a part lost in the drop)
        await wait_events(live.redis, key_prefix, {j["id"] for j in jobs}, final=False, timeout_s=60)

        async def ended() -> bool:
            return bool(events("backoff_ended"))

        await until(ended, "a backoff_ended log line")
        first = events("backoff_started")[0]
        # No bind pause any more: the carrier's rate became limited (none configured) and its window halved.
        assert first.carrier == "sim" and first.rate_per_s > 0 and first.window < 32  # type: ignore[attr-defined]
        ups = events("bind_up")
        assert [u.reconnects for u in ups] == [0, 1], [u.getMessage() for u in ups]  # type: ignore[attr-defined]
        downs = events("bind_down")
        assert len(downs) == 1 and downs[0].reason  # type: ignore[attr-defined]
    # Throttled and re-queued submits, a dropped link: still a handful of lines, none per message.
    per_message = [r for r in caplog.records if r.levelno <= logging.INFO and "t1" in r.getMessage()]
    assert per_message == []
    assert len([r for r in caplog.records if r.name.startswith("sendgate") and r.levelno == logging.INFO]) < 30
