"""The producer helper against a real Redis: it pushes what the engine reads,
validates as the engine does, and ``send_many`` is all or nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from engine.job import Job, parse_job
from engine.producer import JobError, Producer, SendJob


def _job(i: int, **kw: Any) -> SendJob:
    return SendJob(id=f"job-{i}", to=f"+45123456{i:02d}", text=f"message {i}", **kw)


async def test_send_pushes_the_fields_the_engine_reads(redis_client: Any, key_prefix: str) -> None:
    producer = Producer(redis_client, key_prefix)
    job = _job(1, ref="r-1", kind="marketing", expires_at=int(time.time()) + 600)
    entry = await producer.send(job)
    [(entry_id, fields)] = await redis_client.xrange(f"{key_prefix}:jobs")
    assert entry_id.decode() == entry
    assert parse_job(fields, time.time()) == parse_job(job.fields(), time.time())
    assert fields[b"kind"] == b"marketing" and b"priority" not in fields


async def test_send_many_pushes_every_job_to_its_lane_in_order(redis_client: Any, key_prefix: str) -> None:
    producer = Producer(redis_client, key_prefix)
    jobs = [_job(1), _job(2, priority="high"), _job(3, priority="bulk"), _job(4)]
    ids = await producer.send_many(jobs)
    assert len(ids) == 4  # entry ids: unique per stream, not across lanes
    normal = await redis_client.xrange(f"{key_prefix}:jobs")
    assert [(e.decode(), f[b"id"]) for e, f in normal] == [(ids[0], b"job-1"), (ids[3], b"job-4")]
    [(high_id, high)] = await redis_client.xrange(f"{key_prefix}:jobs:high")
    [(bulk_id, bulk)] = await redis_client.xrange(f"{key_prefix}:jobs:bulk")
    assert (high_id.decode(), high[b"id"]) == (ids[1], b"job-2")
    assert (bulk_id.decode(), bulk[b"id"]) == (ids[2], b"job-3")


async def test_send_many_pushes_nothing_when_one_job_is_invalid(redis_client: Any, key_prefix: str) -> None:
    producer = Producer(redis_client, key_prefix)
    with pytest.raises(JobError) as info:
        await producer.send_many([_job(1), SendJob(id="bad", to="12", text="x"), _job(3)])
    assert info.value.code == "bad_number"
    assert await redis_client.exists(f"{key_prefix}:jobs") == 0


@pytest.mark.parametrize(
    ("job", "code"),
    [
        (Job(id="j", to="+4512345678", text=""), "empty_text"),
        (Job(id="j", to="+4512345678", text="x", encoding="utf8"), "bad_encoding"),
        (Job(id="j", to="+4512345678", text="x", sender="far-too-long-sender"), "bad_sender"),
        (Job(id="j", to="+4512345678", text="x", expires_at=1), "expired"),
        (Job(id="j", to="+4512345678", text="x", kind="promo"), "invalid"),
    ],
)
def test_validate_refuses_what_the_engine_would_dead_letter(job: Job, code: str) -> None:
    producer = Producer.__new__(Producer)  # validate touches no Redis
    with pytest.raises(JobError) as info:
        producer.validate(job)
    assert info.value.code == code
