"""COPY rows straight from the raw reply (engine/history/rows.py): the same rows as the
careful fold, the careful fold whenever a byte could mean something else in COPY's
text format, and on PostgreSQL whatever the server refuses; replays change nothing."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson

from engine.history import deltas_from_entries, open_store
from engine.history.postgres import PostgresHistory
from engine.history.rows import COPY_COLUMNS, NULL, copy_rows, rows_from_deltas
from engine.history.text_cipher import b64
from tests.history.events import DAY_MS, entry

NOW_MS = int(time.time() * 1000)
_JSON = (COPY_COLUMNS.index("events"), COPY_COLUMNS.index("errors"))


def _flat(fields: dict[bytes, bytes], rng: random.Random | None = None) -> list[bytes]:
    items = list(fields.items())
    if rng is not None:
        rng.shuffle(items)
    return [x for kv in items for x in kv]


def _columns(row: bytes) -> list[Any]:
    """A row's fields, its JSON objects parsed (a key twice: the last wins, as in jsonb)."""
    cols: list[Any] = row.split(b"\t")
    assert len(cols) == len(COPY_COLUMNS) and cols[-1] == b""  # updated_ms comes at write time
    for i in _JSON:
        cols[i] = orjson.loads(cols[i])
    return cols


def _random_batch(rng: random.Random, jobs: int, base: int = NOW_MS) -> list[tuple[bytes, Any]]:
    events = ["submitted", "enroute", "accepted", "delivered", "undeliverable", "expired", "rejected", "unknown",
              "failed", "cancelled"]
    out: list[tuple[bytes, Any]] = []
    for j in range(jobs):
        t = base + rng.randrange(-5_000, 5_000)
        kind = rng.random()
        for k in range(rng.choice((1, 1, 2, 2, 3, 4))):
            first = (k == 0 and kind < 0.8) or rng.random() < 0.05  # a job's describing event, sometimes twice
            extra: dict[str, Any] = {}
            if rng.random() < 0.2:
                extra["error"] = rng.choice(("err:034", "0x00000058", "dlr_timeout"))
            if first and rng.random() < 0.1:
                extra["text_enc"] = b64(rng.randbytes(40))
            if rng.random() < 0.3:
                extra["message_ids"] = f"m{j},m{j + 1}"
            ev = "submitted" if k == 0 and kind < 0.7 else rng.choice(events)
            e = entry(f"job-{j}", ev, t + rng.randrange(-2_000, 9_000), first=first, parts=rng.choice((0, 1, 2)),
                      ref=rng.choice(("", f"r{j}")), client=rng.choice(("", "shop")), **extra)
            shape = rng.random()
            if shape < 0.6:  # the engine's order, flat: unpacked by position
                out.append((e[0], _flat(e[1])))
            elif shape < 0.8:  # another order or an extra field: read by name
                fields = {**e[1], b"part_states": b"delivered,expired"} if rng.random() < 0.5 else e[1]
                out.append((e[0], _flat(fields, rng)))
            else:  # a parsed reply (XAUTOCLAIM through redis-py): a mapping
                out.append(e)
    rng.shuffle(out)
    return out


def test_rows_from_the_raw_bytes_are_the_rows_of_the_careful_fold() -> None:
    rng = random.Random(16)
    for _ in range(40):
        batch = _random_batch(rng, rng.randrange(1, 60))
        fast = copy_rows(batch)
        assert fast.entries is not None  # nothing in these needs escaping: the fast rows
        careful = rows_from_deltas(deltas_from_entries(batch))
        assert [(j[0], j[1], j[2]) for j in fast.jobs] == [(j[0], j[1], j[2]) for j in careful]
        assert [_columns(j[3]) for j in fast.jobs] == [_columns(j[3]) for j in careful]


def test_jobs_across_midnight_get_the_days_of_the_careful_fold() -> None:
    """Times kept as their 13 digits, the day of each from a range check: a job whose
    earlier event comes later in the batch moves to that event's day, on either side."""
    rng = random.Random(1606)
    midnight = (NOW_MS // DAY_MS + 1) * DAY_MS
    moved = 0
    for _ in range(40):
        batch = _random_batch(rng, rng.randrange(1, 60), base=midnight)
        fast = copy_rows(batch)
        assert fast.entries is not None
        careful = rows_from_deltas(deltas_from_entries(batch))
        assert [(j[0], j[1], j[2]) for j in fast.jobs] == [(j[0], j[1], j[2]) for j in careful]
        assert [_columns(j[3]) for j in fast.jobs] == [_columns(j[3]) for j in careful]
        assert {j[1] for j in fast.jobs} <= {midnight // DAY_MS - 1, midnight // DAY_MS}
        moved += len({j[1] for j in fast.jobs}) == 2
    assert moved  # both days seen in one batch


def test_the_engine_layouts_merge_as_the_careful_fold_does() -> None:
    """The paths of the engine's two layouts (a job's describing event, a later one), in
    the orders that decide something: an earlier time after a later one, an event twice,
    two finals at one time, errors on both, a submitted after a receipt, a day earlier."""
    t = NOW_MS
    midnight = (NOW_MS // DAY_MS + 1) * DAY_MS
    cases = [
        [entry("a", "submitted", t, first=True, ref="r1"), entry("a", "delivered", t + 9, ref="r2", error="e1")],
        [entry("b", "delivered", t + 9, error="x"), entry("b", "submitted", t, first=True),
         entry("b", "enroute", t + 5, error="y")],
        [entry("c", "expired", t + 5), entry("c", "delivered", t + 5), entry("c", "expired", t + 3)],
        [entry("d", "enroute", t + 4), entry("d", "submitted", t + 2), entry("d", "submitted", t + 1, parts=0),
         entry("d", "enroute", t + 1, carrier="", message_ids="m9", parts=3)],
        [entry("e", "submitted", t, first=True, retention_until=5), entry("e", "failed", t + 1, first=True,
         retention_until=9, client="later", error="0x58")],
        [entry("f", "rejected", t, first=True, parts=0, retention_until=0), entry("f", "unknown", t - 1)],
        # an earlier event on the day before (the last day seen is the later one's)
        [entry("g", "delivered", midnight + 5), entry("g", "enroute", midnight - 5)],
        [entry("h", "delivered", midnight + 5), entry("h", "submitted", midnight - 5, first=True)],
        [entry("i", "delivered", midnight + 5, first=True, text_enc=b64(b"sealed")), entry("i", "submitted", midnight - 5)],
    ]
    for events in cases:
        batch = [(e, _flat(f)) for e, f in events]
        fast = copy_rows(batch)
        assert fast.entries is not None
        careful = rows_from_deltas(deltas_from_entries(batch))
        assert [(j[0], j[1], j[2]) for j in fast.jobs] == [(j[0], j[1], j[2]) for j in careful]
        assert [_columns(j[3]) for j in fast.jobs] == [_columns(j[3]) for j in careful], events[0][1][b"id"]


def test_times_other_than_13_digits_take_the_careful_fold() -> None:
    """The engine stamps 13 digits; anything else ``int()`` reads (a sign, spaces, leading
    zeros, fewer digits, none) is not compared as bytes: the batch takes the careful fold,
    which writes the same rows it always has (an empty time is 0, a malformed one skipped)."""
    plain = entry("plain", "submitted", NOW_MS, first=True, ref="ok")
    for ts in (b"1", b"", b"+" + str(NOW_MS).encode(), b" " + str(NOW_MS).encode(), b"000" + str(NOW_MS).encode(),
               str(NOW_MS * 10).encode(), b"soon"):
        for first in (True, False):
            odd = entry("odd", "delivered", NOW_MS + 1, first=first)
            batch = [(plain[0], _flat(plain[1])), (odd[0], _flat(odd[1] | {b"ts": ts}))]
            got = copy_rows(batch)
            assert got.entries is None, (ts, first)
            assert got.jobs == rows_from_deltas(deltas_from_entries(batch)), (ts, first)
            if ts == b"soon":
                assert [j[0] for j in got.jobs] == [b"plain"]


def test_malformed_entries_are_skipped_as_by_the_careful_fold() -> None:
    good = [entry("a", "submitted", NOW_MS, first=True, ref="r"), entry("a", "delivered", NOW_MS + 5)]
    bad = [
        (b"9-1", {b"id": b"a", b"event": b"expired", b"ts": b"soon"}),
        (b"9-2", {b"id": b"z", b"event": b"submitted", b"ts": b"1", b"parts": b"two"}),
        (b"9-3", {b"event": b"submitted", b"ts": b"1"}),
        (b"9-4", [b"id", b"y", b"event", b"failed", b"ts", b"1", b"text_enc", b"not base64!"]),
    ]
    assert copy_rows(good + bad).jobs == copy_rows(good).jobs == rows_from_deltas(deltas_from_entries(good))


def test_bytes_that_mean_something_in_copy_text_take_the_careful_fold() -> None:
    """Each of these would change a row's meaning if copied as it is: the whole batch is
    folded the careful way (every field escaped), and its other jobs are unaffected."""
    plain = entry("plain", "submitted", NOW_MS, first=True, ref="ok")
    for odd in ({"ref": "line\nbreak"}, {"ref": "cr\rhere"}, {"ref": "nul\x00here"}, {"ref": "back\\slash"}, {"ref": "\\N"},
                {"error": 'quote"d'}):
        batch = [(e, _flat(f)) for e, f in (plain, entry("odd", "failed", NOW_MS + 1, first=True, **odd))]
        got = copy_rows(batch)
        assert got.entries is None, odd
        assert got.jobs == rows_from_deltas(deltas_from_entries(batch))
    # UTF-8 goes as it is; a tab (one field too many on its line) and a whole field that
    # is COPY's NULL marker (NOT NULL) are left to the server, which refuses the batch:
    # it is then written the careful way (test_odd_values_land_exactly_…).
    for fine in ({"client": "\xe9t\xe9"}, {"ref": "tab\there"}, {"ref": NULL}, {"ref": "a" + NULL + "b"}):
        assert copy_rows([(e, _flat(f)) for e, f in (plain, entry("odd", "failed", NOW_MS, **fine))]).entries
    bad_utf8 = [(b"1-1", _flat(entry("u", "submitted", NOW_MS, first=True, ref="x")[1] | {b"ref": b"\xff"}))]
    assert copy_rows(bad_utf8).entries is None and copy_rows(bad_utf8).jobs == []  # skipped, as before
    quoted_event = [(b"1-1", _flat(entry("q", 'odd"event', NOW_MS)[1]))]
    assert copy_rows(quoted_event).entries is None


async def test_odd_values_land_exactly_through_the_careful_fold(pg_dsn: str) -> None:
    store = PostgresHistory(pg_dsn)
    await store.migrate()
    try:
        odd = {"plain": "ok", "tab": "a\tb", "nl": "a\nb", "bs": "a\\b", "null": "\\N", "ctl": NULL,
               "quote": 'say "hi"', "utf": "\xe9t\xe9 \U0001f600"}
        batch = [entry(k, "submitted", NOW_MS + i, first=True, ref=v, client="odd") for i, (k, v) in enumerate(odd.items())]
        batch.append(entry("quote", "undeliverable", NOW_MS + 50, error='err"034'))
        assert await store.write(store.fold([(e, _flat(f)) for e, f in batch]), NOW_MS) == len(odd)
        rows = {r.job_id: r for r in await store.find(client="odd", limit=100)}
        assert {k: rows[k].ref for k in odd} == odd
        assert store.careful_batches == 0  # the newline, the backslashes: the check's catch, no server refusal
        # a tab and the NULL marker alone pass the check: the server refuses, the careful rows follow
        tab = {"tab2": "x\ty", "ctl2": NULL}
        batch = [entry(k, "submitted", NOW_MS + 20 + i, first=True, ref=v, client="odd2") for i, (k, v) in enumerate(tab.items())]
        folded = store.fold([(e, _flat(f)) for e, f in batch])
        assert folded.entries is not None
        assert await store.write(folded, NOW_MS) == 2
        assert {r.job_id: r.ref for r in await store.find(client="odd2")} == tab
        assert store.careful_batches == 1
        assert rows["quote"].errors == {"undeliverable": 'err"034'} and rows["quote"].final_state == "undeliverable"
    finally:
        await store.close()


async def test_a_nul_in_an_event_lands_as_a_replacement_character_and_the_archive_goes_on(pg_dsn: str) -> None:
    """No PostgreSQL text holds a NUL, even escaped: an event carrying one (jobs are
    refused with one since; an older event may still hold one) is archived with
    U+FFFD in its place instead of failing its batch again and again."""
    store = PostgresHistory(pg_dsn)
    await store.migrate()
    try:
        batch = [entry("nul-a", "submitted", NOW_MS, first=True, ref="r\x00f", client="nul"),
                 entry("nul-b", "submitted", NOW_MS + 1, first=True, ref="fine", client="nul\x00")]
        assert await store.write(store.fold([(e, _flat(f)) for e, f in batch]), NOW_MS) == 2
        rows = {r.job_id: r for r in await store.find(client="nul", limit=10)}
        assert rows["nul-a"].ref == "r\ufffdf"
        assert [r.client for r in await store.find(client="nul\ufffd", limit=10)] == ["nul\ufffd"]
    finally:
        await store.close()


async def test_a_value_the_server_refuses_is_written_from_the_careful_fold(pg_dsn: str) -> None:
    """Python reads ``1_0`` as 10, PostgreSQL refuses it: the batch is written again, in the
    same call, from the careful fold; no row of the first try remains, none is lost."""
    store = PostgresHistory(pg_dsn)
    await store.migrate()
    try:
        batch = [entry(f"j{i}", "submitted", NOW_MS + i, first=True, client="srv") for i in range(20)]
        batch[7] = entry("j7", "submitted", NOW_MS + 7, first=True, client="srv", parts="1_0")
        batch.append(entry("j3", "delivered", NOW_MS + 90))
        folded = store.fold([(e, _flat(f)) for e, f in batch])
        assert folded.entries is not None  # the check lets it through: only the server can say
        assert await store.write(folded, NOW_MS) == 20
        assert store.careful_batches == 1
        rows = {r.job_id: r for r in await store.find(client="srv", limit=100)}
        assert sorted(rows) == sorted(f"j{i}" for i in range(20))
        assert rows["j7"].parts == 10 and rows["j3"].final_state == "delivered" and rows["j2"].parts == 1
    finally:
        await store.close()


async def test_a_folded_batch_again_or_from_a_store_without_its_cache_changes_nothing(pg_dsn: str) -> None:
    """The replays of a crash: the same rows COPYed again (known rows: UPDATE; a fresh
    store's COPY meets the existing rows: the merging upsert), and duplicate entries."""
    rng = random.Random(4)
    batch = _random_batch(rng, 300)
    batch += batch[:50]  # the same entries twice in one batch (read again after a reclaim)
    store = PostgresHistory(pg_dsn)
    await store.migrate()
    fresh = open_store(pg_dsn)
    try:
        await store.write(store.fold(batch), NOW_MS)
        before = await _rows(store)
        assert len(before) == 300
        await store.write(store.fold(batch), NOW_MS)
        await fresh.write(fresh.fold(batch), NOW_MS)  # type: ignore[attr-defined]
        await fresh.write(deltas_from_entries(batch), NOW_MS)  # and through the careful fold
        assert await _rows(store) == before
    finally:
        await store.close()
        await fresh.close()


async def _rows(store: PostgresHistory) -> list[Any]:
    pool = await store._get_pool()
    rows = await pool.fetch("SELECT * FROM messages ORDER BY job_id, day")
    return [{k: v for k, v in dict(r).items() if k != "updated_ms"} for r in rows]


async def test_new_rows_of_both_kinds_on_one_day_then_their_receipts_through_the_cache(pg_dsn: str) -> None:
    """A batch with a job's first event and another job's later event only (no row for
    either): both COPYed into the day's partition as one group, both remembered; the
    next batch's events of both are then UPDATEs found through the day cache."""
    store = PostgresHistory(pg_dsn)
    await store.migrate()
    try:
        first = [entry("mix-a", "submitted", NOW_MS, first=True, client="mix"),
                 entry("mix-b", "enroute", NOW_MS + 1, message_ids="m1")]
        assert await store.write(store.fold([(e, _flat(f)) for e, f in first]), NOW_MS) == 2
        assert {b"mix-a", b"mix-b"} <= set(store._job_days)
        later = [entry("mix-a", "delivered", NOW_MS + 5),
                 entry("mix-b", "submitted", NOW_MS - 3, first=True, client="mix"),
                 entry("mix-b", "delivered", NOW_MS + 9)]
        folded = store.fold([(e, _flat(f)) for e, f in later])
        assert folded.entries is not None
        assert await store.write(folded, NOW_MS + 10) == 2
        rows = {r.job_id: r for r in await store.find(client="mix", limit=10)}
        assert {k: (r.first_ms, r.submitted_ms, r.final_state, r.final_ms, r.events, r.message_ids)
                for k, r in rows.items()} == {
            "mix-a": (NOW_MS, NOW_MS, "delivered", NOW_MS + 5, {"submitted": NOW_MS, "delivered": NOW_MS + 5}, ""),
            "mix-b": (NOW_MS - 3, NOW_MS - 3, "delivered", NOW_MS + 9,
                      {"enroute": NOW_MS + 1, "submitted": NOW_MS - 3, "delivered": NOW_MS + 9}, "m1"),
        }
        assert store.careful_batches == 0 and len(await _rows(store)) == 2
    finally:
        await store.close()
