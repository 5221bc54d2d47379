"""Multipart aggregation: one final event per job from its parts' receipts.

A long text goes out as several submit_sm parts, each with its own carrier
message id and its own receipt. The client sees one job, so the job's final
event comes when *every* part has a final receipt, and it is:

* ``delivered`` only if all parts were delivered;
* otherwise the worst part state, by this severity order (worst first)::

      rejected > undeliverable > expired > deleted > unknown > delivered

  Why this order: ``rejected`` is a definite refusal (the SMSC or network
  will never deliver; often a content or routing problem the client must
  fix); ``undeliverable`` a definite failure at the handset/network;
  ``expired`` means the validity period ran out (likely a handset that was
  off; may succeed if resent); ``deleted`` an administrative removal;
  ``unknown`` says nothing, and must not hide a definite failure of another
  part; ``delivered`` is the best.

  An unrecognised state name counts as ``unknown``. The per-part states are
  listed (``part_states``) on a multipart final event that is not all
  delivered, so the client sees which part failed.

When only the last parts asked for a receipt (job field ``expect`` < ``parts``,
see ``dlr/store.py``), "every part" means every part that asked: only those
are aggregated and listed.

The same rule is written in Lua in ``dlr/correlate.lua`` (function
``aggregate``); ``tests/dlr/test_aggregate.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["SEVERITY", "aggregate", "aggregate_error"]

#: Severity of each final part state; higher is worse.
SEVERITY: dict[str, int] = {
    "delivered": 1,
    "unknown": 2,
    "deleted": 3,
    "expired": 4,
    "undeliverable": 5,
    "rejected": 6,
}
_UNKNOWN = SEVERITY["unknown"]


def aggregate(part_states: Sequence[str]) -> str:
    """The job's final event from its parts' final events (see the module doc).

    An empty sequence gives ``unknown``.
    """
    worst = "unknown"
    worst_rank = 0
    for state in part_states:
        rank = SEVERITY.get(state, _UNKNOWN)
        if rank > worst_rank:
            worst_rank = rank
            worst = state if state in SEVERITY else "unknown"
    return worst


def aggregate_error(part_states: Sequence[str], part_errors: Sequence[str], final: str) -> str:
    """The error reported with the final event.

    The error of the first part whose state is the final event, if it has
    one; else the first non-empty error of any part; else "".
    """
    fallback = ""
    for state, error in zip(part_states, part_errors, strict=False):
        if not error:
            continue
        mapped = state if state in SEVERITY else "unknown"
        if mapped == final:
            return error
        if not fallback:
            fallback = error
    return fallback
