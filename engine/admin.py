"""Admin HTTP: /metrics, /healthz, /readyz, /status (aiohttp).

- ``/healthz``: the process and its event loop answer (liveness).
- ``/readyz``: Redis answers and every carrier has at least one bind up
  (readiness: take the process out of rotation when it cannot send).
- ``/status``: JSON snapshot for people (binds, windows, pending parts).
- ``/metrics``: Prometheus text format.
- ``/``: the status page (engine/status_page.html): one self-contained HTML
  file, no external asset, that polls ``/status`` every few seconds.

Bound to 127.0.0.1 by default (``[admin] listen``); never shows a number or a
message text.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["AdminServer"]

log = logging.getLogger("sendgate.admin")

# The page loads nothing from elsewhere: its script and style are inline and it
# fetches only /status from the same origin.
_PAGE_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"


@functools.cache
def _status_page() -> bytes:
    return resources.files("engine").joinpath("status_page.html").read_bytes()


class AdminServer:
    """Serves the admin endpoints for one engine process."""

    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        ready: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]],
        status: Callable[[], dict[str, Any]],
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self._registry = registry
        self._ready = ready
        self._status = status
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status_handler)
        app.router.add_get("/", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("admin http listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    async def _readyz(self, _request: web.Request) -> web.Response:
        ok, detail = await self._ready()
        body = orjson.dumps({"ready": ok, **detail})
        return web.Response(body=body, status=200 if ok else 503, content_type="application/json")

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=_status_page(), content_type="text/html", charset="utf-8",
            headers={"Cache-Control": "no-cache", "Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff"},
        )

    async def _status_handler(self, _request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(self._status()), content_type="application/json")
