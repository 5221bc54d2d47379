"""What handing a job over to the engine that holds its carrier's bind costs, per job.

``python -m bench.handover_cost [--jobs N] [--batch B]``

With ``[[carriers]] max_binds`` (bind leases, issue #18), an engine that reads a
job for a carrier whose binds it does not hold moves it to the carrier's park
stream (``park.lua``: XADD there, XACK here, one call per batch), and an engine
that holds a bind reads it from there (XREADGROUP of the park stream) and claims
it as any job. Against a job its reader could send itself, the hand-over adds:

* Redis: the ``park.lua`` call and the second read (the park stream's
  XREADGROUP), measured from ``INFO commandstats`` (``usec`` of ``evalsha`` and
  ``xreadgroup``) on a private embedded Redis (nobody else's commands count);
  the lane's own read is shown for scale (every job pays it);
* the parking engine's Python: building the call's arguments (ParkEntry per job,
  the fields flattened), timed without I/O.

No phone number or text is printed: the jobs are the bench's synthetic ones.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import msgspec
from redis import Redis

from bench.e2e import job_fields
from engine.embedded_redis import EmbeddedRedis
from engine.keys import Keys
from engine.scripts import ParkEntry, Script, park_call

__all__ = ["main", "measure"]

GROUP = "sendgate"


def _usec(r: Any, command: str) -> tuple[int, int]:
    stat = r.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stat.get("usec", 0)), int(stat.get("calls", 0))


def _park_args(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> tuple[bytes, list[bytes]]:
    """The arguments the pipeline builds for one park call (engine/pipeline.py _park_entries)."""
    meta: list[ParkEntry] = []
    flat: list[bytes] = []
    for entry_id, fields in entries:
        meta.append(ParkEntry(entry_id=entry_id.decode(), nfields=2 * len(fields), dest=1))
        for kv in fields.items():
            flat.extend(kv)
    return msgspec.json.encode(meta), flat


def measure(r: Any, jobs: int, batch: int, prefix: str = "hob") -> dict[str, Any]:
    """One round: ``jobs`` jobs read from a lane, parked, read from the park stream."""
    k = Keys(prefix)
    lane, park = k.jobs, k.park("sim", "normal")
    for stream in (lane, park):
        r.delete(stream)
        r.xgroup_create(stream, GROUP, id="0", mkstream=True)
    rng = random.Random(7)
    pipe = r.pipeline(transaction=False)
    for i in range(jobs):
        pipe.xadd(lane, job_fields("hob", i, "gsm", True, rng))
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()
    sha = r.script_load(Script("park").source)

    u0 = _usec(r, "xreadgroup")
    read: list[list[tuple[bytes, dict[bytes, bytes]]]] = []
    while True:
        reply = r.xreadgroup(GROUP, "b", {lane: ">"}, count=batch)
        if not reply or not reply[0][1]:
            break
        read.append(reply[0][1])
    u1 = _usec(r, "xreadgroup")

    build_s = 0.0
    e0 = _usec(r, "evalsha")
    for entries in read:
        t = time.process_time()
        payload, flat = _park_args(entries)
        keys, args = park_call(lane, [park], GROUP, payload, flat)
        build_s += time.process_time() - t
        r.evalsha(sha, len(keys), *keys, *args)
    e1 = _usec(r, "evalsha")

    p0 = _usec(r, "xreadgroup")
    moved = 0
    while True:
        reply = r.xreadgroup(GROUP, "a", {park: ">"}, count=batch)
        if not reply or not reply[0][1]:
            break
        moved += len(reply[0][1])
    p1 = _usec(r, "xreadgroup")
    assert moved == jobs, (moved, jobs)
    assert r.xpending(lane, GROUP)["pending"] == 0  # every lane entry acked by park.lua
    n = float(jobs)
    park_us, read_us = (e1[0] - e0[0]) / n, (p1[0] - p0[0]) / n
    redis_us: dict[str, float] = {
        "park_call": round(park_us, 2),
        "park_stream_read": round(read_us, 2),
        "handover_total": round(park_us + read_us, 2),
        "lane_read_for_scale": round((u1[0] - u0[0]) / n, 2),
    }
    out: dict[str, Any] = {
        "jobs": jobs,
        "batch": batch,
        "redis_us_per_job": redis_us,
        "engine_python_us_per_job_park_args": round(1e6 * build_s / n, 2),
        "park_calls": e1[1] - e0[1],
    }
    for stream in (lane, park):
        r.delete(stream)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.handover_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500, help="jobs per read and per park call (default 500)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    server = EmbeddedRedis().start()
    try:
        r: Any = Redis.from_url(server.url)
        runs = [measure(r, a.jobs, a.batch) for _ in range(a.rounds)]
        r.close()
    finally:
        server.stop()
    json.dump(runs, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
