"""WebhookForwarder against real aiohttp servers on 127.0.0.1 and a real Redis."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from dlr.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookForwarder, validate_callback_url

SECRET = b"test-secret"
EVENT = {
    "id": "job-1",
    "ref": "r",
    "event": "delivered",
    "carrier": "acme",
    "parts": "1",
    "ts": "1",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """A real HTTP server; ``respond(n)`` decides the status of the n-th request."""

    def __init__(self, respond: Callable[[int], int]) -> None:
        self.respond = respond
        self.bodies: list[bytes] = []
        self.signatures_ok: list[bool] = []
        self.arrived = asyncio.Event()
        self.hold: asyncio.Event | None = None
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        self.signatures_ok.append(
            hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), expected)
            and request.headers.get(TIMESTAMP_HEADER, "").isdigit()
        )
        self.bodies.append(body)
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.respond(len(self.bodies)))

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/cb", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/cb?token=SECRET-TOKEN&to=%2B4500000000"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver_factory() -> AsyncIterator[
    Callable[[Callable[[int], int]], Awaitable[Receiver]]
]:
    started: list[Receiver] = []

    async def make(respond: Callable[[int], int]) -> Receiver:
        r = await Receiver(respond).start()
        started.append(r)
        return r

    yield make
    for r in started:
        if r.hold is not None:
            r.hold.set()
        await r.stop()


def forwarder(redis_client: Any, key_prefix: str, **kwargs: Any) -> WebhookForwarder:
    # the receivers listen on 127.0.0.1: private addresses allowed (tests/dlr/test_callback_reach.py covers the refusal)
    options: dict[str, Any] = {"backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0, "allow_private": True}
    options.update(kwargs)
    return WebhookForwarder(SECRET, redis_client, f"{key_prefix}:webhooks:failed", **options)


async def failed_entries(redis_client: Any, key_prefix: str) -> list[dict[str, str]]:
    entries = await redis_client.xrange(f"{key_prefix}:webhooks:failed")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def test_signed_event_delivered(
    redis_client: Any, key_prefix: str, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(lambda n: 200)
    fwd = forwarder(redis_client, key_prefix)
    fwd.forward(receiver.url, EVENT)
    fwd.forward(receiver.url, {**EVENT, "id": "job-2"})
    await fwd.wait_idle()
    assert sorted(orjson.loads(b)["id"] for b in receiver.bodies) == ["job-1", "job-2"]
    assert receiver.signatures_ok == [True, True]
    assert fwd.stats.delivered == 2 and fwd.pending() == 0
    await fwd.close(1.0)
    assert await failed_entries(redis_client, key_prefix) == []


async def test_flaky_server_is_retried(
    redis_client: Any, key_prefix: str, receiver_factory: Any
) -> None:
    # 503, 429, 408, then 204
    statuses = {1: 503, 2: 429, 3: 408}
    receiver = await receiver_factory(lambda n: statuses.get(n, 204))
    fwd = forwarder(redis_client, key_prefix, max_attempts=5)
    fwd.forward(receiver.url, EVENT)
    await fwd.wait_idle()
    assert len(receiver.bodies) == 4 and all(receiver.signatures_ok)
    assert fwd.stats.delivered == 1 and fwd.stats.retried == 3 and fwd.stats.failed == 0
    await fwd.close(1.0)
    assert await failed_entries(redis_client, key_prefix) == []


async def test_always_failing_server_lands_in_failed_stream(
    redis_client: Any, key_prefix: str, receiver_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sendgate.dlr.webhook")
    receiver = await receiver_factory(lambda n: 500)
    fwd = forwarder(redis_client, key_prefix, max_attempts=3)
    fwd.forward(receiver.url, EVENT)
    await fwd.wait_idle()
    assert len(receiver.bodies) == 3
    [entry] = await failed_entries(redis_client, key_prefix)
    assert entry["url"] == receiver.url
    assert orjson.loads(entry["event"]) == EVENT
    assert (
        entry["attempts"] == "3"
        and entry["error"] == "http_500"
        and entry["reason"] == "max_attempts"
    )
    await fwd.close(1.0)
    logged = caplog.text
    assert "given up" in logged
    assert "SECRET-TOKEN" not in logged and "4500000000" not in logged and "/cb" not in logged


async def test_permanent_4xx_is_not_retried(
    redis_client: Any, key_prefix: str, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(lambda n: 410)
    fwd = forwarder(redis_client, key_prefix)
    fwd.forward(receiver.url, EVENT)
    await fwd.wait_idle()
    assert len(receiver.bodies) == 1
    [entry] = await failed_entries(redis_client, key_prefix)
    assert (entry["reason"], entry["attempts"], entry["error"]) == ("permanent", "1", "http_410")
    await fwd.close(1.0)


async def test_unreachable_and_timeout_retry_then_fail(
    redis_client: Any, key_prefix: str, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(lambda n: 200)
    receiver.hold = asyncio.Event()  # never answers in time
    fwd = forwarder(redis_client, key_prefix, max_attempts=2, timeout_s=0.2)
    fwd.forward(receiver.url, EVENT)
    fwd.forward("http://127.0.0.1:9/cb", EVENT)  # discard port: connection refused
    await fwd.wait_idle()
    entries = await failed_entries(redis_client, key_prefix)
    errors = sorted(e["error"] for e in entries)
    assert len(entries) == 2 and "timeout" in errors
    assert all(e["attempts"] == "2" and e["reason"] == "max_attempts" for e in entries)
    receiver.hold.set()
    await fwd.close(1.0)


async def test_queue_full_goes_to_failed_stream(
    redis_client: Any, key_prefix: str, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(lambda n: 200)
    receiver.hold = asyncio.Event()
    fwd = forwarder(redis_client, key_prefix, concurrency=1, queue_size=1)
    fwd.forward(receiver.url, {**EVENT, "id": "a"})
    await receiver.arrived.wait()  # the only worker is busy with "a"
    fwd.forward(receiver.url, {**EVENT, "id": "b"})  # queued
    fwd.forward(receiver.url, {**EVENT, "id": "c"})  # no room
    assert fwd.stats.queue_full == 1
    receiver.hold.set()
    await fwd.wait_idle()
    assert sorted(orjson.loads(b)["id"] for b in receiver.bodies) == ["a", "b"]
    [entry] = await failed_entries(redis_client, key_prefix)
    assert entry["reason"] == "queue_full" and orjson.loads(entry["event"])["id"] == "c"
    await fwd.close(1.0)


async def test_close_parks_what_is_left(
    redis_client: Any, key_prefix: str, receiver_factory: Any
) -> None:
    receiver = await receiver_factory(lambda n: 200)
    receiver.hold = asyncio.Event()
    fwd = forwarder(redis_client, key_prefix, concurrency=1)
    fwd.forward(receiver.url, {**EVENT, "id": "x"})
    fwd.forward(receiver.url, {**EVENT, "id": "y"})
    await receiver.arrived.wait()
    await fwd.close(0.1)
    entries = await failed_entries(redis_client, key_prefix)
    assert sorted(orjson.loads(e["event"])["id"] for e in entries) == ["x", "y"]
    assert {e["reason"] for e in entries} == {"shutdown"}
    fwd.forward(receiver.url, EVENT)  # after close: parked, not lost
    await fwd.wait_idle()
    assert [e["reason"] for e in await failed_entries(redis_client, key_prefix)][-1] == "closed"


async def test_invalid_url_forwarded_is_parked(redis_client: Any, key_prefix: str) -> None:
    fwd = forwarder(redis_client, key_prefix)
    fwd.forward("ftp://example.invalid/x", EVENT)
    await fwd.wait_idle()
    [entry] = await failed_entries(redis_client, key_prefix)
    assert entry["reason"] == "invalid_url" and entry["attempts"] == "0"
    await fwd.close(1.0)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://example.com/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "http:///path",
        "https://exa mple.com/",
        "http://example.com:99999/",
        "http://example.com/a\nb",
        "example.com/cb",
        "http://[::1/cb",
    ],
)
def test_invalid_urls_rejected(url: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_callback_url(url)
    if url.strip():
        assert url.strip() not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/cb",
        "https://hooks.example.com/a/b?x=1",
        "HTTPS://Example.com",
        "  http://h/  ",
    ],
)
def test_valid_urls_accepted(url: str) -> None:
    assert validate_callback_url(url) == url.strip()


async def test_close_ends_a_worker_whose_request_swallowed_the_cancel(
    redis_client: Any, key_prefix: str
) -> None:
    """A cancel that a library (or Python 3.11's wait_for, when a result lands in the
    same tick) swallows must not make close() wait for the worker forever."""
    fwd = forwarder(redis_client, key_prefix, concurrency=1)
    attempting = asyncio.Event()
    swallowed = []

    async def attempt_swallowing_the_cancel(item: Any) -> None:
        attempting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.append(item)  # returns as if the request had finished
        fwd._in_flight.discard(item)

    fwd._attempt = attempt_swallowing_the_cancel  # type: ignore[method-assign]
    fwd.forward("http://127.0.0.1:9/cb", EVENT)
    await attempting.wait()
    tasks = list(fwd._tasks)
    closing = asyncio.ensure_future(fwd.close(0.05))
    done, _ = await asyncio.wait({closing}, timeout=10.0)  # a bound, not a cancel
    if not done:  # before: the worker went back to waiting on its queue
        closing.cancel()
    assert done, "close() still waits for a worker that swallowed its cancel"
    assert len(swallowed) == 1
    assert all(task.done() for task in tasks)
