"""The history archiver's write path, measured step by step (``python -m bench.history``).

Why a script next to bench/micro/test_history.py: the targets (>= 50,000
events/s into the local PostgreSQL, <= 5 µs of engine CPU per event) need
more than a mean: the PostgreSQL backend's own CPU per batch (from
/proc/<pid>/stat, so a loaded machine inflates it less than wall time), the
WAL written, medians of many batches, and the archiver's whole loop with its
reads overlapping the database's commits.

The steady state of the issue: batches of 5,000 events, half the ``submitted``
of new jobs (with the first-event fields) and half the ``delivered`` of the
previous batch's jobs. Everything goes to a fresh database created on the
server of ``--pg`` (default the machine's, postgresql://postgres@127.0.0.1:5432)
and dropped at the end, and to a stream of its own in ``--redis`` (default
``REDIS_URL``); nothing else is touched.

    python -m bench.history                          # store writes + archiver rounds
    python -m bench.history --prefill 200000 --batches 40 --json out.json
    cd /path/to/other/tree && python -m bench.history   # the same on another tree (the cwd comes
                                                        # first on sys.path: PYTHONPATH alone does not do it)

Per job (a job: one COPYed row with ``--pattern paired``, a row and its receipt's
UPDATE with ``split``): the CPU of the whole server (backends, checkpointer, WAL
writer: meaningful on a server of the bench's own), WAL bytes, records and
full-page images, checkpoints. ``--private-pg stock|tuned`` starts that server
(bench/pg_server.py; durable), ``--pg-set`` changes one of its settings,
``--prefill-sql N`` gives it a big day fast, ``--statements`` lists where the
backends' time went (pg_stat_statements):

    python -m bench.history --private-pg stock --pg-set max_wal_size=32MB --what store \
        --pattern split --prefill-sql 600000 --prefill 10000 --batches 40
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from privacy_hooks.masking import keyed_hash, mask_number

BATCH = 5000
_DAY_S = 86_400


#: "split": a job's receipt comes in the batch after its submit (an UPDATE of a known
#: row: receipts that take longer than a batch); "paired": in the same batch, as when
#: receipts come within the archiver's settle time (one COPYed row, no UPDATE).
PATTERN = {"value": "split"}
#: job ids: "seq" (``bench-<n as 32 hex digits>``: each new id sorts after the last, a
#: primary key filled at its right edge) or "random" (a uuid4-like id per job, as a
#: client's own ids may be: every insert lands on a random leaf of the key's index).
IDS = {"value": "seq"}


def _job_id(n: int) -> bytes:
    if IDS["value"] == "random":
        return f"bench-{hashlib.md5(n.to_bytes(8, 'little')).hexdigest()}".encode()
    return f"bench-{uuid.UUID(int=n).hex}".encode()


def events(batch_no: int, t: int, size: int = BATCH) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Batch ``batch_no``: ``size/2`` new jobs submitted, as many receipts of the previous
    batch's jobs (``PATTERN`` split) or of this batch's (paired)."""
    if PATTERN["value"] == "paired":  # this batch's jobs, each submitted then delivered
        subs = [e for e in _events_split(batch_no, t, size) if e[1][b"event"] == b"submitted"]
        dels = [e for e in _events_split(batch_no + 1, t, size) if e[1][b"event"] == b"delivered"]
        return [e for pair in zip(subs, dels, strict=True) for e in pair]
    return _events_split(batch_no, t, size)


def _events_split(batch_no: int, t: int, size: int = BATCH) -> list[tuple[bytes, dict[bytes, bytes]]]:
    half = size // 2
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    for i in range(half):
        n = batch_no * half + i
        number = f"+45{20_000_000 + n % 5_000_000}"  # many subjects: the to_hash index sees random keys
        out.append((b"1-1", {
            b"id": _job_id(n), b"ref": f"web-{n % 1000}".encode(),
            b"event": b"submitted", b"carrier": b"sim", b"parts": b"1", b"message_ids": b"1a2b3c4d",
            b"error": b"", b"ts": str(t + i).encode(), b"client": f"shop{n % 20}".encode(),
            b"kind": b"transactional", b"to_hash": keyed_hash("bench", number).encode(),
            b"to_mask": mask_number(number).encode(), b"encoding": b"gsm7",
            b"retention_until": str(t // 1000 + 120 * _DAY_S).encode(),
        }))
        if batch_no:
            m = n - half
            out.append((b"1-2", {
                b"id": _job_id(m), b"ref": f"web-{m % 1000}".encode(),
                b"event": b"delivered", b"carrier": b"sim", b"parts": b"1", b"message_ids": b"1a2b3c4d",
                b"error": b"", b"ts": str(t + i + 3000).encode(),
            }))
    return out


def raw(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[bytes, list[bytes]]]:
    """Entries as the archiver reads them: hiredis' flat ``[name, value, …]`` lists."""
    return [(eid, [x for kv in f.items() for x in kv]) for eid, f in entries]


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 2) if xs else 0.0


class BackendCpu:
    """CPU ms of PostgreSQL backends (local server only; 0 when /proc is not readable)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.tick_ms = 1000 / os.sysconf("SC_CLK_TCK")

    def ms(self) -> float:
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                return 0.0
            total += int(fields[11]) + int(fields[12])
        return total * self.tick_ms


def server_pids(backend_pid: int) -> list[int]:
    """Every process of the server a backend belongs to: the postmaster's children
    (backends, checkpointer, WAL writer, background writer…). Only meaningful on a
    server of the bench's own (``--private-pg``): on a shared one it counts others' work."""
    try:
        with open(f"/proc/{backend_pid}/stat") as f:
            postmaster = int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return []
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        pids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return pids


# Rows like the bench's jobs (delivered), made by the server: ids that sort before the bench's.
_PREFILL_SQL = """
INSERT INTO messages (job_id, day, ref, client, kind, carrier, parts, encoding, message_ids, to_hash, to_mask,
    first_ms, submitted_ms, final_state, final_ms, events, retention_until, updated_ms)
SELECT 'pre-' || lpad(i::text, 10, '0'), (to_timestamp($3::bigint / 1000) AT TIME ZONE 'UTC')::date, 'web-' || i % 1000,
    'shop' || i % 20, 'transactional', 'sim', 1, 'gsm7', '1a2b3c4d', md5(i::text), '+45******' || lpad((i % 100)::text, 2, '0'),
    $3::bigint, $3::bigint, 'delivered', $3::bigint + 3000,
    jsonb_build_object('submitted', $3::bigint, 'delivered', $3::bigint + 3000), $3::bigint / 1000 + 10368000, $3::bigint
FROM generate_series($1::int + 1, $2::int) AS i
"""
_WAL_STATS = (
    "SELECT wal_records, wal_fpi, wal_bytes::float8, "
    "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) FROM pg_stat_wal"
)


async def _admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def bench_store(store: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Store writes alone: wall ms, backend CPU ms and WAL bytes per batch of 5,000 events."""
    from engine.history import deltas_from_entries

    fold = getattr(store, "fold", deltas_from_entries)  # (a tree before the COPY rows: deltas)
    pool = await store._get_pool()
    conns = [await pool.acquire() for _ in range(store.max_connections)]
    pids = [await c.fetchval("SELECT pg_backend_pid()") for c in conns]
    probe = conns[0]
    for c in conns[1:]:
        await pool.release(c)
    cpu = BackendCpu(pids)
    all_cpu = BackendCpu(server_pids(pids[0]))
    out["server_processes"] = len(all_cpu.pids)
    t = int(time.time() * 1000)
    batch_no = 0
    if args.prefill_sql:  # a big day fast: rows made by the server (random number hashes, as the soak's)
        import asyncpg

        filler = await asyncpg.connect(store.dsn, command_timeout=None)  # minutes on a slow box: no pool timeout
        try:
            for start in range(0, args.prefill_sql, 200_000):
                await filler.execute(_PREFILL_SQL, start, min(start + 200_000, args.prefill_sql), t)
            await filler.execute("ANALYZE messages")
        finally:
            await filler.close()
    for _ in range(args.prefill // (BATCH // 2)):
        await store.write(fold(raw(events(batch_no, t))), t)
        batch_no += 1
    await probe.execute("CHECKPOINT")  # every run starts from the same WAL state
    if args.statements:
        await probe.execute("SELECT pg_stat_statements_reset()")
    wall, server, wal = [], [], []
    totals: dict[str, float] = {}
    for i in range(args.batches + 2):
        if i == 2:  # the whole measured span, checkpoints included (the server's own processes too)
            await probe.execute("SELECT pg_stat_clear_snapshot()")
            stats0 = await probe.fetchrow(_WAL_STATS)
            span0 = (cpu.ms(), all_cpu.ms(), time.perf_counter())
        deltas = fold(raw(events(batch_no, t)))  # as the archiver hands it over
        batch_no += 1
        lsn = await probe.fetchval("SELECT pg_current_wal_lsn()")
        c0, w0 = cpu.ms(), time.perf_counter()
        await store.write(deltas, t)
        w1, c1 = time.perf_counter(), cpu.ms()
        written = await probe.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
        if i >= 2:  # warm-up
            wall.append((w1 - w0) * 1000)
            server.append(c1 - c0)
            wal.append(float(written) / 1e6)
    await probe.execute("SELECT pg_stat_clear_snapshot()")
    stats1 = await probe.fetchrow(_WAL_STATS)
    jobs = args.batches * (BATCH // 2)  # a job: its row COPYed (paired), or COPYed then UPDATEd (split)
    totals = {
        "jobs": jobs,
        "backend_cpu_us_per_job": round((cpu.ms() - span0[0]) * 1000 / jobs, 2),
        "server_cpu_us_per_job": round((all_cpu.ms() - span0[1]) * 1000 / jobs, 2),
        "wal_bytes_per_job": round((stats1[2] - stats0[2]) / jobs),
        "wal_records_per_job": round((stats1[0] - stats0[0]) / jobs, 2),
        "fpi_per_job": round((stats1[1] - stats0[1]) / jobs, 3),
        "checkpoints": int(stats1[3] - stats0[3]),
        "wall_s": round(time.perf_counter() - span0[2], 1),
    }
    sizes = await probe.fetchrow(
        "SELECT sum(pg_relation_size(c.oid))::float AS heap, sum(pg_indexes_size(c.oid))::float AS idx, "
        "(SELECT sum(n_tup_hot_upd)::float / nullif(sum(n_tup_upd), 0) FROM pg_stat_user_tables "
        " WHERE relname LIKE 'messages_p%') AS hot "
        "FROM pg_class c WHERE c.relname LIKE 'messages_p%' AND c.relkind = 'r'"
    )
    out["server"] = {r[0]: r[1] for r in await probe.fetch(
        "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name",
        ["shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression", "synchronous_commit",
         "full_page_writes", "fsync", "server_version"])}
    if args.statements:  # where the backends' time went, per job (pg_stat_statements' execution time)
        out["statements"] = [
            {"query": r[0][:90], "calls": r[1], "ms_per_call": round(r[2] / r[1], 3),
             "us_per_job": round(r[2] * 1000 / (args.batches * (BATCH // 2)), 2)}
            for r in await probe.fetch(
                "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time FROM pg_stat_statements "
                "ORDER BY total_exec_time DESC LIMIT 12")
        ]
    await pool.release(probe)
    out["store"] = {
        **totals,
        "write_ms_median": _median(wall), "write_ms_min": round(min(wall), 2),
        "events_per_s_median": round(BATCH / statistics.median(wall) * 1000),
        "backend_cpu_ms_median": _median(server), "wal_mb_median": _median(wal),
        "rows": batch_no * BATCH // 2, "heap_mb": round(sizes["heap"] / 1e6, 1),
        "indexes_mb": round(sizes["idx"] / 1e6, 1), "hot_update_share": round(sizes["hot"] or 0.0, 3),
    }


async def bench_archiver(store: Any, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Archiver rounds from Redis: engine-process CPU per event (process_time), and the
    throughput of its loop over a backlog (reads overlapping commits where it does)."""
    from redis.asyncio import Redis

    from engine.history.archiver import Archiver

    redis = Redis.from_url(args.redis)
    stream = f"sgbench-{uuid.uuid4().hex[:8]}:events"
    archiver = Archiver(redis, store, [stream], consumer="bench", batch_size=BATCH, block_ms=1)
    archiver.read_ahead = False  # one round = one batch read, folded, written, acked
    await archiver.ensure_groups()
    await archiver.archive_once()  # own pending: none
    t = int(time.time() * 1000)
    batch_no = 1_000_000

    async def push(n: int) -> None:
        nonlocal batch_no
        for _ in range(n):
            pipe = redis.pipeline(transaction=False)
            for _, fields in events(batch_no, t):
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            await pipe.execute()
            batch_no += 1

    try:
        rounds: list[float] = []
        for i in range(args.rounds + 1):
            await push(1)
            c0 = time.process_time()
            taken = await archiver.archive_once()
            if i:
                rounds.append((time.process_time() - c0) / taken * 1e6)
        await push(args.backlog)
        archiver.read_ahead = True  # the loop as it runs: the next batch read while one commits
        c0, w0 = time.process_time(), time.perf_counter()
        drained = await archiver.drain()
        w1, c1 = time.perf_counter(), time.process_time()
        out["archiver"] = {
            "round_cpu_us_per_event_median": _median(rounds), "round_cpu_us_per_event_min": round(min(rounds), 2),
            "backlog_events": drained, "backlog_events_per_s": round(drained / (w1 - w0)),
            "backlog_cpu_us_per_event": round((c1 - c0) / max(drained, 1) * 1e6, 2),
        }
    finally:
        await redis.delete(stream)
        await redis.aclose()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from engine.history.postgres import PostgresHistory

    gc.set_threshold(50_000)  # as the engine runs
    name = f"{args.db_prefix}{uuid.uuid4().hex[:10]}"
    await _admin(f"{args.pg}/postgres", f"CREATE DATABASE {name}")
    out: dict[str, Any] = {"tree": os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["engine"].__file__ or "")))}
    store = PostgresHistory(f"{args.pg}/{name}")
    try:
        await store.migrate()
        for sql in args.ddl:  # experiments: schema variants applied after the migrations
            await _admin(f"{args.pg}/{name}", sql.replace("{today}", f"messages_p{time.strftime('%Y%m%d', time.gmtime())}"))
        steps: list[Callable[[Any, argparse.Namespace, dict[str, Any]], Awaitable[None]]] = []
        if args.what in ("all", "store"):
            steps.append(bench_store)
        if args.what in ("all", "archiver"):
            steps.append(bench_archiver)
        for step in steps:
            await step(store, args, out)
    except BaseException:
        if store._pool is not None:  # connections a failed step still holds: Pool.close() would wait for them
            store._pool.terminate()
            store._pool = None
        raise
    finally:
        await store.close()
        await _admin(f"{args.pg}/postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return out


def cli() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n")[0])
    p.add_argument("--pg", default=os.environ.get("SENDGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432"),
                   help="server URL without database (a database is created and dropped)")
    p.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--what", choices=("all", "store", "archiver"), default="all")
    p.add_argument("--prefill", type=int, default=100_000, help="rows written before measuring")
    p.add_argument("--prefill-sql", type=int, default=0,
                   help="rows the server makes in today's partition before --prefill (fast: a big day)")
    p.add_argument("--batches", type=int, default=30, help="store writes measured")
    p.add_argument("--rounds", type=int, default=15, help="archiver rounds measured")
    p.add_argument("--backlog", type=int, default=10, help="batches the archiver drains at the end")
    p.add_argument("--ddl", action="append", default=[],
                   help="SQL run after the migrations (repeatable; {today} = today's partition): schema experiments")
    p.add_argument("--pattern", choices=("split", "paired"), default="split",
                   help="receipts in the batch after their submit (split, default) or in the same one (paired)")
    p.add_argument("--ids", choices=("seq", "random"), default="seq",
                   help="job ids that sort in the order they come (seq, default) or at random (a client's uuid4s)")
    p.add_argument("--private-pg", choices=("stock", "tuned"),
                   help="start a private PostgreSQL (durable) with PostgreSQL's stock settings or the guide's "
                        "tuned ones (bench/pg_server.py), instead of --pg; stopped at the end")
    p.add_argument("--pg-set", action="append", default=[], metavar="NAME=VALUE",
                   help="with --private-pg: a server setting more (repeatable)")
    p.add_argument("--statements", action="store_true",
                   help="with --private-pg: pg_stat_statements loaded, the top statements' time per job")
    p.add_argument("--db-prefix", default="sgbench_", help="the bench database's name: this and 10 hex digits")
    p.add_argument("--json", help="also write the figures there")
    args = p.parse_args()
    PATTERN["value"] = args.pattern
    IDS["value"] = args.ids
    server = None
    if args.private_pg:
        from bench.pg_server import STOCK, TUNED, start_private_server

        settings = dict(STOCK if args.private_pg == "stock" else TUNED)
        settings.update(kv.split("=", 1) for kv in args.pg_set)
        if args.statements:
            settings["shared_preload_libraries"] = "pg_stat_statements"
            args.ddl.insert(0, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        server, why = start_private_server(settings)
        if server is None:
            p.error(f"--private-pg: {why}")
        args.pg = server.dsn("").rsplit("/", 1)[0]
    try:
        _run(args)
    finally:
        if server is not None:
            server.destroy()


def _run(args: argparse.Namespace) -> None:
    if os.environ.get("SENDGATE_LOOP", "uvloop") != "asyncio":  # as the archiver's process runs
        import uvloop

        out = uvloop.run(main(args))
    else:
        out = asyncio.run(main(args))
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    cli()
