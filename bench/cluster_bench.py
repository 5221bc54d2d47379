"""``sendgate bench --cluster``: the load run on a local Redis Cluster, 1, 2 and 4 engines.

Starts ``--masters`` redis-servers in cluster mode (bench/cluster.py, the same
code as the tests' fixture), runs bench/e2e.py's load run once per engine
count of ``--cluster-engines`` against it (``[redis] cluster = true``, every
engine a process of its own), prints a table and writes JSON, and stops the
cluster. Per run it reports the engines' and the masters' CPU per final
message (µs, from /proc over the measured window) — the figures of the
capacity model in bench/RESULTS.md — and each master's share of the Redis
CPU, which shows how the work spreads over the masters.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.cluster import ClusterUnsupported, LocalCluster
from bench.e2e import BenchOptions, run_once
from engine.keys import cluster_slot

__all__ = ["capacity", "cluster_bench", "default_placement", "per_message", "summary_table"]


def per_message(result: dict[str, Any]) -> dict[str, Any]:
    """µs of engine CPU and of Redis CPU per final message, and each master's Redis CPU share."""
    n = max(1, int(result["final"]) + int(result["dead_letters"]))
    cpu = result["cpu_s"]
    engine_s = sum(v for k, v in cpu.items() if k.startswith("engine-"))
    masters = {k: v for k, v in cpu.items() if k.startswith("redis-")}
    redis_s = sum(masters.values())
    return {
        "engine_us_per_msg": round(1e6 * engine_s / n, 1),
        "redis_us_per_msg": round(1e6 * redis_s / n, 1),
        "redis_cpu_share": {k: round(v / redis_s, 3) if redis_s else 0.0 for k, v in sorted(masters.items())},
    }


def default_placement(shards: int, masters: int) -> list[int]:
    """Shards per master when the slots are split evenly in order (what ``redis-cli --cluster
    create`` does) and shard k's keys hash on the tag ``{k}`` (CRC16 of the tag, mod 16384)."""
    per = 16384 // masters
    counts = [0] * masters
    for k in range(shards):
        slot = cluster_slot(f"p:{{{k}}}:jobs")
        counts[min(masters - 1, slot // per)] += 1
    return counts


def capacity(
    engine_us: float, redis_us: float, *, cores: int, masters: int, shards: int, placement: str = "balanced"
) -> dict[str, Any]:
    """Messages/s of one box of ``cores`` running ``masters`` Redis masters (a core each) and
    engines on the rest, at these per-message costs. A message's Redis work lands on its
    shard's master, so the masters give shards / (shards on the busiest master) masters'
    worth: ceil(shards / masters) on the busiest when the shards' slots are spread evenly
    (``placement="balanced"``: resharded so), or as the even slot split places the tags
    ``{0}``…``{N-1}`` (``"default"``). One shard: one master, whatever the cluster's size."""
    busy = -(-shards // masters) if placement == "balanced" else max(default_placement(shards, masters))
    usable = min(masters, shards / busy)
    engine_cores = max(0, cores - masters)
    by_engines = engine_cores * 1e6 / engine_us if engine_us else float("inf")
    by_redis = usable * 1e6 / redis_us if redis_us else float("inf")

    def rate(x: float) -> int | None:  # None: a cost too small to measure (CPU ticks are 10 ms)
        return None if x == float("inf") else round(x)

    return {
        "cores": cores, "masters": masters, "shards": shards, "placement": placement, "engine_cores": engine_cores,
        "usable_masters": round(usable, 2),
        "msgs_per_s_engines": rate(by_engines), "msgs_per_s_redis": rate(by_redis),
        "msgs_per_s": rate(min(by_engines, by_redis)),
        "bound_by": "engines" if by_engines <= by_redis else "redis",
    }


def summary_table(runs: list[dict[str, Any]]) -> str:
    head = (f"  {'engines':>7}  {'msgs/s':>8}  {'receipts/s':>10}  {'engine µs/msg':>13}  {'redis µs/msg':>12}  "
            f"{'submit p50/p99 ms':>17}  {'lost':>4}  {'dup':>3}  redis CPU share by master")
    lines = ["", "  sendgate bench --cluster", head, "  " + "-" * (len(head) + 10)]
    for r in runs:
        share = " ".join(f"{k[6:]}:{v:.0%}" for k, v in r["redis_cpu_share"].items())
        lines.append(
            f"  {r['engines']:>7}  {r['msgs_per_s']:>8,.0f}  {r['receipts_per_s']:>10,.0f}  "
            f"{r['engine_us_per_msg']:>13.1f}  {r['redis_us_per_msg']:>12.1f}  "
            f"{r['submit_p50_ms']:>8.0f}/{r['submit_p99_ms']:<8.0f}  {r['lost']:>4}  {r['duplicates']:>3}  {share}"
        )
    return "\n".join(lines)


def cluster_bench(opts: BenchOptions, engines_csv: str, masters: int, json_path: str | None, logs: str = "") -> int:
    """Run the load run once per engine count on a fresh local cluster; 0 when nothing was lost."""
    try:
        counts = [int(x) for x in engines_csv.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or masters < 1:
        print("sendgate bench --cluster: --cluster-engines N,N,… (each >= 1) and --masters >= 1", file=sys.stderr)
        return 2
    try:
        cluster = LocalCluster(masters).start()
    except ClusterUnsupported as exc:
        print(f"sendgate bench --cluster: {exc}", file=sys.stderr)
        return 2
    runs: list[dict[str, Any]] = []
    code = 0
    try:
        if not opts.quiet:
            print(f"bench: a {masters}-master Redis Cluster on 127.0.0.1 ports "
                  f"{', '.join(map(str, cluster.ports))} ({cluster.server}), {opts.shards} shard(s)", file=sys.stderr)
        for n in counts:
            o = BenchOptions(**{**opts.__dict__, "workers": n, "cluster": True, "redis_url": cluster.url})
            load = os.getloadavg()
            rc, result = run_once(o, f"{logs}/engines-{n}" if logs else "")
            if result is None:
                return rc or 1
            code = code or (0 if result["lost"] == 0 else 1)
            runs.append({
                "engines": n, "msgs_per_s": result["msgs_per_s"], "receipts_per_s": result["receipts_per_s"],
                **per_message(result),
                "submit_p50_ms": result["submit_latency_ms"]["p50"], "submit_p99_ms": result["submit_latency_ms"]["p99"],
                "lost": result["lost"], "duplicates": result["duplicates"],
                "load_before": [round(x, 2) for x in load], "result": result,
            })
    finally:
        cluster.stop()
    best = min(runs, key=lambda r: r["engine_us_per_msg"] + r["redis_us_per_msg"])
    models = [capacity(best["engine_us_per_msg"], best["redis_us_per_msg"], cores=16, masters=m, shards=s,
                       placement=p)
              for m in (3, 9) for s in (1, m, 4 * m) for p in (("balanced",) if s == 1 else ("default", "balanced"))]
    out = {
        "cluster": {"masters": masters, "server": cluster.server, "shards": opts.shards,
                    "shards_per_master": default_placement(opts.shards, masters)},
        "jobs": opts.jobs, "runs": runs,
        "capacity_model": {"from_run": f"{best['engines']} engine(s)", "engine_us_per_msg": best["engine_us_per_msg"],
                           "redis_us_per_msg": best["redis_us_per_msg"], "models": models},
        "uptime_load": [round(x, 2) for x in os.getloadavg()], "ts": int(time.time()),
    }
    print(summary_table(runs))
    print("\n  capacity of a 16-core box at the per-message costs of the "
          f"{best['engines']}-engine run ({best['engine_us_per_msg']} + {best['redis_us_per_msg']} µs):")
    for m in models:
        print(f"    {m['masters']} masters, {m['shards']:>2} shard(s) {m['placement']:>8}: {m['msgs_per_s'] or 0:>9,} msgs/s "
              f"(engines on {m['engine_cores']} cores {m['msgs_per_s_engines'] or 0:,}; "
              f"redis {m['usable_masters']} masters {m['msgs_per_s_redis'] or 0:,}; bound by {m['bound_by']})")
    if json_path:
        Path(json_path).write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    return code
