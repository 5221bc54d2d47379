"""Micro benchmarks of the engine's per-message steps: job decode/validation, routing,
building the submit_sm of a job, the per-batch record payload."""

from __future__ import annotations

import time
from typing import Any

from engine.config import settings_from_mapping
from engine.job import parse_job
from engine.router import Router
from engine.scripts import RecordBatch, RecordJob, RecordWait, payload_json
from engine.submit import SubmitBuilder
from engine.text.segmenter import segment

FIELDS = {b"id": b"order-123456", b"to": b"+4512345678", b"text": b"Your code is 123456", b"dlr": b"1"}
FULL = {**FIELDS, b"from": b"ACME", b"ref": b"web-42", b"client": b"shop", b"priority": b"normal"}


def test_parse_minimal_job(benchmark: Any) -> None:
    now = time.time()
    job = benchmark(parse_job, {k: v for k, v in FIELDS.items() if k != b"dlr"}, now)
    assert job.to == "4512345678"


def test_parse_job_with_options(benchmark: Any) -> None:
    now = time.time()
    job = benchmark(parse_job, FULL, now)
    assert job.sender == "ACME" and job.ref == "web-42"


def test_parse_job_with_a_callback(benchmark: Any) -> None:
    """URL check plus the private-address rule (dlr/address_policy.py), cached per host."""
    now = time.time()
    fields = {**FIELDS, b"callback": b"https://hooks.example.com/sms/status?token=abc123"}
    job = benchmark(parse_job, fields, now)
    assert job.callback.startswith("https://hooks.example.com/")


def test_route_longest_prefix(benchmark: Any) -> None:
    routes = [(f"c{i}", [f"{p}" for p in range(40 + i, 100, 7)]) for i in range(7)]
    router = Router([*routes, ("dk", ["45", "4512"]), ("world", [""])])
    assert benchmark(router.route, "4512345678") == "dk"


def test_build_submit_sm(benchmark: Any) -> None:
    settings = settings_from_mapping({"carriers": [{"name": "c"}]}, env={})
    builder = SubmitBuilder(settings.carriers[0])
    job = parse_job(FIELDS, time.time())
    seg = segment(job.text, builder.segment_options)
    pdus = benchmark(builder.build, job, seg)
    assert len(pdus) == 1 and pdus[0].registered_delivery == 1


def test_record_payload_of_500_jobs(benchmark: Any) -> None:
    """The JSON the record script receives per batch, its per-job entries built by
    name as the pipeline does (engine/scripts.py; per job: divide by 500)."""
    ids = [f"job-{i}" for i in range(500)]

    def build() -> bytes:
        jobs = [
            RecordJob(
                job_id=job_id, event="submitted", carrier="sim", parts=1, message_ids="1a2b3c", error="", ref="",
                client="", kind="transactional", callback="", to_hash="0" * 32, to_mask="+45******01",
                encoding="gsm7", corr="1a2b3c", expect=1, dlr_ids="",
            )
            for job_id in ids
        ]
        waits = {"sim": RecordWait(end_ms="3", expire_at_ms="4", record_ttl="5")}
        return payload_json(RecordBatch(retention_until=1, waits=waits, jobs=jobs, acks=["1-1"] * 500))

    assert benchmark(build).startswith(b"{")
