"""Two limits at once: a bind's own (adaptive) rate and the carrier's shared cap.

Why: the bind pool takes one ``RateLimiter``, but a PDU must respect two
limits — the carrier's TPS across all processes (``GlobalTokenBucket``) and
the rate this bind may use right now (a local ``TokenBucket`` that
``AdaptiveRate`` slows down after throttle replies). Taking from both
independently would lose tokens whenever one grants less than the other, so
the local bucket is only *asked* first (``available``), the shared one is
taken from, and the local one then gives exactly what the shared one did.
"""

from __future__ import annotations

from typing import Protocol

from .bucket import TokenBucket

__all__ = ["CombinedLimiter", "RateLimiter"]


class RateLimiter(Protocol):
    """What the bind pool calls (docs/INTERNALS.md, BindPool); sans-IO."""

    def try_take(self, n: int, now: float) -> int: ...

    def wait_s(self, n: int, now: float) -> float: ...


class CombinedLimiter:
    """Grants only what both ``local`` and ``shared`` allow; no token of either is wasted."""

    __slots__ = ("local", "shared")

    def __init__(self, local: TokenBucket, shared: RateLimiter) -> None:
        self.local = local
        self.shared = shared

    def try_take(self, n: int, now: float) -> int:
        """Up to ``n`` tokens that both limits grant at ``now``."""
        allowed = min(n, self.local.available(now))
        if allowed <= 0:
            return 0
        got = self.shared.try_take(allowed, now)
        if got:
            self.local.try_take(got, now)
        return got

    def wait_s(self, n: int, now: float) -> float:
        """The longer of the two waits."""
        return max(self.local.wait_s(n, now), self.shared.wait_s(n, now))
