"""The claim call's arguments for a batch of 500 jobs as the pipeline builds them
(``Pipeline._claims``, the payload, ``claim_call``): transactional and marketing
claims, both packed (per job: divide by 500). A marketing job's keyed hash is
taken here; a transactional job's after its claim, so it is added to that side."""

from __future__ import annotations

import time
from typing import Any

import pytest
from redis.asyncio import Redis

from engine.config import settings_from_mapping
from engine.job import parse_job
from engine.metrics import Metrics
from engine.pipeline import _NORMAL_LANE, Pipeline, _Batch, _InFlightJob, _json
from engine.scripts import ClaimBatch, claim_call


@pytest.mark.parametrize("kind", ["transactional", "marketing"])
def test_claim_arguments_of_500_jobs(benchmark: Any, kind: str) -> None:
    settings = settings_from_mapping({"redis": {"url": "redis://127.0.0.1:1/0", "prefix": "mb"},
                                      "carriers": [{"name": "c1", "routes": [""]}]}, env={})
    p = Pipeline(settings, Redis.from_url("redis://127.0.0.1:1/0"), {}, Metrics())  # never connects
    keys = p.shards[0]
    k = next(iter(p._classes["c1"][_NORMAL_LANE].values()))
    batch, now, jobs = _Batch(keys.jobs), time.time(), []
    for i in range(500):
        fields = {b"id": b"job-%d" % i, b"to": b"+45%08d" % (10000000 + i), b"text": b"Hello %d" % i}
        if kind == "marketing":
            fields[b"kind"] = b"marketing"
        job = parse_job(fields, now, allow_private_callbacks=False)
        jobs.append(_InFlightJob(batch, f"1700000000000-{i}", fields, job, "c1", p._segment(job, "c1"), k, k.lane))

    def build() -> int:
        for ij in jobs:
            ij.to_hash = ""
        claims, lists, marketing, packed, order = p._claims(jobs, keys)
        payload = _json(ClaimBatch(claims=claims, dead=[], lists=lists))
        _keys, args = claim_call(keys, keys.jobs, p.group, payload, 1, 3600, 1000, False, (), packed, marketing)
        for ij in jobs:
            if not ij.to_hash:
                ij.to_hash = p._hash_number(ij.job.to)
        assert order is None and not claims
        return len(args)

    assert benchmark(build) > 0
    assert all(len(ij.to_hash) == 32 for ij in jobs)
