"""Prometheus metrics, updated per batch.

Names start with ``sendgate_``; labels are carrier and bind names, results,
states, codes — never numbers or text (docs/contract.md §7, "Metrics").

prometheus-client's own Histogram takes a lock and walks its buckets per
``observe``; at tens of thousands of messages a second that is real CPU. The
hot path instead records latencies into `FastHistogram` (a bisect into a
list, no lock: everything runs on the event loop thread) and the collector
reads the totals at scrape time. Counters are bumped once per batch by the
batch's count; label children are resolved once per carrier.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine import __version__

__all__ = ["FastHistogram", "Metrics"]

LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Encodings a part can be built in (engine/text/segmenter.py); their series exist from the start.
ENCODINGS = ("gsm7", "ucs2")
#: `sendgate_callbacks_total` results and the `dlr.webhook.WebhookStats` field each counts.
CALLBACK_RESULTS = (("delivered", "delivered"), ("retried", "retried"), ("failed", "failed"), ("dropped", "queue_full"))
RECEIPT_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0)


class FastHistogram:
    """Lock-free histogram for one label set, summed into Prometheus at scrape."""

    __slots__ = ("bounds", "counts", "sum", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += 1
        self.sum += value

    def observe_many(self, values: list[float]) -> None:
        bounds, counts = self.bounds, self.counts
        for v in values:
            counts[bisect_left(bounds, v)] += 1
        self.total += len(values)
        self.sum += sum(values)

    def observe_counted(self, value: float, n: int) -> None:
        """``observe(value)`` ``n`` times (a batch's receipts share a few latencies)."""
        self.counts[bisect_left(self.bounds, value)] += n
        self.total += n
        self.sum += value * n

    def buckets(self) -> list[tuple[str, float]]:
        acc = 0
        out: list[tuple[str, float]] = []
        for bound, n in zip(self.bounds, self.counts, strict=False):
            acc += n
            out.append((repr(bound), acc))
        out.append(("+Inf", self.total))
        return out


class _HistogramCollector(Collector):
    def __init__(self, name: str, doc: str, label: str, children: dict[str, FastHistogram]) -> None:
        self._name, self._doc, self._label, self._children = name, doc, label, children

    def collect(self) -> Iterator[Metric]:
        fam = HistogramMetricFamily(self._name, self._doc, labels=[self._label])
        for value, h in sorted(self._children.items()):
            fam.add_metric([value], h.buckets(), h.sum)
        yield fam


class _CallbackGauge(Collector):
    """A gauge whose samples are read from the engine when scraped."""

    def __init__(self, name: str, doc: str, labels: list[str], read: Callable[[], list[tuple[list[str], float]]]) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, value in self._read():
            fam.add_metric(labels, value)
        yield fam


class _CallbackCounter(Collector):
    """A counter whose samples are read from the engine when scraped."""

    def __init__(self, name: str, doc: str, labels: list[str], read: Callable[[], list[tuple[list[str], float]]]) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, value in self._read():
            fam.add_metric(labels, value)
        yield fam


class Metrics:
    """Every metric of one engine process, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs_consumed = Counter("sendgate_jobs_consumed", "Jobs read from the jobs streams", ["lane"], registry=r)
        self.jobs_duplicate = Counter("sendgate_jobs_duplicate", "Jobs whose id was already sent; acked without sending", registry=r)
        self.jobs_reclaimed = Counter("sendgate_jobs_reclaimed", "Stream entries reclaimed from a consumer that went away", registry=r)
        self.submits = Counter("sendgate_submits", "submit_sm outcomes", ["carrier", "result"], registry=r)
        # Throttling replies are handled inside the bind pools; their counters are
        # read at scrape time from the pools' stats (set by the app).
        self.pool_stats: dict[str, Any] = {}
        r.register(_CallbackCounter(
            "sendgate_throttle_replies", "ESME_RTHROTTLED / ESME_RMSGQFUL replies (submits re-queued)", ["carrier"],
            lambda: [([name], float(st.throttled)) for name, st in sorted(self.pool_stats.items())],
        ))
        # Flow control and binds, read at scrape time from the pools (set by the app).
        self.pools: dict[str, Any] = {}
        r.register(_CallbackGauge(
            "sendgate_carrier_rate_per_s", "Rate limit in force per carrier after throttle backoff (0 = none)",
            ["carrier"], lambda: [([name], float(p.rate_per_s())) for name, p in sorted(self.pools.items())],
        ))
        r.register(_CallbackGauge(
            "sendgate_carrier_window", "Window per bind in force per carrier after throttle backoff", ["carrier"],
            lambda: [([name], float(p.window)) for name, p in sorted(self.pools.items())],
        ))
        r.register(_CallbackCounter(
            "sendgate_reconnects", "Bind connection retries by cause", ["carrier", "cause"],
            lambda: [([name, cause], float(n)) for name, p in sorted(self.pools.items())
                     for cause, n in sorted(p.reconnects().items())],
        ))
        self.events = Counter("sendgate_events", "Status events published", ["event"], registry=r)
        self.receipts = Counter("sendgate_receipts", "Delivery receipts received", ["carrier", "state"], registry=r)
        self.receipts_unmatched = Counter("sendgate_receipts_unmatched", "Receipts matching no submitted message", ["carrier"], registry=r)
        self.receipts_invalid = Counter("sendgate_receipts_invalid", "Receipts that could not be parsed (kept with reason)", ["carrier"], registry=r)
        self.dead_letters = Counter("sendgate_dead_letters", "Jobs sent to the dead-letter stream", ["code"], registry=r)
        self.hook_failures = Counter(
            "sendgate_privacy_hook_failures", "Batches a privacy hook raised on (not written; retried)", registry=r
        )
        self.inbound = Counter("sendgate_inbound_messages", "Mobile-originated messages received", ["carrier"], registry=r)
        self.inbound_partial = Counter(
            "sendgate_inbound_partial", "Inbound messages published incomplete after the reassembly wait", registry=r)
        self.inbound_malformed = Counter(
            "sendgate_inbound_malformed", "Inbound parts whose header or payload could not be read whole", ["carrier"],
            registry=r)
        self.opt_outs = Counter(
            "sendgate_opt_keywords", "Opt-out (out) and opt-in (in) keywords applied to suppression lists", ["action"],
            registry=r)
        self.redis_errors = Counter("sendgate_redis_errors", "Redis calls that failed and were retried", registry=r)
        self.batches = Counter("sendgate_batches", "Job batches completed", registry=r)
        self.events_trimmed_unarchived = Counter(
            "sendgate_events_trimmed_unarchived",
            "Events trimmed before the history archiver had them (older than events_keep_hours)", registry=r)
        self.submit_latency: dict[str, FastHistogram] = {}
        self.receipt_latency: dict[str, FastHistogram] = {}
        r.register(_HistogramCollector("sendgate_submit_latency_seconds", "submit_sm to submit_sm_resp", "carrier", self.submit_latency))
        r.register(_HistogramCollector("sendgate_receipt_latency_seconds", "submit_sm_resp to final receipt", "carrier", self.receipt_latency))
        self.admitted = Counter(
            "sendgate_admitted", "Jobs admitted to a carrier's windows, per lane and client "
            "(a client configured in [[clients]], else 'other')", ["carrier", "lane", "client"], registry=r,
        )
        self.jobs_parked = Counter(
            "sendgate_jobs_parked", "Jobs moved to a park stream (their carrier could not take them then)",
            ["carrier", "lane"], registry=r,
        )
        self.jobs_wrong_shard = Counter(
            "sendgate_jobs_wrong_shard", "Jobs read on another shard than crc32(id) mod shards names, moved to their own",
            registry=r,
        )
        self.jobs_diverted = Counter(
            "sendgate_jobs_diverted", "Jobs of a carrier in outage moved to its fallback or failed",
            ["carrier", "to"], registry=r,
        )
        self.lane_backlog = Gauge(
            "sendgate_lane_backlog", "Jobs waiting in a lane: unread, read and unacked, and parked (sampled)",
            ["lane"], registry=r,
        )
        self.stream_lag = Gauge("sendgate_stream_lag", "Entries not yet read by the group (per stream)", ["stream"], registry=r)
        self.stream_pending = Gauge("sendgate_stream_pending", "Entries read but not yet acked (per stream)", ["stream"], registry=r)
        # Sampled every few seconds by engine/ops_sampler.py, never per message.
        self.lane_lag = Gauge(
            "sendgate_lane_lag", "Jobs of a lane not yet done: entries not yet read plus read and not acked", ["lane"],
            registry=r,
        )
        self.lane_oldest_age = Gauge(
            "sendgate_lane_oldest_age_seconds", "Age of the oldest job of a lane not yet done (0 when none)", ["lane"],
            registry=r,
        )
        self.loop_lag = Gauge(
            "sendgate_event_loop_lag_seconds", "How late the event loop ran a timer (worst of the last sample period)",
            registry=r,
        )
        self.redis_rtt = Gauge("sendgate_redis_rtt_seconds", "Round-trip time of a Redis PING (last sample)", registry=r)
        self.inbound_results = Counter(
            "sendgate_inbound", "Mobile-originated messages published, by result (stored: a client owns the number; unassigned; partial)",
            ["carrier", "result"], registry=r,
        )
        # Parts by encoding, bumped once per batch by the pipeline (plain ints, read at scrape).
        self.segments: dict[tuple[str, str], int] = {}
        r.register(_CallbackCounter(
            "sendgate_segments", "Message parts (segments) built, by encoding", ["carrier", "encoding"],
            lambda: [([carrier, enc], float(n)) for (carrier, enc), n in sorted(self.segments.items())],
        ))
        # The webhook forwarder's counters (set by the app; zeros until then).
        self.webhook_stats: Any = None
        r.register(_CallbackCounter(
            "sendgate_callbacks", "Callback (webhook) deliveries by result", ["result"], self._callback_samples,
        ))
        self.build_info = Gauge("sendgate_build_info", "Always 1; the engine's version", ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        self.start_time = Gauge("sendgate_start_time_seconds", "When this engine process started (Unix time)", registry=r)
        self.start_time.set_to_current_time()

    def _callback_samples(self) -> list[tuple[list[str], float]]:
        st = self.webhook_stats
        return [
            ([result], float(getattr(st, attr, 0) if st is not None else 0))
            for result, attr in CALLBACK_RESULTS
        ]

    def add_carrier(self, carrier: str) -> None:
        self.submit_latency.setdefault(carrier, FastHistogram(LATENCY_BUCKETS_S))
        self.receipt_latency.setdefault(carrier, FastHistogram(RECEIPT_BUCKETS_S))
        for encoding in ENCODINGS:
            self.segments.setdefault((carrier, encoding), 0)

    def count_segments(self, carrier: str, encoding: str, n: int) -> None:
        """Add ``n`` parts built in ``encoding`` (once per batch and encoding)."""
        key = (carrier, encoding)
        self.segments[key] = self.segments.get(key, 0) + n

    def register_gauge(self, name: str, doc: str, labels: list[str], read: Callable[[], list[tuple[list[str], float]]]) -> None:
        self.registry.register(_CallbackGauge(name, doc, labels, read))
