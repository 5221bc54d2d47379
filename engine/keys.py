"""The Redis key names sendgate uses from Python, built in one place.

The public names (jobs lanes, events, inbound, dead letters, audit) are a
contract (DESIGN.md, "Redis contract"); the rest are the engine's own
records. All keys start with the configured prefix. On Redis Cluster, set the
prefix to a hash tag such as ``{sendgate}`` so that every key shares one slot
and the per-batch scripts may touch them together.

The per-job keys (``P:job:<id>``, ``P:idem:<id>``, ``P:dlr:c:<carrier>:<end_ms>``,
``P:subject:<hash>``) are built inside the scripts from the prefix
(engine/*.lua, dlr/correlate.lua); docs/INTERNALS.md lists them all.
"""

from __future__ import annotations

import msgspec

__all__ = ["Keys"]


class Keys(msgspec.Struct, frozen=True):
    """Key names under one prefix."""

    prefix: str = "sendgate"

    # -- public contract -------------------------------------------------
    @property
    def jobs(self) -> str:
        """Normal-priority jobs stream (the one producers push to by default)."""
        return f"{self.prefix}:jobs"

    @property
    def jobs_high(self) -> str:
        return f"{self.prefix}:jobs:high"

    @property
    def jobs_bulk(self) -> str:
        return f"{self.prefix}:jobs:bulk"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def inbound(self) -> str:
        return f"{self.prefix}:inbound"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"

    # -- the engine's own records ----------------------------------------
    @property
    def scheduled(self) -> str:
        """Sorted set of jobs held until their ``send_at``."""
        return f"{self.prefix}:scheduled"

    @property
    def dlr_due(self) -> str:
        """Sorted set of correlation buckets (``<end_ms>:<carrier>``) scored by their end:
        the receipt deadlines the expiry sweep works through (dlr/store.py)."""
        return f"{self.prefix}:dlr:due"

    @property
    def dlr_unmatched(self) -> str:
        return f"{self.prefix}:dlr:unmatched"

    @property
    def dlr_invalid(self) -> str:
        return f"{self.prefix}:dlr:invalid"

    @property
    def callbacks_failed(self) -> str:
        return f"{self.prefix}:callbacks:failed"


    def lanes(self) -> tuple[str, str, str]:
        """The job streams, highest priority first."""
        return (self.jobs_high, self.jobs, self.jobs_bulk)
