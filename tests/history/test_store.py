"""The history stores (SQLite and a real PostgreSQL): schema, merge rules, retention, queries."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

from engine.history import HistoryStore, deltas_from_entries, open_store, parse_history_url
from engine.history.migrations import migrations
from privacy_hooks.masking import keyed_hash
from tests.history.events import DAY_MS, SECRET, entry

NOW_MS = int(time.time() * 1000)


async def test_migrate_is_idempotent(store: HistoryStore) -> None:
    latest = max(m.version for m in migrations(store.dialect))
    assert await store.migrate() == latest  # second time (the fixture migrated once)
    assert await store.migrate() == latest


async def test_write_merges_a_job_into_one_row(store: HistoryStore) -> None:
    t = NOW_MS
    batch = [
        entry("j1", "submitted", t, first=True, ref="order-1", client="shop", message_ids="m1,m2", parts=2),
        entry("j1", "delivered", t + 2000, parts=2),
        entry("j2", "failed", t + 10, first=True, error="0x0000000b", client="shop"),
    ]
    assert await store.write(deltas_from_entries(batch), t + 5000) == 2
    row = await store.get("j1")
    assert row is not None
    assert (row.ref, row.client, row.kind, row.carrier, row.parts, row.encoding) == (
        "order-1", "shop", "transactional", "acme", 2, "gsm7")
    assert row.message_ids == "m1,m2"
    assert row.to_hash == keyed_hash(SECRET, "+4500112233") and row.to_mask == "+45******33"
    assert row.events == {"submitted": t, "delivered": t + 2000}
    assert (row.submitted_ms, row.final_state, row.final_ms) == (t, "delivered", t + 2000)
    assert row.retention_until == t // 1000 + 120 * 86_400
    failed = await store.get("j2")
    assert failed is not None and failed.final_state == "failed" and failed.errors == {"failed": "0x0000000b"}
    assert failed.submitted_ms is None
    assert await store.get("nope") is None


async def test_replaying_a_batch_changes_nothing(store: HistoryStore) -> None:
    t = NOW_MS
    batch = [entry(f"r{i}", "submitted", t + i, first=True, client="c") for i in range(50)]
    batch += [entry(f"r{i}", "undeliverable", t + 1000 + i, error="err:034") for i in range(0, 50, 2)]
    await store.write(deltas_from_entries(batch), t)
    first = [await store.get(f"r{i}") for i in range(50)]
    await store.write(deltas_from_entries(batch), t)  # the same batch again (reclaimed after a crash)
    await store.write(deltas_from_entries(batch[50:]), t)  # and only its receipts once more
    again = [await store.get(f"r{i}") for i in range(50)]
    assert again == first
    assert len(await store.find(client="c", limit=1000)) == 50


async def test_a_late_receipt_updates_the_old_row_and_keeps_its_description(store: HistoryStore) -> None:
    t0 = NOW_MS - 2 * DAY_MS - 3_600_000  # submitted two days and an hour ago: another partition
    await store.write(deltas_from_entries([entry("late", "submitted", t0, first=True, ref="x", client="acct")]), t0)
    # The receipt arrives today without client/kind/to_hash: nothing may be blanked.
    receipt = entry("late", "delivered", NOW_MS, ref="", message_ids="abc")
    await store.write(deltas_from_entries([receipt]), NOW_MS)
    row = await store.get("late")
    assert row is not None
    assert row.day == time.strftime("%Y-%m-%d", time.gmtime(t0 / 1000))
    assert (row.ref, row.client, row.to_mask, row.kind) == ("x", "acct", "+45******33", "transactional")
    assert (row.final_state, row.final_ms, row.submitted_ms) == ("delivered", NOW_MS, t0)
    assert row.message_ids == "abc"
    assert [r.job_id for r in await store.find(ref="x")] == ["late"]  # one row, not two


async def test_a_store_that_never_saw_the_rows_merges_a_replay_into_them(history_url: str) -> None:
    """A restarted archiver (its day cache empty) writes its pending entries again: no change, no second row."""
    t = NOW_MS
    batch = [entry(f"p{i}", "submitted", t + i, first=True, client="restart") for i in range(20)]
    batch += [entry(f"p{i}", "delivered", t + 500 + i) for i in range(0, 20, 2)]
    first, second = open_store(history_url), open_store(history_url)
    try:
        await first.migrate()
        await first.write(deltas_from_entries(batch), t)
        before = [await first.get(f"p{i}") for i in range(20)]
        await second.write(deltas_from_entries(batch), t)  # the first events again, and receipts
        await second.write(deltas_from_entries(batch[20:]), t)  # receipts only, rows not in its cache
        assert [await second.get(f"p{i}") for i in range(20)] == before
        assert len(await second.find(client="restart", limit=100)) == 20
    finally:
        await first.close()
        await second.close()


async def test_a_receipt_after_the_rows_erasure_writes_without_error_and_one_row(store: HistoryStore) -> None:
    from engine.history.store import LEDGER_KEEP_MS

    t = NOW_MS
    await store.write(deltas_from_entries([entry("gone", "submitted", t, first=True, to="+4555555555")]), t)
    assert await store.erase(to_hash=keyed_hash(SECRET, "+4555555555"), now_ms=t - 2 * LEDGER_KEEP_MS) == 1
    # While the job is in the erasure ledger, its receipt lands without error and brings no row back.
    await store.write(deltas_from_entries([entry("gone", "delivered", t + 50, ref="again")]), t + 50)
    assert await store.get("gone") is None and await store.find(ref="again") == []
    # Once the ledger forgot it (a day on): the store may remember the row's day; the
    # row is gone: the receipt must still land, as one row.
    await store.drop_expired(t / 1000, 10_000)
    await store.write(deltas_from_entries([entry("gone", "delivered", t + 100, ref="again")]), t + 100)
    row = await store.get("gone")
    assert row is not None and row.final_state == "delivered" and row.to_hash == ""
    assert [r.job_id for r in await store.find(ref="again")] == ["gone"]


async def test_a_first_event_archived_after_a_later_one_of_the_next_day_joins_its_row(store: HistoryStore) -> None:
    """Two archivers: the receipt (stamped just after midnight) committed before the submit (just before)."""
    midnight = (NOW_MS // DAY_MS) * DAY_MS
    await store.write(deltas_from_entries([entry("ooo", "delivered", midnight + 500, ref="late-first")]), NOW_MS)
    await store.write(
        deltas_from_entries([entry("ooo", "submitted", midnight - 500, first=True, ref="late-first", client="k")]), NOW_MS
    )
    rows = await store.find(ref="late-first")
    assert [r.job_id for r in rows] == ["ooo"]
    assert (rows[0].client, rows[0].final_state, rows[0].submitted_ms) == ("k", "delivered", midnight - 500)


async def test_find_by_each_key_newest_first(store: HistoryStore) -> None:
    t = NOW_MS
    batch = [
        entry("a", "submitted", t - 3000, first=True, ref="R", client="K", to="+4511111111"),
        entry("b", "submitted", t - 1000, first=True, ref="R", client="K", to="+4511111111"),
        entry("c", "submitted", t - 2000, first=True, ref="other", client="K", to="+4622222222"),
    ]
    await store.write(deltas_from_entries(batch), t)
    assert [r.job_id for r in await store.find(ref="R")] == ["b", "a"]
    assert [r.job_id for r in await store.find(client="K")] == ["b", "c", "a"]
    assert [r.job_id for r in await store.find(client="K", limit=1)] == ["b"]
    assert [r.job_id for r in await store.find(to_hash=keyed_hash(SECRET, "4511111111"))] == ["b", "a"]
    assert [r.job_id for r in await store.find(to_hash=keyed_hash(SECRET, "+4622222222"))] == ["c"]
    with pytest.raises(ValueError):
        await store.find(ref="R", client="K")


async def test_days_past_retention_are_dropped(store: HistoryStore) -> None:
    today = NOW_MS // DAY_MS
    batch = [entry(f"d{age}", "submitted", (today - age) * DAY_MS + 1000, first=True) for age in (0, 1, 119, 120, 121, 130)]
    await store.write(deltas_from_entries(batch), NOW_MS)
    now_s = today * 86_400 + 3600  # one hour into today (a fake now, not a wait)
    dropped = await store.drop_expired(now_s, retention_days=120)
    day = lambda age: time.strftime("%Y-%m-%d", time.gmtime((today - age) * 86_400))  # noqa: E731
    assert dropped == sorted([day(121), day(130)])
    kept = {age for age in (0, 1, 119, 120, 121, 130) if await store.get(f"d{age}") is not None}
    assert kept == {0, 1, 119, 120}
    assert await store.drop_expired(now_s, retention_days=120) == []
    # The next day, day 120 goes too.
    assert await store.drop_expired(now_s + 86_400, retention_days=120) == [day(120)]


async def test_erase_by_number_hash_and_by_client(store: HistoryStore) -> None:
    t = NOW_MS
    batch = [
        entry("e1", "submitted", t, first=True, to="+4533333333", client="A"),
        entry("e2", "submitted", t, first=True, to="+4544444444", client="A"),
        entry("e3", "submitted", t, first=True, to="+4544444444", client="B"),
    ]
    await store.write(deltas_from_entries(batch), t)
    assert await store.erase(to_hash=keyed_hash(SECRET, "+4544444444")) == 2
    assert await store.get("e2") is None and await store.get("e3") is None
    assert await store.erase(client="A") == 1
    assert await store.get("e1") is None


def test_url_parser() -> None:
    assert parse_history_url("postgresql://u@h:5/db").kind == "postgres"
    assert parse_history_url("postgres://h/db").dsn == "postgres://h/db"
    assert parse_history_url("sqlite:///var/lib/x.db").path == "/var/lib/x.db"
    assert parse_history_url("sqlite://rel/x.db").path == "rel/x.db"
    default = parse_history_url("")
    assert default.kind == "sqlite" and default.path.endswith("history.sqlite3")
    for bad in ("mysql://h/db", "sqlite://", "just-a-path"):
        with pytest.raises(ValueError):
            parse_history_url(bad)


async def test_producer_status_reads_redis_first_then_the_store(
    store: HistoryStore, redis_client: Any, key_prefix: str
) -> None:
    from engine.producer import Producer

    t = NOW_MS
    await store.write(deltas_from_entries([entry("s1", "submitted", t, first=True), entry("s1", "delivered", t + 9)]), t)
    producer = Producer(redis_client, key_prefix, history=store)
    cold = await producer.status("s1")
    assert cold is not None and cold["source"] == "history" and cold["state"] == "delivered"
    assert cold["to_mask"] == "+45******33"
    await redis_client.hset(f"{key_prefix}:job:s1", mapping={"state": "submitted", "carrier": "acme"})
    hot = await producer.status("s1")
    assert hot is not None and hot["source"] == "redis" and hot["state"] == "submitted"
    assert await producer.status("unknown") is None


async def test_postgres_upgrade_to_hash_index_and_room_for_hot_updates(pg_dsn: str) -> None:
    """Migrations 0002, 0003 and later on a store holding rows at version 1: rows kept, still found by number."""
    import asyncpg

    from engine.history.migrations import SCHEMA_VERSION_DDL

    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(SCHEMA_VERSION_DDL)
        await conn.execute(migrations("postgres")[0].sql)
        await conn.execute("INSERT INTO schema_version VALUES (1, '0001_init.sql', 0)")
        day = time.strftime("%Y%m%d", time.gmtime(NOW_MS / 1000))
        await conn.execute(
            f"CREATE TABLE messages_p{day} PARTITION OF messages FOR VALUES FROM ('{day}') TO ('{day}'::date + 1)"
        )
        h = keyed_hash(SECRET, "+4566666666")
        await conn.execute(
            "INSERT INTO messages (job_id, day, to_hash, first_ms, updated_ms) VALUES ('old', $1::text::date, $2, $3, 0)",
            day, h, NOW_MS,
        )
        s = open_store(pg_dsn)
        try:
            assert await s.migrate() == max(m.version for m in migrations("postgres"))  # 0002, 0003 and any later
            assert [r.job_id for r in await s.find(to_hash=h)] == ["old"]
        finally:
            await s.close()
        assert await conn.fetchval("SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
                                   "WHERE c.relname = 'messages_to_hash'") == "hash"
        assert await conn.fetchval(f"SELECT reloptions FROM pg_class WHERE relname = 'messages_p{day}'") == ["fillfactor=45"]
    finally:
        await conn.close()


async def test_postgres_upgrade_from_0007_with_rows_gives_every_partition_fillfactor_45(pg_dsn: str) -> None:
    """Migration 0008 on a store at version 7 holding rows in a fillfactor-50 partition (as
    the code before it made them): the rows stay and are found by every key, a receipt
    still merges into its row, and old and new partitions fill their pages to 45 %."""
    import asyncpg

    from engine.history.migrations import SCHEMA_VERSION_DDL

    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(SCHEMA_VERSION_DDL)
        for mig in migrations("postgres"):
            if mig.version <= 7:
                await conn.execute(mig.sql)
                await conn.execute("INSERT INTO schema_version VALUES ($1, $2, 0)", mig.version, mig.name)
        today = NOW_MS // DAY_MS
        name = f"messages_p{time.strftime('%Y%m%d', time.gmtime(today * 86_400))}"
        await conn.execute(
            f"CREATE TABLE {name} PARTITION OF messages FOR VALUES FROM ('{datetime.date(1970, 1, 1) + datetime.timedelta(days=today)}') "
            f"TO ('{datetime.date(1970, 1, 1) + datetime.timedelta(days=today + 1)}') WITH (fillfactor = 50)"
        )
        h = keyed_hash(SECRET, "+4577777777")
        old = open_store(pg_dsn)
        try:  # rows written before the upgrade, by the write path (into the existing partition)
            await old.write(deltas_from_entries(
                [entry(f"up{i}", "submitted", NOW_MS + i, first=True, ref="up-ref", client="up-client", to="+4577777777")
                 for i in range(50)]), NOW_MS)
        finally:
            await old.close()
        assert await conn.fetchval(f"SELECT count(*) FROM {name}") == 50
        s = open_store(pg_dsn)
        try:
            assert await s.migrate() == 8
            await s.write(deltas_from_entries([entry("up7", "delivered", NOW_MS + 3000)]), NOW_MS + 3000)
            row = await s.get("up7")
            assert row is not None and (row.final_state, row.ref, row.to_hash) == ("delivered", "up-ref", h)
            for key in ({"ref": "up-ref"}, {"to_hash": h}, {"client": "up-client"}):
                assert len(await s.find(**key)) == 50, key  # type: ignore[arg-type]
        finally:
            await s.close()
        options = dict(await conn.fetch(
            "SELECT c.relname, c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'messages'::regclass"))
        assert name in options and len(options) > 1  # the upgraded partition and those migrate() made ahead
        assert all(o == ["fillfactor=45"] for o in options.values()), options
    finally:
        await conn.close()


async def test_postgres_new_jobs_look_up_empty_later_days_with_no_probe(pg_dsn: str) -> None:
    """A batch of new jobs looks for their rows on the days after theirs (written first
    by another archiver). Those partitions are nearly always empty: the lookup's guard
    skips their probes then (each sorted the batch's ids and probed its key per id), and
    on a day with rows the guard reads one key of each partition, not a whole index."""
    import asyncpg

    from engine.history.postgres import _LOOKUP_LATER_JOINED, _PLAN_SETTINGS

    s = open_store(pg_dsn)
    await s.migrate()
    await s.write(deltas_from_entries([entry(f"t{i}", "submitted", NOW_MS + i, first=True) for i in range(500)]), NOW_MS)
    await s.close()
    day = datetime.date(1970, 1, 1) + datetime.timedelta(days=NOW_MS // DAY_MS)
    ids = "\x1f".join(f"t{i}" for i in range(500))

    async def plan(conn: asyncpg.Connection, lo: datetime.date, hi: datetime.date) -> tuple[str, int]:
        async with conn.transaction():
            await conn.execute(_PLAN_SETTINGS)
            text = "\n".join(r[0] for r in await conn.fetch(
                f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {_LOOKUP_LATER_JOINED}", ids, lo, hi))
            found = len(await conn.fetch(_LOOKUP_LATER_JOINED, ids, lo, hi))
        return text, found

    conn = await asyncpg.connect(pg_dsn)
    try:
        later, found = await plan(conn, day + datetime.timedelta(days=1), day + datetime.timedelta(days=4))
        _guard, probes = later.split("One-Time Filter", 1)
        assert found == 0 and "Bitmap" not in later, later
        probe_scans = [line for line in probes.splitlines() if "Scan" in line]
        assert probe_scans and all("never executed" in line for line in probe_scans), later
        # the same guard over a range holding today's 500 rows: one key read, then the probes
        here, found = await plan(conn, day, day + datetime.timedelta(days=2))
        assert found == 500 and "Bitmap" not in here.split("One-Time Filter")[0], here
    finally:
        await conn.close()


async def test_postgres_queries_and_the_receipt_update_probe_indexes(pg_dsn: str) -> None:
    """Erasure, export and `sendgate history` find rows through an index, and a batch's
    UPDATE of known rows probes the primary key even on a partition without statistics."""
    import asyncpg

    from engine.history.postgres import _PLAN_SETTINGS, _STAGE_DDL, _UPDATE, _partition_name

    s = open_store(pg_dsn)
    await s.migrate()
    await s.write(deltas_from_entries([entry("ix", "submitted", NOW_MS, first=True, ref="R", client="C")]), NOW_MS)
    many = deltas_from_entries([entry(f"n{i}", "submitted", NOW_MS + i, first=True) for i in range(3000)])
    await s.write(many, NOW_MS)
    await s.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("SET enable_seqscan = off")
        for where in ("job_id = 'ix'", "ref = 'R'", "client = 'C'", f"to_hash = '{keyed_hash(SECRET, '+4500112233')}'"):
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN SELECT * FROM messages WHERE {where}"))
            assert "Seq Scan" not in plan, plan
        await conn.execute("RESET enable_seqscan")
        await conn.execute(_STAGE_DDL)
        await conn.execute("ANALYZE messages")
        async with conn.transaction():
            # a batch of receipts of all of them staged: a hash join would look cheaper
            await conn.execute("INSERT INTO history_stage SELECT job_id, day, ref, client, kind, carrier, parts, encoding, "
                               "message_ids, to_hash, to_mask, first_ms, submitted_ms, final_state, final_ms, error, "
                               "events, errors, retention_until FROM messages")
            await conn.execute("ANALYZE history_stage")
            await conn.execute(_PLAN_SETTINGS)  # as every batch's transaction sets them
            table = _partition_name(NOW_MS // DAY_MS)
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {_UPDATE.format(table=table)}", NOW_MS))
        assert f"{table}_pkey" in plan and "Materialize" not in plan and "Hash" not in plan, plan
    finally:
        await conn.close()


async def test_postgres_general_path_probes_each_staged_row_by_its_own_id(pg_dsn: str) -> None:
    """The general path's move of staged rows onto their existing day probes each
    partition's primary key with the staged row's own job id. With the batch's ids as
    an array condition too, the planner probed every id for every staged row (n x n):
    30 s for 5,000 rows on a 3.5 M-row day, past the 60 s timeout on a larger one, and
    the archive retried it for ever (session 21's soak, at midnight)."""
    import asyncpg

    from engine.history.postgres import _MOVE_TO_EXISTING_DAY, _PLAN_SETTINGS, _STAGE_DDL

    s = open_store(pg_dsn)
    await s.migrate()
    await s.write(deltas_from_entries([entry(f"g{i}", "submitted", NOW_MS + i, first=True) for i in range(2000)]), NOW_MS)
    await s.close()
    day = datetime.date(1970, 1, 1) + datetime.timedelta(days=NOW_MS // DAY_MS)
    lo, hi = day - datetime.timedelta(days=2), day + datetime.timedelta(days=2)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(_STAGE_DDL)
        async with conn.transaction():
            # their receipts, staged on the next day: each must move back onto its row's day
            await conn.execute("INSERT INTO history_stage SELECT job_id, day + 1, ref, client, kind, carrier, parts, "
                               "encoding, message_ids, to_hash, to_mask, first_ms, submitted_ms, final_state, final_ms, "
                               "error, events, errors, retention_until FROM messages WHERE job_id LIKE 'g%'")
            await conn.execute(_PLAN_SETTINGS)  # as every batch's transaction sets them
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {_MOVE_TO_EXISTING_DAY}", lo, hi))
            status = await conn.execute(_MOVE_TO_EXISTING_DAY, lo, hi)
            moved = await conn.fetchval("SELECT count(*) FROM history_stage WHERE day = $1", day)
        conds = [line for line in plan.splitlines() if "Index Cond" in line]
        assert conds and all("job_id = s.job_id" in c and "ANY" not in c for c in conds), plan
        assert status == "UPDATE 2000" and moved == 2000
    finally:
        await conn.close()


async def test_job_ids_with_any_character_find_their_row(store: HistoryStore) -> None:
    """The PostgreSQL lookup joins ids on a control character; an id holding it takes the array path."""
    ids = ["plain", "sep\x1finside", "tab\tand,comma{}\"quote"]
    await store.write(deltas_from_entries([entry(j, "delivered", NOW_MS, ref="odd") for j in ids]), NOW_MS)
    fresh = open_store(parse_history_url_of(store))
    try:  # a store without the day cache: looks each row up
        await fresh.write(deltas_from_entries([entry(j, "expired", NOW_MS + 5) for j in ids]), NOW_MS)
        rows = await fresh.find(ref="odd")
        assert sorted(r.job_id for r in rows) == sorted(ids)
        assert all(r.events == {"delivered": NOW_MS, "expired": NOW_MS + 5} for r in rows)
    finally:
        await fresh.close()


def parse_history_url_of(store: HistoryStore) -> str:
    dsn = getattr(store, "dsn", None)
    return str(dsn) if dsn is not None else f"sqlite://{store.path}"  # type: ignore[attr-defined]
