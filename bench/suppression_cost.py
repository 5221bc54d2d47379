"""What the opt-out check costs: ``sendgate bench`` with suppression on and off, and claim.lua's instructions.

``python -m bench.suppression_cost --pairs N --jobs J --marketing M`` runs N
interleaved pairs of ``sendgate bench`` (the order alternating inside each
pair, each run on a fresh embedded Redis): "on" is ``--marketing M`` (every
job ``kind=marketing``, checked against a suppression list of M hashes that
match none of them, so every job is still sent), "off" the same load of
transactional jobs. Per run: msgs/s, the engine's and Redis's CPU per
message (Redis: the embedded server's own CPU, utime + stime, the counters
``INFO CPU`` reports as used_cpu_user + used_cpu_sys), and the medians and
drop. ``--instructions`` also counts claim.lua's instructions per job under
callgrind (inside EVALSHA only), marketing with a list of M hashes against
transactional: the check's cost in Redis without the machine's noise.

Nothing here is asserted: the figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

__all__ = ["claim_instructions", "engine_claim_instructions", "main", "run_pairs"]


def run_pairs(pairs: int, jobs: int, marketing: int, *, quiet: bool = True) -> list[dict[str, Any]]:
    """``pairs`` interleaved on/off runs; one dict per run (``on``, msgs/s, CPU µs per message)."""
    import contextlib
    import io
    import json
    import os
    import tempfile

    from bench.e2e import main as bench_main

    runs: list[dict[str, Any]] = []
    env_url = os.environ.pop("REDIS_URL", None)  # each run on a fresh embedded Redis: its own CPU is the run's
    try:
        for i in range(pairs):
            order = (True, False) if i % 2 == 0 else (False, True)
            for on in order:
                with tempfile.TemporaryDirectory() as tmp:
                    out = os.path.join(tmp, "run.json")
                    argv = ["--jobs", str(jobs), "--marketing", str(marketing if on else 0), "--json", out]
                    with contextlib.redirect_stdout(io.StringIO()):
                        code = bench_main([*argv, "--quiet"] if quiet else argv)
                    if code != 0 or not os.path.exists(out):
                        raise SystemExit(f"bench run failed (exit {code})")
                    with open(out, encoding="utf-8") as f:
                        result = json.load(f)
                runs.append(_run_figures(i, on, result))
    finally:
        if env_url is not None:
            os.environ["REDIS_URL"] = env_url
    return runs


def _run_figures(i: int, on: bool, result: dict[str, Any]) -> dict[str, Any]:
    """One run's figures (from `sendgate bench --json`), printed on stderr as it ends."""
    cpu = result["cpu_us_per_job"]
    run = {
        "pair": i, "on": on, "msgs_per_s": result["msgs_per_s"],
        "engine_us_per_msg": round(sum(v for k, v in cpu.items() if k.startswith("engine")), 1),
        "redis_us_per_msg": cpu.get("redis"),
        "smismember_per_job": result["redis_commands_per_job"].get("by_command", {}).get("smismember", 0.0),
    }
    print(f"pair {i} {'on ' if on else 'off'}: {run['msgs_per_s']:,.0f} msgs/s, engine "
          f"{run['engine_us_per_msg']} µs/msg, redis {run['redis_us_per_msg']} µs/msg, "
          f"smismember/job {run['smismember_per_job']}", file=sys.stderr)
    return run


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of each side, the drop of the medians, and the median of the per-pair drops."""
    out: dict[str, Any] = {}
    for key in ("msgs_per_s", "engine_us_per_msg", "redis_us_per_msg"):
        on = [r[key] for r in runs if r["on"] and r[key] is not None]
        off = [r[key] for r in runs if not r["on"] and r[key] is not None]
        if on and off:
            out[key] = {"on": round(statistics.median(on), 1), "off": round(statistics.median(off), 1)}
    pairs: dict[int, dict[bool, float]] = {}
    for r in runs:
        pairs.setdefault(r["pair"], {})[r["on"]] = r["msgs_per_s"]
    drops = [100 * (1 - p[True] / p[False]) for p in pairs.values() if True in p and False in p]
    m = out["msgs_per_s"]
    out["drop_pct_of_medians"] = round(100 * (1 - m["on"] / m["off"]), 1)
    out["drop_pct_median_of_pairs"] = round(statistics.median(drops), 1)
    out["drop_pct_per_pair"] = [round(d, 1) for d in drops]
    return out


class _ClaimArgs:
    """claim.lua's KEYS and ARGV for a batch of jobs as the engine builds them
    (``Pipeline._claims`` on a pipeline that never connects): the bench measures the
    layout the engine sends."""

    def __init__(self, prefix: str = "bench") -> None:
        from engine.pipeline import ClaimArgs

        self.args = ClaimArgs(prefix)
        self.keys = self.args.keys

    def __call__(self, kind: str, k: int, batch: int) -> tuple[list[str], list[Any]]:
        """Round ``k``'s ``batch`` jobs of ``kind`` (ids and numbers unique per kind and round)."""
        import time

        entries = []
        base = (1 if kind == "marketing" else 2) * 10_000_000 + k * batch
        for i in range(batch):
            fields = {b"id": f"{kind}-{k}-{i}".encode(), b"to": b"+45%08d" % (base + i), b"text": b"hello"}
            if kind == "marketing":
                fields[b"kind"] = b"marketing"
            entries.append((f"{1_700_000_000_000 + k}-{i}", fields))
        keys, args, _packed = self.args.build(self.args.jobs(entries, time.time()))
        return keys, args


def _fill_list(r: Any, key: str, marketing: int) -> None:
    """``marketing`` hashes on the list ``key`` that no bench number has; then looked up
    once each, outside the measured calls, so the set's hash table is not rehashing
    (a list just grown by SADD moves one bucket per lookup until it is done: ~300
    instructions of a measured lookup): a list in use, as the engine meets it."""
    for first in range(0, marketing, 10_000):
        r.sadd(key, *(f"{j:032x}" for j in range(first, min(marketing, first + 10_000))))
    for first in range(0, marketing, 10_000):
        r.smismember(key, [f"{j:032x}" for j in range(first, min(marketing, first + 10_000))])


def claim_instructions(marketing: int, batch: int = 500, rounds: int = 5) -> dict[str, float]:
    """claim.lua instructions per job, as the engine lays the claims out: transactional,
    and marketing against a list of ``marketing`` hashes (none of the jobs' numbers)."""
    from bench.instructions import under_callgrind
    from engine.scripts import Script, claim_statuses

    script = Script("claim")
    build = _ClaimArgs()

    def work(kind: str) -> Any:
        def run(r: Any) -> int:
            sha = r.script_load(script.source)
            if kind == "marketing":
                _fill_list(r, build.keys.suppression(""), marketing)
            r.xgroup_create(build.keys.jobs, "g", id="0", mkstream=True)
            done = 0
            for k in range(rounds):
                ks, args = build(kind, k, batch)
                statuses = claim_statuses(r.evalsha(sha, len(ks), *ks, *args))
                assert statuses == [0] * batch, statuses[:5]  # every job new, none suppressed
                done += batch
            return done

        return run

    return {kind: under_callgrind(work(kind)) for kind in ("transactional", "marketing")}


def claim_server_us(marketing: int, batch: int = 500, rounds: int = 40) -> dict[str, float]:
    """claim.lua's server time per job (INFO commandstats, usec of EVALSHA), on a fresh
    embedded Redis, the two kinds of batch alternating: transactional, and marketing
    against a list of ``marketing`` hashes (none listed)."""
    import redis

    from engine.embedded_redis import EmbeddedRedis
    from engine.scripts import Script, claim_statuses

    script = Script("claim")
    build = _ClaimArgs()
    server = EmbeddedRedis().start()
    try:
        r = redis.Redis.from_url(server.url)
        sha = r.script_load(script.source)
        _fill_list(r, build.keys.suppression(""), marketing)
        r.xgroup_create(build.keys.jobs, "g", id="0", mkstream=True)
        usec = {"transactional": 0.0, "marketing": 0.0}
        for k in range(rounds):
            for kind in (("transactional", "marketing") if k % 2 else ("marketing", "transactional")):
                ks, args = build(kind, k, batch)
                stats: Any = r.info("commandstats")
                before = float(stats.get("cmdstat_evalsha", {}).get("usec", 0))
                statuses = claim_statuses(r.evalsha(sha, len(ks), *ks, *args))
                assert statuses == [0] * batch
                stats = r.info("commandstats")
                usec[kind] += float(stats["cmdstat_evalsha"]["usec"]) - before
        return {kind: round(v / (rounds * batch), 3) for kind, v in usec.items()}
    finally:
        server.stop()


_ENGINE_CLAIM = """
import time
from engine.pipeline import ClaimArgs

c = ClaimArgs("sc")  # a pipeline that never connects
entries = []
for i in range(500):
    fields = {b"id": b"job-%d" % i, b"to": b"+45%08d" % (10000000 + i), b"text": b"Hello world %d" % i}
    if MARKETING:
        fields[b"kind"] = b"marketing"
    entries.append(("1700000000000-%d" % i, fields))
jobs = c.jobs(entries, time.time())
for _ in range(N):
    for ij in jobs:
        ij.to_hash = ""
    c.build(jobs)
    for ij in jobs:  # the hash each job sent needs (_claim_and_submit), if the claims did not take it
        if not ij.to_hash:
            ij.to_hash = c.hash_number(ij.job.to)
"""


def engine_claim_instructions(small: int = 4, large: int = 24) -> dict[str, float]:
    """Engine (Python) instructions per job on the claim path that depends on a job's
    kind: ``Pipeline._claims`` for a batch of 500 jobs, its payload and ``claim_call``'s
    arguments, and each job's keyed hash (taken by the claims for a marketing job,
    after the claim for a transactional one). The call itself and its reply (a list of
    integers, one per job) are the same for both kinds. No Redis is needed."""
    from bench.instructions import python_instructions

    return {kind: python_instructions(_ENGINE_CLAIM, small, large, MARKETING=kind == "marketing") / 500
            for kind in ("transactional", "marketing")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.suppression_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--jobs", type=int, default=60_000)
    p.add_argument("--marketing", type=int, default=100_000, help="hashes on the suppression list")
    p.add_argument("--instructions", action="store_true", help="also claim.lua instructions per job (callgrind)")
    p.add_argument("--engine", action="store_true",
                   help="also the engine's instructions per job on the claim path (callgrind)")
    p.add_argument("--no-runs", dest="runs", action="store_false", help="instructions only")
    a = p.parse_args(argv)
    if a.instructions:
        us = claim_server_us(a.marketing)
        print(f"claim.lua server time: {us['transactional']} µs per job transactional, {us['marketing']} marketing "
              f"(+{us['marketing'] - us['transactional']:.3f})")
        ins = claim_instructions(a.marketing)
        print(f"claim.lua: {ins['transactional']:,.0f} instructions per job transactional, {ins['marketing']:,.0f} "
              f"marketing against {a.marketing:,} hashes (+{ins['marketing'] - ins['transactional']:,.0f})")
    if a.engine:
        e = engine_claim_instructions()
        print(f"engine claim path: {e['transactional']:,.0f} instructions per job transactional, "
              f"{e['marketing']:,.0f} marketing (+{e['marketing'] - e['transactional']:,.0f})")
    if a.runs:
        s = summary(run_pairs(a.pairs, a.jobs, a.marketing))
        m, e, r = s["msgs_per_s"], s.get("engine_us_per_msg", {}), s.get("redis_us_per_msg", {})
        print(f"msgs/s median on {m['on']:,.0f} off {m['off']:,.0f}: drop {s['drop_pct_of_medians']} % of the medians, "
              f"{s['drop_pct_median_of_pairs']} % median of pairs {s['drop_pct_per_pair']}; engine µs/msg on "
              f"{e.get('on')} off {e.get('off')}; redis µs/msg on {r.get('on')} off {r.get('off')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
