"""A small typed producer for Python apps: validate and push jobs, read events.

Any language can ``XADD`` the flat fields of docs/contract.md §2.3; Python apps can use
this instead to get the same validation the engine applies before a job is
queued: ``SendJob`` is the engine's own `engine.job.Job`, and `Producer.validate`
runs the engine's `parse_job` on the fields it would push::

    from engine.producer import Producer, SendJob

    producer = Producer.from_url("redis://127.0.0.1:6379/0")
    await producer.send(SendJob(id="order-1234", to="+4500112233", text="Your code is 1234"))
    async for event in producer.events(last_id="0"):
        print(event["id"], event["event"])
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from redis.asyncio import Redis

from engine.job import Job, JobError, parse_job
from engine.keys import Keys

__all__ = ["Producer", "SendJob"]


# The producer's name for the engine's job: one schema, one validation.
SendJob = Job


class Producer:
    """Pushes validated jobs to the lanes and reads the events stream."""

    def __init__(self, redis: Redis, prefix: str = "sendgate") -> None:
        self.redis = redis
        self.keys = Keys(prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str = "sendgate") -> Producer:
        """A producer with its own client of the Redis at ``url``."""
        return cls(Redis.from_url(url), prefix)

    def lane(self, job: SendJob) -> str:
        """The stream ``job`` goes to: its ``priority``'s lane."""
        return {"high": self.keys.jobs_high, "bulk": self.keys.jobs_bulk}.get(job.priority, self.keys.jobs)

    def validate(self, job: SendJob) -> None:
        """Raise `JobError` (with its dead-letter code) when the engine would reject ``job``."""
        parse_job(job.fields(), time.time())

    async def send(self, job: SendJob, *, validate: bool = True) -> str:
        """Validate and push one job; returns the stream entry id."""
        if validate:
            self.validate(job)
        entry = await self.redis.xadd(self.lane(job), job.fields())  # type: ignore[arg-type]
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    async def send_many(self, jobs: Iterable[SendJob], *, validate: bool = True) -> list[str]:
        """Validate every job, then push them all in one round trip; returns the entry ids.

        A job that fails validation raises its `JobError` before anything is
        pushed. The pipeline is not a transaction: a Redis error midway can
        leave the jobs before it pushed (each is idempotent by ``id``).
        """
        batch = list(jobs)
        if validate:
            for job in batch:
                self.validate(job)
        pipe = self.redis.pipeline(transaction=False)
        for job in batch:
            pipe.xadd(self.lane(job), job.fields())  # type: ignore[arg-type]
        ids = await pipe.execute()
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def events(self, last_id: str = "$", block_ms: int = 1000, count: int = 500) -> AsyncIterator[dict[str, str]]:
        """Follow the events stream from ``last_id`` ("0" for all, "$" for new ones)."""
        while True:
            reply: Any = await self.redis.xread({self.keys.events: last_id}, count=count, block=block_ms)
            for _stream, entries in reply or []:
                for eid, fields in entries:
                    last_id = eid.decode() if isinstance(eid, bytes) else eid
                    yield {k.decode(): v.decode() for k, v in fields.items()}

    async def aclose(self) -> None:
        """Close the Redis client."""
        await self.redis.aclose()


__all__ += ["JobError"]
