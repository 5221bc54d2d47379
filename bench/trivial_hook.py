"""A trivial custom privacy hook for the benchmarks: it is called per batch and
looks at every record and event (one attribute read each), changes nothing.

``[privacy] hooks = ["bench.trivial_hook:Trivial"]`` — what the chain costs
when an operator plugs in a hook, beyond what the hook itself does.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from privacy_hooks import BaseHook, StoredRecord

__all__ = ["Trivial"]


class Trivial(BaseHook):
    def __init__(self) -> None:
        self.records = 0
        self.events = 0

    def on_store_batch(self, records: Sequence[StoredRecord]) -> None:
        self.records += len(records)

    def on_events(self, events: Sequence[MutableMapping[str, Any]]) -> None:
        self.events += len(events)
