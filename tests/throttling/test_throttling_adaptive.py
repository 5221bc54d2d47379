"""AdaptiveRate (AIMD): cut on throttle replies, additive recovery, ceilings."""

from __future__ import annotations

import pytest

from throttling import AdaptiveRate, TokenBucket


def test_throttle_halves_once_per_cooldown() -> None:
    rate = AdaptiveRate(100.0, cooldown_s=1.0)
    assert rate.on_throttle(now=10.0) == 50.0
    assert [rate.changed] == [True]
    # The rest of the window answered 0x58 at the same time: no further cut.
    for i in range(20):
        assert rate.on_throttle(now=10.0 + i * 0.01) == 50.0
    assert [rate.changed] == [False]
    assert rate.throttles == 21
    assert rate.on_throttle(now=11.5) == 25.0


def test_floor_is_respected() -> None:
    rate = AdaptiveRate(100.0, floor_per_s=10.0, cooldown_s=0.0)
    for i in range(10):
        rate.on_throttle(now=float(i))
    assert rate.rate_per_s == 10.0


def test_additive_recovery_after_hold_up_to_ceiling() -> None:
    rate = AdaptiveRate(100.0, step_fraction=0.1, interval_s=1.0, hold_s=2.0)
    rate.on_throttle(now=0.0)
    assert rate.rate_per_s == 50.0
    assert [rate.is_reduced] == [True]
    assert rate.on_success(now=1.0) == 50.0  # still inside hold_s
    assert rate.on_success(now=2.0) == 60.0
    assert [rate.changed] == [True]
    assert rate.on_success(now=2.5) == 60.0  # one step per interval
    now = 3.0
    seen = []
    for _ in range(100):
        if not rate.is_reduced:
            break
        seen.append(rate.on_success(now))
        now += 1.0
    assert seen == [70.0, 80.0, 90.0, 100.0]
    assert rate.on_success(now + 10) == 100.0


def test_throttle_during_recovery_cuts_again() -> None:
    rate = AdaptiveRate(200.0, hold_s=1.0, interval_s=1.0)
    rate.on_throttle(now=0.0)
    rate.on_success(now=1.0)
    assert rate.rate_per_s == 120.0
    assert rate.on_throttle(now=1.5) == 60.0
    assert rate.on_success(now=2.0) == 60.0  # hold restarts at the last throttle


def test_unlimited_ceiling_starts_from_observed_rate_and_lifts_again() -> None:
    rate = AdaptiveRate(0.0, hold_s=0.0, interval_s=1.0, step_fraction=0.25)
    assert rate.rate_per_s == 0.0
    assert rate.on_throttle(now=0.0, observed_per_s=400.0) == 200.0
    rates = [rate.on_success(now=float(t)) for t in range(1, 6)]
    assert rates == [300.0, 0.0, 0.0, 0.0, 0.0]


def test_drives_a_token_bucket() -> None:
    rate = AdaptiveRate(100.0, hold_s=1.0)
    bucket = TokenBucket(rate.rate_per_s)
    rate.on_throttle(now=0.0)
    if rate.changed:
        bucket.set_rate(rate.rate_per_s, now=0.0)
    assert bucket.rate_per_s == 50.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ceiling_per_s": -1},
        {"ceiling_per_s": 10, "floor_per_s": 0},
        {"ceiling_per_s": 10, "decrease": 1.0},
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveRate(**kwargs)
