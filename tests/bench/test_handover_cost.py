"""bench/handover_cost.py on the test Redis: every job read from the lane is parked
(acked there) and read back from the park stream, and the figures it reports are
there and sane; its keys are gone afterwards."""

from __future__ import annotations

from redis import Redis

from bench.handover_cost import measure
from engine.keys import Keys


def test_every_job_is_parked_and_read_back_once(redis_url: str, key_prefix: str) -> None:
    r = Redis.from_url(redis_url)
    try:
        out = measure(r, 230, 50, prefix=key_prefix)
        assert out["park_calls"] == 5  # ceil(230 / 50): one park.lua call per read batch
        us = out["redis_us_per_job"]
        assert us["park_call"] > 0 and us["park_stream_read"] > 0
        # the total is rounded from the unrounded parts: within a rounding step of their sum
        assert abs(us["handover_total"] - (us["park_call"] + us["park_stream_read"])) <= 0.011
        assert out["engine_python_us_per_job_park_args"] > 0
        k = Keys(key_prefix)
        assert r.exists(k.jobs, k.park("sim", "normal")) == 0
    finally:
        r.close()
