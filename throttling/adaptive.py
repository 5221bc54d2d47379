"""AIMD rate control for a bind the SMSC throttles (ESME_RTHROTTLED 0x58, ESME_RMSGQFUL 0x14).

Why: the configured TPS is what the contract says; what the SMSC accepts
right now can be less (another customer's burst, a degraded link). When it
answers ESME_RTHROTTLED the bind must slow down and later speed up again,
without operator action. Additive increase / multiplicative decrease (the
TCP congestion-control rule, RFC 5681 §3.1) converges to the largest rate the
SMSC tolerates and backs off fast when that shrinks.

Theory of operation (pure: the caller passes ``now``, monotonic seconds):

* ``on_throttle(now)`` multiplies the rate by ``decrease`` (default 0.5),
  never below ``floor_per_s``. A whole window of PDUs is usually answered
  with 0x58 at once, so at most one decrease happens per ``cooldown_s``;
  the rest of that burst of replies changes nothing.
* ``on_success(now)`` — call it for accepted submits (cheap; once per batch
  is enough) — raises the rate by ``step_per_s`` once per ``interval_s``,
  but only after ``hold_s`` without a throttle reply, up to the ceiling.
* Ceiling ``0`` (no configured limit): the first throttle reply starts from
  the rate the caller observed (``observed_per_s``); the rate climbs back to
  that level and then the limit is lifted again (``rate_per_s == 0``).

Both calls return the current rate; the caller hands it to
``TokenBucket.set_rate`` when it changed (compare, or read ``changed``).

Where it is used (``throttling.flow.CarrierFlow``): a carrier's window per
engine (ceiling = the configured ``window``), and the rate of a carrier with
no configured ``tps`` (ceiling 0). A carrier *with* ``tps`` keeps its rate in
Redis instead, shared by every engine; its recovery is the closed form
:func:`recovered_rate` (mirrored in the lease script), a function of the time
since the last cut, so that no engine has to push increases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AdaptiveRate", "AimdSettings", "recovered_rate"]


@dataclass(frozen=True, slots=True)
class AimdSettings:
    """How a limit backs off and recovers: x ``decrease`` per throttle burst (at most
    once per ``cooldown_s``, never below ``floor``), then ``+step`` every ``interval_s``
    once ``hold_s`` passed without a throttle reply."""

    floor: float
    step: float
    decrease: float = 0.5
    hold_s: float = 2.0
    interval_s: float = 1.0
    cooldown_s: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.floor) and self.floor > 0):
            raise ValueError(f"floor must be > 0, got {self.floor!r}")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"step must be > 0, got {self.step!r}")
        if not (0.0 < self.decrease < 1.0):
            raise ValueError(f"decrease must be within (0, 1), got {self.decrease!r}")
        if self.interval_s <= 0 or self.hold_s < 0 or self.cooldown_s < 0:
            raise ValueError("interval_s must be > 0, hold_s and cooldown_s >= 0")


def recovered_rate(
    cut_rate: float, since_cut_s: float, ceiling: float, step: float, hold_s: float, interval_s: float
) -> float:
    """The limit ``since_cut_s`` seconds after a cut to ``cut_rate``: unchanged for
    ``hold_s``, then ``+step`` at once and every ``interval_s``, never above ``ceiling``.

    The same schedule as :meth:`AdaptiveRate.on_success` called continuously;
    ``throttling.global_bucket``'s scripts compute exactly this in Lua.
    """
    if since_cut_s < hold_s:
        return min(cut_rate, ceiling)
    steps = 1 + math.floor((since_cut_s - hold_s) / interval_s)
    return min(ceiling, cut_rate + steps * step)


class AdaptiveRate:
    """AIMD controller: ``rate_per_s`` between ``floor_per_s`` and ``ceiling_per_s`` (0 = unlimited)."""

    __slots__ = (
        "_last_change",
        "_last_cut",
        "_last_throttle",
        "_peak",
        "_rate",
        "_step",
        "ceiling_per_s",
        "changed",
        "cooldown_s",
        "decrease",
        "floor_per_s",
        "hold_s",
        "interval_s",
        "step_fraction",
        "throttles",
    )

    def __init__(
        self,
        ceiling_per_s: float,
        *,
        floor_per_s: float = 1.0,
        decrease: float = 0.5,
        step_fraction: float = 0.1,
        interval_s: float = 1.0,
        hold_s: float = 2.0,
        cooldown_s: float = 1.0,
    ) -> None:
        if not (math.isfinite(ceiling_per_s) and ceiling_per_s >= 0):
            raise ValueError(f"ceiling_per_s must be >= 0, got {ceiling_per_s!r}")
        if not (math.isfinite(floor_per_s) and floor_per_s > 0):
            raise ValueError(f"floor_per_s must be > 0, got {floor_per_s!r}")
        if not (0.0 < decrease < 1.0):
            raise ValueError(f"decrease must be within (0, 1), got {decrease!r}")
        if not (0.0 < step_fraction <= 1.0):
            raise ValueError(f"step_fraction must be within (0, 1], got {step_fraction!r}")
        if interval_s <= 0 or hold_s < 0 or cooldown_s < 0:
            raise ValueError("interval_s must be > 0, hold_s and cooldown_s >= 0")
        self.ceiling_per_s = float(ceiling_per_s)
        self.floor_per_s = float(floor_per_s)
        self.decrease = float(decrease)
        self.step_fraction = float(step_fraction)
        self.interval_s = float(interval_s)
        self.hold_s = float(hold_s)
        self.cooldown_s = float(cooldown_s)
        self._rate = self.ceiling_per_s
        self._peak = self.ceiling_per_s
        self._step = max(1.0, self.ceiling_per_s * self.step_fraction)
        self._last_throttle: float | None = None
        self._last_cut: float | None = None
        self._last_change = 0.0
        #: True when the last ``on_throttle`` / ``on_success`` call changed the rate.
        self.changed = False
        #: Throttle replies seen (all of them, also those inside a cooldown).
        self.throttles = 0

    @property
    def rate_per_s(self) -> float:
        """Current allowed rate; 0 = unlimited."""
        return self._rate

    @property
    def is_reduced(self) -> bool:
        """True while the rate is below its ceiling because of throttle replies."""
        return self._last_throttle is not None and self._rate != self.ceiling_per_s

    def on_throttle(self, now: float, observed_per_s: float = 0.0) -> float:
        """A throttle reply arrived at ``now``: cut the rate (at most once per ``cooldown_s``)."""
        self.throttles += 1
        self._last_throttle = now
        self.changed = False
        cut = self._last_cut
        if cut is not None and now - cut < self.cooldown_s:
            # Same burst of replies as the cut we just made.
            return self._rate
        current = self._rate
        if current == 0.0:
            # Unlimited so far: start from what was actually sent.
            current = observed_per_s if observed_per_s > 0 else self.floor_per_s / self.decrease
            self._peak = current
            self._step = max(1.0, current * self.step_fraction)
        new = max(self.floor_per_s, current * self.decrease)
        if self.ceiling_per_s and new > self.ceiling_per_s:
            new = self.ceiling_per_s
        self.changed = new != self._rate
        self._rate = new
        self._last_change = now
        self._last_cut = now
        return new

    def on_success(self, now: float) -> float:
        """Submits are being accepted at ``now``: raise the rate additively when due."""
        self.changed = False
        last = self._last_throttle
        if last is None or not self.is_reduced:
            return self._rate
        if now - last < self.hold_s or now - self._last_change < self.interval_s:
            return self._rate
        new = self._rate + self._step
        target = self.ceiling_per_s if self.ceiling_per_s else self._peak
        if new >= target:
            # Back at the configured ceiling, or at the level that was throttled
            # with no configured ceiling: lift the limit again.
            new = self.ceiling_per_s
        self.changed = new != self._rate
        self._rate = new
        self._last_change = now
        return new

    def __repr__(self) -> str:
        return (
            f"AdaptiveRate(rate_per_s={self._rate!r}, ceiling_per_s={self.ceiling_per_s!r}, "
            f"floor_per_s={self.floor_per_s!r})"
        )
