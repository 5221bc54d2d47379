"""The `/status` snapshot: what the status page (engine/status_page.html) shows.

Why its own module: the snapshot is a contract with the page and with
operators' scripts (docs/contract.md §6), and it must never carry personal
data or secrets — only names (carriers, binds, lanes, dead-letter codes),
states and counts. It reads what is already in memory (the pools, the
pipeline, the last sample of `engine.ops_sampler.OpsSampler`); building it
costs no Redis call, so a page refreshing every few seconds costs next to
nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine import __version__
from engine.ops_sampler import DEAD_WINDOW

__all__ = ["bind_state", "status_snapshot"]


def bind_state(bind: Any) -> str:
    """``bound``, ``down`` or ``closing`` — the states the page colours."""
    if bind.is_closing():
        return "closing"
    return "bound" if bind.up else "down"


def _bind(bind: Any, now: float) -> dict[str, Any]:
    session = bind.session
    window = session.window if session is not None else bind.config.window
    out: dict[str, Any] = {
        "name": bind.name,
        "state": bind_state(bind),
        "in_flight": int(bind.in_flight) if bind.up else 0,
        "window": int(window),
    }
    # No bind pauses any more (flow control lowers rate and window instead): kept at 0.
    out["throttled_s"] = 0.0
    if not bind.up:
        # The reason is an SMPP status name or a connection error: no credential in it
        # (connectors/transport.py never puts the password in an error).
        out["reason"] = bind.last_error or ""
        out["retry_in_s"] = round(float(bind.retry_in_s), 3)
    return out


def _dead_since_start(engine: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for family in engine.metrics.dead_letters.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[sample.labels["code"]] = int(sample.value)
    return out


def status_snapshot(engine: Any) -> dict[str, Any]:
    """The JSON of `/status` for one `engine.app.Engine`."""
    sampler = engine.sampler
    loop_now = _loop_time()
    carriers: dict[str, Any] = {}
    for name, pool in engine.pools.items():
        c = engine.settings.carrier(name)
        binds = [_bind(b, loop_now) for b in pool.binds]
        carriers[name] = {
            "binds_up": pool.binds_up(),
            "binds_total": len(binds),
            "pending": pool.pending(),
            "binds": binds,
            "rate_per_s": sampler.rates.get(name, 0.0),
            "tps_limit": float(c.tps) if c.tps else None,
            "backoff_s": 0.0,  # see backing_off, rate_limit_per_s, window
            "backing_off": bool(pool.flow.reduced()),
            "rate_limit_per_s": pool.rate_per_s() or None,
            "window": int(pool.window),
            "throttled_total": int(pool.stats.throttled),
            "receipts_pending": sampler.receipts_pending.get(name),
        }
    dead_codes = [{"code": code, "count": n} for code, n in sampler.dead_codes]
    return {
        "version": __version__,
        "consumer": engine.settings.consumer_name,
        "started_at": round(engine.started_at, 3),
        "uptime_s": round(time.time() - engine.started_at, 1),
        "outstanding_parts": engine.pipeline.outstanding_parts,
        "batches_in_flight": engine.pipeline.batches_in_flight,
        "redis": {
            "ok": sampler.redis_ok,
            "rtt_ms": round(sampler.redis_rtt_s * 1000, 3) if sampler.redis_rtt_s is not None else None,
        },
        "loop_lag_ms": round(sampler.loop_lag_s * 1000, 3),
        "sample_interval_s": sampler.interval_s,
        "samples": sampler.samples,
        "carriers": carriers,
        "lanes": {name: lane.as_dict() for name, lane in sampler.lanes.items()},
        "dead_letters": {"recent": dead_codes, "recent_window": DEAD_WINDOW, "since_start": _dead_since_start(engine)},
    }


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()
