"""Shared fixtures: a real Redis (``REDIS_URL`` or an embedded server), loop choice.

Set ``SENDGATE_TEST_LOOP=asyncio`` to run the whole suite on the stock event
loop instead of uvloop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from engine.embedded_redis import redis_url_from_env


def _want_uvloop() -> bool:
    return os.environ.get("SENDGATE_TEST_LOOP", "uvloop") != "asyncio"


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """uvloop by default; the stock loop with SENDGATE_TEST_LOOP=asyncio."""
    if _want_uvloop():
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: ``REDIS_URL`` when set, else an embedded server for the session."""
    with redis_url_from_env() as url:
        yield url


@pytest.fixture
def key_prefix() -> str:
    """A fresh key prefix per test, so tests sharing one Redis never see each other's keys."""
    return f"sgtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[object]:
    """A client of the test Redis; the test's ``key_prefix`` keys are removed after it
    (some are written without TTL, and CI's Redis is shared and long-lived)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        try:
            keys = [k async for k in client.scan_iter(match=f"{key_prefix}:*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.unlink(*keys[i : i + 1000])
        finally:
            await client.aclose()
