"""Backoff: growth, caps, jitter bounds per strategy, reset."""

from __future__ import annotations

import random

import pytest

from throttling import Backoff


def test_proportional_grows_exponentially_within_jitter() -> None:
    backoff = Backoff(1.0, 30.0, factor=2.0, jitter=0.2, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        base = min(30.0, 2.0**attempt)
        assert base * 0.8 <= delay <= base
    assert backoff.attempts == 8


def test_zero_jitter_is_plain_exponential() -> None:
    backoff = Backoff(0.5, 4.0, factor=3.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(4)] == [0.5, 1.5, 4.0, 4.0]


def test_reset_starts_over() -> None:
    backoff = Backoff(1.0, 60.0, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 1.0


def test_full_jitter_stays_below_the_curve_and_spreads() -> None:
    backoff = Backoff(2.0, 10.0, strategy="full", rng=random.Random(1))
    delays = []
    for attempt in range(200):
        delay = backoff.next_delay()
        assert 0.0 <= delay < min(10.0, 2.0 * 2.0**attempt)
        delays.append(delay)
    assert len({round(d, 6) for d in delays}) > 150


def test_decorrelated_jitter_stays_in_bounds() -> None:
    backoff = Backoff(0.1, 5.0, factor=3.0, strategy="decorrelated", rng=random.Random(3))
    previous = 0.1
    for _ in range(500):
        delay = backoff.next_delay()
        assert 0.1 <= delay <= min(5.0, previous * 3.0)
        previous = delay
    assert backoff.attempts == 500


def test_many_attempts_never_overflow() -> None:
    backoff = Backoff(1.0, 300.0, jitter=0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 300.0


def test_same_seed_same_delays() -> None:
    a = Backoff(1.0, 60.0, rng=random.Random(42))
    b = Backoff(1.0, 60.0, rng=random.Random(42))
    assert [a.next_delay() for _ in range(10)] == [b.next_delay() for _ in range(10)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_s": 0, "max_s": 1},
        {"min_s": 2, "max_s": 1},
        {"min_s": 1, "max_s": 2, "factor": 0.5},
        {"min_s": 1, "max_s": 2, "jitter": 1.5},
        {"min_s": 1, "max_s": 2, "strategy": "linear"},
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_delay_per_attempt_follows_the_curve_without_counting() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(1))
    delays = [backoff.delay(n) for n in range(12)]
    for n, d in enumerate(delays):
        base = min(30.0, 0.5 * 2**n)
        assert base / 2 <= d <= base
    assert len({round(d, 6) for d in delays}) == len(delays)
    assert backoff.attempts == 0
    assert Backoff(1.0, 8.0, jitter=0.0).delay(10_000) == 8.0


def test_delay_per_attempt_matches_next_delay() -> None:
    counted = Backoff(1.0, 60.0, rng=random.Random(5))
    given = Backoff(1.0, 60.0, rng=random.Random(5))
    assert [counted.next_delay() for _ in range(8)] == [given.delay(n) for n in range(8)]


def test_delay_per_attempt_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0).delay(-1)
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0, strategy="decorrelated").delay(0)
