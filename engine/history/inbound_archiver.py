"""The inbound archiver: the inbound stream(s) → the ``inbound`` table, each entry once.

It is the events archiver (engine/history/archiver.py: XREADGROUP → one
store transaction → XACK after the commit; restart, takeover, outages and
read-ahead the same) with another fold and another write: each entry becomes
one row keyed by its stream and entry id (engine/history/inbound.py), so a
batch written twice inserts nothing the second time. Its consumer group is
``[history] group`` + ``-inbound`` on ``<prefix>:inbound``: the inbound
stream is trimmed only behind it (engine/stream_trim.py).

Metrics: ``sendgate_inbound_archive_lag`` (entries not yet in the store),
``sendgate_inbound_archive_behind_seconds``, ``sendgate_archived_inbound`` and
``sendgate_inbound_archive_write_failures``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis

from engine.history.archiver import Archiver, log
from engine.history.inbound import InboundRecord, inbound_group, inbound_table, records_from_entries
from engine.history.store import HistoryStore
from engine.history.text_cipher import TextCipher

__all__ = ["InboundArchiver", "inbound_group"]


class InboundArchiver(Archiver):
    """Moves inbound stream entries into the store's ``inbound`` table."""

    def __init__(
        self,
        redis: Redis,
        store: HistoryStore,
        streams: Sequence[str],
        *,
        own_numbers: Collection[str] = (),
        hash_number: Callable[[str], str] | None = None,
        retention_s: int = 0,
        cipher: TextCipher | None = None,
        registry: CollectorRegistry | None = None,
        **options: Any,
    ) -> None:
        super().__init__(redis, store, streams, registry=CollectorRegistry(), **options)
        self.report_lag = registry is not None
        self.own_numbers = frozenset(own_numbers)
        self.hash_number = hash_number
        self.retention_s = retention_s
        self.cipher = cipher  # [history] keep_text: each text sealed into text_enc
        self.table = inbound_table(store)
        r = registry if registry is not None else CollectorRegistry()
        self._m_lag = Gauge("sendgate_inbound_archive_lag", "Inbound messages not yet in the history store", registry=r)
        self._m_behind = Gauge("sendgate_inbound_archive_behind_seconds",
                               "Age of the oldest inbound message not yet in the history store", registry=r)
        self._m_archived = Counter("sendgate_archived_inbound", "Inbound messages written to the history store and acked",
                                   registry=r)
        self._m_failures = Counter("sendgate_inbound_archive_write_failures",
                                   "Inbound history writes that failed and were retried", registry=r)

    def _fold(self, batch: list[tuple[str, list[Any]]]) -> list[Any]:
        return records_from_entries(batch, int(time.time() * 1000), own_numbers=self.own_numbers,
                                    hash_number=self.hash_number, retention_s=self.retention_s, cipher=self.cipher)

    async def _write(self, items: list[InboundRecord], now_ms: int) -> None:
        await self.table.write(items)

    async def _drop_expired(self) -> None:
        try:
            dropped = await self.table.drop_expired(time.time(), self.retention_days)
        except Exception as err:  # retention waits for the next hour; archiving goes on
            log.warning("inbound archiver: dropping expired history failed (%s: %s)", type(err).__name__, err)
            return
        if dropped:
            log.info("history: dropped %d day(s) of inbound messages past retention: %s", len(dropped), ", ".join(dropped))
