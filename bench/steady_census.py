"""Redis calls per message at a steady rate, by command and by Lua script (issue #17).

    python -m bench.steady_census --rate 8000 --duration 60 [--monitor-s 5] [--json F] [-- BENCH ARGS]

Runs ``sendgate bench --duration D --rate R`` against a private ``redis-server``
(a free port of 127.0.0.1, nothing else on it) and reports:

* the calls clients made (not the commands a script ran) per job, by command and,
  for EVALSHA, by script (each SHA named by engine/*.lua, dlr/correlate.lua):
  ``MONITOR`` for ``--monitor-s`` seconds from the middle of the run, divided by
  the jobs the rate pushed meanwhile (the bench's own producer XADDs and event
  XREADs are in the table: ``xadd`` ~ 1 per job is the check). MONITOR slows Redis
  a little, which if anything makes batches larger.

Calls per job do not depend on how busy the box is as long as the engine keeps up
with the rate (a busy box only makes batches larger), which is why this is the
figure issue #17 is judged by; µs per message is the bench's own table.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from redis import Redis


def _script_names() -> dict[str, str]:
    from dlr import store
    from engine.scripts import Script

    names = {}
    for path in sorted((Path(__file__).parent.parent / "engine").glob("*.lua")):
        if path.stem == "marks_lib":
            continue
        names[Script(path.stem).sha] = path.stem
    names[store._SCRIPT_SHA] = "correlate"
    names[store._STEPS_SHA] = "correlate_steps"
    names[store._PUBLISH_SHA] = "publish_staged"
    return names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _monitor(port: int, seconds: float, out: Counter[str]) -> None:
    """Count EVALSHA calls by SHA (and other commands by name) for ``seconds``."""
    proc = subprocess.Popen(["redis-cli", "-p", str(port), "monitor"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    end = time.monotonic() + seconds
    try:
        for line in proc.stdout:
            if time.monotonic() > end:
                break
            parts = line.split(b'"', 4)  # ts [db addr] "CMD" "arg1" ...
            if len(parts) < 2 or b" lua]" in parts[0]:  # a command a script ran: not a call
                continue
            cmd = parts[1].decode(errors="replace").lower()
            if cmd == "evalsha" and len(parts) >= 4:
                out["evalsha:" + parts[3].decode(errors="replace")] += 1
            else:
                out[cmd] += 1
    finally:
        proc.kill()
        proc.wait()


def _calls(stats: dict[str, Any]) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if isinstance(v, dict)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=8000)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--jobs", type=int, default=0, help="a burst instead: pre-load this many jobs (no --rate)")
    p.add_argument("--monitor-s", type=float, default=5.0)
    p.add_argument("--json", default="")
    p.add_argument("bench_args", nargs="*")
    o = p.parse_args(argv)
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="census-")
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    try:
        r = Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except Exception:
                time.sleep(0.05)
        before = _calls(r.info("commandstats"))
        bench_json = os.path.join(tmp, "bench.json")
        cmd = [sys.executable, "-m", "engine.cli", "bench", "--redis-url", f"redis://127.0.0.1:{port}/0",
               "--json", bench_json, "--quiet"]
        if o.jobs:
            cmd += ["--jobs", str(o.jobs)]
            start_after = 4.0
        else:
            cmd += ["--duration", str(o.duration), "--rate", str(o.rate), "--interval", str(o.duration),
                    "--drain-s", "30"]
            start_after = 5.0 + o.duration / 2
        cmd += o.bench_args
        bench = subprocess.Popen(cmd, env={**os.environ, "REDIS_URL": ""})
        monitored: Counter[str] = Counter()
        t = threading.Timer(start_after, _monitor, (port, o.monitor_s, monitored))
        t.start()
        rc = bench.wait()
        t.join()
        after = _calls(r.info("commandstats"))
        result = json.loads(Path(bench_json).read_text()) if os.path.exists(bench_json) else {}
    finally:
        server.terminate()
        server.wait()
    jobs = int(result.get("jobs") or o.jobs or o.rate * o.duration)
    names = _script_names()
    # Calls per job in the monitored window: the jobs of the window are the rate's
    # (the producer's XADDs are counted too, as a check: `xadd` ~ 1 per job).
    window_jobs = o.rate * o.monitor_s
    rows: dict[str, float] = {}
    for k, v in monitored.items():
        if k.startswith("evalsha:"):
            sha = k.split(":", 1)[1]
            k = "evalsha " + names.get(sha, sha[:8])
        rows[k] = rows.get(k, 0.0) + v / window_jobs
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    out: dict[str, Any] = {"rc": rc, "jobs": jobs, "window_jobs": window_jobs, "calls_per_job": rows,
           "commandstats_delta": delta, "monitored": dict(monitored), "intervals": result.get("intervals", [])}
    print(f"jobs {jobs:,}  (rc {rc}); monitored {o.monitor_s} s = {window_jobs:,.0f} jobs at the rate")
    print(f"{'call (client, not in a script)':<32} {'calls/job':>10} {'jobs/call':>10}")
    for k, per_job in sorted(rows.items(), key=lambda kv: -kv[1]):
        print(f"{k:<32} {per_job:>10.4f} {1 / per_job if per_job else 0:>10.1f}")
    for iv in result.get("intervals", []):
        print(f"interval t={iv.get('t_s')} eng {iv.get('engine_us_per_msg')} redis {iv.get('redis_us_per_msg')} "
              f"receipt {iv.get('receipt_latency_ms')} submit {iv.get('submit_latency_ms')}")
    if o.json:
        Path(o.json).write_text(json.dumps(out, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main())
