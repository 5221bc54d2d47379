"""Operators' gauges, sampled every few seconds in one task — never per message.

Why a sampler: stream lag, the oldest waiting job, Redis round-trip time and
event-loop lag are states, not events; reading them per message would cost
the hot path a Redis call or a clock read each. One task wakes every
``TICK_S`` to measure how late the loop ran its timer (event-loop lag), and
every ``interval_s`` asks Redis, with a handful of calls per lane:

- ``XINFO GROUPS`` of each lane stream: ``lag`` (entries not read by the
  group) + ``pending`` (read, not acked) = the lane's backlog; Redis < 7 gives
  no ``lag``: ``XINFO STREAM`` settles a lane read to its end (0) or never read
  (its length) in O(1); a lane with a backlog has the entries after the group's
  ``last-delivered-id`` counted up to `LAG_COUNT`, beyond that estimated from the
  stream's length and its entry ids' times (`engine.backlog.unread_estimate`, the
  rule of the history archiver's ``lag()``), at least `LAG_COUNT`. Counting a
  backlog of 10,000 each sample read every entry back (a ~1.5 MB reply): ~8 ms of
  Redis and ~14 ms of the engine's loop every 2 s on the loaded dev VM;
- the oldest of them: ``XPENDING`` (summary form) when something is pending,
  else the first entry after the group's ``last-delivered-id``; its stream id
  carries the time it was added, so its age needs no per-job bookkeeping;
- ``PING`` for the round-trip time.

Every ``slow_every`` samples it also counts the receipts still expected per
carrier (the correlation buckets' ``HLEN``) and the codes of the last
``DEAD_WINDOW`` dead letters, for the status page. What it reads is stored on
the sampler (``lanes``, ``receipts_pending``, ``dead_codes``…) and in the
Prometheus gauges of `engine.metrics.Metrics`, whose label children are
resolved once per lane.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine.backlog import unread_estimate
from engine.keys import Keys
from engine.metrics import Metrics
from engine.redis_client import raw_reply_client

__all__ = ["DEAD_WINDOW", "LAG_COUNT", "LANE_NAMES", "LaneSample", "OpsSampler"]

log = logging.getLogger("sendgate.ops")

#: Lane names in the order of `Keys.lanes()` (highest priority first).
LANE_NAMES = ("high", "normal", "bulk")
#: How often the event-loop lag is measured.
TICK_S = 0.5
#: How many of the newest dead letters the status page summarises.
DEAD_WINDOW = 200
#: Redis < 7 (no ``lag`` in XINFO GROUPS): a lane's unread entries a sample counts
#: (reads back) when XINFO STREAM does not settle them; beyond, an estimate. Counting
#: up to 10,000 cost ~6.7 ms of Redis CPU per lane and sample while a backlog waited
#: (0.2-0.7 µs per message of a 30,000-job bench) and as long for the engine to parse
#: (bench/RESULTS.md "luacost", "batchcost").
LAG_COUNT = 1_000


def _entry_order(entry_id: Any) -> tuple[int, int]:
    """A stream entry id as (ms, seq), for ordering entries of several streams."""
    ms, _, seq = _text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_ms(entry_id: Any) -> int | None:
    """The millisecond time of a stream id ``<ms>-<seq>``."""
    try:
        return int(_text(entry_id).split("-", 1)[0])
    except (ValueError, AttributeError):
        return None


class LaneSample:
    """One lane at the last sample: backlog (lag + pending) and the oldest job's age."""

    __slots__ = ("backlog", "lag", "oldest_age_s", "pending")

    def __init__(self, lag: int = 0, pending: int = 0, oldest_age_s: float = 0.0) -> None:
        self.lag = lag
        self.pending = pending
        self.backlog = lag + pending
        self.oldest_age_s = oldest_age_s

    def as_dict(self) -> dict[str, float | int]:
        return {"backlog": self.backlog, "lag": self.lag, "pending": self.pending, "oldest_age_s": self.oldest_age_s}


def _raw_reply(response: Any, **_options: Any) -> Any:
    return response


class OpsSampler:
    """Samples the operators' gauges of one engine process (``run()`` is its one task)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        group: str,
        metrics: Metrics,
        carriers: list[str],
        written: Any = None,
        *,
        on_sample: Any = None,
        interval_s: float = 2.0,
        slow_every: int = 5,
        shards: tuple[Keys, ...] = (),
    ) -> None:
        self.redis = redis
        # XRANGE replies as hiredis parsed them (nested lists): the Redis < 7 lag count
        # reads up to LAG_COUNT entries, and redis-py would build a dict per entry
        # (~30 ms of engine CPU per lane per sample with a long tail)
        # Made on first use (raw_reply_client: a plain Redis's own pool, or a second
        # cluster client), closed when run() ends.
        self._raw: Redis | None = None
        self.keys = keys
        # every shard's lanes ([redis] shards); a lane's sample adds up its shards'
        self.shards = shards or (keys,)
        self.group = group
        self.metrics = metrics
        self.carriers = carriers
        self.interval_s = interval_s
        self.slow_every = max(1, slow_every)
        self.lanes: dict[str, LaneSample] = {name: LaneSample() for name in LANE_NAMES}
        self.redis_ok = False
        self.redis_rtt_s: float | None = None
        self.loop_lag_s = 0.0
        self.receipts_pending: dict[str, int] = {}
        self.dead_codes: list[tuple[str, int]] = []  # (code, count) in the newest DEAD_WINDOW, most first
        self.samples = 0
        #: Per carrier: PDUs written per second over the last sample period.
        self.rates: dict[str, float] = {}
        self._written = written  # () -> {carrier: requests written so far}
        self._on_sample = on_sample  # () -> None, after each sample (the engine logs state changes)
        self._last_written: tuple[float, dict[str, int]] | None = None
        self._lane_lag = {name: metrics.lane_lag.labels(name) for name in LANE_NAMES}
        self._lane_age = {name: metrics.lane_oldest_age.labels(name) for name in LANE_NAMES}
        self._stream_lag = {s: metrics.stream_lag.labels(s) for k in self.shards for s in k.lanes()}
        self._stream_pending = {s: metrics.stream_pending.labels(s) for k in self.shards for s in k.lanes()}
        self._sampled = asyncio.Event()
        self._worst_lag = 0.0
        self._failed_once = False

    async def run(self) -> None:
        """Measure loop lag every tick and sample Redis every ``interval_s``, until cancelled."""
        loop = asyncio.get_running_loop()
        next_sample = loop.time()
        try:
            while True:
                if loop.time() >= next_sample:
                    next_sample = loop.time() + self.interval_s
                    await self.sample_once()
                started = loop.time()
                await asyncio.sleep(TICK_S)
                late = max(0.0, loop.time() - started - TICK_S)
                if late > self._worst_lag:
                    self._worst_lag = late
        finally:
            raw, self._raw = self._raw, None
            if raw is not None and raw is not self.redis:
                await asyncio.shield(raw.aclose())

    async def wait_sampled(self) -> None:
        """Return after the next completed sample (tests, and the first /status)."""
        self._sampled.clear()
        await self._sampled.wait()

    async def sample_once(self) -> None:
        """One sample: lanes, Redis RTT, loop lag; receipts and dead letters every ``slow_every``."""
        self.loop_lag_s, self._worst_lag = self._worst_lag, 0.0
        self.metrics.loop_lag.set(self.loop_lag_s)
        self._sample_rates()
        try:
            started = time.perf_counter()
            await self.redis.ping()
            self.redis_rtt_s = time.perf_counter() - started
            self.redis_ok = True
            self.metrics.redis_rtt.set(self.redis_rtt_s)
            now_ms = int(time.time() * 1000)
            # every shard's lanes in one round of pipelined calls (not a few calls per stream)
            streams = [k.lanes()[i] for i in range(len(LANE_NAMES)) for k in self.shards]
            samples = iter(await self._lanes(streams, now_ms))
            for i, name in enumerate(LANE_NAMES):
                lag = pending = 0
                age = 0.0
                for k in self.shards:
                    stream = k.lanes()[i]
                    one = next(samples)
                    self._stream_lag[stream].set(one.lag)
                    self._stream_pending[stream].set(one.pending)
                    lag, pending, age = lag + one.lag, pending + one.pending, max(age, one.oldest_age_s)
                self.lanes[name] = sample = LaneSample(lag, pending, age)
                self._lane_lag[name].set(sample.backlog)
                self._lane_age[name].set(sample.oldest_age_s)
            if self.samples % self.slow_every == 0:
                await self._slow()
            self._failed_once = False
        except asyncio.CancelledError:
            raise
        except Exception as err:  # Redis down: the gauges keep their last value; /readyz says it
            self.redis_ok = False
            if not self._failed_once:
                self._failed_once = True
                log.warning("ops sample failed (%s); retrying every %.0fs", type(err).__name__, self.interval_s)
        if self._on_sample is not None:
            try:
                self._on_sample()
            except Exception:  # a log line must not stop the sampler
                log.exception("ops sample hook failed")
        self.samples += 1
        self._sampled.set()

    def _sample_rates(self) -> None:
        if self._written is None:
            return
        now, written = time.monotonic(), dict(self._written())
        if self._last_written is not None:
            then, before = self._last_written
            elapsed = max(now - then, 1e-6)
            self.rates = {c: round(max(0, n - before.get(c, 0)) / elapsed, 1) for c, n in written.items()}
        self._last_written = (now, written)

    async def _lanes(self, streams: list[str], now_ms: int) -> list[LaneSample]:
        """Each stream's sample: XINFO GROUPS of every stream in one pipeline, then
        what some need besides (Redis < 7: the count after the group's last id, on
        the raw-reply client; the oldest entry's age) in one more pipeline each. A
        Cluster's client splits a pipeline by node (every call is of one key)."""
        replies: list[Any] = await self._pipelined(self.redis, [("xinfo_groups", (s,), {}) for s in streams])
        found: list[tuple[int, int, Any, Any]] = []  # index, pending, lag (None: Redis < 7), last id
        for i, groups in enumerate(replies):
            if isinstance(groups, ResponseError):  # no such stream yet
                continue
            if isinstance(groups, BaseException):
                raise groups
            g = next((x for x in groups if _text(x.get("name")) == self.group), None)
            if g is not None:
                raw_lag = g.get("lag")
                found.append((i, int(g.get("pending") or 0), None if raw_lag is None else int(raw_lag),
                              g.get("last-delivered-id")))
        unknown = [(i, last) for i, _p, lag, last in found if lag is None]
        counted: dict[int, int] = {}
        if unknown:
            # Redis < 7: first what XINFO STREAM settles in O(1) (the group read up to the
            # stream's last id: 0; never read: its length), then the others' tail counted,
            # up to LAG_COUNT entries each, beyond that estimated (`_unread`)
            infos = await self._pipelined(self.redis, [("xinfo_stream", (streams[i],), {}) for i, _last in unknown])
            tail: list[tuple[int, Any]] = []
            for (i, last), info in zip(unknown, infos, strict=True):
                last_s = _text(last or "0-0")
                if isinstance(info, BaseException):
                    tail.append((i, last))
                elif _text(info.get("last-generated-id")) == last_s:
                    counted[i] = 0
                elif last_s in ("0-0", "0"):
                    counted[i] = int(info.get("length") or 0)
                else:
                    tail.append((i, last))
            if tail:
                counted.update(zip((i for i, _last in tail),
                                   await self._unread([(streams[i], last) for i, last in tail]), strict=True))
        lags = {i: counted[i] if lag is None else lag for i, _p, lag, _last in found}
        # the oldest waiting entry: the oldest pending one, else the first unread one
        ages = [(i, pending) for i, pending, _lag, _last in found if pending or lags[i]]
        oldest: dict[int, int | None] = {}
        if ages:
            last_of = {i: last for i, _p, _lag, last in found}
            for (i, pending), reply in zip(ages, await self._pipelined(self.redis, [
                ("xpending", (streams[i], self.group), {}) if pending
                else ("xrange", (streams[i],), {"min": "(" + _text(last_of[i] or "0-0"), "count": 1})
                for i, pending in ages
            ]), strict=True):
                if isinstance(reply, BaseException):
                    raise reply
                if pending:
                    oldest[i] = _id_ms(reply.get("min")) if reply else None
                else:
                    oldest[i] = _id_ms(reply[0][0]) if reply else None
        out = [LaneSample() for _ in streams]
        for i, pending, _lag, _last in found:
            oldest_ms = oldest.get(i)
            age = max(0.0, (now_ms - oldest_ms) / 1000) if oldest_ms is not None else 0.0
            out[i] = LaneSample(lags[i], pending, round(age, 3))
        return out

    @staticmethod
    async def _pipelined(redis: Redis, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
        """``calls`` (method, args, keywords) in one non-transactional pipeline: each reply or its error."""
        pipe = redis.pipeline(transaction=False)
        for method, args, kwargs in calls:
            getattr(pipe, method)(*args, **kwargs)
        return list(await pipe.execute(raise_on_error=False))

    async def _unread(self, tails: list[tuple[str, Any]]) -> list[int]:
        """Redis < 7, or a lag it cannot compute (entries deleted): per (stream, the
        group's last-delivered id), the entries after it, counted up to `LAG_COUNT`
        (one pipeline, raw replies: no dict per entry); where a count reaches it, the
        estimate from the stream's length and first and last ids (one more pipeline)."""
        if self._raw is None:
            self._raw = raw_reply_client(self.redis, ("XRANGE", "XREVRANGE"), _raw_reply)
        raw = self._raw
        after = [_text(last or "0-0") for _s, last in tails]
        counts: list[int] = []
        for entries in await self._pipelined(raw, [
            ("xrange", (stream,), {"min": "(" + position, "count": LAG_COUNT})
            for (stream, _last), position in zip(tails, after, strict=True)
        ]):
            if isinstance(entries, BaseException):
                raise entries
            counts.append(len(entries or ()))
        full = [k for k, n in enumerate(counts) if n >= LAG_COUNT]
        if full:
            calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
            for k in full:
                stream = tails[k][0]
                calls += [("xlen", (stream,), {}), ("xrange", (stream,), {"count": 1}),
                          ("xrevrange", (stream,), {"count": 1})]
            replies = await self._pipelined(raw, calls)
            for j, k in enumerate(full):
                length, first, last = replies[3 * j : 3 * j + 3]
                for reply in (length, first, last):
                    if isinstance(reply, BaseException):
                        raise reply
                counts[k] = unread_estimate(counts[k], int(length or 0), first[0][0] if first else None,
                                            last[0][0] if last else None, after[k])
        return counts

    async def _count_after(self, stream: str, last_id: Any) -> int:
        """One stream's entries after ``last_id`` as a sample counts them (`_unread`)."""
        return (await self._unread([(stream, last_id)]))[0]

    async def _slow(self) -> None:
        pending: dict[str, int] = {}
        for carrier in self.carriers:
            pending[carrier] = 0
            for keys in self.shards:  # every shard's correlation buckets (one slot each)
                ends: Any = await self.redis.zrange(keys.correlation_index(carrier), 0, -1)
                if not ends:
                    continue
                pipe = self.redis.pipeline(transaction=False)
                prefix = keys.correlation_buckets_of(carrier)
                for end in ends:
                    pipe.hlen(prefix + _text(end))
                pending[carrier] += sum(int(n or 0) for n in await pipe.execute())
        self.receipts_pending = pending
        # Only the code of each dead letter is read: the entries hold the job's fields.
        # The newest DEAD_WINDOW of every shard's stream, then the newest DEAD_WINDOW of those.
        entries: list[Any] = []
        for keys in self.shards:
            entries += list(await self.redis.xrevrange(keys.dead, count=DEAD_WINDOW) or ())
        if len(self.shards) > 1:
            entries = sorted(entries, key=lambda e: _entry_order(e[0]), reverse=True)[:DEAD_WINDOW]
        codes = Counter(_text(fields.get(b"code") or fields.get("code") or "?") for _id, fields in entries)
        self.dead_codes = codes.most_common()
