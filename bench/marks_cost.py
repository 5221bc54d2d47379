"""What idempotency marks cost: claim.lua's instructions per job, and Redis bytes per mark.

    python -m bench.marks_cost instructions [--ids uuid|short] [--buckets K --fill-prev F --fill-cur F] [--fresh]
    python -m bench.marks_cost memory [--jobs N] [--ids uuid|short] [--redis-url URL]

``instructions``: claim.lua's instructions per job under callgrind (inside
EVALSHA only; the embedded Redis 6.2), batches of 500 new transactional jobs
laid out as the engine sends them (``engine.pipeline.ClaimArgs``, window 1 h).
With marks in buckets (layout 11), the current and the previous generation are
first filled outside the measured calls, ``K`` buckets each, ``--fill-prev`` and
``--fill-cur`` marks per bucket (the steady state: a bucket of the previous
generation full, the current one half way), so each lookup scans what it would.

``memory``: used_memory after minus before, per mark, for ``--jobs`` new jobs
claimed in batches of 500 (only the marks are written: claim.lua writes nothing
else for a new job). Twice: in a generation with no predecessor (a fresh Redis:
``first``), then as many jobs again one window later (``steady``: the bucket count
sized from the first generation's). On the embedded Redis 6.2, or with
``--redis-url`` on that Redis (its database is FLUSHDB-ed: give one of your own;
used_memory counts every database, so on a shared server the MEMORY USAGE
sum of the marks' keys, ``*_memory_usage_per_mark``, is the figure to quote: it
leaves out the dict and expiry entries, ~40 B per key).
Runs on an older tree too (``PYTHONPATH=<tree>``): with string marks there is no
generation, and ``steady`` is the same as ``first``.

Nothing here is asserted: the figures go to bench/RESULTS.md ("marks").
"""

from __future__ import annotations

import argparse
import random
import uuid
from typing import Any

__all__ = ["claim_instructions", "main", "memory_per_mark"]

_NOW_MS = 1_700_000_000_000  # ClaimArgs' clock
_WINDOW_S = 3600  # ClaimArgs' window


_SEEDED: random.Random | None = None
"""Set (``seed_ids``): the uuids come from this generator, the same ones run after run."""


def seed_ids(seed: int) -> None:
    """Draw the ``uuid`` ids from a generator seeded with ``seed``: two scripts compared
    claim the same ids into the same buckets (fresh uuid4s moved the count by ±200–400
    instructions a job between identical runs, bench/RESULTS.md "luacost2")."""
    global _SEEDED
    _SEEDED = random.Random(seed)


def _ids(kind: str, n: int, tag: str) -> list[str]:
    if kind == "uuid":
        if _SEEDED is not None:
            return [str(uuid.UUID(int=_SEEDED.getrandbits(128), version=4)) for _ in range(n)]
        return [str(uuid.uuid4()) for _ in range(n)]
    return [f"{tag}-{i}" for i in range(n)]  # the bench's form: b1234abcd-12345


class _Claims:
    def __init__(self) -> None:
        from engine.pipeline import ClaimArgs
        from engine.scripts import CLAIM_ARGS

        self.args = ClaimArgs("bench")
        self.keys = self.args.keys
        self._now_at = CLAIM_ARGS.index("now") - 1

    def __call__(self, ids: list[str], first_entry: int, now_ms: int = _NOW_MS) -> tuple[list[str], list[Any]]:
        entries = [(f"{1_700_000_000_000 + first_entry + i}-0",
                    {b"id": job_id.encode(), b"to": b"+45%08d" % (10_000_000 + i), b"text": b"hello"})
                   for i, job_id in enumerate(ids)]
        keys, args, _packed = self.args.build(self.args.jobs(entries, now_ms / 1000))
        args[self._now_at] = now_ms
        return keys, args


def _bucketed() -> bool:
    from engine.keys import Keys

    return hasattr(Keys, "marks_bucket")


def _prefill(r: Any, keys: Any, buckets: int, fill_prev: int, fill_cur: int, kind: str) -> None:
    """The previous and the current generation's buckets, ``fill_*`` marks each (layout 11)."""
    start = _NOW_MS // 1000 // _WINDOW_S * _WINDOW_S
    for gen, fill in ((start - _WINDOW_S, fill_prev), (start, fill_cur)):
        made = fill > 0 and hasattr(keys, "marks_made")  # the bitmap of buckets made (all but one)
        r.hset(keys.marks_generation(gen), mapping={"k": buckets, "n": buckets * fill, "b": buckets - 1 if made else 0})
        r.expire(keys.marks_generation(gen), 3 * _WINDOW_S)
        if made:
            r.set(keys.marks_made(gen), b"\xff" * (buckets // 8), ex=3 * _WINDOW_S)
        pipe = r.pipeline(transaction=False)
        for b in range(buckets):
            if fill:
                name = keys.marks_bucket(gen, b, buckets) if made else keys.marks_bucket(gen, b)
                pipe.hset(name, mapping={i: "1700000000000000011" for i in _ids(kind, fill, f"p{b}")})
                pipe.expire(name, 3 * _WINDOW_S)
        pipe.execute()


def claim_instructions(kind: str = "uuid", buckets: int = 512, fill_prev: int = 48, fill_cur: int = 24,
                       batch: int = 500, rounds: int = 5, fresh: bool = False, script_text: str | None = None) -> float:
    """claim.lua instructions per new transactional job (see the module doc); ``fresh``:
    nothing prefilled, as on a new Redis (``sendgate bench``): the first generation has
    no predecessor, so the marks of layout 10 are looked for too (``P:marks:legacy``)."""
    from bench.instructions import under_callgrind
    from engine.scripts import Script, claim_statuses

    script = Script("claim")
    if script_text is not None:  # another claim.lua (an older commit's) under this header
        from importlib import resources

        from engine.scripts import script_header

        lib = resources.files("engine").joinpath("marks_lib.lua").read_text(encoding="utf-8")
        script.source = script_header("claim") + lib + script_text
    claims = _Claims()

    def run(r: Any) -> int:
        sha = r.script_load(script.source)
        if _bucketed() and not fresh:
            _prefill(r, claims.keys, buckets, fill_prev, fill_cur, kind)
        done = 0
        for k in range(rounds):
            ks, args = claims(_ids(kind, batch, f"r{k}"), k * batch)
            statuses = claim_statuses(r.evalsha(sha, len(ks), *ks, *args))
            assert statuses == [0] * batch, statuses[:5]
            done += batch
        return done

    return under_callgrind(run)


def memory_per_mark(jobs: int, kind: str = "uuid", redis_url: str | None = None) -> dict[str, Any]:
    """used_memory per mark, first generation and steady state (see the module doc)."""
    import redis

    from engine.embedded_redis import EmbeddedRedis
    from engine.scripts import Script, claim_statuses

    server = None
    if redis_url is None:
        server = EmbeddedRedis().start()
        redis_url = server.url
    try:
        r = redis.Redis.from_url(redis_url)
        r.flushdb()
        version = r.info("server")["redis_version"]
        script = Script("claim")
        sha = r.script_load(script.source)
        claims = _Claims()
        out: dict[str, Any] = {"redis": version, "jobs": jobs, "ids": kind}
        seen: list[int] = []
        for label, now_ms in (("first", _NOW_MS), ("steady", _NOW_MS + _WINDOW_S * 1000)):
            before = int(r.info("memory")["used_memory"])
            for first in range(0, jobs, 500):
                ks, args = claims(_ids(kind, min(500, jobs - first), f"{label[0]}{first}"), first, now_ms)
                assert claim_statuses(r.evalsha(sha, len(ks), *ks, *args)) == [0] * min(500, jobs - first)
            out[f"{label}_bytes_per_mark"] = round((int(r.info("memory")["used_memory"]) - before) / jobs, 1)
            prefix = getattr(claims.keys, "marks_prefix", claims.keys.idem_prefix)  # older trees: string marks
            usage = sum(int(r.memory_usage(key, samples=0) or 0)
                        for key in r.scan_iter(match=f"{prefix}*", count=5000))
            out[f"{label}_memory_usage_per_mark"] = round((usage - sum(seen)) / jobs, 1)
            seen.append(usage - sum(seen))
        if _bucketed():
            start = (_NOW_MS // 1000 + _WINDOW_S) // _WINDOW_S * _WINDOW_S
            k = int(r.hget(claims.keys.marks_generation(start), "k") or 0)
            out["steady_buckets"] = k
            out["steady_encoding"] = (r.object("encoding", claims.keys.marks_bucket(start, 0, k)) or b"").decode()
        r.flushdb()
        return out
    finally:
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.marks_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("instructions", "memory"))
    p.add_argument("--ids", choices=("uuid", "short"), default="uuid")
    p.add_argument("--buckets", type=int, default=512)
    p.add_argument("--fill-prev", type=int, default=48)
    p.add_argument("--fill-cur", type=int, default=24)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--redis-url", default=None)
    p.add_argument("--fresh", action="store_true",
                   help="instructions: nothing prefilled (a new Redis, as sendgate bench: the layout-10 marks looked for)")
    a = p.parse_args(argv)
    if a.what == "instructions":
        n = claim_instructions(a.ids, a.buckets, a.fill_prev, a.fill_cur, fresh=a.fresh)
        where = ", fresh" if a.fresh else f", buckets {a.buckets} x {a.fill_prev} prev / {a.fill_cur} cur" if _bucketed() else ""
        print(f"claim.lua: {n:,.0f} instructions per new transactional job ({a.ids} ids{where})")
    else:
        print(memory_per_mark(a.jobs, a.ids, a.redis_url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
