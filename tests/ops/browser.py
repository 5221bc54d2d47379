"""Headless Chromium driven over the DevTools protocol (a websocket, with aiohttp).

Just enough of the protocol for the status-page test: start Chromium on a
URL, find the page's target, evaluate JavaScript in it and read the result.
Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it
best-effort); without it the tests that need it are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

__all__ = ["Page", "chromium", "open_page"]


def chromium() -> str:
    """Path of a Chromium binary, or skip the test."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium not installed (apt-get install chromium): the status page is not tested in a browser")


class Page:
    """One page target: `evaluate` runs JavaScript and returns its (JSON) value."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self._ws.receive_json(), timeout=15)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result

    async def evaluate(self, expression: str) -> Any:
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression!r}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout_s: float = 20.0) -> Any:
        """Evaluate ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout_s
        value: Any = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"page: timed out waiting for {what} (last: {value!r})")


@contextlib.asynccontextmanager
async def open_page(url: str) -> AsyncIterator[Page]:
    """Headless Chromium showing ``url``; yields its page, kills the browser after."""
    binary = chromium()
    profile = tempfile.mkdtemp(prefix="sendgate-chromium-")
    args = [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-allow-origins=*", url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.returncode is not None or time.monotonic() > deadline:
                pytest.skip(f"Chromium did not start (exit {proc.returncode}): cannot test the page in a browser")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        async with aiohttp.ClientSession() as http:
            target: dict[str, Any] | None = None
            while target is None:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = await resp.json()
                target = next((t for t in targets if t.get("type") == "page" and t.get("url", "").startswith(url)), None)
                if target is None:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no page target for {url}: {targets}")
                    await asyncio.sleep(0.1)
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Runtime.enable")
                yield page
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
