"""``sendgate bench --duration S --rate R``: a steady load for S seconds, reported per interval.

The same processes as the load run (bench/e2e.py: Redis, the SMSC simulator,
``--workers`` engines, all on 127.0.0.1), but jobs are produced at ``--rate``
jobs/s for ``--duration`` seconds (a paced producer: one pipelined XADD per
tick for the jobs due by then, no task per message) and the harness keeps no
per-job arrays of the run's length: a job is tracked only while it is in
flight (pushed, not yet submitted; submitted, not yet final), so a 30-minute
run needs no more memory than a 30-second one.

Every ``--interval`` seconds (60 by default) one row:

* ``engine_rss_mb``: resident set of each engine now (VmRSS, not the peak);
* ``redis_used_memory_mb``: ``INFO memory`` used_memory;
* ``done``: jobs that got their final event (or their dead letter) in the interval;
* ``receipt_latency_ms``: final event ``ts`` minus ``submitted`` ``ts`` of the
  jobs final in the interval (with receipts), ``submit_latency_ms``: ``submitted``
  ``ts`` minus the job's stream entry id (push → submitted), each p50/p95/p99;
* ``engine_us_per_msg`` / ``redis_us_per_msg``: CPU of the engines (/proc) and
  of Redis (``INFO cpu``) over the interval ÷ ``done``.

With ``--history postgresql://…`` each row also has ``archive`` (bench/archive_probe.py:
events archived, lag and how far behind, the archiver child's and the PostgreSQL
backends' CPU per event and in all, Redis' XREADGROUP/XACK usec per event, rows
inserted/updated; on Redis 6.2 and 7), and the result the same over the whole run, taken
once the archive caught up (up to ``--drain-s`` + 120 s more; ``caught_up`` false when it
did not).

At the end (every job final, or ``--drain-s`` after the last push): ``lost``
(pushed, neither final nor dead-lettered) and ``duplicates`` (submitted more
than once), which must be 0. No phone number or message text is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.e2e import (
    FINAL_EVENTS,
    LIVE_CHILDREN,
    BenchOptions,
    Children,
    archiver_child,
    child_env,
    engine_toml,
    event_id_kind_ts,
    free_port,
    job_fields,
    lean_collector,
    percentiles,
    proc_cpu_s,
    redis_build,
    redis_cpu_s,
    run_job_index,
    wait_listening,
    wait_ready,
)
from bench.raw_push import RawPusher
from engine.keys import Keys, shard_keys, shard_of

__all__ = ["SoakOptions", "Tracker", "format_soak", "proc_rss_mb", "run_soak"]

_FINAL_B = frozenset(e.encode() for e in FINAL_EVENTS)
_SUBMITTED_B = b"submitted"


@dataclass(frozen=True)
class SoakOptions:
    duration_s: float
    interval_s: float = 60.0
    drain_s: float = 60.0  # after the last push, how long to wait for the last final events


def proc_rss_mb(pid: int) -> float:
    """Resident set size now (VmRSS) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


class Tracker:
    """Jobs in flight only: ``pushed`` (job number → entry ms) until ``submitted``,
    ``submitted`` (→ its ts) until final. One byte per job pushed for the
    duplicate and final checks (18 MB for 30 minutes at 10k/s)."""

    def __init__(self, capacity: int, dlr: bool) -> None:
        self.dlr = dlr
        self.pushed: dict[int, int] = {}
        self.submitted: dict[int, int] = {}
        self.submits = bytearray(capacity)
        self.final = bytearray(capacity)
        self.invalid = bytearray(capacity)  # produced as a dead letter by design
        self.count_pushed = 0
        self.count_final = 0
        self.count_dead = 0
        self.foreign = 0
        # the current interval's samples
        self.done = 0
        self.receipt_lat: list[int] = []
        self.submit_lat: list[int] = []

    def on_event(self, i: int, event: bytes, ts: int) -> None:
        if event == _SUBMITTED_B:
            if self.submits[i]:  # submitted again: a duplicate (counted at the end)
                self.submits[i] = min(255, self.submits[i] + 1)
                return
            self.submits[i] = 1
            entry_ms = self.pushed.pop(i, None)
            if entry_ms is not None:  # (None: its event was read before the XADD's reply)
                self.submit_lat.append(ts - entry_ms)
            if self.dlr:
                self.submitted[i] = ts
            else:
                self._final(i)
        elif event in _FINAL_B and not self.final[i]:
            sub = self.submitted.pop(i, None)
            self.pushed.pop(i, None)
            if sub is not None:
                self.receipt_lat.append(ts - sub)
            self._final(i)

    def on_dead(self, i: int) -> None:
        if not self.final[i]:
            self.pushed.pop(i, None)
            self.count_dead += 1
            self.final[i] = 2
            self.done += 1

    def _final(self, i: int) -> None:
        self.final[i] = 1
        self.count_final += 1
        self.done += 1

    def take_interval(self) -> tuple[int, list[int], list[int]]:
        out = (self.done, self.receipt_lat, self.submit_lat)
        self.done, self.receipt_lat, self.submit_lat = 0, [], []
        return out


async def _produce(redis: Any, streams: list[str], o: BenchOptions, s: SoakOptions, run: str, t: Tracker) -> None:
    """Paced: every ~5 ms, one pipelined XADD of the jobs due by then, each to its
    shard's lane (crc32(id) mod shards, engine.keys.shard_of; one stream: shard 0),
    on a connection of its own packed by hiredis (bench/raw_push.py: the producer's
    CPU is taken from the engines it measures)."""
    rng = random.Random(o.seed)
    kinds = list(o.mix)
    weights = [o.mix[k] for k in kinds]
    total = len(t.submits)
    start = time.monotonic()
    sent = 0
    pusher = await RawPusher.connect(redis)
    try:
        while sent < total:
            due = min(total, int((time.monotonic() - start) * o.rate))
            while sent < due:
                hi = min(due, sent + 1000)
                chosen = rng.choices(kinds, weights, k=hi - sent)
                batch: list[tuple[str, dict[str, str]]] = []
                for i, kind in zip(range(sent, hi), chosen, strict=True):
                    fields = job_fields(run, i, kind, o.dlr, rng, o.marketing > 0)
                    batch.append((streams[shard_of(fields["id"], len(streams))] if len(streams) > 1 else streams[0], fields))
                    if kind == "invalid":
                        t.invalid[i] = 1
                ids = await pusher.xadd_many(batch)
                pushed = t.pushed
                for i, eid in zip(range(sent, hi), ids, strict=True):
                    if not t.final[i] and not t.submits[i]:
                        pushed[i] = int(eid.split(b"-", 1)[0])
                t.count_pushed = hi
                sent = hi
            await asyncio.sleep(0.005)
    finally:
        await pusher.close()


async def run_soak(
    o: BenchOptions, s: SoakOptions, redis_url: str, workdir: Path, clean_up: bool = True
) -> dict[str, Any]:
    """One steady run; returns ``{"settings", "intervals": [...], "lost", "duplicates", ...}``."""
    from redis.asyncio import Redis

    run = f"s{uuid.uuid4().hex[:8]}"
    prefix = f"sgbench-{run}"
    keys = Keys(prefix)
    # [redis] shards: every shard's lane, events and dead letters (one Redis: one XREAD reads them all)
    shards = shard_keys(prefix, o.shards) if o.shards > 1 else [keys]
    total = max(1, int(o.rate * s.duration_s))
    tracker = Tracker(total, o.dlr)
    redis: Any = Redis.from_url(redis_url)
    children = Children()
    sim_err: Any = None
    producer: asyncio.Task[None] | None = None
    collector = contextlib.ExitStack()
    probe: Any = None

    def log(msg: str) -> None:
        if not o.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        info_server = await redis.info("server")
        sim_args = [
            sys.executable, "-m", "connectors.simulator", "--host", "127.0.0.1", "--port", "0",
            "--latency-ms", str(o.latency_ms), "--dlr-delay-ms", str(o.dlr_delay_ms), "--loop", o.sim_loop,
            "--seed", str(o.seed), "--duration", str(s.duration_s + s.drain_s + 120),
        ]
        if not o.receipts:
            sim_args.append("--no-dlr")
        sim_err = open(workdir / "simulator.log", "wb")  # noqa: SIM115 - closed in finally
        sim = children.spawn("simulator", sim_args, child_env(), subprocess.PIPE, sim_err)
        sim_port = await asyncio.to_thread(wait_listening, sim, 20.0)
        admin_ports = [free_port() for _ in range(o.workers)]
        engines: list[subprocess.Popen[bytes]] = []
        for w in range(o.workers):
            cfg = workdir / f"engine-{w}.toml"
            cfg.write_text(engine_toml(o, redis_url, prefix, sim_port, w, admin_ports[w]))
            env = child_env({"REDIS_URL": redis_url, "SENDGATE_LOOP": o.loop})
            err = open(workdir / f"engine-{w}.log", "wb")  # noqa: SIM115 - the child owns it
            engines.append(children.spawn(f"engine-{w}", [sys.executable, "-m", "engine.cli", "run", "-c", str(cfg)],
                                          env, subprocess.DEVNULL, err))
            err.close()
        await wait_ready(engines, admin_ports, 60.0, workdir)
        log(f"bench soak: {o.workers} engine(s) ready; {o.rate:,.0f} jobs/s for {s.duration_s:.0f} s")
        t0 = time.monotonic()
        engine_pids = [p.pid for p in engines]

        def engine_cpu() -> float:
            return sum(proc_cpu_s(pid) for pid in engine_pids)

        positions = {k.events: "0-0" for k in shards}
        seen_counts = dict.fromkeys(positions, 0)  # events this reader has read of each stream (from its start)
        child: int | None = None
        if o.history.startswith(("postgresql://", "postgres://")):
            # the archive's cost per event, per interval (bench/archive_probe.py); on Redis 6.2
            # (no entries-added) the events added are counted by this reader
            from bench.archive_probe import ArchiveProbe

            child = await archiver_child(engine_pids[0], 5.0) if o.archiver in ("auto", "process") else None
            probe = ArchiveProbe(redis, o.history, [k.events for k in shards], "archiver", child,
                                 seen=lambda: {k: (n, positions[k] if n else None) for k, n in seen_counts.items()})
            await probe.start()

        producer = asyncio.get_running_loop().create_task(_produce(redis, [k.jobs for k in shards], o, s, run, tracker))
        collector.enter_context(lean_collector())
        reader: Any = Redis(connection_pool=redis.connection_pool)
        reader.response_callbacks["XREAD"] = lambda response, **options: response
        reader.response_callbacks["XRANGE"] = lambda response, **options: response
        run_prefix = f"{run}-".encode()
        cut = len(run_prefix)
        last_dead = {k.dead: "-" for k in shards}
        intervals: list[dict[str, Any]] = []
        mark_t, mark_engine, mark_redis = t0, engine_cpu(), redis_cpu_s(await redis.info("cpu"))
        mark_cmd: dict[str, Any] = await redis.info("commandstats")
        mark_child = proc_cpu_s(child) if child else 0.0
        next_row = t0 + s.interval_s
        drain_deadline = t0 + s.duration_s + s.drain_s

        async def read_dead() -> None:
            for dead_key in last_dead:
                await read_dead_of(dead_key)

        async def read_dead_of(dead_key: str) -> None:
            while True:
                entries = await reader.xrange(dead_key, min=last_dead[dead_key], count=5000)
                if not entries:
                    return
                for _eid, flat in entries:
                    for k in range(0, len(flat) - 1, 2):
                        if flat[k] == b"id":
                            jid = flat[k + 1]
                            if jid.startswith(run_prefix):
                                with contextlib.suppress(ValueError):
                                    i = int(jid[cut:])
                                    if 0 <= i < total:
                                        tracker.on_dead(i)
                            break
                last_dead[dead_key] = "(" + entries[-1][0].decode()

        async def row(now: float) -> None:
            nonlocal mark_t, mark_engine, mark_redis, mark_cmd, mark_child
            await read_dead()
            done, receipt_lat, submit_lat = tracker.take_interval()
            cpu_e, cpu_r = engine_cpu(), redis_cpu_s(await redis.info("cpu"))
            mem = int((await redis.info("memory"))["used_memory"])
            n = max(1, done)
            r: dict[str, Any] = {
                "t_s": round(now - t0, 1),
                "done": done,
                "receipts": len(receipt_lat),  # of them with a receipt after `submitted` (latency samples)
                "msgs_per_s": round(done / max(0.001, now - mark_t), 1),
                "engine_rss_mb": [proc_rss_mb(pid) for pid in engine_pids],
                "redis_used_memory_mb": round(mem / 1048576, 1),
                "receipt_latency_ms": percentiles([float(x) for x in receipt_lat]),
                "submit_latency_ms": percentiles([float(x) for x in submit_lat]),
                "engine_us_per_msg": round(1e6 * (cpu_e - mark_engine) / n, 1),
                "redis_us_per_msg": round(1e6 * (cpu_r - mark_redis) / n, 1),
                "in_flight": len(tracker.pushed) + len(tracker.submitted),
            }
            if probe is not None:
                r["archive"] = await probe.sample()
                cpu_child = proc_cpu_s(child) if child else 0.0
                r["archive_child_us_per_msg"] = round(1e6 * (cpu_child - mark_child) / n, 2)
                r["archive_pg_us_per_msg"] = round(1e6 * float(r["archive"].get("pg_cpu_s") or 0.0) / n, 2)
                mark_child = cpu_child
            cmd = await redis.info("commandstats")
            r["redis_commands"] = commandstats_per_msg(mark_cmd, cmd, n)
            mark_cmd = cmd
            intervals.append(r)
            mark_t, mark_engine, mark_redis = now, cpu_e, cpu_r
            log(f"bench soak: {r['t_s']:7.1f}s  done {done}  rss {r['engine_rss_mb']} MiB  "
                f"redis {r['redis_used_memory_mb']} MiB  receipt p99 {r['receipt_latency_ms']['p99']:.0f} ms"
                + (f"  archive {r['archive']}" if probe is not None else ""))

        while True:
            reply = await reader.xread(positions, count=5000, block=100)
            for stream_name, entries in (reply.items() if isinstance(reply, dict) else reply or ()):
                for _eid, flat in entries:
                    jid, event, ts = event_id_kind_ts(flat)
                    i = run_job_index(jid, run_prefix, cut)
                    if i is None:
                        tracker.foreign += 1
                        continue
                    if 0 <= i < total:
                        tracker.on_event(i, event, ts)
                if entries:
                    name = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                    positions[name] = entries[-1][0].decode()
                    seen_counts[name] += len(entries)
            now = time.monotonic()
            for w, proc in enumerate(engines):
                if proc.poll() is not None:
                    raise RuntimeError(f"engine worker {w} exited during the soak (code {proc.returncode})")
            if producer.done() and producer.exception() is not None:
                raise RuntimeError(f"producer failed: {producer.exception()!r}")
            finished = producer.done() and tracker.count_final + tracker.count_dead >= total
            if now >= next_row or finished or now >= drain_deadline:
                await row(now)
                next_row += s.interval_s
                finished = producer.done() and tracker.count_final + tracker.count_dead >= total
                if finished or now >= drain_deadline:
                    break
        collector.close()
        await read_dead()
        archive_total = await probe.total(s.drain_s + 120) if probe is not None else None
        lost = sum(1 for i in range(total) if not tracker.final[i])
        duplicates = sum(1 for c in tracker.submits if c > 1)
        return {
            "mode": "soak",
            "settings": {"duration_s": s.duration_s, "rate": o.rate, "interval_s": s.interval_s, "workers": o.workers,
                         "shards": o.shards, "binds": o.binds, "window": o.window, "dlr": o.dlr, "mix": o.mix, "batch_size": o.batch_size,
                         "dlr_delay_ms": o.dlr_delay_ms, "latency_ms": o.latency_ms},
            "redis_server": redis_build({**info_server, **await redis.info("memory")}),
            "jobs": total,
            "final": tracker.count_final,
            "dead_letters": tracker.count_dead,
            "invalid_pushed": sum(tracker.invalid),  # the mix's invalid jobs: each must be a dead letter
            "lost": lost,
            "duplicates": duplicates,
            "foreign_events": tracker.foreign,
            "intervals": intervals,
            **({"archive": archive_total} if archive_total is not None else {}),
            "prefix": prefix,
        }
    finally:
        collector.close()
        if producer is not None and not producer.done():
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
        if probe is not None:
            with contextlib.suppress(Exception):
                await probe.close()
        await asyncio.to_thread(children.stop_all, 15.0)
        if sim_err is not None:
            sim_err.close()
        # The run's keys are removed from a Redis that outlives the run (REDIS_URL); the
        # bench's own embedded one is stopped right after: scanning millions of names
        # there would only delay the report.
        if clean_up:
            with contextlib.suppress(Exception):
                written = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=5000)]
                for i in range(0, len(written), 1000):
                    await redis.delete(*written[i : i + 1000])
        with contextlib.suppress(Exception):
            await redis.aclose()


def commandstats_per_msg(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, list[float]]:
    """``INFO commandstats`` delta per message done, by command: [calls, usec] (every
    client's: the engines', their archiver's, the bench's own reads)."""
    out: dict[str, list[float]] = {}
    for name, stat in after.items():
        if not isinstance(stat, dict):
            continue
        prev = before.get(name)
        p: dict[str, Any] = prev if isinstance(prev, dict) else {}
        calls = int(stat.get("calls", 0)) - int(p.get("calls", 0))
        if calls > 0:
            usec = float(stat.get("usec", 0)) - float(p.get("usec", 0))
            out[name.removeprefix("cmdstat_")] = [round(calls / n, 4), round(usec / n, 3)]
    return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def format_soak(r: dict[str, Any]) -> str:
    """One line per interval, then the totals."""
    s = r["settings"]
    lines = ["", f"  sendgate bench --duration {s['duration_s']:g} --rate {s['rate']:g} "
                 f"(interval {s['interval_s']:g} s, redis {r['redis_server']})",
             "  " + "-" * 100,
             f"  {'t (s)':>7} {'done':>8} {'msgs/s':>8} {'engine rss MiB':>15} {'redis MiB':>10} "
             f"{'receipt p50/p95/p99 ms':>23} {'submit p50/p95/p99 ms':>22} {'µs/msg eng/redis':>17}"]
    for x in r["intervals"]:
        rl, sl = x["receipt_latency_ms"], x["submit_latency_ms"]
        rss = "/".join(f"{v:.0f}" for v in x["engine_rss_mb"])
        lines.append(
            f"  {x['t_s']:>7.1f} {x['done']:>8} {x['msgs_per_s']:>8,.0f} {rss:>15} {x['redis_used_memory_mb']:>10.1f} "
            f"{rl['p50']:>7.0f}/{rl['p95']:.0f}/{rl['p99']:<7.0f} {sl['p50']:>7.0f}/{sl['p95']:.0f}/{sl['p99']:<7.0f} "
            f"{x['engine_us_per_msg']:>8.1f}/{x['redis_us_per_msg']:<8.1f}"
        )
    lines.append("  " + "-" * 100)
    if "archive" in r:
        lines.append(f"  archive over the run: {r['archive']}")
    lines.append(f"  jobs {r['jobs']:,}  final {r['final']:,}  dead letters {r['dead_letters']:,}  "
                 f"lost {r['lost']}  duplicates {r['duplicates']}")
    return "\n".join(lines)


def main_soak(o: BenchOptions, s: SoakOptions, json_path: str | None, logs_dir: str = "") -> int:
    """The ``--duration`` branch of ``sendgate bench``: 0 when nothing was lost or duplicated."""
    import tempfile

    import orjson

    url = o.redis_url or os.environ.get("REDIS_URL", "")
    embedded = None
    if not url:
        from engine.embedded_redis import EmbeddedRedis

        embedded = EmbeddedRedis().start()
        url = embedded.url
    holder: dict[str, Any] = {}

    async def go() -> None:
        if logs_dir:
            Path(logs_dir).mkdir(parents=True, exist_ok=True)
            holder["r"] = await run_soak(o, s, url, Path(logs_dir), clean_up=embedded is None)
            return
        with tempfile.TemporaryDirectory(prefix="sendgate-soak-") as tmp:
            holder["r"] = await run_soak(o, s, url, Path(tmp), clean_up=embedded is None)

    try:
        try:
            import uvloop

            uvloop.run(go())
        except ImportError:  # pragma: no cover
            asyncio.run(go())
    except KeyboardInterrupt:
        print("sendgate bench: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    except RuntimeError as err:
        print(f"sendgate bench: {err}", file=sys.stderr)
        return 1
    finally:
        for children in LIVE_CHILDREN:
            children.stop_all(5.0)
        LIVE_CHILDREN.clear()
        if embedded is not None:
            embedded.stop()
    r = holder["r"]
    print(format_soak(r))
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    return 0 if r["lost"] == 0 and r["duplicates"] == 0 else 1
