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
    PYTHONPATH=/path/to/other/tree python -m bench.history   # the same on another tree
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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
            b"id": f"bench-{uuid.UUID(int=n).hex}".encode(), b"ref": f"web-{n % 1000}".encode(),
            b"event": b"submitted", b"carrier": b"sim", b"parts": b"1", b"message_ids": b"1a2b3c4d",
            b"error": b"", b"ts": str(t + i).encode(), b"client": f"shop{n % 20}".encode(),
            b"kind": b"transactional", b"to_hash": keyed_hash("bench", number).encode(),
            b"to_mask": mask_number(number).encode(), b"encoding": b"gsm7",
            b"retention_until": str(t // 1000 + 120 * _DAY_S).encode(),
        }))
        if batch_no:
            m = n - half
            out.append((b"1-2", {
                b"id": f"bench-{uuid.UUID(int=m).hex}".encode(), b"ref": f"web-{m % 1000}".encode(),
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
    t = int(time.time() * 1000)
    batch_no = 0
    for _ in range(args.prefill // (BATCH // 2)):
        await store.write(fold(raw(events(batch_no, t))), t)
        batch_no += 1
    await probe.execute("CHECKPOINT")  # every run starts from the same WAL state
    wall, server, wal = [], [], []
    for i in range(args.batches + 2):
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
    sizes = await probe.fetchrow(
        "SELECT sum(pg_relation_size(c.oid))::float AS heap, sum(pg_indexes_size(c.oid))::float AS idx, "
        "(SELECT sum(n_tup_hot_upd)::float / nullif(sum(n_tup_upd), 0) FROM pg_stat_user_tables "
        " WHERE relname LIKE 'messages_p%') AS hot "
        "FROM pg_class c WHERE c.relname LIKE 'messages_p%' AND c.relkind = 'r'"
    )
    await pool.release(probe)
    out["store"] = {
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
    name = f"sgbench_{uuid.uuid4().hex[:10]}"
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
    p.add_argument("--batches", type=int, default=30, help="store writes measured")
    p.add_argument("--rounds", type=int, default=15, help="archiver rounds measured")
    p.add_argument("--backlog", type=int, default=10, help="batches the archiver drains at the end")
    p.add_argument("--ddl", action="append", default=[],
                   help="SQL run after the migrations (repeatable; {today} = today's partition): schema experiments")
    p.add_argument("--pattern", choices=("split", "paired"), default="split",
                   help="receipts in the batch after their submit (split, default) or in the same one (paired)")
    p.add_argument("--json", help="also write the figures there")
    args = p.parse_args()
    PATTERN["value"] = args.pattern
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
