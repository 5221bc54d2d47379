"""What a consumer group costs Redis per event: the archiver's XREADGROUP and XACK
against a plain XREAD of the same entries, and XREADGROUP NOACK (no pending entry).

A private redis-server (the embedded server's settings, no persistence) per binary;
the events stream filled with the engine's two event layouts (``bench.history``'s
paired batches: a job's describing ``submitted`` event, then its ``delivered``),
then read whole in reads of ``--count`` entries, each way in turn, ``--reps``
times. The figure is the server process's CPU time per event (min over the reps:
the machine is shared), the read and the XACKs apart: ``INFO commandstats`` usec is
wall time inside the command, which on a loaded box counts a long command's time
descheduled (a 5,000-entry read takes tens of ms) and leaves out reading the
request and writing the reply.

    python -m bench.group_cost [--server /usr/bin/redis-server] [--server …] [--events 50000]

Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench import history as bh
from bench.e2e import free_port, proc_cpu_s
from engine.embedded_redis import server_settings_args


def _measure(r: redis.Redis, pid: int, stream: str, events: int, count: int, how: str, rep: int) -> dict[str, float]:
    group = f"g-{how}-{rep}"
    if how != "xread":
        r.xgroup_create(stream, group, id="0")
    last = "0-0"
    ids: list[bytes] = []
    read_s = ack_s = 0.0
    while True:
        c0 = proc_cpu_s(pid)
        if how == "xread":
            reply: Any = r.xread({stream: last}, count=count)
        else:
            reply = r.xreadgroup(group, "c", {stream: ">"}, count=count, noack=how == "noack")
        read_s += proc_cpu_s(pid) - c0
        entries = reply[0][1] if reply else []
        if not entries:
            break
        last = entries[-1][0]
        if how == "group":
            ids = [e[0] for e in entries]
            c0 = proc_cpu_s(pid)
            r.xack(stream, group, *ids)
            ack_s += proc_cpu_s(pid) - c0
    out: dict[str, float] = {"read": 1e6 * read_s / events}
    if how == "group":
        out["xack"] = 1e6 * ack_s / events
    if how != "xread":
        r.xgroup_destroy(stream, group)
    return out


def _server_args(server: str, port: int, tmp: str) -> list[str]:
    """A private server with the embedded server's settings, nothing kept, few background ticks."""
    return [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp,
            "--daemonize", "no", "--loglevel", "warning", *server_settings_args(), "--hz", "1"]


def run(server: str, events: int, count: int, reps: int) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(_server_args(server, port, tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r = redis.Redis(port=port)
            for _ in range(100):
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            version = r.info("server")["redis_version"]
            stream = "bench:events"
            t = int(time.time() * 1000)
            n = 0
            b = 0
            while n < events:
                pipe = r.pipeline(transaction=False)
                for _, fields in bh.events(1_000 + b, t):
                    pipe.xadd(stream, fields)  # type: ignore[arg-type]
                    n += 1
                pipe.execute()
                b += 1
            best: dict[str, dict[str, float]] = {}
            for rep in range(reps):
                for how in ("xread", "group", "noack"):
                    got = _measure(r, proc.pid, stream, n, count, how, rep)
                    for command, us in got.items():
                        key = f"{how}:{command}"
                        best.setdefault(key, {"min": us, "all": []})  # type: ignore[dict-item]
                        best[key]["min"] = min(best[key]["min"], us)
                        best[key]["all"].append(round(us, 3))  # type: ignore[attr-defined]
            return {"server": version, "events": n, "count": count,
                    "server_cpu_us_per_event": {k: {"min": round(v["min"], 3), "all": v["all"]} for k, v in best.items()}}
        finally:
            proc.terminate()
            proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", action="append", default=[], help="redis-server binary (repeatable; default: the "
                   "embedded 6.2 and /usr/bin/redis-server)")
    p.add_argument("--events", type=int, default=50_000)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    servers = a.server
    if not servers:
        from engine.embedded_redis import redis_server_binary

        servers = [str(redis_server_binary())]
        if Path("/usr/bin/redis-server").exists():
            servers.append("/usr/bin/redis-server")
    for server in servers:
        print(json.dumps(run(server, a.events, a.count, a.reps)))


if __name__ == "__main__":
    main()
