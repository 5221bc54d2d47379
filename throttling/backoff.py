"""Retry delays: exponential backoff with jitter.

Why jitter: when a carrier's SMSC restarts, every bind of every engine
process loses its link at the same instant. Plain exponential backoff makes
them all come back at the same instants too, and the SMSC sees a thundering
herd on each retry. Randomising the delays spreads the reconnects out.
(AWS Architecture Blog, "Exponential Backoff And Jitter", 2015, compares the
strategies below; full and decorrelated jitter do the least total work.)

Strategies (``strategy=``), with ``base = min(max_s, min_s * factor**attempt)``:

* ``"proportional"`` (default): ``base * (1 - jitter * U[0, 1))``. The delay
  stays within ``jitter`` (a fraction, default 20 %) below the exponential
  curve: predictable for operators ("about 1, 2, 4 … s"), still spread out.
  Delays lie in ``[min_s * (1 - jitter), max_s]``.
* ``"full"``: ``U[0, base)`` — "full jitter". Best spread, but an attempt may
  retry almost at once; ``jitter`` is ignored.
* ``"decorrelated"``: ``min(max_s, U[min_s, previous * factor))``, starting
  from ``previous = min_s`` — "decorrelated jitter". Each delay depends on the
  previous one instead of on the attempt count; ``jitter`` is ignored.

``attempts`` counts delays handed out since the last ``reset()``; call
``reset()`` once the operation succeeded (e.g. the bind is up again).
A caller that counts attempts itself (one count per job part, per callback)
asks ``delay(attempt)`` instead: same curve, no state.

One backoff for the engine: the bind's reconnects and throttle pauses
(``connectors.transport``), Redis retries and submit retries
(``engine.pipeline``) and callback retries (``dlr.webhook``) all take their
delays from here, each with its own ``min_s``/``max_s``/``jitter``.
"""

from __future__ import annotations

import math
import random
from typing import Literal

__all__ = ["Backoff", "BackoffStrategy"]

BackoffStrategy = Literal["proportional", "full", "decorrelated"]
_STRATEGIES = ("proportional", "full", "decorrelated")


class Backoff:
    """Exponential backoff from ``min_s`` to ``max_s`` with jitter (see the module docstring)."""

    __slots__ = ("_attempts", "_previous", "_rng", "factor", "jitter", "max_s", "min_s", "strategy")

    def __init__(
        self,
        min_s: float,
        max_s: float,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
        strategy: BackoffStrategy = "proportional",
    ) -> None:
        if not (math.isfinite(min_s) and min_s > 0):
            raise ValueError(f"min_s must be > 0, got {min_s!r}")
        if not (math.isfinite(max_s) and max_s >= min_s):
            raise ValueError(f"max_s must be >= min_s, got {max_s!r}")
        if not (math.isfinite(factor) and factor >= 1.0):
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if not (0.0 <= jitter <= 1.0):
            raise ValueError(f"jitter must be within [0, 1], got {jitter!r}")
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}")
        self.min_s = float(min_s)
        self.max_s = float(max_s)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self.strategy: BackoffStrategy = strategy
        self._rng = rng if rng is not None else random.Random()
        self._attempts = 0
        self._previous = self.min_s

    @property
    def attempts(self) -> int:
        """Number of delays handed out since construction or the last ``reset()``."""
        return self._attempts

    def _base(self, attempt: int) -> float:
        # factor**attempt overflows a float after ~1000 attempts: the cap then.
        try:
            grown = self.min_s * self.factor**attempt
        except OverflowError:
            return self.max_s
        return grown if grown < self.max_s else self.max_s

    def delay(self, attempt: int) -> float:
        """The delay (seconds) before retry number ``attempt`` (0 = the first).

        For callers that keep their own count; leaves ``attempts`` alone.
        Draws one random number. Not for ``"decorrelated"``, whose delay
        depends on the previous one (use ``next_delay``).
        """
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt!r}")
        if self.strategy == "full":
            return self._rng.random() * self._base(attempt)
        if self.strategy == "decorrelated":
            raise ValueError("a decorrelated backoff has no delay per attempt: use next_delay()")
        return self._base(attempt) * (1.0 - self.jitter * self._rng.random())

    def next_delay(self) -> float:
        """The delay (seconds) to wait before the next attempt; counts one attempt."""
        if self.strategy == "decorrelated":
            upper = min(self.max_s, self._previous * self.factor)
            delay = self._rng.uniform(self.min_s, upper) if upper > self.min_s else self.min_s
            self._previous = delay
        else:
            delay = self.delay(self._attempts)
        self._attempts += 1
        return delay

    def reset(self) -> None:
        """Start over from ``min_s`` (after a success)."""
        self._attempts = 0
        self._previous = self.min_s

    def __repr__(self) -> str:
        return (
            f"Backoff(min_s={self.min_s!r}, max_s={self.max_s!r}, factor={self.factor!r}, "
            f"jitter={self.jitter!r}, strategy={self.strategy!r}, attempts={self._attempts})"
        )
