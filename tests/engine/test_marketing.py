"""Marketing guardrails: the footer (appended, counted in the parts) and quiet
hours in the recipient's local time (held in the scheduled set, released when
the window ends), unit rules first, then end to end over TCP."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from connectors.simulator import SimulatorConfig
from engine.config import ConfigError, settings_from_mapping
from engine.keys import Keys
from engine.marketing import QuietHours, with_footer, zone_of
from tests.engine.harness import push, running, wait_events

FOOTER = "STOP til 1234"


def test_footer_is_appended_once() -> None:
    assert with_footer("Sale today", FOOTER) == "Sale today\nSTOP til 1234"
    assert with_footer("Sale today\nSTOP til 1234  ", FOOTER) == "Sale today\nSTOP til 1234  "
    assert with_footer("Sale", " - " + FOOTER) == "Sale - STOP til 1234"
    assert with_footer("Sale", "") == "Sale"


def _at(zone: str, *args: int) -> float:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).timestamp()


def test_quiet_hours_follow_the_recipients_country() -> None:
    quiet = QuietHours("21:00-08:00")
    # 22:30 in Copenhagen: held until 08:00 the next morning, Copenhagen time
    assert quiet.until("+4512345678", _at("Europe/Copenhagen", 2026, 3, 10, 22, 30)) == _at(
        "Europe/Copenhagen", 2026, 3, 11, 8, 0)
    # 03:00 is inside too (the window wraps midnight): until 08:00 the same day
    assert quiet.until("4512345678", _at("Europe/Copenhagen", 2026, 3, 10, 3, 0)) == _at(
        "Europe/Copenhagen", 2026, 3, 10, 8, 0)
    # the same instant is 16:30 in New York (NANP "1"): not quiet there
    assert quiet.until("12125550100", _at("Europe/Copenhagen", 2026, 3, 10, 22, 30)) is None
    assert quiet.until("+4512345678", _at("Europe/Copenhagen", 2026, 3, 10, 8, 0)) is None  # the end is open
    day = QuietHours("12:00-13:00")
    assert day.until("4712345678", _at("Europe/Oslo", 2026, 7, 1, 12, 59)) == _at("Europe/Oslo", 2026, 7, 1, 13, 0)
    # across the spring DST change in Denmark (02:00 → 03:00 on 29 March 2026): 7 h of wall clock, 6 h real
    assert quiet.until("4512345678", _at("Europe/Copenhagen", 2026, 3, 29, 1, 0)) == _at(
        "Europe/Copenhagen", 2026, 3, 29, 8, 0)
    assert zone_of("+3581234") == ZoneInfo("Europe/Helsinki") and zone_of("999") == dt.UTC


@pytest.mark.parametrize("window", ["21-08", "25:00-08:00", "08:00-08:00"])
def test_a_bad_window_is_refused_at_start_up(window: str) -> None:
    with pytest.raises(ConfigError, match=r"clients\[0\]\.quiet_hours"):
        settings_from_mapping({"clients": [{"id": "shop", "quiet_hours": window}]}, env={})


async def test_the_footer_is_appended_and_counted_in_the_parts(redis_url: str, key_prefix: str) -> None:
    clients = [{"id": "shop", "footer": FOOTER}]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), clients=clients) as (_eng, _sim, rec, redis):
        fits = "x" * 150  # 150 septets: one part alone, two with the footer (150 + 1 + 13 > 160)
        await push(redis, key_prefix, [
            {"id": "m1", "to": "+4512345678", "text": fits, "client": "shop", "kind": "marketing"},
            {"id": "m2", "to": "+4512345678", "text": "Sale\n" + FOOTER, "client": "shop", "kind": "marketing"},
            {"id": "t1", "to": "+4512345678", "text": fits, "client": "shop"},
            {"id": "o1", "to": "+4512345678", "text": fits, "client": "other", "kind": "marketing"},
        ])
        events = await wait_events(redis, key_prefix, {"m1", "m2", "t1", "o1"}, final=False)
        assert {k: v[-1]["parts"] for k, v in events.items()} == {"m1": "2", "m2": "1", "t1": "1", "o1": "1"}
        assert rec is not None
        texts = sorted(p.short_message for p in rec.submits)
        assert texts.count(b"Sale\n" + FOOTER.encode()) == 1  # not appended twice
        parts = sorted((p for p in rec.submits if p.esm_class & 0x40), key=lambda p: p.short_message[5])
        assert b"".join(p.short_message[6:] for p in parts) == fits.encode() + b"\n" + FOOTER.encode()


async def test_quiet_hours_hold_a_marketing_job_and_release_it(redis_url: str, key_prefix: str) -> None:
    now_dk = dt.datetime.now(ZoneInfo("Europe/Copenhagen"))
    start, end = now_dk - dt.timedelta(hours=1), now_dk + dt.timedelta(hours=2)
    window = f"{start:%H:%M}-{end:%H:%M}"
    clients = [{"id": "shop", "quiet_hours": window}]
    async with running(redis_url, key_prefix, SimulatorConfig(dlr=False), clients=clients) as (_eng, _sim, rec, redis):
        k = Keys(key_prefix)
        await push(redis, key_prefix, [
            {"id": "q1", "to": "+4512345678", "text": "Sale", "client": "shop", "kind": "marketing"},
            {"id": "t1", "to": "+4512345678", "text": "Your code", "client": "shop"},
            {"id": "us", "to": "+12125550100", "text": "Sale", "client": "shop", "kind": "marketing"},
        ])
        # the transactional job and the marketing job to New York (its own local time) go out
        ny_quiet = QuietHours(window).until("12125550100", time.time())
        expected = {"t1"} | ({"us"} if ny_quiet is None else set())
        events = await wait_events(redis, key_prefix, expected, final=False)
        assert {e[-1]["event"] for e in events.values()} == {"submitted"}
        held = await redis.zrange(k.scheduled, 0, -1, withscores=True)
        assert len(held) == 3 - len(expected)
        q1 = [(e, s) for e, s in held if (await redis.hget(k.scheduled_job(e.decode()), "id")) == b"q1"]
        assert len(q1) == 1
        assert q1[0][1] == pytest.approx(dt.datetime.combine(end.date(), dt.time(end.hour, end.minute),
                                                             ZoneInfo("Europe/Copenhagen")).timestamp() * 1000)
        assert "q1" not in events and rec is not None and len(rec.submits) == len(expected)
        # the window ends (the scheduled time comes): released once, and sent
        await redis.zadd(k.scheduled, {q1[0][0]: 0})
        released = await wait_events(redis, key_prefix, {"q1"}, final=False)
        assert released["q1"][-1]["event"] == "submitted"
        assert await redis.zscore(k.scheduled, q1[0][0]) is None
