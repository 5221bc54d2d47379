"""Micro benchmarks of the history archiver's write path (engine/history).

- folding 5,000 stream entries into per-job deltas and staging rows: the
  Python CPU the engine spends per event before the COPY;
- writing batches of 5,000 events into PostgreSQL (the local server,
  ``SENDGATE_BENCH_PG`` or postgresql://postgres@127.0.0.1:5432, a database of
  its own): steady state, half new jobs (submitted) and half receipts of the
  previous batch's jobs (updates);
- one archiver round from Redis (XREADGROUP + fold + write + XACK), with the
  engine-process CPU per event in ``extra_info``.

Targets (issue "Message history out of Redis"): >= 50,000 events/s into the
local PostgreSQL, <= 5 µs of engine CPU per event.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from engine.history.postgres import PostgresHistory
from privacy_hooks.masking import keyed_hash, mask_number

BATCH = 5000
PG = os.environ.get("SENDGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _events(batch_no: int, t: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Batch ``batch_no``: 2,500 new jobs submitted, 2,500 receipts of the previous batch's jobs."""
    half = BATCH // 2
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    h, m = keyed_hash("bench", "+4512345678").encode(), mask_number("+4512345678").encode()
    for i in range(half):
        n = batch_no * half + i
        out.append((b"1-1", {
            b"id": f"bench-{n}".encode(), b"ref": b"web-42", b"event": b"submitted", b"carrier": b"sim",
            b"parts": b"1", b"message_ids": b"1a2b3c4d", b"error": b"", b"ts": str(t + i).encode(),
            b"client": b"shop", b"kind": b"transactional", b"to_hash": h, b"to_mask": m, b"encoding": b"gsm7",
            b"retention_until": str(t // 1000 + 120 * 86_400).encode(),
        }))
        if batch_no:
            out.append((b"1-2", {
                b"id": f"bench-{n - half}".encode(), b"ref": b"web-42", b"event": b"delivered", b"carrier": b"sim",
                b"parts": b"1", b"message_ids": b"1a2b3c4d", b"error": b"", b"ts": str(t + i + 3000).encode(),
            }))
    return out


def _raw(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[bytes, list[bytes]]]:
    """As the archiver reads them: hiredis' flat field lists, no dict."""
    return [(eid, [x for kv in f.items() for x in kv]) for eid, f in entries]


def test_fold_5000_events_into_rows(benchmark: Any) -> None:
    """Python CPU per event of stream entries → COPY text rows, one per job (divide by 5,000)."""
    entries = _raw(_events(1, int(time.time() * 1000)))
    store = PostgresHistory("postgresql://unused")

    def fold() -> int:
        return len(store.fold(entries).jobs)

    assert benchmark(fold) == BATCH


@pytest.fixture(scope="module")
def pg_bench() -> Iterator[tuple[asyncio.AbstractEventLoop, PostgresHistory]]:
    asyncpg = pytest.importorskip("asyncpg")
    loop = asyncio.new_event_loop()
    name = f"sgbench_{uuid.uuid4().hex[:10]}"
    base = PG.rsplit("/", 1)[0]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        loop.run_until_complete(admin(f"CREATE DATABASE {name}"))
    except (OSError, asyncpg.PostgresError) as err:
        loop.close()
        pytest.skip(f"no PostgreSQL at {PG}: {err}")
    store = PostgresHistory(f"{base}/{name}")
    loop.run_until_complete(store.migrate())
    try:
        yield loop, store
    finally:
        loop.run_until_complete(store.close())
        loop.run_until_complete(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        loop.close()


def test_write_5000_events_into_postgres(benchmark: Any, pg_bench: tuple[asyncio.AbstractEventLoop, PostgresHistory]) -> None:
    """One transaction per 5,000 events (2,500 inserts + 2,500 merges); events/s = 5,000 / mean."""
    loop, store = pg_bench
    t = int(time.time() * 1000)
    batches = iter(range(10_000))
    loop.run_until_complete(store.write(store.fold(_raw(_events(next(batches), t))), t))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (store.fold(_raw(_events(next(batches), t))),), {}

    def write(deltas: Any) -> int:
        return loop.run_until_complete(store.write(deltas, t))

    assert benchmark.pedantic(write, setup=setup, rounds=30, warmup_rounds=2) == BATCH
    benchmark.extra_info["events_per_s"] = round(BATCH / benchmark.stats.stats.mean)


def test_archiver_round_of_5000_events(
    benchmark: Any, redis_url: str, pg_bench: tuple[asyncio.AbstractEventLoop, PostgresHistory]
) -> None:
    """XREADGROUP 5,000 + fold + write + XACK; extra_info: engine-process CPU µs per event."""
    from redis.asyncio import Redis

    from engine.history.archiver import Archiver

    loop, store = pg_bench
    stream = f"sgbench-{uuid.uuid4().hex[:8]}:events"
    redis = Redis.from_url(redis_url)
    # One round = one batch read, folded, written and acked: no read-ahead (which would
    # take the next round's batch early; bench/history.py measures the loop with it).
    archiver = Archiver(redis, store, [stream], consumer="bench", batch_size=BATCH, block_ms=1, read_ahead=False)
    loop.run_until_complete(archiver.ensure_groups())
    loop.run_until_complete(archiver.archive_once())  # own pending: none
    t = int(time.time() * 1000)
    batches = iter(range(100_000, 200_000))
    cpu: list[float] = []

    async def push(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        pipe = redis.pipeline(transaction=False)
        for _, fields in entries:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        await pipe.execute()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        loop.run_until_complete(push(_events(next(batches), t)))
        return (), {}

    def round_() -> int:
        c0 = time.process_time()
        n = loop.run_until_complete(archiver.archive_once())
        cpu.append(time.process_time() - c0)
        return n

    try:
        assert benchmark.pedantic(round_, setup=setup, rounds=15, warmup_rounds=1) == BATCH
    finally:
        loop.run_until_complete(redis.delete(stream))
        loop.run_until_complete(redis.aclose())
    cpu.sort()
    benchmark.extra_info["engine_cpu_us_per_event_median"] = round(cpu[len(cpu) // 2] / BATCH * 1e6, 2)
    benchmark.extra_info["events_per_s"] = round(BATCH / benchmark.stats.stats.mean)
