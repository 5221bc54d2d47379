"""App wiring: one engine process — Redis, bind pools, pipeline, receipts, admin.

`Engine.run()` is what ``sendgate run`` executes: it connects, starts every
carrier's bind pool and the admin server, then runs the pipeline until
SIGTERM/SIGINT. Shutdown (docs/contract.md §3, "Delivery semantics"): stop reading new
jobs, let in-flight windows drain within ``engine.drain_timeout_s``, unbind,
record and ack what completed, exit 0. A second signal exits at once; what
was left unacked is reclaimed by another consumer later, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import secrets
import signal
import time
from typing import Any

from connectors.config import BindConfig
from connectors.pool import BindPool
from dlr.receipt_scan import scan_receipt
from engine import __version__
from engine.admin import AdminServer
from engine.backlog import lane_backlog, write_backlog
from engine.closure import closed_clients
from engine.config import CarrierSettings, Settings
from engine.embedded_redis import EmbeddedRedis
from engine.history.archiver import Archiver
from engine.history.process import ArchiverProcess
from engine.keys import Keys
from engine.leases import LeaseManager
from engine.metrics import Metrics
from engine.ops_sampler import OpsSampler
from engine.pipeline import Pipeline
from engine.receipt_sink import ReceiptSink
from engine.redis_client import redis_from_settings
from engine.status import status_snapshot
from engine.stream_trim import trim_streams
from privacy_hooks.audit import AuditLog
from privacy_hooks.logfile import rotate_due_files
from throttling.adaptive import AimdSettings
from throttling.flow import AdaptiveLimiter, CarrierFlow, LocalAdaptiveLimiter
from throttling.global_bucket import GlobalTokenBucket

__all__ = ["Engine", "bind_config", "log_event", "redis_url_for"]

#: The alphabet of an engine id's random part (no digits, no look-alikes).
_ID_LETTERS = "abcdefghjkmnpqrstuvwxyz"

log = logging.getLogger("sendgate.engine")


def log_event(msg: str, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One log line for an event an operator cares about, with ``event`` and its fields
    as JSON keys (privacy_hooks/logformat.py). Never per message: binds, leases,
    backoff, config, start and stop."""
    log.log(level, msg, extra={"event": event, **fields})

#: Young-generation threshold of the cyclic garbage collector while the engine
#: runs (CPython's default is 700). A batch allocates and frees tens of thousands
#: of containers by reference counting, almost none in cycles: at 700 the
#: collector ran ~2,000 young and ~170 middle collections per 100k jobs, which
#: scanned the same in-flight batches over and over: 9 µs per job without
#: receipts and 12-14 with, about 15 % of the engine's CPU (sendgate bench, 2 cores).
#: At 50,000 it runs about once per 100k jobs (0.2-0.4 µs per job); cyclic
#: garbage is still collected, after at most 50,000 net allocations, and the
#: older generations keep their default ratios. Pauses were no longer: 4-9 ms
#: for a young collection, 15-35 ms for a full one (28-49 ms at the default).
GC_GEN0_THRESHOLD = 50_000


class _GcThreshold:
    """The collector's thresholds while engines run in this process: raised by the
    first engine that starts, the process's own back when the last one closes
    (several engines in one process — tests, an embedding app — close in any order)."""

    def __init__(self) -> None:
        self.running = 0
        self.saved: tuple[int, int, int] = gc.get_threshold()

    def raise_threshold(self) -> tuple[int, int, int]:
        if self.running == 0:
            self.saved = gc.get_threshold()
            gc.set_threshold(GC_GEN0_THRESHOLD, *self.saved[1:])
        self.running += 1
        return self.saved

    def restore(self) -> None:
        self.running -= 1
        if self.running == 0:
            gc.set_threshold(*self.saved)


_GC = _GcThreshold()


def bind_config(c: CarrierSettings) -> BindConfig:
    """The connector's view of one carrier."""
    return BindConfig(
        name=c.name,
        host=c.host,
        port=c.port,
        system_id=c.system_id,
        password=c.password,
        tls=c.tls,
        ca_file=c.ca_file,
        server_name=c.server_name,
        system_type=c.system_type,
        bind_mode=c.bind,
        binds=c.binds,
        window=c.window,
        enquire_link_s=c.enquire_link_s,
        response_timeout_s=c.response_timeout_s,
        bind_timeout_s=c.bind_timeout_s,
        reconnect_min_s=c.reconnect_min_s,
        reconnect_max_s=c.reconnect_max_s,
        auth_retry_s=c.auth_retry_s,
        drain_timeout_s=c.drain_timeout_s,
    )


def redis_url_for(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """The Redis to use; starts an embedded one when none is configured."""
    if settings.redis.url:
        return settings.redis.url, None
    server = EmbeddedRedis().start()
    server.announce()  # so `sendgate send` on this machine finds it
    log.info("no redis configured: started an embedded redis on 127.0.0.1:%d", server.port)
    return server.url, server


class _PoolHandler:
    """Routes one carrier's pool callbacks to the pipeline and the receipt sink."""

    __slots__ = ("carrier", "engine", "on_submit_lost", "on_submit_resp", "on_submit_resps")

    def __init__(self, engine: Engine, carrier: str) -> None:
        self.engine = engine
        self.carrier = carrier
        self.on_submit_resp = engine.pipeline.on_submit_resp
        self.on_submit_resps = engine.pipeline.on_submit_resps  # the accepted ones of a batch, at once
        self.on_submit_lost = engine.pipeline.on_submit_lost

    def on_deliver(self, bind: Any, pdu: Any) -> None:
        self.engine.receipts.on_deliver(self.carrier, bind, pdu)

    def on_claimed(self, bind: Any, items: list[tuple[int, Any]]) -> None:
        self.engine.receipts.on_claimed(self.carrier, bind, items)

    def on_bind_state(self, bind_name: str, up: bool) -> None:
        self.engine.pipeline.on_bind_state(self.carrier, up)  # read and admit again, or start the outage clock
        pool = self.engine.pools.get(self.carrier)
        bind = next((b for b in pool.binds if b.name == bind_name), None) if pool is not None else None
        if up:
            # generation counts successful binds: above 1 this is a reconnect.
            reconnects = max(0, int(getattr(bind, "generation", 1)) - 1)
            log_event(
                f"bind {bind_name} of carrier {self.carrier} is up" + (f" again (reconnect {reconnects})" if reconnects else ""),
                "bind_up", carrier=self.carrier, bind=bind_name, reconnects=reconnects,
            )
            return
        reason = (getattr(bind, "last_error", "") or "connection closed") if bind is not None else "unknown"
        # One of connectors.transport.RECONNECT_CAUSES (also the label of sendgate_reconnects_total).
        cause = (getattr(bind, "last_cause", "") or "closed_by_peer") if bind is not None else "closed_by_peer"
        level = logging.WARNING
        if self.engine.closing:
            reason, level = "engine stopping", logging.INFO
        log_event(
            f"bind {bind_name} of carrier {self.carrier} is down: {reason}", "bind_down", level,
            carrier=self.carrier, bind=bind_name, reason=reason, cause=cause,
        )


class Engine:
    """One engine process."""

    def __init__(self, settings: Settings, redis_url: str, *, config_source: str | None = None) -> None:
        """``config_source``: where the settings were loaded from (``sendgate run``); the
        start then writes a ``config_load`` audit entry."""
        self.settings = settings
        self.config_source = config_source
        self.redis_url = redis_url
        client_name = "sendgate-" + "".join(ch if ch.isalnum() or ch in "-_.:" else "_" for ch in settings.consumer_name)
        self.redis = redis_from_settings(
            settings, redis_url, socket_keepalive=True, health_check_interval=30, client_name=client_name
        )
        self.metrics = Metrics()
        self.keys = Keys(settings.redis.prefix)
        self.pools: dict[str, BindPool] = {}
        self.pipeline = Pipeline(settings, self.redis, self.pools, self.metrics)
        self.receipts = ReceiptSink(settings, self.redis, self.metrics)
        self.pipeline.forward = self.receipts.webhooks.forward
        self.pipeline.on_recorded = self.receipts.retry_unmatched_soon
        self.receipts.barrier = self.pipeline.recorded_barrier
        if self.pipeline.nshards > 1:  # its own submits' receipts go straight to their shard
            self.receipts.hints = self.pipeline.receipt_hints
        self.admin: AdminServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._limiters: list[GlobalTokenBucket] = []
        d = settings.privacy.retention_days
        self.audit = AuditLog(self.redis, self.keys.audit, d.audit, actor=f"engine:{settings.consumer_name}")
        self._auth_failures_seen: dict[str, int] = {}
        self._stopped = asyncio.Event()
        self._signals = 0
        self.backlog: dict[str, int] = {}  # per lane, sampled by _update_backlog
        self._gc_threshold: tuple[int, int, int] | None = None  # restored by close()
        self.started_at = time.time()
        self.archiver: Archiver | None = None  # [history] enabled: events → the history store
        self.archiver_process: ArchiverProcess | None = None  # [history] archiver = process (or auto + PostgreSQL)
        self.inbound_archiver: Archiver | None = None  # [history] enabled: inbound stream → the history store
        self.closing = False  # set when the graceful stop begins (bind-down reasons say so)
        self.leases: LeaseManager | None = None  # carriers with max_binds: binds under leases
        self.metrics.webhook_stats = self.receipts.webhooks.stats
        self.sampler = OpsSampler(
            self.redis, self.keys, settings.engine.group, self.metrics, [c.name for c in settings.carriers],
            written=lambda: {name: p.stats.written for name, p in self.pools.items()},
            interval_s=settings.admin.sample_interval_s or 2.0, on_sample=self._log_flow_changes,
            shards=self.pipeline.shards,
        )
        self._backing_off: set[str] = set()  # carriers with a bind in throttle backoff at the last sample

    # ---------------------------------------------------------------- life
    async def start(self) -> None:
        await self.pipeline.ensure_groups()
        if self.settings.history.enabled:
            from engine.history.process import runs_apart

            if runs_apart(self.settings):
                # Spawned first, so its imports overlap the binds' set-up; waited for
                # before /readyz answers and before sending (its start-up, ~0.4 s of
                # CPU, competes with neither).
                self.archiver_process = ArchiverProcess(self.settings, self.redis_url)
                self.archiver_process.start()
        self.pipeline.closed_clients = await closed_clients(self.redis, self.pipeline.keys)
        if self.config_source is not None:
            await self._audit_config_load(self.config_source)
        for c in self.settings.carriers:
            # Receipts in the common layout skip the DeliverSm decode (dlr/receipt_scan.py).
            pool = BindPool(
                bind_config(c), _PoolHandler(self, c.name), claim_deliver=scan_receipt, flow=self._carrier_flow(c),
                leased=c.max_binds > 0,
            )
            self.pools[c.name] = pool
            self.metrics.pool_stats[c.name] = pool.stats
            self.metrics.pools[c.name] = pool
        await asyncio.gather(*(p.start() for p in self.pools.values()))
        leased = {c.name: (self.pools[c.name], c.max_binds, c.lease_ttl_s) for c in self.settings.carriers if c.max_binds}
        if leased:
            # Binds under a fleet-wide cap open as leases are gained (engine/leases.py).
            # Letters only after the name: six random hex digits could be all digits,
            # which the log redaction masks like a phone number (1 time in 17).
            engine_id = f"{self.settings.consumer_name}.{''.join(secrets.choice(_ID_LETTERS) for _ in range(6))}"
            self.leases = LeaseManager(self.redis, self.keys, engine_id, leased)
            await self.leases.tick()
        self._register_gauges()
        self.receipts.start()
        if self.archiver_process is not None and not await self.archiver_process.wait_started(10.0):
            log.warning("archiver: process not started within 10 s; sending starts anyway")
        if self.settings.admin.listen:
            self.admin = AdminServer(self.settings.admin.listen, self.metrics.registry, self._ready, self.status)
            await self.admin.start()
        # Everything built so far lives as long as the process: keep it out of
        # the collector's generations so full collections stay short.
        gc.collect()
        gc.freeze()
        self._gc_threshold = _GC.raise_threshold()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.pipeline.run(), name="pipeline"),
            loop.create_task(self._maintenance(), name="maintenance"),
        ]
        if self.leases is not None:
            self._tasks.append(loop.create_task(self.leases.run(), name="bind-leases"))
        if self.settings.admin.sample_interval_s > 0:
            self._tasks.append(loop.create_task(self.sampler.run(), name="ops-sampler"))
        if self.settings.history.enabled:
            # Its own consumer group on the events stream; a store that is down
            # only makes it wait (engine/history/archiver.py), sending goes on.
            from engine.history.cli import archiver_for, inbound_archiver_for, store_for

            self.archiver = archiver_for(self.settings, self.redis, store_for(self.settings), self.metrics.registry)
            # Inbound messages: a group of its own on the inbound stream, into the same store.
            self.inbound_archiver = inbound_archiver_for(self.settings, self.redis, self.archiver.store,
                                                         self.metrics.registry)
            if self.archiver_process is not None:
                # A child process at a lower priority (engine/history/process.py), started
                # before the pipeline, runs both; this engine keeps their lag gauges and /readyz.
                self._tasks.append(loop.create_task(self._watch_archiver(self.archiver_process), name="archiver"))
            else:
                self._tasks.append(loop.create_task(self.archiver.run(), name="archiver"))
                self._tasks.append(loop.create_task(self.inbound_archiver.run(), name="inbound-archiver"))
        log_event(
            f"engine started: consumer {self.settings.consumer_name}, {len(self.pools)} carrier(s), "
            f"prefix {self.settings.redis.prefix}",
            "engine_started", consumer=self.settings.consumer_name, version=__version__,
            carriers=list(self.pools), admin=f"{self.admin.host}:{self.admin.port}" if self.admin else "",
        )

    def _carrier_flow(self, c: CarrierSettings) -> CarrierFlow:
        """A carrier's flow control (throttling/flow.py): window and rate back off on
        throttle replies. With a ``tps``, the rate limit lives in Redis: at most ``tps``
        in any second across every engine sharing it, and one engine's throttle replies
        slow them all."""
        limiter: AdaptiveLimiter
        if c.tps:
            aimd = AimdSettings(floor=c.throttle_floor_per_s or max(1.0, c.tps / 10), step=max(1.0, c.tps / 10))
            bucket = GlobalTokenBucket.per_second(self.redis, self.settings.redis.prefix, c.name, c.tps, aimd)
            bucket.start()
            self._limiters.append(bucket)
            limiter = bucket
        else:
            limiter = LocalAdaptiveLimiter(c.throttle_floor_per_s or 1.0)
        return CarrierFlow(c.window, c.window_floor, limiter)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log_event(f"signal {sig}: stopping; draining in-flight messages", "shutdown_requested", signal=int(sig))
            self.request_stop()
        else:
            log.warning("second signal: exiting now; unacked jobs will be reclaimed by another consumer")
            import os

            os._exit(1)

    def request_stop(self) -> None:
        self.pipeline.stop()
        self._stopped.set()

    async def run(self) -> None:
        """Start, run until a stop is requested, shut down gracefully."""
        await self.start()
        self.install_signal_handlers()
        pipeline_task = self._tasks[0]
        stop_wait = asyncio.ensure_future(self._stopped.wait())
        done, _ = await asyncio.wait({pipeline_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if pipeline_task in done and pipeline_task.exception() is not None:
            stop_wait.cancel()
            await self.close()
            raise pipeline_task.exception()  # type: ignore[misc]
        await self.close()

    async def close(self) -> None:
        """Graceful stop: drain windows within the bound, unbind, record, close."""
        self.closing = True
        stop_started = time.monotonic()
        self.pipeline.stop()
        drain_s = self.settings.engine.drain_timeout_s
        drained = await self.pipeline.drain(drain_s)
        if self.leases is not None:
            self.leases.stop()  # no new binds; the held ones are renewed until they close
        # Pools close: unanswered parts come back through on_submit_lost and
        # complete their batches (event `unknown` unless resend_unknown).
        await asyncio.gather(*(p.close(drain_s if not drained else 1.0) for p in self.pools.values()), return_exceptions=True)
        await self.pipeline.drain(5.0)
        if self.leases is not None:
            leases_task = next(t for t in self._tasks if t.get_name() == "bind-leases")
            leases_task.cancel()
            await asyncio.wait({leases_task}, timeout=5.0)
            await self.leases.close()  # the binds are closed: their slots go free for other engines
        await self.receipts.close()
        for limiter in self._limiters:
            await limiter.close()
        if self.archiver is not None:
            # The last events (the drain's) go to the store too, while it answers and
            # within a bound; what is left waits in the stream for the next start.
            await self.archiver.wait_caught_up(min(5.0, drain_s))
            archivers = [self.archiver]
            if self.inbound_archiver is not None:
                await self.inbound_archiver.wait_caught_up(min(2.0, drain_s))
                archivers.append(self.inbound_archiver)
            for a in archivers:
                a.stop()
            if self.archiver_process is not None:
                await self.archiver_process.stop(10.0)
            archiver_tasks = {t for t in self._tasks if t.get_name() in ("archiver", "inbound-archiver")}
            await asyncio.wait(archiver_tasks, timeout=5.0)
        for t in self._tasks:
            t.cancel()
        # Bounded: a cancel that Python 3.11's wait_for swallows (result and cancel in
        # the same tick) must not turn a graceful stop into a hang.
        _, pending = await asyncio.wait(self._tasks, timeout=5.0) if self._tasks else (set(), set())
        for t in pending:
            log.warning("task %s did not stop within 5 s of its cancel; left behind", t.get_name())
        for t in self._tasks:
            if t.done() and not t.cancelled():
                t.exception()  # retrieved: its failure was reported where it happened
        if self.admin is not None:
            await self.admin.close()
        if self.archiver is not None:
            await self.archiver.store.close()
            await self.archiver.close_reader()
        await self.pipeline.close_reader()
        await self.redis.aclose()
        if self._gc_threshold is not None:
            _GC.restore()
            self._gc_threshold = None
        log_event(
            "engine stopped", "shutdown", drained=drained, took_s=round(time.monotonic() - stop_started, 3),
            uptime_s=round(time.time() - self.started_at, 1),
        )

    # ---------------------------------------------------------- periodic work
    async def _watch_archiver(self, child: ArchiverProcess) -> None:
        """The archiver's child process: restarted when it exits on its own; its lag
        (metric, /readyz) read from the group's position every 5 s."""
        assert self.archiver is not None
        watch = asyncio.ensure_future(child.watch())
        try:
            while True:
                for a in (self.archiver, self.inbound_archiver):
                    if a is not None:
                        with contextlib.suppress(Exception):
                            await a.lag()
                await asyncio.sleep(5.0)
        finally:
            watch.cancel()

    async def _maintenance(self) -> None:
        e = self.settings.engine
        keep_alive_every = max(1.0, e.visibility_timeout_s / 3)
        last_claim = last_keep = last_trim = last_lag = last_backlog = last_closed = time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            try:
                await self.pipeline.release_scheduled()
                await self.pipeline.check_outages()
                await self.pipeline.hand_back_fenced()  # max_binds: jobs held for a carrier whose leases all went
                if now - last_backlog >= 2.0:
                    last_backlog = now
                    await self._update_backlog()
                if now - last_keep >= keep_alive_every:
                    last_keep = now
                    await self.pipeline.keep_alive_in_flight(keep_alive_every)
                if now - last_claim >= e.claim_interval_s:
                    last_claim = now
                    n = await self.pipeline.reclaim(int(e.visibility_timeout_s * 1000))
                    if n:
                        log.info("reclaimed %d job(s) from consumers that went away", n)
                if now - last_closed >= 3.0:
                    last_closed = now
                    self.pipeline.closed_clients = await closed_clients(self.redis, self.pipeline.keys)
                if now - last_lag >= 5.0:
                    last_lag = now
                    await self._audit_bind_credentials()
                if now - last_trim >= 60.0:
                    last_trim = now
                    await trim_streams(self.redis, self.settings, approximate=True, metrics=self.metrics)
                    rotate_due_files()  # [logging] file: rotate and expire even when nothing is logged
                await self.receipts.periodic()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the loop alive; the error is logged once per occurrence
                log.exception("maintenance step failed")

    async def _update_backlog(self) -> None:
        """Each lane's backlog (unread, unacked, parked): gauge, /readyz, ``P:backlog``."""
        parked = await self.pipeline.check_parked()
        backlog = dict(parked)
        # every shard's lanes, in one pipeline (a Cluster's client splits it by node)
        for lane, n in (await lane_backlog(self.redis, self.pipeline.shards, self.settings.engine.group)).items():
            backlog[lane] = backlog.get(lane, 0) + n
        for lane, n in backlog.items():
            self.metrics.lane_backlog.labels(lane).set(n)
        self.backlog = backlog
        # The whole fleet's figure, on shard 0 (where Producer.backlog reads it).
        await write_backlog(self.redis, self.pipeline.keys, backlog, self.settings.engine.lane_high_water)

    def over_high_water(self) -> dict[str, int]:
        """Lanes whose sampled backlog is above ``[engine] lane_high_water`` (none when 0)."""
        hw = self.settings.engine.lane_high_water
        return {lane: n for lane, n in self.backlog.items() if hw and n > hw}

    async def _audit_config_load(self, source: str) -> None:
        """docs/contract.md §4: a config load is audited — where from, what it holds, a digest (no secret)."""
        s = self.settings
        digest = hashlib.sha256(repr(s).encode()).hexdigest()[:32]  # repr shows secrets as ***; 32 hex: read as a hash, not masked
        await self.audit.record(
            "config_load", source=source, carriers=len(s.carriers), clients=len(s.clients), digest=digest,
            allow_private_callbacks=s.webhooks.allow_private,
            tls_carriers=sum(1 for c in s.carriers if c.tls), redis_tls=s.redis.url.lower().startswith("rediss://"),
        )

    async def _audit_bind_credentials(self) -> None:
        """docs/contract.md §2.8: bind credential failures go to the audit log (never the password)."""
        for carrier, pool in self.pools.items():
            for bind in pool.binds:
                failures = int(getattr(bind, "auth_failures", 0))
                seen = self._auth_failures_seen.get(bind.name, 0)
                if failures > seen:
                    self._auth_failures_seen[bind.name] = failures
                    await self.audit.record(
                        "bind_credentials_refused", carrier=carrier, bind=bind.name,
                        system_id=self.settings.carrier(carrier).system_id, failures=failures - seen,
                        status=getattr(bind, "last_error", "") or "",
                    )

    # ------------------------------------------------------------- status
    def _log_flow_changes(self) -> None:
        """One line when a carrier starts or stops backing off from throttling (seen per sample;
        each step in between is logged by the pool, event ``backoff``)."""
        for name, pool in self.pools.items():
            reduced = pool.flow.reduced()
            if reduced and name not in self._backing_off:
                self._backing_off.add(name)
                log_event(
                    f"carrier {name} throttles: backing off", "backoff_started", logging.WARNING,
                    carrier=name, rate_per_s=round(pool.rate_per_s(), 3), window=pool.window,
                    binds=pool.binds_up(), throttled_total=int(pool.stats.throttled),
                )
            elif not reduced and name in self._backing_off:
                self._backing_off.discard(name)
                log_event(
                    f"carrier {name}: backoff over", "backoff_ended", carrier=name, throttled_total=int(pool.stats.throttled),
                )

    def _register_gauges(self) -> None:
        def binds_up() -> list[tuple[list[str], float]]:
            return [([name], float(p.binds_up())) for name, p in self.pools.items()]

        def in_flight() -> list[tuple[list[str], float]]:
            return [([name], float(p.pending())) for name, p in self.pools.items()]

        def bind_in_flight() -> list[tuple[list[str], float]]:
            return [([name, b.name], float(b.in_flight)) for name, p in self.pools.items() for b in p.binds]

        def bind_leases() -> list[tuple[list[str], float]]:
            leases = self.leases
            return [([name], float(leases.held(name))) for name in leases.books] if leases is not None else []

        self.metrics.register_gauge(
            "sendgate_bind_leases", "Bind leases this engine holds, per carrier with max_binds", ["carrier"], bind_leases
        )
        self.metrics.register_gauge("sendgate_binds_up", "Binds currently bound, per carrier", ["carrier"], binds_up)
        self.metrics.register_gauge("sendgate_inflight", "Parts queued or in flight, per carrier", ["carrier"], in_flight)
        self.metrics.register_gauge(
            "sendgate_bind_inflight", "submit_sm awaiting their resp, per bind (the window in use)",
            ["carrier", "bind"], bind_in_flight,
        )

    async def _ready(self) -> tuple[bool, dict[str, Any]]:
        try:
            pong: Any = self.redis.ping()
            async with asyncio.timeout(1.0):
                redis_ok = bool(await pong)
        except Exception:
            redis_ok = False
        binds = {name: p.binds_up() for name, p in self.pools.items()}
        # A carrier under max_binds may be bound by other engines only: this one parks its jobs.
        ok = redis_ok and all(n > 0 or self.pools[name].leased for name, n in binds.items())
        details: dict[str, Any] = {"redis": redis_ok, "binds_up": binds, "lanes": dict(self.backlog)}
        if self.leases is not None:
            details["bind_leases"] = {name: self.leases.held(name) for name in self.leases.books}
        if self.archiver is not None:
            # How far behind the history is (updated every ~5 s); says, does not gate.
            lag = self.archiver.last_lag
            details["archive"] = {"lag": lag.entries, "behind_s": lag.behind_s}
        if self.inbound_archiver is not None:
            lag = self.inbound_archiver.last_lag
            details["inbound_archive"] = {"lag": lag.entries, "behind_s": lag.behind_s}
        over = self.over_high_water()
        if over:
            # Producers should slow down: a lane is past [engine] lane_high_water.
            ok = False
            details["reason"] = "lane_high_water"
            details["high_water"] = self.settings.engine.lane_high_water
            details["over"] = over
        return ok, details

    def status(self) -> dict[str, Any]:
        """The `/status` snapshot (the status page's data): names, states and counts only —
        never a number, a text, a job id or a credential (docs/contract.md §6)."""
        snapshot = status_snapshot(self)
        for name, carrier in snapshot["carriers"].items():
            carrier.update(self.pipeline.carrier_counts(name))  # jobs in hand and parked (engine/pipeline.py)
        snapshot["lane_backlog"] = dict(self.backlog)  # with parked jobs, as /readyz compares it
        return snapshot
