"""A local token bucket, sans-IO: the caller passes ``now``.

Why a token bucket: a carrier's TPS limit is a promise about *rate over time*
with a little slack for bursts. A bucket of capacity ``burst`` refilled at
``rate_per_s`` grants, over any interval of length ``T``, at most
``rate_per_s * T + burst`` tokens — that is the whole contract, and the tests
check it with random traffic.

Why sans-IO: the bind pool decides per loop tick how many PDUs it may write;
it already holds a monotonic ``now``, so the bucket never reads a clock. That
keeps it deterministic to test (no sleeps, no fake clocks) and cheap to call
(a few float operations per call, no syscalls).

Theory of operation:

* The bucket starts full. On each call, the time since the last call refills
  it (``elapsed * rate``), capped at ``burst``. A ``now`` that goes backwards
  refills nothing (the stored time is kept), it never removes tokens.
* ``try_take(n, now)`` grants ``min(n, whole tokens)`` — a *partial* grant is
  normal: the pool sends what it got and asks again later.
* ``wait_s(n, now)`` says when ``min(n, burst)`` tokens will be there. A
  request larger than the bucket can never be granted in one go, so the wait
  is for the largest grant possible; the caller takes it in pieces.
* Rate ``0`` means unlimited: every request is granted, the wait is ``0``.
* The default burst is a tenth of a second of traffic (at least 1 token):
  small enough that a carrier counting per second sees at most ``1.1 x``
  its limit in the worst second, large enough that a pool writing once per
  loop tick is never starved.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket", "check_rate", "default_burst"]

# Floats accumulate error: 0.1 s at 10/s must give a whole token, not 0.9999…
_EPSILON = 1e-9


def default_burst(rate_per_s: float) -> int:
    """The burst used when none is configured: 100 ms of traffic, at least one token."""
    if rate_per_s <= 0:
        return 1
    return max(1, math.ceil(rate_per_s / 10.0))


def check_rate(rate_per_s: float) -> float:
    """``rate_per_s`` as a float; ValueError unless finite and >= 0 (0: unlimited).

    Every bucket (local and global) checks its rate with this one rule.
    """
    rate = float(rate_per_s)
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"rate_per_s must be a finite number >= 0, got {rate_per_s!r}")
    return rate


class TokenBucket:
    """Token bucket with ``rate_per_s`` refill and capacity ``burst``; ``rate_per_s=0`` is unlimited.

    Satisfies the pool's ``RateLimiter`` protocol (``try_take`` / ``wait_s``).
    An explicit ``burst`` is kept when the rate changes; a default burst
    (``burst=None``) follows the rate, so a bind slowed down after a throttle
    reply also bursts less.
    """

    __slots__ = ("_burst", "_burst_fixed", "_last", "_rate", "_tokens")

    def __init__(self, rate_per_s: float, burst: int | None = None) -> None:
        self._rate = check_rate(rate_per_s)
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst!r}")
        self._burst_fixed = burst is not None
        self._burst = float(burst) if burst is not None else float(default_burst(self._rate))
        self._tokens = self._burst
        self._last: float | None = None

    @property
    def rate_per_s(self) -> float:
        """Current refill rate (tokens per second); 0 = unlimited."""
        return self._rate

    @property
    def burst(self) -> int:
        """Capacity of the bucket."""
        return int(self._burst)

    def _refill(self, now: float) -> float:
        last = self._last
        if last is None:
            self._last = now
            return self._tokens
        if now > last:
            tokens = self._tokens + (now - last) * self._rate
            self._tokens = tokens if tokens < self._burst else self._burst
            self._last = now
        return self._tokens

    def try_take(self, n: int, now: float) -> int:
        """Take up to ``n`` tokens at monotonic time ``now``; return how many were granted (0..n)."""
        if n <= 0:
            return 0
        if self._rate == 0.0:
            return n
        tokens = self._refill(now)
        whole = int(tokens + _EPSILON)
        granted = n if n < whole else whole
        if granted:
            left = tokens - granted
            self._tokens = left if left > 0.0 else 0.0
        return granted

    def wait_s(self, n: int, now: float) -> float:
        """Seconds from ``now`` until ``min(n, burst)`` tokens are available (0 if they are now)."""
        if n <= 0 or self._rate == 0.0:
            return 0.0
        tokens = self._refill(now)
        want = float(n) if n < self._burst else self._burst
        missing = want - tokens
        if missing <= _EPSILON:
            return 0.0
        return missing / self._rate

    def set_rate(self, rate_per_s: float, now: float | None = None) -> None:
        """Change the refill rate (0 = unlimited).

        Pass ``now`` to settle the time elapsed so far at the old rate first;
        without it, that time is credited at the new rate on the next call.
        Tokens above a smaller default burst are dropped.
        """
        rate = check_rate(rate_per_s)
        if now is not None and self._rate > 0.0:
            self._refill(now)
        self._rate = rate
        if not self._burst_fixed:
            self._burst = float(default_burst(rate))
        if self._tokens > self._burst:
            self._tokens = self._burst

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_s={self._rate!r}, burst={int(self._burst)})"
