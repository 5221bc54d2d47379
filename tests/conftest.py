"""Shared fixtures: a real Redis (``REDIS_URL`` or an embedded server), loop choice.

Set ``SENDGATE_TEST_LOOP=asyncio`` to run the whole suite on the stock event
loop instead of uvloop.
"""

from __future__ import annotations

import asyncio
import atexit
import faulthandler
import os
import shutil
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from engine.embedded_redis import redis_url_from_env

_timers: dict[str, threading.Timer] = {}

# The engine's default history store is a SQLite file in its data directory
# (engine/history): the tests' engines and children write theirs here, not in $HOME.
if "SENDGATE_DATA_DIR" not in os.environ:
    _data_dir = tempfile.mkdtemp(prefix="sendgate-test-data-")
    os.environ["SENDGATE_DATA_DIR"] = _data_dir
    atexit.register(shutil.rmtree, _data_dir, True)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's thread method, but naming the test and showing its asyncio
    tasks: inside an event loop the threads' stacks alone end in ``Runner.run``."""
    if settings.timeout <= 0 or settings.method != "thread":
        return None

    def expire() -> None:
        capman = item.config.pluginmanager.getplugin("capturemanager")
        if capman is not None:  # what is written below must reach the terminal
            capman.suspend_global_capture(in_=True)
        out = sys.stderr
        out.write(f"\n+++ Timeout: {item.nodeid} ran longer than {settings.timeout:g} s +++\n")
        try:  # best effort, from this thread: the tasks of every loop, with their stacks
            for task in list(asyncio.tasks._all_tasks):  # type: ignore[attr-defined]
                if not task.done():
                    out.write(f"--- {task!r}\n")
                    task.print_stack(limit=10, file=out)
        except Exception as exc:
            out.write(f"(asyncio tasks not available: {exc!r})\n")
        faulthandler.dump_traceback(file=out, all_threads=True)
        out.flush()
        os._exit(1)

    timer = threading.Timer(settings.timeout, expire)
    timer.daemon = True
    timer.start()
    _timers[item.nodeid] = timer
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    timer = _timers.pop(item.nodeid, None)
    if timer is None:
        return None
    timer.cancel()
    return True


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
def key_prefix(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh key prefix per test, so tests sharing one Redis never see each other's keys.

    A test that also has ``redis_url`` gets its prefix's keys removed afterwards,
    whichever clients wrote them (``redis_client`` does the same for its own):
    some are written without TTL, and CI's Redis is shared and long-lived.
    """
    prefix = f"sgtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    if "redis_url" in request.fixturenames:
        import redis

        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for i in range(0, len(keys), 1000):
                client.unlink(*keys[i : i + 1000])
        finally:
            client.close()


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
