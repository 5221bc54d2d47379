"""The archiver: the events stream(s) → the history store, each event exactly once in effect.

It is a consumer group of its own (``[history] group``, default
``archiver``) on ``<prefix>:events`` (a list of streams: shards later), so it
reads every event independently of anyone else following the stream. One
round is:

    XREADGROUP COUNT batch_size BLOCK block_ms  →  fold into one delta per job
    →  one store transaction  →  XACK

Acknowledged only after the commit: a crash between the two leaves the
entries pending, and they are written again on restart — which the store's
merge rules turn into no change. So nothing is lost and nothing doubles.

- **Restart**: the consumer name is stable per host (``archiver-<hostname>``),
  and the first reads use id ``0`` (this consumer's pending entries) until
  none are left, then ``>``. Entries left pending by an archiver on another
  host are taken over after ``claim_idle_ms`` (XAUTOCLAIM).
- **Database down**: the batch in hand is retried with backoff (0.2 s
  doubling to 10 s) and no further entry is read; sending goes on, events wait
  in the stream, and `lag()` grows. The engine must not trim events the group
  has not taken: `min_unarchived_id()` is the bound for ``XTRIM MINID``.
- **Read ahead**: when a batch was full (a backlog), the next one is read and
  folded while it commits, so Redis, the fold and the database overlap; it is
  committed after, and acks still follow their commits: in the loop a backlog
  batch's XACK goes out (a task, one at a time) while the next batch commits.
  While the store is down this holds at most two batches; the rest waits in
  the stream.
- **Settle**: after a batch that was not full the archiver waits ``settle_ms``
  (``[history] settle_ms``, 1 s) before it reads again, so a quiet stream is read
  in batches of that time's events rather than one event at a time: a job whose
  receipt came within it is one row (COPY, no UPDATE), and the archive runs
  about that much behind.
- **Hold** (`run()`, with ``settle_ms``): a job's events that are not final
  (``submitted`` with a receipt to come, ``enroute``, ``accepted``) are held back
  until its final event is read (engine/history/hold.py): read and not acked
  (pending, so the trimmer keeps them, `lag()` counts them and a restart reads
  them again), then written with the batch that brings the final event: one
  COPYed row per job, not a row and an UPDATE of it later. Bounded by time
  (``hold_ms``, ``[history] hold_s``, at least ``settle_ms``: an entry that much
  older than the newest entry read is written; while reads bring nothing that
  "now" moves on with the clock) and by count (``hold_max`` entries: beyond, the
  oldest jobs are written). A stopping archiver writes what it holds.
- **Defer**: with ``busy`` (``sendgate run`` / ``archive``: jobs have waited
  unread in the lanes for over a second, a burst) and ``defer_s`` (``[history] defer_s``, 30 s), the archiver does not
  read while the engine has a backlog, nor ``settle_ms`` after the lanes emptied
  (the burst's last receipts), for at most ``defer_s`` at a time; then
  it archives until caught up whatever the load. A burst is sent first and
  archived after it; the archive is then up to ``defer_s`` (plus its catch-up)
  behind, as ``sendgate_archive_behind_seconds`` shows.
- **Cost**: per batch one XREADGROUP, a few statements in one transaction,
  one XACK (packed by `pack_xack`); per event only the fold: the store's own
  (PostgreSQL: COPY rows straight from the reply's bytes, engine/history/rows.py),
  else the deltas of engine/history/record.py.
- **Reads**: XREADGROUP goes over a connection of the archiver's own, past
  redis-py (engine/history/raw_reader.py), where the URL allows (TCP or a unix
  socket, ACL user, password, database; TLS and Cluster read through redis-py):
  each chunk is fed to hiredis as it comes, the same reply as before. A
  connection lost mid-reply (or Redis restarted) makes the next read this
  consumer's pending entries (id ``0``): what the lost reply had delivered is
  archived then, not after ``claim_idle_ms``.

Metrics (in the registry given): ``sendgate_archive_lag`` (events not yet in
the store), ``sendgate_archive_behind_seconds`` (age of the oldest of them),
``sendgate_archived_events`` and ``sendgate_archive_write_failures``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

import hiredis
import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.backlog import unread_estimate
from engine.history.hold import EventHold
from engine.history.raw_reader import RawReader
from engine.history.record import deltas_from_entries
from engine.history.store import HistoryStore, HistoryUnavailable
from engine.redis_client import is_cluster, raw_reply_client

__all__ = ["ArchiveLag", "Archiver", "default_consumer", "pack_xack"]

log = logging.getLogger("sendgate.history")

_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
_STOPPED = object()

#: Entries the archiver holds at most (engine/history/hold.py): ~1.5 KB each as the raw
#: reply holds them (a first event's 28 values), so ~150 MB at most.
HOLD_MAX = 100_000


def default_consumer() -> str:
    """Stable per host, so a restarted archiver finds its own pending entries."""
    return f"archiver-{socket.gethostname()}"


class ArchiveLag(msgspec.Struct, frozen=True):
    """How far behind the archive is: ``entries`` = not yet read + read but not committed."""

    entries: int
    pending: int
    behind_s: float  # age of the oldest event not in the store yet; 0 when none


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _next_id(entry_id: str) -> str:
    ms, _, seq = entry_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


class Archiver:
    """Moves events from Redis into a `HistoryStore` (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        store: HistoryStore,
        streams: Sequence[str],
        *,
        group: str = "archiver",
        consumer: str = "",
        batch_size: int = 5000,
        block_ms: int = 1000,
        retention_days: int = 120,
        claim_idle_ms: int = 60_000,
        backoff_min_s: float = 0.2,
        backoff_max_s: float = 10.0,
        registry: CollectorRegistry | None = None,
        read_ahead: bool = True,
        settle_ms: int = 0,
        busy: Callable[[], Awaitable[bool]] | None = None,
        defer_s: float = 0.0,
        hold_ms: int = 0,
        hold_max: int = HOLD_MAX,
    ) -> None:
        if not streams:
            raise ValueError("the archiver needs at least one stream")
        self.redis = redis
        # XREADGROUP through a client that keeps hiredis' raw reply: redis-py would
        # build a dict per entry (~2 µs); the fold reads the flat field list instead.
        self._reader = raw_reply_client(redis, ("XREADGROUP", "XRANGE"), _raw_reply)
        self._cluster = is_cluster(redis)
        # XREADGROUP past redis-py where the URL allows (engine/history/raw_reader.py: TCP
        # or a unix socket, AUTH, SELECT): a connection of its own, each chunk fed to
        # hiredis as it comes (redis-py copied a reply ~5 times). TLS, Cluster: redis-py.
        self._raw = RawReader.for_client(redis)
        self.store = store
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer or default_consumer()
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.retention_days = retention_days
        self.claim_idle_ms = claim_idle_ms
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self._stop = asyncio.Event()
        self._read_pending = True  # first drain this consumer's own pending entries (id "0")
        self.read_ahead = read_ahead
        # After a batch that was not full, wait this long before reading again: the
        # events of that time come in one batch, so a job's submitted and final events
        # (receipts within it) fold into one row (one COPYed row, no UPDATE), and the
        # rounds' fixed costs (read, transaction, lookup, XACK) spread over more events.
        self.settle_ms = settle_ms
        # While ``busy()`` (jobs wait in the lanes) the archiver does not read, for
        # at most ``defer_s`` at a time: a burst is sent first and archived after it,
        # the archive at most that far behind (then it reads whatever the load).
        self.busy = busy
        self.defer_s = defer_s
        self._defer_since: float | None = None
        self._tail_since: float | None = None  # the lanes emptied (a deferral's end), settling
        self._no_defer = False  # wait_caught_up: a stopping engine wants the archive now
        self._prefetch: asyncio.Future[Any] | None = None  # the next batch, read while one commits
        self._acking: asyncio.Future[None] | None = None  # a committed batch's XACK, sent while the next commits
        # Hold (`run()` only, with ``settle_ms``): a job's non-final events held back (read,
        # not acked: pending) until its final event is read, at most max(settle_ms,
        # hold_ms) behind the newest entry read and ``hold_max`` entries (engine/history/hold.py).
        self._holding = False
        self._hold = EventHold(max(settle_ms, hold_ms), hold_max)
        self._migrated = False
        self.archived = 0  # events committed and acknowledged by this process
        self.write_failures = 0
        self.failing = False  # the store refuses the batch in hand right now
        self.last_lag = ArchiveLag(entries=0, pending=0, behind_s=0.0)
        # `run()` refreshes the gauges every 5 s only where someone reads them (a registry
        # given: the engine's inline archiver). The archiver's child process and
        # `sendgate archive` have none: the engine reads the lag from the group itself.
        self.report_lag = registry is not None
        r = registry if registry is not None else CollectorRegistry()
        self._m_lag = Gauge("sendgate_archive_lag", "Events not yet in the history store (unread + pending)", registry=r)
        self._m_behind = Gauge("sendgate_archive_behind_seconds", "Age of the oldest event not yet in the history store", registry=r)
        self._m_archived = Counter("sendgate_archived_events", "Events written to the history store and acked", registry=r)
        self._m_failures = Counter("sendgate_archive_write_failures", "History store writes that failed and were retried", registry=r)

    # ----------------------------------------------------------------- setup
    async def ensure_groups(self) -> None:
        """Create the group at id 0 (MKSTREAM): events published before the first start are archived."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise

    async def close_reader(self) -> None:
        """Close the reader's own connections (the raw reader's; a second client on Redis Cluster)."""
        if self._raw is not None:
            await self._raw.aclose()
        if self._cluster:
            await self._reader.aclose()

    def stop(self) -> None:
        """Finish the batch in hand (if the store takes it) and return from `run()`."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def held(self) -> int:
        """Entries put on hold so far (engine/history/hold.py)."""
        return self._hold.added

    @property
    def holding(self) -> int:
        """Entries on hold now (read, not acked)."""
        return self._hold.count

    @property
    def deferring(self) -> bool:
        """Not reading now because the engine has a backlog (``busy``; see `_defer`)."""
        return self._defer_since is not None

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on `stop()`."""
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Archive until `stop()`; survives Redis and database outages."""
        await self._until_done(self.ensure_groups, "creating the archiver group")
        await self._until_done(self._migrate, "migrating the history store")
        try:
            await self._loop()
            await self._settle_ack()
            await self._write_held()
        finally:
            self._drop_prefetch()
            if self._acking is not None:  # cancelled: those entries stay pending, written again (no change)
                self._acking.cancel()
            if self._raw is not None:
                await self._raw.aclose()

    async def _write_held(self) -> None:
        """Stopping: write what is held, if the store takes it now (else it stays
        pending and is written on the next start)."""
        if self._hold.count:
            await self._commit(self._hold.release_all())

    async def _loop(self) -> None:
        last_lag = last_claim = last_drop = 0.0
        self._holding = True
        while not self.stopping:
            now = time.monotonic()
            try:
                if await self._defer():
                    await self._pause(0.25)
                    continue
                if now - last_claim >= self.claim_idle_ms / 1000:
                    last_claim = now
                    await self.reclaim_others()
                if now - last_drop >= 3600:
                    last_drop = now
                    await self._drop_expired()
                taken = await self._archive_once(None, defer_ack=True)
                if taken < self.batch_size:
                    self._defer_since = None  # caught up: a new burst may be deferred again
                if 0 < taken < self.batch_size and self.settle_ms > 0 and self._prefetch is None:
                    await self._pause(self.settle_ms / 1000)
                if self.report_lag and time.monotonic() - last_lag >= 5.0:
                    last_lag = time.monotonic()
                    await self.lag()
            except asyncio.CancelledError:
                raise
            except ResponseError as err:
                if "NOGROUP" in str(err):  # the stream was deleted: start over
                    await self._until_done(self.ensure_groups, "creating the archiver group")
                    continue
                log.exception("archiver: redis refused a command")
                await self._pause(1.0)
            except _REDIS_ERRORS as err:
                log.warning("archiver: redis unavailable (%s); retrying", type(err).__name__)
                await self._pause(0.5)
            except Exception:  # a bug must not end archiving for the engine's lifetime
                log.exception("archiver: round failed; retrying")
                await self._pause(1.0)

    async def _defer(self) -> bool:
        """Whether to skip reading now: jobs wait in the lanes (or they emptied less
        than ``settle_ms`` ago, ending a deferral), and this deferral has lasted less
        than ``defer_s``."""
        if self.busy is None or self.defer_s <= 0 or self._no_defer or self._prefetch is not None:
            return False
        now = time.monotonic()
        if self._defer_since is not None and now - self._defer_since >= self.defer_s:
            return False  # deferred long enough: archive until caught up
        try:
            busy = await self.busy()
        except Exception:  # no answer: archive
            busy = False
        if not busy:
            if self._defer_since is not None and self.settle_ms > 0:
                # The burst's lanes just emptied; its last receipts are still coming in.
                # Wait ``settle_ms`` more (within ``defer_s``), so that the catch-up (this
                # process's and the database's CPU) does not compete with the burst's tail.
                if self._tail_since is None:
                    self._tail_since = now
                if now - self._tail_since < self.settle_ms / 1000:
                    return True
            self._defer_since = self._tail_since = None
            return False
        self._tail_since = None
        if self._defer_since is None:
            self._defer_since = now
        return True

    def _fold(self, batch: list[tuple[str, list[Any]]]) -> Any:
        """A batch read → what the store writes (a subclass archives another stream: inbound):
        the store's own fold where it has one (PostgreSQL: COPY rows from the raw bytes),
        else one delta per job."""
        entries = [e for _, es in batch for e in es] if len(batch) != 1 else batch[0][1]
        fold = getattr(self.store, "fold", None)
        return fold(entries) if fold is not None else deltas_from_entries(entries)

    async def _write(self, items: list[Any], now_ms: int) -> None:
        await self.store.write(items, now_ms)

    async def _migrate(self) -> None:
        if not self._migrated:
            await self.store.migrate()
            self._migrated = True

    async def _drop_expired(self) -> None:
        try:
            dropped = await self.store.drop_expired(time.time(), self.retention_days)
        except Exception as err:  # retention waits for the next hour; archiving goes on
            log.warning("archiver: dropping expired history failed (%s: %s)", type(err).__name__, err)
            return
        if dropped:
            log.info("history: dropped %d day(s) past retention: %s", len(dropped), ", ".join(dropped))

    async def _until_done(self, step: Any, what: str) -> None:
        delay = self.backoff_min_s
        while not self.stopping:
            try:
                await step()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("archiver: %s failed (%s: %s); retrying in %.1f s", what, type(err).__name__, err, delay)
                await self._pause(delay)
                delay = min(delay * 2, self.backoff_max_s)

    async def archive_once(self, block_ms: int | None = None) -> int:
        """Read one batch, commit it, ack it; returns the events taken (0: nothing to do).

        When the batch was full (a backlog), the next one is read and folded while
        this one commits (the read overlaps the database's work); it is committed
        by the next call, after this one: acks still follow their commits.
        """
        return await self._archive_once(block_ms, defer_ack=False)

    async def _archive_once(self, block_ms: int | None, *, defer_ack: bool) -> int:
        """`archive_once`; ``defer_ack`` (the loop, `drain`): in a backlog, this batch's
        XACK goes out in a task while the next batch commits, instead of before returning."""
        if self._prefetch is not None:
            ahead, self._prefetch = self._prefetch, None
            got: Any = await self._unless_stopped(ahead)
        else:
            got = await self._read(block_ms)
        if got is _STOPPED or got is None:
            await self._settle_ack()
            return 0
        batch, deltas, taken = got
        if self.read_ahead and not self._read_pending and taken >= self.batch_size and not self.stopping:
            self._prefetch = asyncio.ensure_future(self._read(None, block=False))
        if not any(es for _s, es in batch):  # every entry read was held back (committed with the next batch)
            return int(taken)
        try:
            committed = await self._commit(batch, deltas, defer_ack=defer_ack and self._prefetch is not None)
        except BaseException:
            self._drop_prefetch()
            raise
        return int(taken) or committed  # the entries read (the loop's "a full batch?"); a carry's alone

    async def _read(
        self, block_ms: int | None, *, block: bool = True
    ) -> tuple[list[tuple[str, list[Any]]], list[Any], int] | None:
        """One XREADGROUP and its fold: (batch per stream, deltas, entries); None when
        there was nothing or `stop()` came first."""
        if self.stopping:
            return None
        start = "0" if self._read_pending else ">"
        wait_ms = None if (self._read_pending or not block) else (self.block_ms if block_ms is None else block_ms)
        if start == "0":
            # What a lost reply delivered is pending: read once the acks in flight landed
            # (else their entries come back too: written again, no change, counted twice).
            await self._settle_ack()
        try:
            got = await self._read_batch(start, wait_ms)
        except _REDIS_ERRORS:
            # A reply lost with the connection (Redis restarted, a drop mid-reply) may have
            # delivered entries: they are this consumer's pending ones, read next (id 0),
            # with the entries held back (pending too).
            self._read_pending = True
            self._hold.clear()
            raise
        if got is None:
            return None
        batch: list[tuple[str, list[Any]]] = []
        for stream, entries in got:
            if start == "0":
                # A pending entry deleted from the stream meanwhile comes back without
                # fields: nothing to archive, ack it so it leaves the pending list.
                gone = [eid for eid, fields in entries if fields is None]
                if gone:
                    await self.redis.xack(stream, self.group, *gone)
                    entries = [e for e in entries if e[1] is not None]
            batch.append((stream, entries))
        taken = sum(len(es) for _, es in batch)
        if taken == 0 and start == "0":
            self._read_pending = False  # own backlog done (or none): new entries from now on
        # (no await from here on: the hold is updated in one step)
        hold = self._hold
        if start == ">" and self._holding and self.settle_ms > 0 and not self._no_defer and not self.stopping:
            batch = hold.split(batch, time.monotonic())
        elif hold.count:
            batch = hold.release_all(batch)
        if not any(es for _, es in batch):
            return (batch, [], taken) if taken else None
        return batch, self._fold(batch), taken

    async def _read_batch(self, start: str, wait_ms: int | None) -> list[tuple[str, Any]] | None:
        """One XREADGROUP (one per stream, pipelined): ``[(stream, entries), …]``; None
        when `stop()` came first."""
        if self._raw is not None:
            got: Any = await self._unless_stopped(
                self._raw.xreadgroup(self.group, self.consumer, self.streams, start, self.batch_size, wait_ms))
            if got is _STOPPED:
                return None
            if len(self.streams) > 1 and wait_ms and not any(entries for _s, entries in got):
                await self._pause(min(wait_ms, 50) / 1000)
            return got  # type: ignore[no-any-return]
        if len(self.streams) > 1:
            # Shards: one XREADGROUP per shard's stream (a Cluster refuses one read
            # across slots), pipelined, without BLOCK; when all are empty, a short
            # pause stands in for it.
            pipe = self._reader.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xreadgroup(self.group, self.consumer, {stream: start}, count=self.batch_size)
            replies: Any = await self._unless_stopped(pipe.execute())
            if replies is _STOPPED:
                return None
            reply: Any = [item for r in replies for item in _raw(r)]
            if wait_ms and not any(entries for _s, entries in reply):
                await self._pause(min(wait_ms, 50) / 1000)
        else:
            reply = await self._unless_stopped(self._reader.xreadgroup(
                self.group, self.consumer, dict.fromkeys(self.streams, start), count=self.batch_size, block=wait_ms,
            ))
            if reply is _STOPPED:
                return None
        return reply if len(self.streams) > 1 else _raw(reply)

    def _drop_prefetch(self) -> None:
        """Give up a read ahead: its entries stay pending, read again (id 0) on the next start."""
        if self._prefetch is not None:
            self._prefetch.cancel()
            self._prefetch = None
            self._hold.clear()  # (what it held is pending too)

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait (while `run()` goes on) until every event is archived; gives up at once
        when the store is failing, else after ``timeout_s``. For a graceful stop."""
        deadline = time.monotonic() + timeout_s
        self._no_defer = True
        while time.monotonic() < deadline and not self.failing:
            try:
                if (await self.lag()).entries == 0:
                    return True
            except _REDIS_ERRORS:
                return False
            await asyncio.sleep(0.05)
        return False

    async def _unless_stopped(self, call: Awaitable[Any]) -> Any:
        """Await a (blocking) read, or give it up when `stop()` comes first: entries the
        server had already delivered stay pending and are read again on the next start."""
        if self.stopping:
            if asyncio.iscoroutine(call):
                call.close()  # never started: no "never awaited" warning
            return _STOPPED
        read = asyncio.ensure_future(call)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not read.done():
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_REDIS_ERRORS):
                    await read
        return read.result() if read.done() and not read.cancelled() else _STOPPED

    async def drain(self) -> int:
        """Archive what the streams hold now (own pending entries first), then return the count."""
        total = 0
        while True:
            own_backlog = self._read_pending
            n = await self._archive_once(1, defer_ack=True)
            total += n
            if n == 0 and not own_backlog:
                await self._settle_ack()
                return total

    async def _commit(
        self, batch: list[tuple[str, list[Any]]], deltas: Any = None, *, defer_ack: bool = False
    ) -> int:
        """Write a batch to the store (retrying until it takes it or we stop), then XACK it
        (``defer_ack``: in a task, awaited before the next batch's XACK or the end)."""
        taken = sum(len(es) for _, es in batch)  # (no list of the batch's entries: ~0.1 µs an event)
        if deltas is None:
            deltas = self._fold(batch)
        delay = self.backoff_min_s
        failing_since: float | None = None
        while True:
            try:
                await self._migrate()
                await self._write(deltas, int(time.time() * 1000))
                break
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.write_failures += 1
                self.failing = True
                self._m_failures.inc()
                if failing_since is None:
                    failing_since = time.monotonic()
                    if isinstance(err, HistoryUnavailable):
                        log.warning("archiver: history store unavailable (%s); events wait in the stream", err)
                    else:
                        log.exception("archiver: history store write failed; retrying")
                if self.stopping:
                    return 0  # unacked: this consumer's pending entries, written on the next start
                await self._pause(delay)
                delay = min(delay * 2, self.backoff_max_s)
        self.failing = False
        if failing_since is not None:
            log.info("archiver: history store back after %.1f s", time.monotonic() - failing_since)
        await self._settle_ack()  # the previous batch's XACK first: one in flight at most
        if defer_ack:
            self._acking = asyncio.ensure_future(self._ack_batch(batch, taken))
        else:
            await self._ack_batch(batch, taken)
        return taken

    async def _ack_batch(self, batch: list[tuple[str, list[Any]]], n: int) -> None:
        for stream, es in batch:
            if es:
                await self._ack(stream, list(map(_entry_id, es)))
        self.archived += n
        self._m_archived.inc(n)

    async def _settle_ack(self) -> None:
        """Wait for the XACK in flight, if any."""
        if self._acking is not None:
            acking, self._acking = self._acking, None
            await acking

    async def _xack(self, stream: str, ids: list[Any]) -> None:
        """XACK packed in one call (`pack_xack`): redis-py encodes each argument in Python
        (~0.5 µs an id, a tenth of the archiver's budget per event)."""
        if self._cluster:  # no single pool: the cluster client finds the stream's master
            await self.redis.xack(stream, self.group, *ids)
            return
        packed = pack_xack(stream, self.group, ids)
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(packed)
            await conn.read_response()
        finally:
            await pool.release(conn)

    async def _ack(self, stream: str, ids: list[Any]) -> None:
        delay = self.backoff_min_s
        while True:
            try:
                await self._xack(stream, ids)
                return
            except _REDIS_ERRORS:
                if self.stopping:
                    return  # left pending: written again (no change) on the next start
                await self._pause(delay)
                delay = min(delay * 2, self.backoff_max_s)

    async def reclaim_others(self) -> int:
        """Take over and archive entries another archiver read and left idle past ``claim_idle_ms``."""
        total = 0
        for stream in self.streams:
            start = "0-0"
            while not self.stopping:
                reply: Any = await self.redis.xautoclaim(
                    stream, self.group, self.consumer, self.claim_idle_ms, start, count=self.batch_size
                )
                start = _text(reply[0])
                # (not this archiver's own held entries: idle that long when the hold's stream
                # time moves slower than the clock, an archive far behind; written when released)
                entries = [e for e in reply[1] if e[1] is not None and not self._held_entry(stream, e)]
                if entries:
                    total += await self._commit([(stream, entries)])
                if start in ("0-0", "0"):
                    break
        return total

    def _held_entry(self, stream: str, entry: Any) -> bool:
        fields = entry[1]
        job_id = fields.get(b"id", fields.get("id")) if isinstance(fields, dict) else None
        return job_id is not None and self._hold.holds(stream, entry[0], job_id)

    # --------------------------------------------------------------- position
    async def _group_info(self, stream: str) -> dict[str, Any] | None:
        try:
            groups: Any = await self.redis.xinfo_groups(stream)
        except ResponseError:  # no such stream
            return None
        for g in groups:
            if _text(g.get("name")) == self.group:
                return {_text(k): v for k, v in g.items()}
        return None

    async def min_unarchived_id(self, stream: str) -> str:
        """The smallest entry id of ``stream`` not yet in the store: ``XTRIM stream MINID <it>``
        removes only archived events. ``"0-0"`` (trim nothing) when the group does not exist."""
        info = await self._group_info(stream)
        if info is None:
            return "0-0"
        if int(info.get("pending") or 0):
            summary: Any = await self.redis.xpending(stream, self.group)
            low = summary.get("min") if isinstance(summary, dict) else None
            if low:
                return _text(low)
        return _next_id(_text(info.get("last-delivered-id") or "0-0"))

    async def _unread(self, stream: str, position: str) -> int:
        """Entries after the group's position when Redis does not say (its ``lag``: 7.0
        on, and not past a deleted entry): counted up to `_LAG_COUNT` (raw reply: no
        dict per entry), beyond that estimated from the entry ids' times, at least
        `_LAG_COUNT` (the engine asks every 5 s: reading a backlog of 100,000 entries
        each time cost its loop and Redis a tenth of a second)."""
        after: Any = await self._reader.xrange(stream, "(" + position, "+", count=_LAG_COUNT)
        n = len(after or ())
        if n < _LAG_COUNT:
            return n
        length = int(await self.redis.xlen(stream))
        first: Any = await self.redis.xrange(stream, "-", "+", count=1)
        last: Any = await self.redis.xrevrange(stream, "+", "-", count=1)
        return unread_estimate(n, length, first[0][0] if first else None, last[0][0] if last else None, position)

    async def lag(self) -> ArchiveLag:
        """Events not in the store yet, over all streams; updates the gauges."""
        entries = pending = 0
        oldest_ms: int | None = None
        for stream in self.streams:
            info = await self._group_info(stream)
            if info is None:
                unread = int(await self.redis.xlen(stream))
                p = 0
            else:
                p = int(info.get("pending") or 0)
                lag = info.get("lag")
                if lag is None:  # unknown to Redis (< 7.0, or entries deleted): count, or estimate
                    unread = await self._unread(stream, _text(info.get("last-delivered-id") or "0-0"))
                else:
                    unread = int(lag)
            entries += unread + p
            pending += p
            if unread + p:
                low = await self.min_unarchived_id(stream)
                first: Any = await self.redis.xrange(stream, low, "+", count=1)
                if first:
                    ms = int(_text(first[0][0]).split("-")[0])
                    oldest_ms = ms if oldest_ms is None else min(oldest_ms, ms)
        behind = max(0.0, time.time() - oldest_ms / 1000) if oldest_ms is not None else 0.0
        self.last_lag = ArchiveLag(entries=entries, pending=pending, behind_s=round(behind, 3))
        self._m_lag.set(entries)
        self._m_behind.set(self.last_lag.behind_s)
        return self.last_lag


_entry_id = itemgetter(0)  # an entry's id, in C (map over a batch's entries)


#: Entries after the group's position that `Archiver.lag` counts when Redis does not
#: say; beyond, an estimate.
_LAG_COUNT = 2000


def pack_xack(stream: str, group: str, ids: list[Any]) -> bytes:
    """``XACK stream group id …`` in RESP, as `hiredis.pack_command` packs it, ~3x
    cheaper for a batch of ids (bytes, as the raw reply holds them): hiredis formats
    each argument's length header with ``sprintf`` (~1,600 instructions an event);
    here the ids of one length are joined in one call with that header between them
    (an XACK's ids may come in any order, so they are grouped by length). Anything
    but bytes ids: hiredis."""
    sizes = set(map(len, ids))
    if len(sizes) == 1:
        groups: Iterable[tuple[int, Iterable[Any]]] = ((sizes.pop(), ids),)
    else:
        groups = groupby(sorted(ids, key=len), len)
    s, g = stream.encode(), group.encode()
    parts = [b"*%d\r\n$4\r\nXACK\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(ids) + 3, len(s), s, len(g), g)]
    try:
        for size, same in groups:
            head = b"$%d\r\n" % size
            parts += (head, (b"\r\n" + head).join(same), b"\r\n")
    except TypeError:  # an id that is no bytes (a parsed reply's str)
        return bytes(hiredis.pack_command((b"XACK", stream, group, *ids)))
    return b"".join(parts)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _raw(reply: Any) -> list[tuple[str, list[Any]]]:
    """``[(stream, [(entry_id, [name, value, …] | None), …]), …]`` from a raw
    XREADGROUP reply: RESP2 ``[[stream, entries], …]`` or RESP3 ``{stream: entries}``."""
    pairs = reply.items() if isinstance(reply, dict) else (reply or ())
    return [(_text(stream), entries or []) for stream, entries in pairs]
