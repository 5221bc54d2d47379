"""A carrier's flow control in one engine: its window and its rate, backing off and recovering.

Why: a configured ``tps`` and ``window`` are what the contract allows; what the
SMSC accepts right now can be less. When it answers ESME_RTHROTTLED or
ESME_RMSGQFUL, sending must slow down at once and speed up again later,
without an operator — additive increase, multiplicative decrease (AIMD, the
TCP rule, RFC 5681 §3.1) — and never above what is configured.

Theory of operation (sans-IO: the pool passes ``now``, its loop's monotonic
clock, and calls :meth:`CarrierFlow.on_batch` once per batch of responses that
held a throttle reply, and per batch while something is reduced — never per
message, and not at all on the quiet path):

* **Window** (per engine, every bind of the carrier): an :class:`AdaptiveRate`
  between ``window_floor`` and the configured ``window``: halved per throttle
  burst (at most once per cooldown), +10 % of the window per second after two
  quiet seconds. The pool applies it to every bind (``SmppBind.set_window``).
* **Rate** with a configured ``tps``: the carrier's shared
  ``GlobalTokenBucket`` keeps an adaptive limit in Redis next to its tokens.
  A throttle reply seen by any engine cuts it (``note_throttled``; one cut
  per cooldown for the whole fleet) and every engine's leases refill at the
  lower rate; time alone brings it back (``recovered_rate``), up to ``tps``.
* **Rate** with no ``tps``: :class:`LocalAdaptiveLimiter`, unlimited until
  the first throttle reply, then an AIMD limit in this engine only, starting
  from half the rate observed over the last second; once it climbs back to
  that level it is lifted again.

:meth:`CarrierFlow.on_batch` returns a reason when the window or the rate in
force changed, so that the caller logs one line per change.
"""

from __future__ import annotations

from typing import Protocol

from .adaptive import AdaptiveRate
from .bucket import TokenBucket

__all__ = ["AdaptiveLimiter", "CarrierFlow", "LocalAdaptiveLimiter"]


class AdaptiveLimiter(Protocol):
    """A rate limiter that backs off on throttle replies (``GlobalTokenBucket`` with
    an adaptive limit, :class:`LocalAdaptiveLimiter`); also the pool's ``RateLimiter``."""

    def try_take(self, n: int, now: float) -> int: ...

    def wait_s(self, n: int, now: float) -> float: ...

    def note_throttled(self, now: float) -> None: ...

    def note_success(self, now: float) -> None: ...

    def limit_per_s(self, now: float) -> float: ...

    def is_reduced(self) -> bool: ...


class LocalAdaptiveLimiter:
    """No configured rate: unlimited until a throttle reply, then AIMD in this engine."""

    __slots__ = ("_bucket", "_count", "_observed", "_rate", "_t0")

    def __init__(self, floor_per_s: float = 1.0) -> None:
        self._rate = AdaptiveRate(0.0, floor_per_s=floor_per_s)
        self._bucket = TokenBucket(0.0)
        self._t0: float | None = None
        self._count = 0
        self._observed = 0.0  # granted per second over the last whole second

    def try_take(self, n: int, now: float) -> int:
        # Unlimited (no throttle reply yet, or recovered): no bucket to ask.
        got = self._bucket.try_take(n, now) if self._rate.rate_per_s else n
        # One sample per second of what went out: the starting point of a cut.
        t0 = self._t0
        if t0 is not None and now - t0 < 1.0:
            self._count += got
            return got
        if t0 is not None:
            self._observed = self._count / (now - t0)
        self._t0, self._count = now, got
        return got

    def wait_s(self, n: int, now: float) -> float:
        return self._bucket.wait_s(n, now)

    def _observed_per_s(self, now: float) -> float:
        # What went out in the last second, about: the current sample counted over
        # at least a second (a short first burst is not a rate), or the last whole one.
        t0 = self._t0
        partial = self._count / max(now - t0, 1.0) if t0 is not None else 0.0
        return max(self._observed, partial)

    def note_throttled(self, now: float) -> None:
        rate = self._rate
        rate.on_throttle(now, self._observed_per_s(now))
        if rate.changed:
            self._bucket.set_rate(rate.rate_per_s, now)

    def note_success(self, now: float) -> None:
        rate = self._rate
        rate.on_success(now)
        if rate.changed:
            self._bucket.set_rate(rate.rate_per_s, now)

    def limit_per_s(self, now: float) -> float:
        return self._rate.rate_per_s

    def is_reduced(self) -> bool:
        return self._rate.is_reduced


class CarrierFlow:
    """One carrier's adaptive window and rate in one engine (see the module doc)."""

    __slots__ = ("_last_rate", "_window", "limiter", "window", "window_floor")

    def __init__(self, window: int, window_floor: int = 1, limiter: AdaptiveLimiter | None = None) -> None:
        if not 1 <= window_floor <= window:
            raise ValueError(f"window_floor must be within 1..{window}, got {window_floor!r}")
        self._window = AdaptiveRate(float(window), floor_per_s=float(window_floor))
        self.window_floor = window_floor
        #: The window every bind of the carrier uses now.
        self.window = window
        #: The pool's rate limiter; None = no rate control (window only).
        self.limiter = limiter
        self._last_rate = limiter.limit_per_s(0.0) if limiter is not None else 0.0

    def rate_per_s(self, now: float) -> float:
        """The rate limit in force (0 = none)."""
        limiter = self.limiter
        return limiter.limit_per_s(now) if limiter is not None else 0.0

    def reduced(self) -> bool:
        """True while the window or the rate is below its configured level (or may be)."""
        limiter = self.limiter
        return self._window.is_reduced or (limiter is not None and limiter.is_reduced())

    def on_batch(self, now: float, throttled: bool) -> str | None:
        """A batch of responses, with throttle replies or not: back off or recover.

        Returns ``"throttled"`` or ``"recovering"`` when the window or the rate in
        force changed (a cut made elsewhere in the fleet shows up here too), else None.
        """
        window, limiter = self._window, self.limiter
        if throttled:
            window.on_throttle(now)
            if limiter is not None:
                limiter.note_throttled(now)
        else:
            window.on_success(now)
            if limiter is not None:
                limiter.note_success(now)
        new_window = max(self.window_floor, int(window.rate_per_s))
        rate = self.rate_per_s(now)
        last_rate = self._last_rate
        if new_window == self.window and rate == last_rate:
            return None
        # 0 is "no limit": becoming limited is a step down too.
        down = new_window < self.window or (rate != 0.0 and (last_rate == 0.0 or rate < last_rate))
        self.window, self._last_rate = new_window, rate
        return "throttled" if down else "recovering"
