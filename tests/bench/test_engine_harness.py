"""``python -m bench.instructions engine`` (and ``percall``)'s program runs on this tree
(without valgrind: the harness counts it under callgrind): jobs built, recorded and
their receipts applied, in the batch size asked for."""

from __future__ import annotations

import asyncio

import pytest
import redis

from bench.instructions import engine_code


@pytest.mark.parametrize("batch", [50, 500])
def test_the_engine_harness_records_and_applies_receipts(redis_url: str, batch: int) -> None:
    names: dict[str, object] = {"__name__": "__main__"}
    asyncio.set_event_loop(None)
    exec(compile(engine_code(1000, 2, redis_url, batch=batch), "<engine>", "exec"), names)
    # the program asserts each flush answered the batch's receipts, all matched; it
    # leaves no key of its own prefix behind
    assert names["BATCH"] == batch
    assert not list(redis.Redis.from_url(redis_url).scan_iter(match=str(names["PREFIX"]) + ":*", count=1000))
