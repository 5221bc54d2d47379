"""TokenBucket: the rate contract under random traffic, partial grants, waits, rate changes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from throttling import TokenBucket, default_burst


def test_starts_full_then_refills_at_rate() -> None:
    bucket = TokenBucket(10.0, burst=5)
    assert bucket.try_take(10, now=100.0) == 5  # full bucket, partial grant
    assert bucket.try_take(1, now=100.0) == 0
    assert bucket.try_take(5, now=100.3) == 3  # 0.3 s x 10/s
    assert bucket.try_take(5, now=100.35) == 0
    assert bucket.try_take(5, now=100.4) == 1  # float sums like 0.1 * 10 still give a whole token


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(100.0, burst=20)
    assert bucket.try_take(20, now=0.0) == 20
    assert bucket.try_take(1000, now=3600.0) == 20


def test_rate_zero_is_unlimited() -> None:
    bucket = TokenBucket(0)
    assert bucket.try_take(1_000_000, now=0.0) == 1_000_000
    assert bucket.wait_s(1_000_000, now=0.0) == 0.0


def test_zero_and_negative_requests_take_nothing() -> None:
    bucket = TokenBucket(1.0, burst=1)
    assert bucket.try_take(0, now=0.0) == 0
    assert bucket.try_take(-3, now=0.0) == 0
    assert bucket.try_take(1, now=0.0) == 1


def test_wait_s_is_time_to_the_missing_tokens() -> None:
    bucket = TokenBucket(4.0, burst=4)
    assert bucket.wait_s(4, now=0.0) == 0.0
    assert bucket.try_take(4, now=0.0) == 4
    assert bucket.wait_s(1, now=0.0) == pytest.approx(0.25)
    assert bucket.wait_s(2, now=0.1) == pytest.approx(0.4)
    # More than the bucket holds: wait for a full bucket, take the rest later.
    assert bucket.wait_s(100, now=0.1) == pytest.approx(0.9)
    # wait_s does not take anything.
    assert bucket.try_take(1, now=0.25) == 1


def test_wait_then_take_succeeds() -> None:
    bucket = TokenBucket(7.0, burst=3)
    now = 5.0
    assert bucket.try_take(3, now) == 3
    now += bucket.wait_s(2, now)
    assert bucket.try_take(2, now) == 2


def test_time_going_backwards_never_adds_tokens() -> None:
    bucket = TokenBucket(10.0, burst=10)
    assert bucket.try_take(10, now=50.0) == 10
    assert bucket.try_take(10, now=10.0) == 0
    assert bucket.try_take(10, now=50.05) == 0
    assert bucket.try_take(10, now=50.1) == 1


def test_default_burst_is_100ms_of_traffic() -> None:
    assert default_burst(1000) == 100
    assert default_burst(15) == 2
    assert default_burst(0.5) == 1
    assert TokenBucket(250).burst == 25


def test_set_rate_slows_down_and_speeds_up() -> None:
    bucket = TokenBucket(100.0)
    assert bucket.burst == 10
    assert bucket.try_take(10, now=0.0) == 10
    bucket.set_rate(10.0, now=0.0)
    assert bucket.burst == 1  # a default burst follows the rate
    assert bucket.try_take(5, now=0.5) == 1
    assert bucket.try_take(5, now=0.6) == 1
    bucket.set_rate(100.0, now=0.6)
    assert bucket.try_take(50, now=0.7) == 10


def test_set_rate_settles_elapsed_time_at_the_old_rate() -> None:
    bucket = TokenBucket(1.0, burst=100)
    assert bucket.try_take(100, now=0.0) == 100
    bucket.set_rate(100.0, now=10.0)  # 10 s at 1/s = 10 tokens, not 1,000
    assert bucket.try_take(100, now=10.0) == 10


def test_explicit_burst_survives_rate_changes_and_clamps_tokens() -> None:
    bucket = TokenBucket(50.0, burst=5)
    bucket.set_rate(1.0)
    assert bucket.burst == 5
    bucket.set_rate(0)
    assert bucket.try_take(99, now=1.0) == 99


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        TokenBucket(-1)
    with pytest.raises(ValueError):
        TokenBucket(math.inf)
    with pytest.raises(ValueError):
        TokenBucket(5, burst=0)
    with pytest.raises(ValueError):
        TokenBucket(5).set_rate(math.nan)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=5000),
    burst=st.integers(min_value=1, max_value=500),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.2), st.integers(min_value=0, max_value=300)),
        min_size=1,
        max_size=200,
    ),
)
def test_never_grants_more_than_rate_times_elapsed_plus_burst(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(rate, burst=burst)
    now = 1000.0
    history: list[tuple[float, int]] = []
    for dt, n in steps:
        now += dt
        granted = bucket.try_take(n, now)
        assert 0 <= granted <= n
        history.append((now, granted))
    # Every window [t_i, t_j] of the history respects the contract.
    for i in range(len(history)):
        total = 0
        for j in range(i, len(history)):
            total += history[j][1]
            elapsed = history[j][0] - history[i][0]
            assert total <= rate * elapsed + burst + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(min_value=1, max_value=2000), tick=st.floats(min_value=0.001, max_value=0.05))
def test_a_greedy_caller_gets_the_full_rate(rate: float, tick: float) -> None:
    # A bucket smaller than one tick's refill loses the overflow between ticks
    # (correct, but not what this test measures).
    bucket = TokenBucket(rate, burst=max(default_burst(rate), math.ceil(rate * tick) + 1))
    now = 0.0
    total = 0
    while now < 10.0:
        total += bucket.try_take(10**9, now)
        now += tick
    expected = rate * 10.0
    # Within one tick's worth plus the initial burst of the ideal.
    assert expected - rate * tick - 2 <= total <= expected + bucket.burst + 1
