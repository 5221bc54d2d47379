"""Webhook forwarding: a job's status events POSTed, signed, to its callback URL.

Why it is built this way
------------------------
Receipts arrive at the send rate, so forwarding must never slow the receipt
path: :meth:`WebhookForwarder.forward` only serialises the event and puts it
on a bounded queue (no await, no task per event). A fixed set of worker tasks
does the POSTs over one shared aiohttp session (keep-alive per host). When
the queue is full the event is not dropped and not waited for: it goes to the
failed-callbacks stream with reason ``queue_full``, where an operator (or a
replay job) can find it — nothing is lost in silence.

Retries: 2xx is success. 4xx other than 408 (request timeout) and 429 (too
many requests) is permanent — the receiver said the request itself is wrong
and sending it again will not help — and so is 3xx (redirects are not
followed: a signed body must not be forwarded to a host the client did not
name). Everything else (5xx, 408, 429, timeouts, connection errors) is
retried with exponential backoff (``throttling.backoff``: ``backoff_s``
doubling up to ``backoff_max_s``, each delay jittered to 50-100 % so a
receiver that comes back is not hit by every retry at once; ``Retry-After`` seconds are honoured
up to the cap). Waiting retries sit in one timer heap, not in sleeping
workers, so one dead endpoint cannot occupy the workers that serve healthy
ones. After ``max_attempts`` the event goes to the failed stream with the
URL, the event, the attempts and the last error.

Signature: ``X-Sendgate-Signature: sha256=<hex HMAC-SHA256(secret, body)>``
over the exact body bytes, and ``X-Sendgate-Timestamp: <unix seconds>`` of
the attempt; receivers verify the HMAC with a constant-time compare.

Reach: by default a callback may only reach public unicast addresses
(``dlr.address_policy``): a URL whose host is a literal private, loopback,
link-local or multicast IP is parked at once (reason ``private_address``),
and names are resolved by :class:`PublicOnlyResolver`, which drops every
private address a name resolves to, at each connect — so a name that turns
into 127.0.0.1 after the job was accepted (DNS rebinding) is refused too,
as a permanent failure. ``allow_private=True`` (``[webhooks]
allow_private``) lifts the rule.

Privacy: log lines name only the scheme, host and port of a callback — never
its path or query string (tokens, and sometimes numbers, live there) — and
never an event body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import itertools
import logging
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from dlr.address_policy import callback_host_refusal, refused_address
from throttling.backoff import Backoff  # the engine's one backoff (pyproject.toml, "layers")

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "PrivateAddressError",
    "PublicOnlyResolver",
    "WebhookForwarder",
    "WebhookStats",
    "callback_refusal",
    "sign",
    "validate_callback_url",
]

log = logging.getLogger("sendgate.dlr.webhook")

SIGNATURE_HEADER = "X-Sendgate-Signature"
TIMESTAMP_HEADER = "X-Sendgate-Timestamp"
_MAX_URL_LEN = 2048
_MAX_RETRY_AFTER_S = 3600.0


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Sendgate-Signature`` value for ``body``: ``sha256=<hex digest>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def validate_callback_url(url: str) -> str:
    """Check a job's ``callback``: http/https with a host; returns it stripped.

    Raises ``ValueError`` otherwise; the message never repeats the URL.
    """
    if not isinstance(url, str):
        raise ValueError("callback URL must be a string")
    url = url.strip()
    if not url:
        raise ValueError("callback URL is empty")
    if len(url) > _MAX_URL_LEN:
        raise ValueError("callback URL is too long")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError("callback URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError("callback URL cannot be parsed") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("callback URL must use http or https")
    if not parts.hostname:
        raise ValueError("callback URL has no host")
    return url


class PrivateAddressError(OSError):
    """Every address a callback host resolved to is private (or loopback, link-local…)."""


class PublicOnlyResolver(AbstractResolver):
    """aiohttp resolver that keeps only public unicast addresses (DNS rebinding guard).

    Wraps aiohttp's default resolver; raises :class:`PrivateAddressError`
    when nothing public is left, which aiohttp reports as a connector error
    whose ``os_error`` is that exception.
    """

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner if inner is not None else aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if refused_address(r["host"]) is None]
        if not public:
            raise PrivateAddressError(f"callback host resolves only to private addresses ({len(results)})")
        return public

    async def close(self) -> None:
        await self._inner.close()


def callback_refusal(url: str) -> str | None:
    """Why the (valid) callback ``url`` is refused before any DNS lookup, or ``None``."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return "callback URL cannot be parsed"
    return callback_host_refusal(host)


def _log_target(url: str) -> str:
    """scheme://host:port of a URL: what log lines may show of a callback."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"
    except ValueError:
        return "<unparseable>"


class WebhookStats:
    """Counters for metrics (read them; the forwarder only increments)."""

    __slots__ = ("delivered", "failed", "queue_full", "retried")

    def __init__(self) -> None:
        self.delivered = 0
        self.retried = 0
        self.failed = 0
        self.queue_full = 0


class _Delivery:
    __slots__ = ("attempts", "body", "last_error", "url")

    def __init__(self, url: str, body: bytes) -> None:
        self.url = url
        self.body = body
        self.attempts = 0
        self.last_error = ""


class WebhookForwarder:
    """Forwards status events to callback URLs; see the module doc.

    ``redis`` is a ``redis.asyncio.Redis``; ``failed_stream`` the key of the
    failed-callbacks stream (entries: ``url``, ``event`` (JSON), ``attempts``,
    ``error``, ``reason``, ``ts``; bounded with ``MAXLEN ~ stream_maxlen``).
    Workers start on the first :meth:`forward` (or :meth:`start`); call
    :meth:`close` on shutdown.
    """

    def __init__(
        self,
        secret: bytes,
        redis: Any,
        failed_stream: str,
        concurrency: int = 32,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        *,
        backoff_max_s: float = 60.0,
        queue_size: int = 10_000,
        stream_maxlen: int = 1_000_000,
        session: aiohttp.ClientSession | None = None,
        allow_private: bool = False,
    ) -> None:
        if concurrency < 1 or max_attempts < 1 or queue_size < 1:
            raise ValueError("concurrency, max_attempts and queue_size must be at least 1")
        self._secret = secret
        self._redis = redis
        self.failed_stream = failed_stream
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._backoff = Backoff(backoff_s, backoff_max_s, jitter=0.5)
        self.timeout_s = timeout_s
        self.queue_size = queue_size
        self.stream_maxlen = stream_maxlen
        self.stats = WebhookStats()
        #: False: only public unicast addresses are called (see the module doc).
        self.allow_private = allow_private
        self._session = session
        self._own_session = session is None
        self._queue: asyncio.Queue[_Delivery] | None = None
        self._retry_heap: list[tuple[float, int, _Delivery]] = []
        self._retry_seq = itertools.count()
        self._retry_wakeup: asyncio.Event | None = None
        self._in_flight: set[_Delivery] = set()
        self._outstanding = 0  # accepted, not yet delivered or parked
        self._idle: asyncio.Event | None = None
        self._failed: list[dict[str, str | int]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        # Set when the workers are cancelled: a cancel that a library or Python
        # 3.11's wait_for swallows (result and cancel in the same tick) still ends
        # their loops, so close() cannot wait for them forever.
        self._stopping = False

    # -- public API ---------------------------------------------------------

    def start(self) -> None:
        """Start the workers (idempotent; needs a running event loop)."""
        if self._queue is not None:
            return
        self._queue = asyncio.Queue(self.queue_size)
        self._retry_wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(
                    limit=self.concurrency,
                    resolver=None if self.allow_private else PublicOnlyResolver(),
                ),
            )
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._retry_loop()))

    def forward(self, url: str, event: Mapping[str, Any]) -> None:
        """Queue ``event`` (a JSON-serialisable mapping) for a POST to ``url``.

        Never blocks and never raises for load: an invalid URL, a full queue or
        a closed forwarder sends the event to the failed stream instead.
        """
        body = orjson.dumps(event)
        if self._closed:
            self._park(url, body, 0, "", "closed")
            return
        self.start()
        try:
            url = validate_callback_url(url)
        except ValueError as exc:
            self._park(url, body, 0, str(exc), "invalid_url")
            return
        if not self.allow_private:
            refusal = callback_refusal(url)
            if refusal is not None:
                self.stats.failed += 1
                log.warning("webhook to %s refused: %s", _log_target(url), refusal)
                self._park(url, body, 0, refusal, "private_address")
                return
        assert self._queue is not None and self._idle is not None
        try:
            self._queue.put_nowait(_Delivery(url, body))
        except asyncio.QueueFull:
            self.stats.queue_full += 1
            self._park(url, body, 0, "", "queue_full")
            return
        self._outstanding += 1
        self._idle.clear()

    def pending(self) -> int:
        """Events accepted and not yet delivered or given up (queued, waiting, in flight)."""
        return self._outstanding

    async def wait_idle(self) -> None:
        """Wait until nothing is pending and the failed stream writes are done."""
        if self._idle is not None:
            await self._idle.wait()
        await self._flush_failed()

    async def close(self, timeout: float = 10.0) -> None:
        """Stop taking events, drain within ``timeout``, park what is left, stop workers.

        Events still queued, waiting for a retry or in flight when the time
        runs out go to the failed stream with reason ``shutdown``.
        """
        self._closed = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._idle is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        leftovers = list(self._in_flight)
        self._in_flight.clear()
        leftovers += [item for _, _, item in self._retry_heap]
        self._retry_heap.clear()
        if self._queue is not None:
            while not self._queue.empty():
                leftovers.append(self._queue.get_nowait())
        for item in leftovers:
            self._give_up(item, "shutdown")
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
                await self._flush_failed()
        except TimeoutError:
            if self._flusher is not None:
                self._flusher.cancel()
            log.error("%d failed webhook(s) could not be written to Redis", len(self._failed))
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    # -- delivery -----------------------------------------------------------

    async def _worker(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while not self._stopping:
            item = await queue.get()
            self._in_flight.add(item)
            try:
                await self._attempt(item)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not kill the worker or lose the event
                log.exception("webhook worker error")
                self._in_flight.discard(item)
                self._give_up(item, "internal_error")

    async def _attempt(self, item: _Delivery) -> None:
        assert self._session is not None
        item.attempts += 1
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, item.body),
            TIMESTAMP_HEADER: str(int(time.time())),
        }
        retry_after: float | None = None
        permanent = False
        try:
            async with self._session.post(
                item.url,
                data=item.body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as resp:
                status = resp.status
                if 200 <= status < 300:
                    self._in_flight.discard(item)
                    self.stats.delivered += 1
                    self._finished()
                    return
                item.last_error = f"http_{status}"
                permanent = 300 <= status < 500 and status not in (408, 429)
                retry_after = _retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError:
            item.last_error = "timeout"
        except aiohttp.ClientConnectorError as exc:
            item.last_error = type(exc).__name__
            if isinstance(exc.os_error, PrivateAddressError):
                # the name resolved to private addresses only (e.g. rebinding): never retried
                item.last_error = "private_address"
                permanent = True
        except aiohttp.ClientError as exc:
            item.last_error = type(exc).__name__
        self._in_flight.discard(item)
        if permanent:
            self._give_up(item, "private_address" if item.last_error == "private_address" else "permanent")
        elif item.attempts >= self.max_attempts:
            self._give_up(item, "max_attempts")
        else:
            self.stats.retried += 1
            delay = self._backoff.delay(item.attempts - 1)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.backoff_max_s))
            log.debug(
                "webhook to %s failed (%s), attempt %d, retry in %.2fs",
                _log_target(item.url),
                item.last_error,
                item.attempts,
                delay,
            )
            self._schedule_retry(item, delay)

    def _schedule_retry(self, item: _Delivery, delay_s: float) -> None:
        assert self._retry_wakeup is not None
        due = asyncio.get_running_loop().time() + delay_s
        heapq.heappush(self._retry_heap, (due, next(self._retry_seq), item))
        self._retry_wakeup.set()

    async def _retry_loop(self) -> None:
        assert self._queue is not None and self._retry_wakeup is not None
        loop = asyncio.get_running_loop()
        heap, wakeup = self._retry_heap, self._retry_wakeup
        while not self._stopping:
            wakeup.clear()
            if not heap:
                await wakeup.wait()
                continue
            delay = heap[0][0] - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wakeup.wait()
                continue
            _, _, item = heapq.heappop(heap)
            self._in_flight.add(item)  # counted while it waits for queue space
            await self._queue.put(item)
            self._in_flight.discard(item)

    # -- giving up ----------------------------------------------------------

    def _finished(self) -> None:
        self._outstanding -= 1
        if self._outstanding <= 0 and self._idle is not None:
            self._outstanding = 0
            self._idle.set()

    def _give_up(self, item: _Delivery, reason: str) -> None:
        self.stats.failed += 1
        log.warning(
            "webhook to %s given up: %s after %d attempt(s) (%s)",
            _log_target(item.url),
            reason,
            item.attempts,
            item.last_error or "-",
        )
        self._park(item.url, item.body, item.attempts, item.last_error, reason)
        self._finished()

    def _park(self, url: str, body: bytes, attempts: int, error: str, reason: str) -> None:
        self._failed.append(
            {
                "url": url[:_MAX_URL_LEN],
                "event": body.decode("utf-8"),
                "attempts": attempts,
                "error": error,
                "reason": reason,
                "ts": int(time.time() * 1000),
            }
        )
        if self._flusher is None or self._flusher.done():
            try:
                self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
            except RuntimeError:  # no loop (forward called from sync code at exit)
                log.error("webhook failed-stream write impossible without an event loop")

    async def _flush_loop(self) -> None:
        while self._failed:
            batch, self._failed = self._failed, []
            try:
                pipe = self._redis.pipeline(transaction=False)
                for entry in batch:
                    pipe.xadd(
                        self.failed_stream,
                        entry,
                        maxlen=self.stream_maxlen or None,
                        approximate=True,
                    )
                await pipe.execute()
            except asyncio.CancelledError:
                self._failed[:0] = batch  # still counted by close()'s error line
                raise
            except Exception as exc:  # Redis down: keep them, try again shortly
                log.error(
                    "cannot write %d failed webhook(s) to Redis (%s); retrying",
                    len(batch),
                    type(exc).__name__,
                )
                self._failed[:0] = batch
                await asyncio.sleep(1.0)

    async def _flush_failed(self) -> None:
        while self._flusher is not None and not self._flusher.done():
            await self._flusher


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: ignore, use our own backoff
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)
