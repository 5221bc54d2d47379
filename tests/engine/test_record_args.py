"""Pipeline._record_args: the common jobs packed in one pass (no hook views) give the
very KEYS and ARGV that the general loop gives for the same jobs (as it does with
unedited hook views)."""

from __future__ import annotations

import time
from typing import Any

from engine.config import settings_from_mapping
from engine.hook_views import JobEventView, ViewBatch
from engine.job import parse_job
from engine.metrics import Metrics
from engine.pipeline import _NORMAL_LANE, Pipeline, _Batch, _InFlightJob


def _jobs(p: Pipeline) -> list[_InFlightJob]:
    k = next(iter(p._classes["c1"][_NORMAL_LANE].values()))
    batch = _Batch(p.keys.jobs)
    specs: list[tuple[dict[str, str], list[str], str, int]] = [
        ({}, ["1a2b"], "submitted", 1),  # the common job: fast form
        ({}, ["00AB3C"], "submitted", 1),  # normalised id differs from the resp's
        ({"ref": "r\x1fx"}, ["1a2c"], "submitted", 1),  # US in ref: general form, job record
        ({}, ["ab\x1fcd"], "submitted", 1),  # US in the id
        ({"callback": "https://example.org/cb"}, ["1a2d"], "submitted", 1),  # callback: job record
        ({"dlr": "0"}, ["1a2e"], "submitted", 0),  # no receipt
        ({}, ["1a2f"], "failed", 1),  # not submitted: no correlation
        ({}, ["1a30"], "submitted", 0),  # no receipt expected (registered_delivery)
        ({"id": "jöb-ü"}, ["1a31"], "submitted", 1),  # not ASCII: in the payload
        ({"ref": "x" * 300}, ["1a32"], "submitted", 1),  # a field of 256 bytes or more
        ({"text": "x" * 300}, ["1a33", "1a34", "1a35"], "submitted", 3),  # multipart
        ({"client": "acme", "ref": "r9"}, ["1a36"], "submitted", 1),
    ]
    out = []
    for i, (extra, mids, event, expect) in enumerate(specs):
        fields = {"id": f"job-{i}", "to": f"+45010000{i:02d}", "text": "hello", **extra}
        job = parse_job({a.encode(): b.encode() for a, b in fields.items()}, time.time())
        ij = _InFlightJob(batch, f"1-{i}", {}, job, "c1", p._segment(job, "c1"), k, k.lane)
        ij.message_ids, ij.event, ij.expect, ij.parts = mids, event, expect, len(mids)
        ij.to_hash = p._hash_number(job.to)
        if event == "failed":
            ij.error = "0x00000045"
        out.append(ij)
    return out


async def test_common_jobs_packed_in_one_pass_match_the_general_loop(redis_client: Any) -> None:
    settings = settings_from_mapping({"carriers": [{"name": "c1", "routes": [""]}]}, env={})
    p = Pipeline(settings, redis_client, {}, Metrics())  # (builds the call only: nothing is written)
    jobs = _jobs(p)
    now_ms = 1_795_000_000_000
    until = now_ms // 1000 + p._message_ttl_s
    acks = [ij.entry_id for ij in jobs]
    keys, args = p._record_args(p.keys.jobs, jobs, acks, now_ms, until, None)
    views = [JobEventView(ij, ViewBatch(str(now_ms), p._hash_number)) for ij in jobs]
    assert all(v.edits is None for v in views)
    keys2, args2 = p._record_args(p.keys.jobs, jobs, acks, now_ms, until, views)
    assert keys[:-1] == keys2[:-1]  # the last is the call's own token key
    assert args == args2
    packed_lens = args[-1]
    assert len(packed_lens) // 13 == 6  # the fast-form, no-receipt and not-submitted ones
