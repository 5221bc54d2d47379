"""Flow control, sans-IO: the AIMD window, the local adaptive rate, the per-second sizing."""

from __future__ import annotations

import random

import pytest

from throttling import (
    AdaptiveRate,
    AimdSettings,
    CarrierFlow,
    LocalAdaptiveLimiter,
    TokenBucket,
    recovered_rate,
)
from throttling.global_bucket import ARRIVAL_JITTER_S, per_second_limits


def test_recovered_rate_is_adaptive_rates_schedule() -> None:
    """The closed form the Lua scripts mirror gives what AdaptiveRate does when asked often."""
    rate = AdaptiveRate(100.0, step_fraction=0.1, interval_s=1.0, hold_s=2.0, cooldown_s=1.0)
    rate.on_throttle(0.0)
    assert rate.rate_per_s == 50.0
    t = 0.0
    while t < 12.0:
        t = round(t + 0.01, 2)
        rate.on_success(t)
        assert rate.rate_per_s == recovered_rate(50.0, t, 100.0, 10.0, 2.0, 1.0), t
    assert rate.rate_per_s == 100.0


def test_window_backs_off_once_per_burst_and_recovers_to_the_configured_window() -> None:
    flow = CarrierFlow(window=40, window_floor=4)
    assert not flow.reduced()
    assert flow.on_batch(0.0, throttled=True) == "throttled"
    assert flow.window == 20
    assert flow.on_batch(0.2, throttled=True) is None  # same burst of replies: no second cut
    assert flow.window == 20
    for t in (1.0, 2.0, 3.0, 4.0):
        flow.on_batch(t, throttled=True)
    assert flow.window == 4  # never below the floor
    seen = []
    t = 4.0
    while flow.reduced():
        t += 0.1
        reason = flow.on_batch(t, throttled=False)
        if reason is not None:
            assert reason == "recovering"
            seen.append(flow.window)
        assert flow.window <= 40
        assert t < 60
    assert seen == sorted(seen) and seen[-1] == 40
    assert seen[0] - 4 <= 4  # additive: +10 % of the window per step


def test_window_floor_must_fit() -> None:
    with pytest.raises(ValueError, match="window_floor"):
        CarrierFlow(window=4, window_floor=5)


def test_local_rate_unlimited_until_throttled_then_half_of_what_went_out() -> None:
    limiter = LocalAdaptiveLimiter(floor_per_s=2.0)
    flow = CarrierFlow(10, 1, limiter)
    assert flow.rate_per_s(0.0) == 0.0
    t = 0.0
    while t < 2.0:  # 400 per second go out
        assert limiter.try_take(4, t) == 4
        t = round(t + 0.01, 2)
    assert flow.on_batch(t, throttled=True) == "throttled"
    assert flow.rate_per_s(t) == pytest.approx(200.0, rel=0.05)
    granted = 0
    start = t
    while t < start + 1.0:
        granted += limiter.try_take(100, t)
        t = round(t + 0.01, 2)
    assert granted <= 200 * 1.0 + 20 + 1  # rate x T + the default burst
    while flow.reduced():  # recovers, then the limit is lifted
        flow.on_batch(t, throttled=False)
        t += 0.5
        assert t < 120
    assert flow.rate_per_s(t) == 0.0


def test_aimd_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="floor"):
        AimdSettings(floor=0, step=1)
    with pytest.raises(ValueError, match="decrease"):
        AimdSettings(floor=1, step=1, decrease=1.0)


@pytest.mark.parametrize("tps", [3, 10, 50, 100, 333, 1000, 5000])
def test_per_second_sizing_keeps_every_window_at_or_below_tps(tps: int) -> None:
    """A greedy sender on a bucket of these sizes, asking at random moments: no window of
    1 s (plus the arrival jitter allowed for) ever holds more than tps."""
    rate, burst, chunk = per_second_limits(tps)
    assert burst >= chunk + 1  # room for the lease reserve of the shared bucket
    if tps >= 50:
        assert rate >= 0.9 * tps  # not much thrown away
    bucket = TokenBucket(rate, burst=burst)
    rng = random.Random(tps)
    sends: list[tuple[float, int]] = []
    t = 0.0
    while t < 6.0:
        got = bucket.try_take(10**6, t)
        if got:
            sends.append((t, got))
        t += rng.uniform(0.0001, 0.03)
    window = 1.0 + ARRIVAL_JITTER_S
    j = 0
    total = 0
    for i in range(len(sends)):  # sliding window [sends[i], sends[i] + window]
        while j < len(sends) and sends[j][0] <= sends[i][0] + window:
            total += sends[j][1]
            j += 1
        assert total <= tps, (sends[i][0], total)
        total -= sends[i][1]
    assert sum(n for _, n in sends) >= 0.95 * rate * 6  # and the rate is used
