"""Concatenation references: rotated per destination, in memory that does not grow
with the number of destinations (engine/text/segmenter.py ``ConcatRefs``, taken
only by texts in parts).

The engine used to keep a dict of number -> next reference, cleared at 200,000
numbers: ~24 MiB at its peak and the main cause of the engine's RSS growing in
the first 15-20 minutes of a soak (bench/RESULTS.md, rssgrow)."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

from engine.config import settings_from_mapping
from engine.job import Job, parse_job
from engine.metrics import Metrics
from engine.pipeline import Pipeline

LONG = "Order 4711: this longer message does not fit in one SMS segment, so it goes in parts. " * 2


def _job(i: int, text: str = LONG) -> Job:
    fields = {"id": f"job-{i}", "to": f"+4501{i:07d}", "text": text}
    return parse_job({a.encode(): b.encode() for a, b in fields.items()}, time.time())


def _ref8(p: Pipeline, job: Job) -> int:
    """The udh8 reference of the job's parts (05 00 03 ref total seq): the same in every part."""
    seg = p._segment(job, "c1")
    assert len(seg.parts) > 1
    refs = {part.short_message[3] for part in seg.parts}
    assert len(refs) == 1
    return refs.pop()


def _pipeline(redis_client: Any) -> Pipeline:
    settings = settings_from_mapping({"carriers": [{"name": "c1", "routes": [""]}]}, env={})
    return Pipeline(settings, redis_client, {}, Metrics())  # (segments only: nothing is written)


async def test_consecutive_long_messages_to_a_number_get_consecutive_references(redis_client: Any) -> None:
    p = _pipeline(redis_client)
    a, b = _job(1), _job(2)
    first = _ref8(p, a)
    assert _ref8(p, a) == (first + 1) & 0xFF
    assert _ref8(p, a) == (first + 2) & 0xFF
    # Single-part messages to the number leave its reference where it is.
    assert len(p._segment(_job(1, "short"), "c1").parts) == 1
    assert _ref8(p, a) == (first + 3) & 0xFF
    # Another number has its own rotation (its slot differs from a's for almost every hash seed).
    other = _ref8(p, b)
    assert _ref8(p, b) == (other + 1) & 0xFF
    assert _ref8(p, a) == (first + 4) & 0xFF


async def test_the_references_memory_does_not_grow_with_the_destinations(redis_client: Any) -> None:
    """20,000 long messages to 20,000 numbers: what the pipeline keeps afterwards stays
    under 64 KiB (the dict of number -> reference kept ~1.1 MB for them, and up to
    ~24 MiB at 200,000 numbers)."""
    p = _pipeline(redis_client)
    jobs = [_job(i) for i in range(20_000)]
    p._segment(jobs[0], "c1")  # warm: first-use allocations of the segmenter
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for job in jobs:
            p._segment(job, "c1")
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 64 * 1024, f"{kept:,} bytes kept after 20,000 destinations"
