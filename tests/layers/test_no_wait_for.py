"""The engine waits with ``asyncio.timeout``, never ``asyncio.wait_for``.

Why: on Python 3.11, ``asyncio.wait_for`` loses a cancellation that arrives
in the same loop turn as the awaited thing's result (it returns the result
instead of raising; fixed in 3.12, where wait_for is built on
``asyncio.timeout``). A loop such as ``while not stopping: wait_for(event.wait(),
1.0)`` then goes round again after its task was cancelled, and whoever awaits
that task — a shutdown, pytest-asyncio's loop teardown — waits for ever. One
CI run hung like that (session 18). ``async with asyncio.timeout(...)`` counts
cancellations (``Task.uncancel``) and re-raises the outer one.

The first test shows the hazard on this interpreter (skipped where wait_for is
fixed), the second that no engine module uses wait_for, the third that the
pattern the engine uses instead keeps the cancellation.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "connectors", "dlr", "throttling", "privacy_hooks")


async def _event_set_and_task_cancelled_together(wait: str) -> bool:
    """Whether a loop waiting for an event with a timeout still ends when the event
    is set and its task cancelled in the same turn; `wait` picks the waiting form."""
    event = asyncio.Event()
    rounds = 0

    async def loop_until_cancelled() -> None:
        nonlocal rounds
        while rounds < 3:  # bounded: a lost cancellation shows as a third round
            rounds += 1
            event.clear()
            with contextlib.suppress(TimeoutError):
                if wait == "wait_for":
                    await asyncio.wait_for(event.wait(), 5.0)
                else:
                    async with asyncio.timeout(5.0):
                        await event.wait()
            await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(loop_until_cancelled())
    for _ in range(3):  # let it reach its wait
        await asyncio.sleep(0)
    event.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return task.cancelled() and rounds == 1


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps the cancellation from 3.12")
async def test_wait_for_loses_a_cancellation_on_this_python() -> None:
    assert not await _event_set_and_task_cancelled_together("wait_for")


async def test_asyncio_timeout_keeps_the_cancellation() -> None:
    assert await _event_set_and_task_cancelled_together("timeout")


def test_no_engine_module_calls_wait_for() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr == "wait_for"
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "asyncio"
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, "use `async with asyncio.timeout(...)` instead of asyncio.wait_for: " + ", ".join(found)
