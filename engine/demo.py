"""``sendgate demo``: the whole product on one machine with nothing installed.

Starts an embedded Redis (unless ``REDIS_URL`` is set), the SMSC simulator
with delivery receipts, and an engine; pushes a batch of mixed messages
(GSM-7, UCS-2, long multipart, a few invalid ones); shows a live progress
bar; ends with a summary table.

The sample numbers are fictitious (the +45 01 range is not assigned), and
the summary shows counts only — no number and no text.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

__all__ = ["build_jobs", "main", "run_demo"]

FINAL_EVENTS = frozenset({"delivered", "undeliverable", "expired", "rejected", "deleted", "unknown", "failed"})

_GSM_TEXTS = (
    "Your verification code is {n}. It expires in 10 minutes.",
    "Hi! Your parcel {n} is out for delivery today between 10:00 and 14:00.",
    "Reminder: your appointment is tomorrow at 09:30. Reply STOP to opt out.",
    "Prisen er 120 kr. Tak for dit køb! Ordre {n} er sendt. {{€}}",
)
_UCS2_TEXTS = (
    "Ваш код подтверждения: {n}",
    "您的验证码是 {n}",
    "Order {n} confirmed 🎉 thanks!",
    "Καλημέρα! Κωδικός {n}",
)
_LONG = (
    "This is a longer message number {n} that will not fit in a single SMS segment, so sendgate "
    "splits it into concatenated parts with a user data header, and the handset joins them back "
    "together. Each part carries a reference number, the total count and its own sequence number."
)


def build_jobs(count: int, seed: int = 7) -> list[dict[str, str]]:
    """A reproducible mix: ~70 % GSM, ~15 % UCS-2, ~10 % long, ~5 % invalid."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    jobs: list[dict[str, str]] = []
    for i in range(count):
        n = str(rng.randrange(100000, 999999))
        to = f"+4501{rng.randrange(0, 999999):06d}"
        r = rng.random()
        job = {"id": f"demo-{run}-{i}", "to": to, "ref": f"demo-{i}"}
        if r < 0.70:
            job["text"] = rng.choice(_GSM_TEXTS).format(n=n)
        elif r < 0.85:
            job["text"] = rng.choice(_UCS2_TEXTS).format(n=n)
        elif r < 0.95:
            job["text"] = _LONG.format(n=n)
        else:
            kind = rng.randrange(3)
            if kind == 0:
                job["to"] = "12ab"  # bad_number
                job["text"] = "invalid number"
            elif kind == 1:
                job["text"] = ""  # empty_text
            else:
                job["text"] = "x"
                job["carrier"] = "nowhere"  # unknown_carrier
        jobs.append(job)
    return jobs


def _bar(done: int, total: int, width: int = 32) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


async def run_demo(count: int, redis_url: str, *, dlr_delay_ms: float, timeout_s: float, quiet: bool) -> dict[str, Any]:
    """Run the demo against ``redis_url``; returns the summary."""
    from redis.asyncio import Redis

    from connectors.simulator import SimulatorConfig, start_simulator
    from engine.app import Engine
    from engine.config import settings_from_mapping
    from engine.keys import Keys

    sim = await start_simulator(
        SimulatorConfig(
            dlr=True,
            dlr_delay_ms=dlr_delay_ms,
            dlr_states={"DELIVRD": 0.95, "UNDELIV": 0.04, "EXPIRED": 0.01},
            latency_ms=1.0,
            seed=11,
        )
    )
    prefix = f"sendgate-demo-{uuid.uuid4().hex[:6]}"
    settings = settings_from_mapping(
        {
            "redis": {"url": redis_url, "prefix": prefix},
            "engine": {"batch_size": 500, "block_ms": 50, "drain_timeout_s": 5.0},
            "admin": {"listen": ""},
            "carriers": [
                {"name": "demo", "port": sim.port, "system_id": "demo", "password": "demo",
                 "binds": 2, "window": 128, "routes": [""]}
            ],
        },
        env={},
    )
    engine = Engine(settings, redis_url)
    keys = Keys(prefix)
    redis = Redis.from_url(redis_url)
    jobs = build_jobs(count)
    expected_valid = 0
    try:
        await engine.start()
        t0 = time.time()
        pipe = redis.pipeline(transaction=False)
        for job in jobs:
            pipe.xadd(keys.jobs, job)  # type: ignore[arg-type]
        await pipe.execute()
        finals: dict[str, str] = {}
        submitted: dict[str, float] = {}
        submit_lat: list[float] = []
        final_lat: list[float] = []
        last = "0"
        deadline = time.monotonic() + timeout_s
        dead = 0
        tty = sys.stdout.isatty()
        quarter = 0
        while time.monotonic() < deadline:
            reply: Any = await redis.xread({keys.events: last}, count=2000, block=200)
            for _s, entries in reply or []:
                for eid, f in entries:
                    last = eid.decode()
                    jid = f[b"id"].decode()
                    ev = f[b"event"].decode()
                    ts = int(f[b"ts"]) / 1000
                    if ev == "submitted":
                        submitted[jid] = ts
                        submit_lat.append(ts - t0)
                    elif ev in FINAL_EVENTS:
                        finals[jid] = ev
                        if jid in submitted:
                            final_lat.append(ts - t0)
            dead = int(await redis.xlen(keys.dead))
            expected_valid = count - dead
            done = len(finals) + dead
            if not quiet:
                line = "  " + _bar(min(done, count), count) + f"  submitted {len(submitted)}"
                if tty:  # redraw in place
                    sys.stdout.write("\r" + line)
                    sys.stdout.flush()
                elif done * 4 // max(count, 1) > quarter:  # a log or a pipe: a line per quarter
                    quarter = done * 4 // max(count, 1)
                    print(line, flush=True)
            if done >= count and len(submitted) >= expected_valid:
                break
        elapsed = time.time() - t0
        if not quiet and tty:
            sys.stdout.write("\n")
        states: dict[str, int] = {}
        for ev in finals.values():
            states[ev] = states.get(ev, 0) + 1
        return {
            "jobs": count,
            "submitted": len(submitted),
            "delivered": states.get("delivered", 0),
            "other_final": {k: v for k, v in states.items() if k != "delivered"},
            "dead_lettered": dead,
            "lost": max(0, expected_valid - len(finals)),
            "elapsed_s": round(elapsed, 2),
            "msgs_per_s": round(len(finals) / elapsed, 1) if elapsed else 0.0,
            "submit_latency_ms": {"p50": round(_pct(submit_lat, 50) * 1000, 1), "p99": round(_pct(submit_lat, 99) * 1000, 1)},
            "final_latency_ms": {"p50": round(_pct(final_lat, 50) * 1000, 1), "p99": round(_pct(final_lat, 99) * 1000, 1)},
            "simulator": sim.stats.as_dict(),
        }
    finally:
        await engine.close()
        await sim.close()
        written = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(written), 500):
            await redis.delete(*written[i : i + 500])
        await redis.aclose()


def _print_summary(s: dict[str, Any]) -> None:
    rows = [
        ("jobs pushed", s["jobs"]),
        ("submitted", s["submitted"]),
        ("delivered", s["delivered"]),
        ("other final states", ", ".join(f"{k} {v}" for k, v in sorted(s["other_final"].items())) or "-"),
        ("dead-lettered", s["dead_lettered"]),
        ("lost", s["lost"]),
        ("elapsed", f"{s['elapsed_s']} s"),
        ("msgs/s (final events)", s["msgs_per_s"]),
        ("submitted after push p50 / p99", f"{s['submit_latency_ms']['p50']} / {s['submit_latency_ms']['p99']} ms"),
        ("final receipt after push p50 / p99", f"{s['final_latency_ms']['p50']} / {s['final_latency_ms']['p99']} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print("  sendgate demo — summary")
    print("  " + "-" * (width + 20))
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print("  " + "-" * (width + 20))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sendgate demo",
        description=(
            "Run the whole pipeline locally: an embedded Redis (unless REDIS_URL is set), "
            "the SMSC simulator with delivery receipts, and the engine; push a batch of mixed "
            "messages (GSM-7, UCS-2, long, a few invalid) and print a summary."
        ),
    )
    parser.add_argument("--count", type=int, default=5000, help="messages to push (default 5000)")
    parser.add_argument("--dlr-delay-ms", type=float, default=20.0, help="simulator receipt delay (default 20)")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="give up after this long (default 120)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from engine.embedded_redis import EmbeddedRedis

    url = os.environ.get("REDIS_URL", "")
    embedded = None
    if not url:
        embedded = EmbeddedRedis().start()
        url = embedded.url
        if not args.quiet:
            print(f"  started an embedded Redis on 127.0.0.1:{embedded.port}")
    try:
        from engine.cli import run_loop

        holder: dict[str, Any] = {}

        async def go() -> int:
            holder["s"] = await run_demo(
                args.count, url, dlr_delay_ms=args.dlr_delay_ms, timeout_s=args.timeout_s, quiet=args.quiet
            )
            return 0

        run_loop(go())
        summary = holder["s"]
        if args.json:
            import orjson

            print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        else:
            _print_summary(summary)
        return 0 if summary["lost"] == 0 else 1
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
