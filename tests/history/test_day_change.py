"""The PostgreSQL store at the UTC day change (issue #16): batches as the archiver
hands them (`fold` of the raw reply's flat fields) whose events straddle midnight
take the fast path, and every event lands in exactly one row.

Session 21's soak: after midnight every batch holding a receipt of a job submitted
the day before took the general path (`_NotAllPlaced`): the row was placed right
(its day from the cache or the lookup) but staged with the receipt's own day, and
the UPDATE joined the stage on the partition's day too, so it found fewer rows than
it placed. The general path wrote them correctly, but dearer (and, before f3a45ba,
30 s a batch).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.history.postgres import PostgresHistory
from tests.history.events import DAY_MS, entry

NOW_MS = int(time.time() * 1000)
MIDNIGHT = NOW_MS // DAY_MS * DAY_MS  # today's, UTC: migrate() made the partitions around it
N = 40


def _raw(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[bytes, list[bytes]]]:
    """Entries as the raw XREADGROUP reply holds them: (id, [name, value, …]) in the
    engine's field order."""
    return [(b"%s-%d" % (eid.partition(b"-")[0], i), [x for kv in f.items() for x in kv])
            for i, (eid, f) in enumerate(entries)]


def _subs(t: int, p: str = "j", n: int = N) -> list[Any]:
    return [entry(f"{p}{i}", "submitted", t + i, first=True, client="mid") for i in range(n)]


def _dlrs(t: int, p: str = "j", n: int = N, event: str = "delivered") -> list[Any]:
    return [entry(f"{p}{i}", event, t + i) for i in range(n)]


async def _write(store: PostgresHistory, batch: list[Any]) -> None:
    assert await store.write(store.fold(_raw(batch)), NOW_MS) > 0


async def _rows(store: PostgresHistory) -> dict[str, list[Any]]:
    """job id -> its rows (day, events, final_state, submitted_ms)."""
    pool = await store._get_pool()
    out: dict[str, list[Any]] = {}
    for r in await pool.fetch("SELECT job_id, day, events::text, final_state, submitted_ms FROM messages"):
        out.setdefault(r[0], []).append(r)
    return out


def _expected(batches: list[list[Any]]) -> dict[str, dict[str, int]]:
    """job id -> every event of it in the batches (name -> ts)."""
    out: dict[str, dict[str, int]] = {}
    for b in batches:
        for _eid, f in b:
            out.setdefault(f[b"id"].decode(), {})[f[b"event"].decode()] = int(f[b"ts"])
    return out


async def _landed_once(store: PostgresHistory, batches: list[list[Any]]) -> dict[str, Any]:
    """Each job of the batches is one row holding every one of its events; the rows by id."""
    import orjson

    rows = await _rows(store)
    want = _expected(batches)
    assert sorted(rows) == sorted(want)
    assert {k: len(v) for k, v in rows.items() if len(v) != 1} == {}  # no second row of any job
    assert {k: orjson.loads(v[0][2]) for k, v in rows.items()} == want
    return {k: v[0] for k, v in rows.items()}


# (name, batches, which batches a fresh store writes: a restarted archiver, or a second one)
CASES: list[tuple[str, list[list[Any]], set[int]]] = [
    ("submit 23:59:59.9, its receipt 00:00:00.1 in the same batch", [_subs(MIDNIGHT - 100) + _dlrs(MIDNIGHT + 100)], set()),
    ("the receipts in the next batch, the day cached", [_subs(MIDNIGHT - 100), _dlrs(MIDNIGHT + 100)], set()),
    ("the receipts in the next batch, by a store without the cache (a restart)",
     [_subs(MIDNIGHT - 100), _dlrs(MIDNIGHT + 100)], {1}),
    ("the receipts with the new day's first jobs in one batch",
     [_subs(MIDNIGHT - 100), _dlrs(MIDNIGHT + 100) + _subs(MIDNIGHT + 200, "k")], set()),
    ("receipts of rows on two days in one batch (yesterday's jobs and today's), the days cached",
     [_subs(MIDNIGHT - 100), _subs(MIDNIGHT + 100, "k"), _dlrs(MIDNIGHT + 200) + _dlrs(MIDNIGHT + 300, "k")], set()),
    ("the same, looked up", [_subs(MIDNIGHT - 100), _subs(MIDNIGHT + 100, "k"),
                             _dlrs(MIDNIGHT + 200) + _dlrs(MIDNIGHT + 300, "k")], {2}),
    ("a held submit (the archiver's carry) with its receipt, after a batch of the old day",
     [_subs(MIDNIGHT - 5000, "a"), _subs(MIDNIGHT - 100) + _dlrs(MIDNIGHT + 100) + _dlrs(MIDNIGHT - 4000, "a")], set()),
    ("enroute before midnight, the final after, each its own batch",
     [_subs(MIDNIGHT - 300), _dlrs(MIDNIGHT - 50, event="enroute"), _dlrs(MIDNIGHT + 100)], set()),
    ("two engines' clocks: the receipt stamped before its submit's day, next batch",
     [_subs(MIDNIGHT + 2), _dlrs(MIDNIGHT - 1)], set()),
    ("two engines' clocks: the same, a store without the cache", [_subs(MIDNIGHT + 2), _dlrs(MIDNIGHT - 1)], {1}),
    ("two archivers: the receipt (after midnight) written before its submit (before)",
     [_dlrs(MIDNIGHT + 100), _subs(MIDNIGHT - 100)], {1}),
    ("two archivers: the same, one store", [_dlrs(MIDNIGHT + 100), _subs(MIDNIGHT - 100)], set()),
    ("a receipt two days later (a late carrier), the day cached", [_subs(MIDNIGHT - DAY_MS - 100), _dlrs(MIDNIGHT + DAY_MS - 5)], set()),
    ("the receipt sweep's unknown days later, a store without the cache",
     [_subs(MIDNIGHT - 2 * DAY_MS), _dlrs(MIDNIGHT + 1000, event="unknown")], {1}),
]


@pytest.mark.parametrize(("name", "batches", "fresh_for"), CASES, ids=[c[0] for c in CASES])
async def test_batches_across_midnight_take_the_fast_path_and_land_once(
    pg_dsn: str, name: str, batches: list[list[Any]], fresh_for: set[int]
) -> None:
    stores = [PostgresHistory(pg_dsn), PostgresHistory(pg_dsn)]
    await stores[0].migrate()
    try:
        for i, batch in enumerate(batches):
            await _write(stores[1 if i in fresh_for else 0], batch)
        assert [s.general_batches for s in stores] == [{"unique_violation": 0, "not_all_placed": 0}] * 2, name
        assert all(s.careful_batches == 0 for s in stores)
        await _landed_once(stores[0], batches)
    finally:
        for s in stores:
            await s.close()


async def test_a_row_stays_on_the_day_of_its_first_archived_event(pg_dsn: str) -> None:
    """The receipt after midnight updates the row of the day before (one row, its day
    kept, the final and the submit both on it), through the cache and the lookup."""
    store, fresh = PostgresHistory(pg_dsn), PostgresHistory(pg_dsn)
    await store.migrate()
    try:
        await _write(store, _subs(MIDNIGHT - 100))
        await _write(store, _dlrs(MIDNIGHT + 100, n=N // 2))  # cached
        await _write(fresh, _dlrs(MIDNIGHT + 100)[N // 2:])  # looked up
        rows = await _landed_once(store, [_subs(MIDNIGHT - 100), _dlrs(MIDNIGHT + 100)])
        yesterday = time.strftime("%Y-%m-%d", time.gmtime((MIDNIGHT - 1) / 1000))
        assert {r[1].isoformat() for r in rows.values()} == {yesterday}
        assert {(r[3], r[4] - MIDNIGHT) for r in rows.values()} == {("delivered", -100 + i) for i in range(N)}
        assert store.general_batches == fresh.general_batches == {"unique_violation": 0, "not_all_placed": 0}
    finally:
        await store.close()
        await fresh.close()


async def test_the_general_path_is_counted_and_still_lands_each_event_once(pg_dsn: str) -> None:
    """A straddling batch replayed by a restarted store (its cache empty: the COPY meets
    the rows, a unique violation) and a receipt of a row erased since it was cached (the
    UPDATE finds fewer rows) take the general path, counted by why; nothing doubles."""
    batch = _subs(MIDNIGHT - 100) + _dlrs(MIDNIGHT + 100)
    store, restarted = PostgresHistory(pg_dsn), PostgresHistory(pg_dsn)
    await store.migrate()
    try:
        await _write(store, batch)
        before = await _rows(store)
        await _write(restarted, batch)
        assert restarted.general_batches == {"unique_violation": 1, "not_all_placed": 0}
        assert await _rows(store) == before
        await _landed_once(store, [batch])
        # a row gone since it was cached (deleted behind the store's back: a dropped
        # partition, an erasure by another process): its receipt is written again as a row
        pool = await store._get_pool()
        await pool.execute("DELETE FROM messages WHERE job_id = 'j0'")
        await _write(store, [entry("j0", "expired", MIDNIGHT + 500)])
        assert store.general_batches == {"unique_violation": 0, "not_all_placed": 1}
        rows = await _rows(store)
        assert len(rows["j0"]) == 1 and rows["j0"][0][3] == "expired"
    finally:
        await store.close()
        await restarted.close()


async def test_the_general_path_is_logged_at_most_once_a_minute(
    pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    batch = _subs(MIDNIGHT - 100)
    store, restarted = PostgresHistory(pg_dsn), PostgresHistory(pg_dsn)
    await store.migrate()
    try:
        await _write(store, batch)
        with caplog.at_level("INFO", logger="sendgate.history"):
            for _ in range(3):
                await _write(restarted, batch)  # (the general path forgets its day cache: each a replay)
        said = [r.getMessage() for r in caplog.records if "general path" in r.getMessage()]
        assert restarted.general_batches["unique_violation"] == 3
        assert len(said) == 1 and "unique violation" in said[0], said
    finally:
        await store.close()
        await restarted.close()
