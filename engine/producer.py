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

Backpressure: ``await producer.ready()`` is False while a lane's backlog is
above the engines' ``[engine] lane_high_water`` (``backlog()`` gives the
figures); ``cancel(job_id)`` stops a job that is still waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from redis.asyncio import Redis

from engine.backlog import lane_backlog, read_backlog
from engine.job import Job, JobError, parse_job
from engine.keys import Keys, shard_keys, shard_of
from engine.scripts import Script, cancel_call
from engine.suppression import SuppressionLists

if TYPE_CHECKING:
    from engine.history import HistoryStore

__all__ = ["Producer", "SendJob"]


# The producer's name for the engine's job: one schema, one validation.
SendJob = Job


class Producer:
    """Pushes validated jobs to the lanes and reads the events stream.

    ``shards``: the engines' ``[redis] shards``. A job goes to the lanes of shard
    ``crc32(id) mod shards`` (`engine.keys.shard_of`), and `events` reads every
    shard's events stream."""

    def __init__(
        self, redis: Redis, prefix: str = "sendgate", history: HistoryStore | None = None, hash_secret: str = "",
        *, group: str = "sendgate", shards: int = 1,
    ) -> None:
        self.redis = redis
        self.shards: tuple[Keys, ...] = shard_keys(prefix, shards)
        self.keys = self.shards[0]
        self.history = history
        self.hash_secret = hash_secret
        """``[privacy] hash_secret`` of the engine: needed by the suppression helpers only."""
        self.group = group  # the engines' consumer group ([engine] group)
        self._cancel = Script("cancel")

    def suppression(self) -> SuppressionLists:
        """The suppression lists (``suppress`` / ``unsuppress`` / ``is_suppressed`` use them)."""
        if not self.hash_secret:
            raise ValueError("Producer(hash_secret=...) is needed: lists hold keyed hashes of numbers")
        return SuppressionLists(self.redis, self.keys.prefix, self.hash_secret, shards=len(self.shards))

    async def suppress(self, number: str, client: str = "") -> bool:
        """Put ``number`` on ``client``'s suppression list (marketing to it is then
        dead-lettered ``suppressed``); True if it was not on it. Audited."""
        return await self.suppression().add([number], client, source="producer") == 1

    async def unsuppress(self, number: str, client: str = "") -> bool:
        """Take ``number`` off ``client``'s suppression list; True if it was on it. Audited."""
        return await self.suppression().remove([number], client, source="producer") == 1

    async def is_suppressed(self, number: str, client: str = "") -> bool:
        """Whether ``number`` is on ``client``'s suppression list."""
        return (await self.suppression().check([number], client))[0]

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "sendgate", hash_secret: str = "", *, group: str = "sendgate", shards: int = 1,
        cluster: bool = False,
    ) -> Producer:
        """A producer with its own client of the Redis at ``url``; ``cluster=True``: of the
        Redis Cluster whose node ``url`` names (with one shard the prefix needs a hash tag, e.g.
        ``{sendgate}``; with shards none)."""
        if cluster:
            from engine.redis_client import cluster_from_url

            return cls(cluster_from_url(url), prefix, hash_secret=hash_secret, group=group, shards=shards)
        return cls(Redis.from_url(url), prefix, hash_secret=hash_secret, group=group, shards=shards)

    def shard(self, job_id: str) -> Keys:
        """The keys of the shard of ``job_id``: ``crc32(id) mod shards`` (docs/contract.md §2.1)."""
        shards = self.shards
        return shards[shard_of(job_id, len(shards))] if len(shards) > 1 else shards[0]

    def lane(self, job: SendJob) -> str:
        """The stream ``job`` goes to: its ``priority``'s lane, on its id's shard."""
        keys = self.shard(job.id)
        return {"high": keys.jobs_high, "bulk": keys.jobs_bulk}.get(job.priority, keys.jobs)

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
        """Follow the events stream from ``last_id`` ("0" for all, "$" for new ones).

        With shards, every shard's stream, each from ``last_id``: a job's events
        are all on its shard, so they come in their order; events of different
        jobs may interleave across shards."""
        if len(self.shards) == 1:
            while True:
                reply: Any = await self.redis.xread({self.keys.events: last_id}, count=count, block=block_ms)
                for _stream, entries in reply or []:
                    for eid, fields in entries:
                        last_id = eid.decode() if isinstance(eid, bytes) else eid
                        yield {k.decode(): v.decode() for k, v in fields.items()}
        # One stream per shard, read without BLOCK in one pipelined round trip (each
        # command names one shard's stream: fine on a Cluster too); when all are
        # empty, look again shortly (at most ``block_ms`` apart).
        positions = {k.events: last_id for k in self.shards}
        if last_id == "$":  # "$" for each stream: its last id now
            pipe = self.redis.pipeline(transaction=False)
            for stream in positions:
                pipe.xrevrange(stream, count=1)
            for stream, last in zip(list(positions), await pipe.execute(), strict=True):
                positions[stream] = _entry_id(last[0][0]) if last else "0-0"
        pause = min(0.05, block_ms / 1000)
        while True:
            pipe = self.redis.pipeline(transaction=False)
            for stream, position in positions.items():
                pipe.xread({stream: position}, count=count)
            got = False
            for reply in await pipe.execute():
                for stream_name, entries in reply or []:
                    stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
                    for eid, fields in entries:
                        positions[stream] = _entry_id(eid)
                        got = True
                        yield {k.decode(): v.decode() for k, v in fields.items()}
            if not got:
                await asyncio.sleep(pause)

    async def status(self, job_id: str) -> dict[str, Any] | None:
        """A job's state: from Redis while it is hot, else from the history store (if given).

        Returns ``{"source": "redis", ...the job record}`` or ``{"source": "history",
        ...the row}``; None when neither knows the job. Never the number in clear.
        """
        raw: Any = await self.redis.hgetall(self.shard(job_id).job(job_id))
        if raw:
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            fields.pop("to", None)
            fields.pop("text", None)
            return {"source": "redis", "job_id": job_id, **fields}
        if self.history is not None:
            row = await self.history.get(job_id)
            if row is not None:
                return {"source": "history", **msgspec.to_builtins(row), "state": row.state}
        return None

    async def cancel(self, job_id: str, *, mark_ttl_s: int = 168 * 3600) -> bool:
        """Cancel a job that is still waiting (in a lane, parked, or held for its
        ``send_at``): True if it will never be sent (event ``cancelled``), False
        when it was handed to a bind already (or cancelled before).

        ``mark_ttl_s``: the engines' idempotency window (``[engine] idempotency_hours``
        in seconds); cancelling an id that was never pushed blocks it that long.
        """
        code, _mark = await cancel_outcome(self, job_id, mark_ttl_s)
        return code > 0

    async def backlog(self) -> dict[str, int]:
        """Jobs waiting per lane (``high``, ``normal``, ``bulk``): the engines' last
        sample (with parked jobs), or, when no engine sampled lately, the lanes'
        unread and unacked entries read now."""
        sample = await read_backlog(self.redis, self.keys)
        if sample is not None:
            return sample[0]
        return await self._lanes_now()

    async def _lanes_now(self) -> dict[str, int]:
        """Every shard's lanes' unread and unacked entries, added up (one pipeline)."""
        return await lane_backlog(self.redis, self.shards, self.group)

    async def ready(self, high_water: int | None = None) -> bool:
        """False while a lane's backlog is above ``high_water`` (default: the
        engines' ``[engine] lane_high_water``; 0 = always ready)."""
        sample = await read_backlog(self.redis, self.keys)
        if sample is None:
            lanes, hw = await self._lanes_now(), 0
        else:
            lanes, hw = sample
        if high_water is not None:
            hw = high_water
        return not hw or all(n <= hw for n in lanes.values())

    async def aclose(self) -> None:
        """Close the Redis client."""
        await self.redis.aclose()


async def cancel_outcome(producer: Producer, job_id: str, mark_ttl_s: int) -> tuple[int, str]:
    """cancel.lua's answer: (1 waiting in a lane / 2 held for send_at, "") when
    cancelled; (0, mark) when not cancellable (``c`` = cancelled before)."""
    import time

    code, mark = await producer._cancel(
        producer.redis, *cancel_call(producer.shard(job_id), job_id, mark_ttl_s, int(time.time() * 1000), 1_000_000)
    )
    return int(code), mark.decode() if isinstance(mark, bytes) else str(mark)


def _entry_id(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


__all__ += ["JobError", "cancel_outcome"]
