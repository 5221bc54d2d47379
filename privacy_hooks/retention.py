"""Retention: how long each kind of record may live (docs/contract.md §4, "Privacy").

Why stamp every record: a GDPR processor must be able to show that nothing
outlives the agreed period. Every key the engine writes therefore gets a TTL
(Redis removes it on time, without a sweeper) and hashes also get a
``retention_until`` field (unix seconds), so that ``sendgate purge`` or an
auditor can see the deadline without asking Redis for the TTL, and so that a
record restored from a backup without its TTL can still be judged.

Kinds and defaults (``[privacy.retention_days]`` in the config):

============== ======== ==================================================
kind           default  what
============== ======== ==================================================
``message``    120 d    message records (job, status, receipts: the
                        history store's rows; 60 + 60 days of the policy)
``payload``    60 d     raw uploaded job payloads (the jobs stream entries)
``activity_log`` 30 d   operational logs (files: rotated away)
``audit``      730 d    the audit stream
``dlr``        72 h     DLR correlation entries: ``dlr_wait_h``, but never
                        longer than the message record they point to
============== ======== ==================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["RECORD_KINDS", "RecordKind", "RetentionPolicy"]

RecordKind = Literal["message", "payload", "activity_log", "audit", "dlr"]
RECORD_KINDS: tuple[str, ...] = ("message", "payload", "activity_log", "audit", "dlr")
_DAY_S = 86_400
_HOUR_S = 3_600
_DAY_KEYS = ("message", "payload", "activity_log", "audit")


def _positive(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: expected a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{path}: expected a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Retention per record kind: days for message/payload/activity_log/audit, hours for dlr_wait."""

    message: int = 120
    payload: int = 60
    activity_log: int = 30
    audit: int = 730
    dlr_wait_h: float = 72.0
    _ttl: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        for key in _DAY_KEYS:
            _positive(f"privacy.retention_days.{key}", getattr(self, key))
        _positive("privacy.dlr_wait_h", self.dlr_wait_h)
        ttl = {key: int(getattr(self, key) * _DAY_S) for key in _DAY_KEYS}
        ttl["dlr"] = min(int(self.dlr_wait_h * _HOUR_S), ttl["message"])
        object.__setattr__(self, "_ttl", ttl)

    @classmethod
    def from_config(
        cls, retention_days: Mapping[str, Any] | None = None, dlr_wait_h: float = 72.0
    ) -> RetentionPolicy:
        """Build from the ``[privacy.retention_days]`` table; errors name the key path."""
        values: dict[str, Any] = {}
        for key, value in (retention_days or {}).items():
            if key not in _DAY_KEYS:
                raise ValueError(
                    f"privacy.retention_days.{key}: unknown record kind "
                    f"(expected one of {', '.join(_DAY_KEYS)})"
                )
            _positive(f"privacy.retention_days.{key}", value)
            values[key] = value
        return cls(**values, dlr_wait_h=dlr_wait_h)

    def ttl_s(self, kind: str) -> int:
        """Seconds a record of ``kind`` may live (the TTL to set on its key)."""
        try:
            return self._ttl[kind]
        except KeyError:
            raise ValueError(
                f"unknown record kind {kind!r} (expected one of {', '.join(RECORD_KINDS)})"
            ) from None

    def retention_until(self, kind: str, now_s: float) -> int:
        """Unix second by which a record of ``kind`` stored at ``now_s`` must be gone."""
        return int(now_s) + self.ttl_s(kind)

    def dlr_ttl_s(self, dlr_wait_h: float | None = None) -> int:
        """TTL of a DLR correlation entry: a carrier's ``dlr_wait_h`` (default: the policy's),
        capped by the message retention — a receipt never outlives its message."""
        if dlr_wait_h is None:
            return self._ttl["dlr"]
        wait = _positive("carriers.dlr_wait_h", dlr_wait_h)
        return min(int(wait * _HOUR_S), self._ttl["message"])
