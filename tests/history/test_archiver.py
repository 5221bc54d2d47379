"""The archiver against a real Redis and real stores: once, and only once, whatever happens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from engine.history import HistoryStore, JobDelta, open_store
from engine.history.archiver import Archiver
from tests.history.events import event_fields
from tests.history.pg_server import PgServer

pytestmark = pytest.mark.slow


async def until(cond: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition") -> None:
    """Await a condition that another task makes true (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def events_key(key_prefix: str) -> str:
    return f"{key_prefix}:events"


async def push_jobs(redis: Redis, stream: str, first: int, count: int, *, receipts: bool = True) -> None:
    """``count`` jobs from number ``first`` on: a submitted event each, and a delivered one for half."""
    t = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    for i in range(first, first + count):
        pipe.xadd(stream, event_fields(f"job-{i}", "submitted", t + i, first=True, client=f"c{i % 3}"))  # type: ignore[arg-type]
        if receipts and i % 2 == 0:
            pipe.xadd(stream, event_fields(f"job-{i}", "delivered", t + i + 5))  # type: ignore[arg-type]
    await pipe.execute()


def expected_events(first: int, count: int) -> int:
    return count + sum(1 for i in range(first, first + count) if i % 2 == 0)


async def check_exactly_once(store: HistoryStore, count: int) -> None:
    """Every job has one row holding exactly its events."""
    rows = []
    for c in ("c0", "c1", "c2"):
        rows += await store.find(client=c, limit=100_000)
    assert sorted(r.job_id for r in rows) == sorted(f"job-{i}" for i in range(count))
    for r in rows:
        i = int(r.job_id.split("-")[1])
        assert set(r.events) == ({"submitted", "delivered"} if i % 2 == 0 else {"submitted"}), r.job_id
        assert r.final_state == ("delivered" if i % 2 == 0 else "")


async def run_until_archived(archiver: Archiver) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(archiver.run())

    async def done() -> bool:
        if task.done():
            task.result()
        lag = await archiver.lag()
        return lag.entries == 0 and not archiver._read_pending

    await until(done, what="archive lag 0")
    return task


async def stop(archiver: Archiver, task: asyncio.Task[None]) -> None:
    archiver.stop()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def redis(redis_client: Any) -> AsyncIterator[Redis]:
    yield redis_client


async def test_every_event_reaches_the_store_once(redis: Redis, events_key: str, store: HistoryStore) -> None:
    await push_jobs(redis, events_key, 0, 3000)  # pushed before the archiver's first start
    archiver = Archiver(redis, store, [events_key], consumer="a1", batch_size=700, block_ms=50)
    task = await run_until_archived(archiver)
    await push_jobs(redis, events_key, 3000, 1000)  # and while it runs
    await until(lambda: _lag_zero(archiver), what="second lag 0")
    await stop(archiver, task)
    assert archiver.archived == expected_events(0, 4000)
    await check_exactly_once(store, 4000)
    pending: Any = await redis.xpending(events_key, "archiver")
    assert pending["pending"] == 0
    # Everything archived: the engine may trim the whole stream by the group's position.
    last = (await redis.xrevrange(events_key, count=1))[0][0].decode()
    assert _id(await archiver.min_unarchived_id(events_key)) > _id(last)


async def _lag_zero(archiver: Archiver) -> bool:
    return (await archiver.lag()).entries == 0


class _Batches:
    """A real store that remembers how many deltas (rows) each write carried."""

    def __init__(self, inner: HistoryStore) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.rows: list[int] = []

    async def write(self, deltas: Sequence[JobDelta], now_ms: int) -> int:
        self.rows.append(len(deltas))
        return await self.inner.write(deltas, now_ms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_settle_reads_a_quiet_stream_in_batches_of_its_time(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """After a batch that was not full the archiver waits settle_ms: a job's submitted
    and delivered events pushed within it are folded into one row, written once."""
    counted = _Batches(store)
    archiver = Archiver(redis, counted, [events_key], consumer="s1", batch_size=1000, block_ms=50,  # type: ignore[arg-type]
                        settle_ms=400)
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        await push_jobs(redis, events_key, 0, 1, receipts=False)  # job-0 submitted: wakes the archiver
        await until(lambda: _archived(archiver, 1), what="the first event archived")
        # while it settles: 20 jobs submitted, and the receipts of the even ones (job-0's too)
        t = int(time.time() * 1000)
        for i in range(1, 21):
            await redis.xadd(events_key, event_fields(f"job-{i}", "submitted", t + i, first=True, client=f"c{i % 3}"))  # type: ignore[arg-type]
        for i in range(0, 21, 2):
            await redis.xadd(events_key, event_fields(f"job-{i}", "delivered", t + i + 5))  # type: ignore[arg-type]
        await until(lambda: _archived(archiver, 32), what="the settled batch archived")
    finally:
        await stop(archiver, task)
    # Not one write per event: job-0 alone (its submitted held back one round, then
    # written when nothing came), the 11 jobs with receipts in one write, and the 10
    # without (fresh submitted events: held back a round for their receipts) in one.
    assert counted.rows == [1, 11, 10]
    await check_exactly_once(store, 21)


async def test_fresh_submitted_events_wait_one_round_for_their_receipts(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """A batch's submitted events of its last settle_ms are held back (read, not acked)
    and written with the next batch: a job whose receipt comes then is one row written
    once, not a row and an UPDATE of it (the old code wrote [10, 10])."""
    counted = _Batches(store)
    await push_jobs(redis, events_key, 0, 10, receipts=False)
    archiver = Archiver(redis, counted, [events_key], consumer="h1", batch_size=1000,  # type: ignore[arg-type]
                        block_ms=10_000, settle_ms=300)
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        await until(lambda: _held(archiver, 10), what="the submitted events held back")
        assert archiver.archived == 0 and counted.rows == []
        pending: Any = await redis.xpending(events_key, "archiver")
        assert pending["pending"] == 10  # read, not acked: min_unarchived_id keeps them from the trimmer
        assert _id(await archiver.min_unarchived_id(events_key)) <= _id((await redis.xrange(events_key, count=1))[0][0].decode())
        t = int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        for i in range(10):
            pipe.xadd(events_key, event_fields(f"job-{i}", "delivered", t + i))  # type: ignore[arg-type]
        await pipe.execute()
        await until(lambda: _archived(archiver, 20), what="both events of every job archived")
    finally:
        await stop(archiver, task)
    assert counted.rows == [10]
    rows = [r for c in ("c0", "c1", "c2") for r in await store.find(client=c, limit=100)]
    assert sorted(r.job_id for r in rows) == sorted(f"job-{i}" for i in range(10))
    assert all(set(r.events) == {"submitted", "delivered"} and r.final_state == "delivered" for r in rows)
    assert (await redis.xpending(events_key, "archiver"))["pending"] == 0


async def test_events_held_back_when_the_archiver_stops_are_written_by_its_stop(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """A stopping archiver writes what it holds (and acks it after the commit): nothing
    is left pending for the next start, each job is one row."""
    await push_jobs(redis, events_key, 0, 10, receipts=False)
    first = Archiver(redis, store, [events_key], consumer="h2", batch_size=1000, block_ms=10_000, settle_ms=300,
                     hold_ms=60_000)
    task = asyncio.get_running_loop().create_task(first.run())
    try:
        await until(lambda: _held(first, 10), what="the submitted events held back")
        assert first.archived == 0 and first.holding == 10
    finally:
        await stop(first, task)
    assert first.archived == 10 and first.holding == 0
    rows = [r for c in ("c0", "c1", "c2") for r in await store.find(client=c, limit=100)]
    assert sorted(r.job_id for r in rows) == sorted(f"job-{i}" for i in range(10))
    assert all(set(r.events) == {"submitted"} for r in rows)
    assert (await redis.xpending(events_key, "archiver"))["pending"] == 0


async def test_a_burst_is_jobs_unread_for_a_while_not_jobs_in_hand(redis: Redis, key_prefix: str) -> None:
    """The archiver's ``busy`` (engine/history/cli.py): a job unread for more than
    BURST_WAIT_MS. Jobs the engine has read and not recorded yet (in hand, at any steady
    rate) are no backlog; the old rule (any unread or pending job) deferred at a steady rate."""
    from engine.backlog import oldest_unread_ms
    from engine.history.cli import BURST_WAIT_MS

    lane = f"{key_prefix}:jobs-test"
    await redis.xgroup_create(lane, "engine", id="0", mkstream=True)
    assert await oldest_unread_ms(redis, [lane], "engine") == 0
    now_s, now_us = await redis.time()
    now_ms = now_s * 1000 + now_us // 1000
    await redis.xadd(lane, {"id": "old"}, id=f"{now_ms - 5000}-0")  # waited 5 s unread: a burst
    assert 5000 <= await oldest_unread_ms(redis, [lane], "engine") < 60_000
    assert await oldest_unread_ms(redis, [lane], "engine") > BURST_WAIT_MS
    await redis.xreadgroup("engine", "e", {lane: ">"})  # in hand: read, not acked
    assert await oldest_unread_ms(redis, [lane], "engine") == 0
    await redis.xadd(lane, {"id": "new"})  # just came: the engine reads it as it comes
    assert await oldest_unread_ms(redis, [lane], "engine") < BURST_WAIT_MS
    assert await oldest_unread_ms(redis, [f"{key_prefix}:no-such-lane", lane], "engine") < BURST_WAIT_MS
    await redis.delete(lane)


async def _held(archiver: Archiver, n: int) -> bool:
    return archiver.held >= n


async def test_defer_waits_while_jobs_wait_in_the_lanes_and_at_most_defer_s(
    redis: Redis, events_key: str, key_prefix: str, store: HistoryStore
) -> None:
    """While the engine has a backlog (jobs unread in a lane) the archiver does not read,
    for at most defer_s; with the lane empty it reads at once."""
    from engine.backlog import lane_backlog
    from engine.keys import Keys

    keys = Keys(key_prefix)
    lane = next(iter(keys.lanes()))
    await redis.xgroup_create(lane, "engine", id="0", mkstream=True)
    await redis.xadd(lane, {"id": "waiting"})  # one job unread by the engine's group

    async def busy() -> bool:
        return any((await lane_backlog(redis, keys, "engine")).values())

    archiver = Archiver(redis, store, [events_key], consumer="d1", batch_size=1000, block_ms=20,
                        busy=busy, defer_s=1.5)
    await push_jobs(redis, events_key, 0, 10)
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        started = time.monotonic()
        await until(lambda: _archived(archiver, expected_events(0, 10)), what="archived after the deferral")
        waited = time.monotonic() - started
        assert 1.5 <= waited < 10.0, waited  # deferred for defer_s, not for ever
        # the lane drained (the engine read and acked its job): new events go at once
        got = await redis.xreadgroup("engine", "e", {lane: ">"})
        await redis.xack(lane, "engine", got[0][1][0][0])
        await push_jobs(redis, events_key, 10, 10)
        started = time.monotonic()
        await until(lambda: _archived(archiver, expected_events(0, 20)), what="archived without deferral")
        assert time.monotonic() - started < 1.5
    finally:
        await stop(archiver, task)
        await redis.delete(lane)
    await check_exactly_once(store, 20)


async def test_a_deferral_ends_settle_ms_after_the_lanes_empty(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """The burst's lanes emptied: its last receipts still come in, so the archiver waits
    settle_ms more before its catch-up (within defer_s), then archives everything."""
    lanes_busy = [True]
    emptied: list[float] = []

    async def busy() -> bool:
        return lanes_busy[0]

    archiver = Archiver(redis, store, [events_key], consumer="d2", batch_size=1000, block_ms=20,
                        busy=busy, defer_s=30.0, settle_ms=800)
    await push_jobs(redis, events_key, 0, 10)
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        await until(lambda: _deferring(archiver), what="deferring while the lanes are busy")
        assert archiver.archived == 0
        lanes_busy[0] = False
        emptied.append(time.monotonic())
        await until(lambda: _archived(archiver, expected_events(0, 10)), what="archived after the tail settled")
        waited = time.monotonic() - emptied[0]
        assert 0.8 <= waited < 30.0, waited  # settle_ms after the lanes emptied, not defer_s
    finally:
        await stop(archiver, task)
    await check_exactly_once(store, 10)


async def _deferring(archiver: Archiver) -> bool:
    return archiver.deferring


async def _archived(archiver: Archiver, n: int) -> bool:
    return archiver.archived >= n


class _DiesInWrite:
    """A real store that 'dies' in the middle of a write: before or after its commit.

    Models the archiver process being killed mid-batch: the task is cancelled
    while it waits here, and its XACK never happens.
    """

    def __init__(self, inner: HistoryStore, *, commit: bool) -> None:
        self.inner, self.commit = inner, commit
        self.dialect = inner.dialect
        self.entered = asyncio.Event()

    async def migrate(self) -> int:
        return await self.inner.migrate()

    async def write(self, deltas: Sequence[JobDelta], now_ms: int) -> int:
        if self.commit:
            await self.inner.write(deltas, now_ms)
        self.entered.set()
        await asyncio.Event().wait()  # never returns: cancelled here
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("commit", [False, True], ids=["killed-before-commit", "killed-after-commit"])
async def test_archiver_killed_mid_batch_loses_and_duplicates_nothing(
    redis: Redis, events_key: str, store: HistoryStore, commit: bool
) -> None:
    await push_jobs(redis, events_key, 0, 2000)
    dying = _DiesInWrite(store, commit=commit)
    first = Archiver(
        redis, dying, [events_key], consumer="same-host", batch_size=1500, block_ms=50,  # type: ignore[arg-type]
        read_ahead=False,
    )
    task = asyncio.get_running_loop().create_task(first.run())
    await asyncio.wait_for(dying.entered.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pending: Any = await redis.xpending(events_key, "archiver")
    assert pending["pending"] == 1500  # read, never acked
    # Restarted under the same name: its pending entries first, then the rest.
    second = Archiver(redis, store, [events_key], consumer="same-host", batch_size=1500, block_ms=50)
    task = await run_until_archived(second)
    await stop(second, task)
    assert second.archived == expected_events(0, 2000)
    await check_exactly_once(store, 2000)


async def test_killed_with_a_batch_read_ahead_loses_and_duplicates_nothing(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """A full batch makes the archiver read (and fold) the next while the first commits:
    killed in the first's write, both are pending, and both land once after the restart."""
    await push_jobs(redis, events_key, 0, 2000)
    dying = _DiesInWrite(store, commit=False)
    first = Archiver(redis, dying, [events_key], consumer="same-host", batch_size=1000, block_ms=50)  # type: ignore[arg-type]
    task = asyncio.get_running_loop().create_task(first.run())
    await asyncio.wait_for(dying.entered.wait(), 30)
    await until(lambda: _pending(redis, events_key, 2000), what="the read ahead")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get("job-0") is None  # nothing committed, nothing acked
    second = Archiver(redis, store, [events_key], consumer="same-host", batch_size=1000, block_ms=50)
    task = await run_until_archived(second)
    await stop(second, task)
    assert second.archived == expected_events(0, 2000)
    await check_exactly_once(store, 2000)


class _AckHangs(Archiver):
    """An archiver killed while the XACK of a committed batch is in flight: in a backlog
    that XACK goes out while the next batch commits (it never returns here)."""

    acks = 0
    hanging: asyncio.Event

    async def _ack_batch(self, batch: list[tuple[str, list[Any]]], n: int) -> None:
        self.acks += 1
        self.hanging.set()
        await asyncio.Event().wait()


async def test_killed_with_a_committed_batchs_xack_in_flight_loses_and_duplicates_nothing(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    await push_jobs(redis, events_key, 0, 3000, receipts=False)
    first = _AckHangs(redis, store, [events_key], consumer="same-host", batch_size=1000, block_ms=50)
    first.hanging = asyncio.Event()
    task = asyncio.get_running_loop().create_task(first.run())
    await asyncio.wait_for(first.hanging.wait(), 30)
    # the first batch is committed and its XACK deferred (a batch was read ahead): the
    # next commit goes on while it is in flight, then waits for it before its own XACK
    assert await store.get("job-0") is not None
    await until(lambda: _has_row(store, "job-1999"), what="the next batch committed meanwhile")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first.acks == 1 and first.archived == 0
    pending: Any = await redis.xpending(events_key, "archiver")
    assert pending["pending"] >= 2000  # committed, never acked
    second = Archiver(redis, store, [events_key], consumer="same-host", batch_size=1000, block_ms=50)
    task = await run_until_archived(second)
    await stop(second, task)
    assert second.archived == 3000
    rows = []
    for c in ("c0", "c1", "c2"):
        rows += await store.find(client=c, limit=100_000)
    assert sorted(r.job_id for r in rows) == sorted(f"job-{i}" for i in range(3000))
    assert all(set(r.events) == {"submitted"} for r in rows)


async def _has_row(store: HistoryStore, job_id: str) -> bool:
    return await store.get(job_id) is not None


async def _pending(redis: Redis, stream: str, count: int) -> bool:
    summary: Any = await redis.xpending(stream, "archiver")
    return int(summary["pending"]) >= count


async def test_entries_of_a_dead_archiver_elsewhere_are_taken_over(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    await push_jobs(redis, events_key, 0, 300)
    await redis.xgroup_create(events_key, "archiver", id="0")
    await redis.xreadgroup("archiver", "other-host", {events_key: ">"}, count=100)  # and died
    archiver = Archiver(redis, store, [events_key], consumer="here", batch_size=1000, block_ms=50, claim_idle_ms=1)
    task = await run_until_archived(archiver)
    await stop(archiver, task)
    await check_exactly_once(store, 300)


@pytest.mark.parametrize("read_ahead", [False, True], ids=["one-batch", "read-ahead"])
async def test_database_down_for_a_while_then_everything_lands(
    redis: Redis, events_key: str, pg_server: PgServer, pg_dsn: str, read_ahead: bool
) -> None:
    if not pg_server.private:
        pytest.skip("needs a private PostgreSQL to stop and start (initdb/pg_ctl not usable here)")
    store = open_store(pg_dsn)
    await store.migrate()
    archiver = Archiver(redis, store, [events_key], consumer="a1", batch_size=500, block_ms=50,
                        backoff_min_s=0.05, backoff_max_s=0.5, read_ahead=read_ahead)
    try:
        await push_jobs(redis, events_key, 0, 500)
        task = await run_until_archived(archiver)
        await asyncio.to_thread(pg_server.stop)
        try:
            await push_jobs(redis, events_key, 500, 1500)  # sending goes on
            first_unarchived = (await redis.xrevrange(events_key, count=expected_events(500, 1500)))[-1][0].decode()
            await until(lambda: _truthy(archiver.write_failures >= 3), what="failed writes while down")
            lag = await archiver.lag()
            assert lag.entries > 0 and lag.behind_s > 0  # readiness and the metric see it
            # one batch in hand (and, reading ahead, the next one), the rest waits in the stream
            assert lag.pending <= (1000 if read_ahead else 500)
            # Trimming by the group's position would keep every event not archived.
            assert _id(await archiver.min_unarchived_id(events_key)) <= _id(first_unarchived)
        finally:
            await asyncio.to_thread(pg_server.start)
        await until(lambda: _lag_zero(archiver), timeout=60, what="archive caught up after restart")
        await stop(archiver, task)
        await check_exactly_once(store, 2000)
        assert archiver.archived == expected_events(0, 2000)
    finally:
        await store.close()


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def _truthy(value: bool) -> bool:
    return value


async def test_min_unarchived_id_bounds_trimming(redis: Redis, events_key: str, tmp_path: Any) -> None:
    store = open_store(f"sqlite://{tmp_path / 'h.sqlite3'}")
    try:
        archiver = Archiver(redis, store, [events_key], consumer="a1", batch_size=100, block_ms=10)
        assert await archiver.min_unarchived_id(events_key) == "0-0"  # no group yet: trim nothing
        await push_jobs(redis, events_key, 0, 300, receipts=False)
        await archiver.ensure_groups()
        await store.migrate()
        assert await archiver.archive_once() == 0  # no pending of its own: switches to new entries
        assert await archiver.archive_once() == 100
        ids = [e[0].decode() for e in await redis.xrange(events_key)]
        bound = await archiver.min_unarchived_id(events_key)
        assert _id(ids[99]) < _id(bound) <= _id(ids[100])
        await redis.xtrim(events_key, minid=bound, approximate=False)
        assert await redis.xlen(events_key) == 200  # only the archived went
        while await archiver.archive_once(block_ms=1):
            pass
        assert (await archiver.lag()).entries == 0
        assert len(await store.find(client="c0", limit=1000)) == 100
    finally:
        await store.close()


async def test_lag_without_redis_lag_counts_a_little_and_estimates_a_backlog(
    redis: Redis, events_key: str, tmp_path: Any
) -> None:
    """Where XINFO GROUPS has no ``lag`` (Redis < 7.0, or an entry deleted past the
    group's position) the archiver counts up to 2,000 entries after its position and
    estimates beyond from the ids' times, instead of reading the whole backlog."""
    t = 1_700_000_000_000
    pipe = redis.pipeline(transaction=False)
    for i in range(5000):
        pipe.xadd(events_key, {"id": f"j{i}", "event": "submitted", "ts": str(t + i)}, id=f"{t + i}-0")
    await pipe.execute()
    store = open_store(f"sqlite://{tmp_path / 'h.sqlite3'}")
    try:
        archiver = Archiver(redis, store, [events_key], consumer="a1")
        for position, deleted, unread in ((t + 999, t + 3000, 3999), (t + 3999, t + 4500, 999)):
            await redis.xgroup_destroy(events_key, "archiver")
            await redis.xgroup_create(events_key, "archiver", id=f"{position}-0")
            await redis.xdel(events_key, f"{deleted}-0")  # a tombstone ahead: Redis cannot say
            info: Any = await redis.xinfo_groups(events_key)
            assert info[0].get("lag") is None
            lag = await archiver.lag()
            if unread < 2000:
                assert lag.entries == unread  # counted
            else:
                assert abs(lag.entries - unread) <= unread // 100  # estimated
            assert lag.behind_s > 0
    finally:
        await store.close()


async def test_jobs_across_midnight_and_an_odd_time_land_on_their_days(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """The fold's days (13-digit times compared as bytes on PostgreSQL, deltas on SQLite):
    a job's row is on the day of its earliest event whatever the order in the batch, and a
    time the engine would not write (a sign) still lands, through the careful fold."""
    midnight = (int(time.time() * 1000) // 86_400_000) * 86_400_000
    events = [
        event_fields("m-1", "submitted", midnight - 5, first=True, client="mid"),
        event_fields("m-1", "delivered", midnight + 5),
        event_fields("m-2", "delivered", midnight + 7),  # the receipt first, its submit from the day before
        event_fields("m-2", "submitted", midnight - 7, first=True, client="mid"),
        event_fields("m-3", "submitted", midnight + 9, first=True, client="mid"),
    ]
    for f in events:
        await redis.xadd(events_key, f)  # type: ignore[arg-type]
    archiver = Archiver(redis, store, [events_key], consumer="a1", batch_size=100, block_ms=50)
    await archiver.ensure_groups()
    assert await archiver.drain() == 5
    rows = {r.job_id: r for r in await store.find(client="mid", limit=10)}
    before = time.strftime("%Y-%m-%d", time.gmtime((midnight - 1) / 1000))
    after = time.strftime("%Y-%m-%d", time.gmtime(midnight / 1000))
    assert {k: (r.day, r.first_ms, r.submitted_ms, r.final_state, r.final_ms) for k, r in rows.items()} == {
        "m-1": (before, midnight - 5, midnight - 5, "delivered", midnight + 5),
        "m-2": (before, midnight - 7, midnight - 7, "delivered", midnight + 7),
        "m-3": (after, midnight + 9, midnight + 9, "", None),
    }
    # A signed time (no engine writes one): the careful fold reads it as its number.
    odd = event_fields("m-3", "delivered", midnight + 11) | {b"ts": b"+%d" % (midnight + 11)}
    await redis.xadd(events_key, odd)  # type: ignore[arg-type]
    assert await archiver.drain() == 1
    m3 = await store.get("m-3")
    assert m3 is not None and (m3.final_state, m3.final_ms, m3.events) == (
        "delivered", midnight + 11, {"submitted": midnight + 9, "delivered": midnight + 11})
    pending: Any = await redis.xpending(events_key, "archiver")
    assert pending["pending"] == 0 and archiver.archived == 6


async def test_run_refreshes_the_lag_gauges_only_where_someone_reads_them(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """The archiver's child process and `sendgate archive` have no registry: the engine reads
    the lag from the group itself, so their loop asks Redis nothing for it (on Redis 6.2 an
    XRANGE of up to 2,000 entries every 5 s). The engine's inline archiver (a registry) does."""
    from prometheus_client import CollectorRegistry

    await push_jobs(redis, events_key, 0, 300)
    registry = CollectorRegistry()
    seen = Archiver(redis, store, [events_key], group="seen", consumer="a1", batch_size=100, block_ms=50,
                    registry=registry)
    unseen = Archiver(redis, store, [events_key], group="unseen", consumer="a2", batch_size=100, block_ms=50)
    assert seen.report_lag and not unseen.report_lag
    initial = unseen.last_lag
    tasks = [asyncio.get_running_loop().create_task(a.run()) for a in (seen, unseen)]
    try:
        total = expected_events(0, 300)
        await until(lambda: _archived(seen, total), what="the first archiver done")
        await until(lambda: _archived(unseen, total), what="the second archiver done")
        # The loop's first lag() comes after its first round: some of the stream still unread then.
        assert seen.last_lag.entries > 0
        assert registry.get_sample_value("sendgate_archive_lag") == seen.last_lag.entries
        assert unseen.last_lag is initial
    finally:
        for a, t in zip((seen, unseen), tasks, strict=True):
            await stop(a, t)
    # Asked, it still answers (the engine's own Archiver object does so every 5 s).
    assert (await unseen.lag()).entries == 0


async def _archived(archiver: Archiver, n: int) -> bool:
    return archiver.archived >= n
# ------------------------------------------------------------------ the long hold
class _JobWrites:
    """A real store that remembers which job ids each write carried: a job in two
    writes is a row and an UPDATE of it."""

    def __init__(self, inner: HistoryStore) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.writes: list[list[str]] = []

    async def write(self, deltas: Any, now_ms: int) -> int:
        jobs = getattr(deltas, "jobs", None)
        ids = [j[0].decode() for j in jobs] if jobs is not None else [d.job_id for d in deltas]
        self.writes.append(ids)
        return await self.inner.write(deltas, now_ms)

    def in_writes(self, job_id: str) -> int:
        return sum(job_id in w for w in self.writes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _pg_tuples(store: HistoryStore, inserted: int) -> tuple[int, int]:
    """(rows inserted, rows updated) of the messages partitions, once the statistics
    show ``inserted`` inserts (a backend reports them shortly after its commit)."""
    import asyncpg

    conn = await asyncpg.connect(store.dsn)  # type: ignore[attr-defined]
    try:
        got: tuple[int, int] = (0, 0)

        async def flushed() -> bool:
            nonlocal got
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            row = await conn.fetchrow(
                "SELECT coalesce(sum(n_tup_ins), 0) AS ins, coalesce(sum(n_tup_upd), 0) AS upd "
                "FROM pg_stat_user_tables WHERE relname LIKE 'messages_p%'")
            got = (int(row["ins"]), int(row["upd"]))
            return got[0] >= inserted

        await until(flushed, what="the statistics of the inserts")
        return got
    finally:
        await conn.close()


async def _push_receipts(redis: Redis, stream: str, jobs: range, event: str = "delivered") -> None:
    t = int(time.time() * 1000)
    pipe = redis.pipeline(transaction=False)
    for i in jobs:
        pipe.xadd(stream, event_fields(f"job-{i}", event, t + i))  # type: ignore[arg-type]
    await pipe.execute()


async def test_a_receipt_several_settle_ms_late_is_one_row_not_a_row_and_an_update(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """Submitted events held (pending) while rounds of other jobs are archived over more
    than three settle_ms of stream time; their receipts then come, and each job is
    written once: one COPYed row (PostgreSQL: no UPDATE in pg_stat_user_tables)."""
    counted = _JobWrites(store)
    archiver = Archiver(redis, counted, [events_key], consumer="l1", batch_size=1000, block_ms=50,  # type: ignore[arg-type]
                        settle_ms=200, hold_ms=30_000)
    await push_jobs(redis, events_key, 0, 10, receipts=False)  # job-0 … job-9, no receipt yet
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        await until(lambda: _holding(archiver, 10), what="the submitted events held")
        first = await redis.xrange(events_key, count=1)
        # other jobs, each with its receipt at once, for more than 3 x settle_ms
        n = 100
        while True:
            await push_jobs(redis, events_key, n, 10, receipts=False)
            await _push_receipts(redis, events_key, range(n, n + 10))
            n += 10
            await until(lambda done=2 * (n - 100): _archived(archiver, done), what="a round of other jobs")
            newest = (await redis.xrevrange(events_key, count=1))[0][0]
            if _id(newest.decode())[0] - _id(first[0][0].decode())[0] > 3 * 200:
                break
        assert archiver.holding == 10  # still waiting for their receipts
        assert (await redis.xpending(events_key, "archiver"))["pending"] == 10  # pending: lag() counts them
        assert (await archiver.lag()).entries == 10
        await _push_receipts(redis, events_key, range(10), "undeliverable")
        await until(lambda: _archived(archiver, 20 + 2 * (n - 100)), what="the late receipts archived")
    finally:
        await stop(archiver, task)
    for i in range(10):
        assert counted.in_writes(f"job-{i}") == 1, counted.writes
        row = await store.get(f"job-{i}")
        assert row is not None and set(row.events) == {"submitted", "undeliverable"}
        assert row.final_state == "undeliverable"
    assert (await redis.xpending(events_key, "archiver"))["pending"] == 0
    if store.dialect == "postgres":
        inserted, updated = await _pg_tuples(store, n - 100 + 10)
        assert (inserted, updated) == (n - 100 + 10, 0)


async def _holding(archiver: Archiver, n: int) -> bool:
    return archiver.holding >= n


async def test_held_events_are_written_once_hold_ms_passed_and_beyond_the_count(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """The bounds: beyond hold_max entries the oldest jobs are written at once; the rest
    once hold_ms has passed (a quiet stream: by the clock), without their receipts."""
    archiver = Archiver(redis, store, [events_key], consumer="l2", batch_size=1000, block_ms=50,
                        settle_ms=100, hold_ms=1500, hold_max=6)
    await push_jobs(redis, events_key, 0, 10, receipts=False)
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        await until(lambda: _archived(archiver, 4), what="the oldest beyond the count written")
        held_at = time.monotonic()
        assert archiver.holding == 6 and archiver.archived == 4
        rows = [r for c in ("c0", "c1", "c2") for r in await store.find(client=c, limit=100)]
        assert sorted(r.job_id for r in rows) == [f"job-{i}" for i in range(4)]  # the oldest four
        await until(lambda: _archived(archiver, 10), what="the rest written after hold_ms")
        assert time.monotonic() - held_at >= 1.0  # not at once: about hold_ms after they were read
        assert archiver.holding == 0
    finally:
        await stop(archiver, task)
    rows = [r for c in ("c0", "c1", "c2") for r in await store.find(client=c, limit=100)]
    assert sorted(r.job_id for r in rows) == sorted(f"job-{i}" for i in range(10))
    assert all(set(r.events) == {"submitted"} for r in rows)
    assert (await redis.xpending(events_key, "archiver"))["pending"] == 0


async def test_killed_while_holding_loses_and_duplicates_nothing(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """Killed (its task cancelled) with entries held: they are pending; the restarted
    archiver reads them first (id 0), and with the receipts that came meanwhile every
    job is one row holding exactly its events."""
    await push_jobs(redis, events_key, 0, 40, receipts=False)
    await _push_receipts(redis, events_key, range(20, 40))  # half of them final in the first batch
    first = Archiver(redis, store, [events_key], consumer="l3", batch_size=1000, block_ms=50, settle_ms=100,
                     hold_ms=60_000)
    task = asyncio.get_running_loop().create_task(first.run())
    await until(lambda: _holding(first, 20), what="the submitted events held")
    await until(lambda: _archived(first, 40), what="the jobs with receipts written")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await redis.xpending(events_key, "archiver"))["pending"] == 20  # held = pending, not lost
    await _push_receipts(redis, events_key, range(0, 20, 2))  # receipts of the held even ones come now
    again = Archiver(redis, store, [events_key], consumer="l3", batch_size=1000, block_ms=50, settle_ms=100,
                     hold_ms=60_000)
    task = await run_until_archived(again)
    await stop(again, task)
    assert again.archived == 20 + 10  # the 20 held (read again: id 0), the 10 receipts
    rows = [r for c in ("c0", "c1", "c2") for r in await store.find(client=c, limit=100)]
    assert sorted(r.job_id for r in rows) == sorted(f"job-{i}" for i in range(40))
    for r in rows:
        i = int(r.job_id.split("-")[1])
        done = i >= 20 or i % 2 == 0
        assert r.final_state == ("delivered" if done else ""), r.job_id
        assert set(r.events) == ({"submitted", "delivered"} if done else {"submitted"}), r.job_id
    assert (await redis.xpending(events_key, "archiver"))["pending"] == 0


async def test_wait_caught_up_and_drain_write_what_is_held(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """A graceful stop's wait_caught_up turns the hold off: what is held is written and
    the lag reaches 0; drain() holds nothing."""
    archiver = Archiver(redis, store, [events_key], consumer="l4", batch_size=1000, block_ms=50, settle_ms=100,
                        hold_ms=60_000)
    await push_jobs(redis, events_key, 0, 10, receipts=False)
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        await until(lambda: _holding(archiver, 10), what="the submitted events held")
        assert await archiver.wait_caught_up(20.0)
        assert archiver.archived == 10 and archiver.holding == 0
    finally:
        await stop(archiver, task)
    await push_jobs(redis, events_key, 10, 10, receipts=False)
    drainer = Archiver(redis, store, [events_key], consumer="l5", batch_size=1000, block_ms=50, settle_ms=100,
                       hold_ms=60_000)
    assert await drainer.drain() == 10 and drainer.holding == 0
    rows = [r for c in ("c0", "c1", "c2") for r in await store.find(client=c, limit=100)]
    assert sorted(r.job_id for r in rows) == sorted(f"job-{i}" for i in range(20))


async def test_reclaim_leaves_this_archivers_own_held_entries_to_the_hold(
    redis: Redis, events_key: str, store: HistoryStore
) -> None:
    """XAUTOCLAIM takes every entry idle past claim_idle_ms, this consumer's too: held
    ones (idle that long when the archive is far behind) are left to the hold, written
    once with their receipts, not once by the takeover and again when released."""
    counted = _JobWrites(store)
    archiver = Archiver(redis, counted, [events_key], consumer="l6", batch_size=1000, block_ms=50,  # type: ignore[arg-type]
                        settle_ms=100, hold_ms=60_000, claim_idle_ms=300)
    await push_jobs(redis, events_key, 0, 5, receipts=False)
    task = asyncio.get_running_loop().create_task(archiver.run())
    try:
        await until(lambda: _holding(archiver, 5), what="the submitted events held")

        async def claimed() -> bool:  # the loop's XAUTOCLAIM (every claim_idle_ms) took them again
            got: Any = await redis.xpending_range(events_key, "archiver", "-", "+", 10)
            return len(got) == 5 and min(int(p["times_delivered"]) for p in got) >= 2

        await until(claimed, what="the held entries taken over by the loop's reclaim")
        assert archiver.holding == 5 and archiver.archived == 0
        await _push_receipts(redis, events_key, range(5))
        await until(lambda: _archived(archiver, 10), what="the jobs written with their receipts")
    finally:
        await stop(archiver, task)
    assert [counted.in_writes(f"job-{i}") for i in range(5)] == [1] * 5
    assert (await redis.xpending(events_key, "archiver"))["pending"] == 0
